"""Draw SRCNN's learned filters as a PNG grid (the paper's Fig. 5 shows conv1 of its 9-1-5 network).

    python visualize_filters.py                                   # shipped x3 weights -> output/filters_conv1_x3.png
    python visualize_filters.py --weights-file runs/srcnn_x3/best.pth --layers conv1 conv2 conv3
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import cli
from hub import WEIGHTS_DIR
from models import WeightsError, load_model
from utils import filter_grid, save_image


def layer_filters(weight: np.ndarray, input_channel: int) -> np.ndarray:
    """N x h x w filters of one layer: each output filter's slice at `input_channel`, or, for a layer
    with a single output (conv3 on Y), its slices over all input channels."""
    if weight.shape[0] == 1:
        return weight[0]
    return weight[:, min(input_channel, weight.shape[1] - 1)]


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--weights-file", type=Path, help="SRCNN weights (default: weights/srcnn_x<scale>.pth)")
    cli.add_scale(parser)
    parser.add_argument("--layers", nargs="+", default=["conv1"], choices=["conv1", "conv2", "conv3"], help="layers to draw")
    parser.add_argument("--input-channel", type=int, default=0,
                        help="conv2 filters have 64 input channels; draw this one's slice")
    parser.add_argument("--zoom", type=int, default=8, help="pixels per filter tap in the PNG")
    cli.add_output_dir(parser, Path("output"), "where the PNGs go (results/ holds the showcase)")
    return parser


def main() -> None:
    args = build_parser().parse_args()

    weights = args.weights_file or WEIGHTS_DIR / f"srcnn_x{args.scale}.pth"
    try:
        model, _ = load_model(weights)
    except WeightsError as err:
        raise SystemExit(f"error: {err}") from None
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for layer in args.layers:
        weight = getattr(model, layer).weight.detach().numpy()
        grid = filter_grid(layer_filters(weight, args.input_channel), gap=1)
        grid = np.asarray(Image.fromarray(grid).resize((grid.shape[1] * args.zoom, grid.shape[0] * args.zoom), Image.NEAREST))
        path = args.output_dir / f"filters_{layer}_x{args.scale}.png"
        save_image(path, grid)
        print(f"{layer}: {weight.shape[0]} filters of {weight.shape[2]}x{weight.shape[3]} -> {path}")


if __name__ == "__main__":
    main()
