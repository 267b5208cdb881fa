"""PSNR per channel (Y, Cb, Cr) and over RGB for bicubic and for Y-only / YCbCr / RGB networks, the
comparison of the SRCNN paper's Section 4.5 (Table 5), on a benchmark folder.

    python -m benchmarks.color_table --dataset data/Set5/x3 --scale 3 \\
        --weights-file weights/srcnn_x3.pth weights/srcnn_ycbcr_x3.pth weights/srcnn_rgb_x3.pth

Every method is measured on the 8-bit RGB image it writes (the Y-only network's output with bicubic
Cb/Cr), with `scale` pixels shaved: Y, Cb, Cr of MATLAB's rgb2ycbcr (8-bit), and RGB over all three
channels. Grayscale images are left out (they have no Cb/Cr).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import cli
from evaluate import channel_psnrs, upscale
from hub import WEIGHTS_DIR
from inference import Upscaler
from models import WeightsError, load_model
from utils import benchmark_pairs, upscale_bicubic


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--dataset", type=Path, help=f"a benchmark folder (default: {cli.DATA}/Set5/x<scale>)")
    cli.add_scale(parser)
    parser.add_argument("--weights-file", type=Path, nargs="+",
                        help="the networks to compare (default: weights/srcnn_x<scale>.pth)")
    return parser


def load_network(path: Path, scale: int) -> tuple[Upscaler, str]:
    """(the network, the colour space it reads), warning when its file was trained for another scale."""
    model, meta = load_model(path, scale=scale)
    if meta.get("scale", scale) != scale:
        print(f"warning: {path} was trained for x{meta['scale']}, used here at x{scale}", file=sys.stderr)
    return Upscaler(model), meta.get("color", "y")


@cli.one_line_errors(WeightsError, ValueError)
def main() -> None:
    args = build_parser().parse_args()
    dataset = args.dataset or cli.DATA / "Set5" / f"x{args.scale}"

    pairs = [(hr, lr) for _, hr, lr in benchmark_pairs(dataset, args.scale) if hr.ndim == 3]
    rows = {"bicubic": [channel_psnrs(hr, upscale_bicubic(lr, args.scale), args.scale) for hr, lr in pairs]}
    for path in args.weights_file or [WEIGHTS_DIR / f"srcnn_x{args.scale}.pth"]:
        network, color = load_network(path, args.scale)
        label = f"{path.name} ({'Y only, bicubic CbCr' if color == 'y' else color.upper() + ', 3 channels'})"
        outputs = [upscale(network, lr, upscale_bicubic(lr, args.scale), color)[0] for _, lr in pairs]
        rows[label] = [channel_psnrs(hr, out, args.scale) for (hr, _), out in zip(pairs, outputs)]
    print(f"{dataset} x{args.scale}, {len(pairs)} colour images, mean PSNR (dB)\n")
    print("| method | Y | Cb | Cr | RGB |\n|---|---|---|---|---|")
    for label, scores in rows.items():
        print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in np.mean(scores, axis=0)) + " |")


if __name__ == "__main__":
    main()
