"""How much the shipped SRCNN numbers depend on how the image border is filled at inference.

A valid-padding SRCNN (the shipped weights) loses `halo` = 8 pixels per side, so `SRCNN.super_resolve`
extends its input by replicating the border first. Only `scale` pixels are shaved before PSNR, so the
outer 8 - scale pixels of every output are computed from made-up context. This script scores the
shipped weights with evaluate.py, as test.py does, for several ways to make it up:

    python -m benchmarks.border_modes --data data

- replicate: the input's edge pixels repeated (what test.py does),
- reflect: the input mirrored about its edge pixels,
- zeros: the input extended with black,
- replicate per layer: each layer's input replicated by its own radius, as SRCNN's MATLAB test code
  applies every layer (`imfilter(..., 'same', 'replicate')`).

Selecting a mode by these numbers would tune on the test sets, so test.py keeps the first.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import cli
from evaluate import evaluate_dataset, paper_psnr
from inference import Upscaler
from models import SRCNN, load_model

ROOT = Path(__file__).resolve().parent.parent

MODES = ("replicate", "reflect", "zeros", "replicate per layer")


class BorderFill(nn.Module):
    """A valid-padding SRCNN whose super_resolve() fills the lost border in `mode`."""
    takes_lr = False

    def __init__(self, model: SRCNN, mode: str) -> None:
        super().__init__()
        self.model, self.mode, self.halo = model, mode, model.halo

    def super_resolve(self, bicubic: torch.Tensor) -> torch.Tensor:
        if self.mode == "replicate per layer":
            x = bicubic
            for conv in (self.model.conv1, self.model.conv2, self.model.conv3):
                x = conv(nn.functional.pad(x, [conv.kernel_size[0] // 2] * 4, mode="replicate"))
                x = self.model.relu(x) if conv is not self.model.conv3 else x
            return x
        mode = "constant" if self.mode == "zeros" else self.mode
        return self.model(nn.functional.pad(bicubic, [self.halo] * 4, mode=mode))


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    cli.add_data(parser)
    cli.add_scale(parser, several=True)
    return parser


def main() -> None:
    args = build_parser().parse_args()

    print("| set | scale | " + " | ".join(MODES) + " | paper |\n|---|---|" + "---|" * (len(MODES) + 1))
    for dataset in ("Set5", "Set14"):
        for scale in args.scale:
            model, _ = load_model(ROOT / "weights" / f"srcnn_x{scale}.pth")
            if model.padding != "valid":
                raise SystemExit(f"error: weights/srcnn_x{scale}.pth has {model.padding} padding; this compares valid-padding fills")
            # channels_last, not test.py's default ONNX Runtime path (within 1e-4 dB of it): the exported graph
            # is cached by the weights alone, so it would not see the fill
            means = [evaluate_dataset(Upscaler(BorderFill(model, mode), "channels_last"), args.data / dataset / f"x{scale}",
                                      scale)["mean"]["psnr"] for mode in MODES]
            print(f"| {dataset} | x{scale} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {paper_psnr('srcnn', dataset, scale):.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
