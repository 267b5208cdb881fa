"""SRCNN 9-5-5 training throughput (patches/s) by padding and tensor layout, measured in one run:
what train.py's `--padding` and `--memory-format` choices cost, on the paper's 33x33 patches.

    python -m benchmarks.train_speed                     # CPU
    python -m benchmarks.train_speed --device cuda       # adds fp16 autocast + GradScaler, as train.py runs on CUDA

On a CPU with native bf16 (AVX512-BF16 or AMX) it adds bf16 autocast, train.py's --autocast bf16.

Each configuration runs `--steps` Adam steps of batch `--batch-size` on the same random patches after
a warm-up; the median step time gives patches/s. "valid" computes only the 17x17 centre the loss sees
(the paper's setting), "same" all 33x33 outputs, so valid does well under half the arithmetic per patch
(its dominant 5x5 layer computes 21x21 outputs instead of 33x33).
"""
from __future__ import annotations

import argparse
import torch

import cli
from inference import MEMORY_FORMATS, choose_device, median_seconds, native_bf16
from models import build_model


def patches_per_second(padding: str, layout: str, autocast: torch.dtype | None, device: torch.device, batch: int,
                       side: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model("9-5-5", padding=padding).to(device, memory_format=MEMORY_FORMATS[layout])
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast == torch.float16)
    lr = torch.rand(batch, 1, side, side, device=device).contiguous(memory_format=MEMORY_FORMATS[layout])
    hr = lr[..., model.border:side - model.border, model.border:side - model.border]

    def step() -> None:
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            loss = torch.nn.functional.mse_loss(model(lr).float(), hr)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    step()  # warm-up
    return batch / median_seconds(step, steps, device)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    cli.add_device(parser, default="cpu")
    parser.add_argument("--batch-size", type=int, default=16, help="patches per step")
    parser.add_argument("--patch-size", type=int, default=33, help="side of the square patches")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per configuration (the median counts)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    device = choose_device(args.device)
    configs = [(padding, layout, None) for padding in ("same", "valid") for layout in ("contiguous", "channels_last")]
    reduced = torch.float16 if device.type == "cuda" else torch.bfloat16 if native_bf16(device) else None
    if reduced is not None:
        configs += [(padding, "channels_last", reduced) for padding in ("same", "valid")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"SRCNN 9-5-5 training, batch {args.batch_size} of {args.patch_size}x{args.patch_size}, Adam, {name}, "
          f"torch {torch.__version__}\n")
    print("| padding | layout | autocast | patches/s | x same + NCHW |")
    print("|---|---|---|---|---|")
    baseline = None
    for padding, layout, autocast in configs:  # same + contiguous first: the baseline
        rate = patches_per_second(padding, layout, autocast, device, args.batch_size, args.patch_size, args.steps)
        baseline = baseline or rate
        dtype = str(autocast).removeprefix("torch.") if autocast else "no"
        print(f"| {padding} | {'NCHW' if layout == 'contiguous' else layout} | {dtype} | {rate:.0f} | {rate / baseline:.2f}x |")


if __name__ == "__main__":
    main()
