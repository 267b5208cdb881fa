"""Inference speed of SRCNN 9-5-5 and FSRCNN / FSRCNN-s on the same 720p output, fp32 eager PyTorch,
in plain NCHW and in channels_last layout (train.py's default).

    python -m benchmarks.speed --scale 3              # CPU, all cores torch uses by default
    python -m benchmarks.speed --scale 3 --device cuda

SRCNN runs on the 1278x720 bicubic image, FSRCNN on the 426x240 LR image it comes from (x3). Each
network runs `--repeats` times after a warm-up; the median time gives megapixels of output per second.
"""
from __future__ import annotations

import argparse
import torch

import cli
from inference import MEMORY_FORMATS, choose_device, median_seconds
from models import build_model


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    cli.add_scale(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per network (the median counts)")
    cli.add_device(parser, default="cpu")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    device = choose_device(args.device)
    width, height = 1280 // args.scale * args.scale, 720 // args.scale * args.scale
    pixels = width * height
    torch.manual_seed(0)
    results = {}
    for arch in ("9-5-5", "fsrcnn", "fsrcnn-s"):
        for layout in ("contiguous", "channels_last"):
            model = build_model(arch, scale=args.scale).to(device, memory_format=MEMORY_FORMATS[layout]).eval()
            side = (height, width) if not model.takes_lr else (height // args.scale, width // args.scale)
            x = torch.rand(1, 1, *side, device=device)
            with torch.no_grad():
                model.super_resolve(x)  # warm-up; super_resolve is what test.py runs
                results[arch, layout] = pixels / median_seconds(lambda: model.super_resolve(x), args.repeats, device) / 1e6
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{width}x{height} output, x{args.scale}, {name}, torch {torch.__version__}")
    baseline = results["9-5-5", "contiguous"]
    for (arch, layout), mps in results.items():
        print(f"{arch:<9} {layout:<14} {mps:8.2f} MP/s  ({mps / baseline:5.1f}x SRCNN 9-5-5 NCHW)")


if __name__ == "__main__":
    main()
