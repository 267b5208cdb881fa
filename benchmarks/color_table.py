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
from pathlib import Path

import numpy as np

import cli
from evaluate import upscale
from inference import Upscaler
from models import load_model
from utils import benchmark_pairs, psnr, rgb2ycbcr, to_uint8, upscale_bicubic



def channel_psnrs(hr: np.ndarray, image: np.ndarray, scale: int) -> list[float]:
    """PSNR of Y, Cb, Cr (8-bit YCbCr) and over all RGB channels."""
    hr_ycc, ycc = to_uint8(rgb2ycbcr(hr)), to_uint8(rgb2ycbcr(image))
    return [psnr(hr_ycc[..., c], ycc[..., c], scale) for c in range(3)] + [psnr(hr, image, scale)]


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--dataset", type=Path, default=cli.DATA / "Set5" / "x3", help="a benchmark folder")
    cli.add_scale(parser)
    parser.add_argument("--weights-file", type=Path, nargs="+", default=["weights/srcnn_x3.pth"],
                        help="the networks to compare")
    return parser


def main() -> None:
    args = build_parser().parse_args()

    pairs = [(hr, lr) for _, hr, lr in benchmark_pairs(args.dataset, args.scale) if hr.ndim == 3]
    rows = {"bicubic": [channel_psnrs(hr, upscale_bicubic(lr, args.scale), args.scale) for hr, lr in pairs]}
    for path in map(Path, args.weights_file):
        model, meta = load_model(path, scale=args.scale)
        color = meta.get("color", "y")
        label = f"{path.name} ({'Y only, bicubic CbCr' if color == 'y' else color.upper() + ', 3 channels'})"
        outputs = [upscale(Upscaler(model), lr, upscale_bicubic(lr, args.scale), color)[0]
                   for _, lr in pairs]
        rows[label] = [channel_psnrs(hr, out, args.scale) for (hr, _), out in zip(pairs, outputs)]
    print(f"{args.dataset} x{args.scale}, {len(pairs)} colour images, mean PSNR (dB)\n")
    print("| method | Y | Cb | Cr | RGB |\n|---|---|---|---|---|")
    for label, scores in rows.items():
        print(f"| {label} | " + " | ".join(f"{v:.2f}" for v in np.mean(scores, axis=0)) + " |")


if __name__ == "__main__":
    main()
