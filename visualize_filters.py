"""Draw SRCNN's learned filters as a PNG grid (the paper's Fig. 5 shows conv1 of its 9-1-5 network), or
FSRCNN's first layer (its 5x5 feature extraction).

    python visualize_filters.py                                   # shipped x3 weights -> output/filters_conv1_x3.png
    python visualize_filters.py --weights-file runs/srcnn_x3/best.pth --layers conv1 conv2 conv3
    python visualize_filters.py --weights-file weights/fsrcnn_x3.pth   # -> output/filters_feature_x3.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import cli
from files import WriteError, make_folder
from hub import WEIGHTS_DIR
from models import FSRCNN, SRCNN, WeightsError, load_model, network_name
from utils import filter_grid, save_image

LAYERS = {"srcnn": ("conv1", "conv2", "conv3"), "fsrcnn": ("feature",)}  # what can be drawn, per network


def layer_filters(weight: np.ndarray, input_channel: int) -> np.ndarray:
    """N x h x w filters of one layer: each output filter's slice at `input_channel`, or, for a layer
    with a single output (conv3 on Y), its slices over all input channels."""
    if weight.shape[0] == 1:
        return weight[0]
    return weight[:, min(input_channel, weight.shape[1] - 1)]


def check_input_channel(drawn: dict[str, np.ndarray], input_channel: int) -> None:
    """--input-channel must exist in every drawn layer that has several (a single-channel conv1 draws its one)."""
    for layer, weight in drawn.items():
        if weight.shape[0] > 1 and input_channel >= weight.shape[1] > 1:
            raise ValueError(f"--input-channel {input_channel}: {layer} has {weight.shape[1]} input channels "
                             f"(0-{weight.shape[1] - 1})")


def layer_weight(model: SRCNN | FSRCNN, layer: str, weights: Path) -> np.ndarray:
    """The weight of one drawable layer: SRCNN's conv1-conv3, or FSRCNN's feature convolution."""
    network = network_name(model)
    if layer not in LAYERS[network]:
        raise WeightsError(f"{weights}: {network.upper()} weights have no {layer} layer to draw; "
                           f"choose {', '.join(LAYERS[network])}")
    module = model.feature[0] if layer == "feature" else getattr(model, layer)
    return module.weight.detach().numpy()


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--weights-file", type=Path, help="SRCNN or FSRCNN weights (default: weights/srcnn_x<scale>.pth)")
    cli.add_scale(parser)
    parser.add_argument("--layers", nargs="+", choices=[name for names in LAYERS.values() for name in names],
                        help="layers to draw (default: the first one, conv1 for SRCNN, feature for FSRCNN)")
    parser.add_argument("--input-channel", type=int, default=0,
                        help="conv2 filters have 64 input channels; draw this one's slice")
    parser.add_argument("--zoom", type=int, default=8, help="pixels per filter tap in the PNG")
    cli.add_output_dir(parser, Path("output"), "where the PNGs go (results/ holds the showcase)")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.zoom < 1 or args.input_channel < 0:
        parser.error(f"--zoom must be 1 or more and --input-channel 0 or more, not {args.zoom} and {args.input_channel}")
    weights = args.weights_file or WEIGHTS_DIR / f"srcnn_x{args.scale}.pth"
    try:
        model, meta = load_model(weights, scale=args.scale)  # FSRCNN's scale, if its file does not say, is not drawn
        scale = meta.get("scale", args.scale)  # the output is named after the weights' scale
        layers = args.layers or [LAYERS[network_name(model)][0]]
        drawn = {layer: layer_weight(model, layer, weights) for layer in layers}
        check_input_channel(drawn, args.input_channel)
        make_folder(args.output_dir)
        for layer, weight in drawn.items():
            grid = filter_grid(layer_filters(weight, args.input_channel), gap=1)
            grid = np.asarray(Image.fromarray(grid).resize((grid.shape[1] * args.zoom, grid.shape[0] * args.zoom),
                                                           Image.NEAREST))
            path = args.output_dir / f"filters_{layer}_x{scale}.png"
            save_image(path, grid)
            print(f"{layer}: {weight.shape[0]} filters of {weight.shape[2]}x{weight.shape[3]} -> {path}")
    except (WeightsError, WriteError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
