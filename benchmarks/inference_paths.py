"""SRCNN 9-5-5 inference speed by path, against plain eager fp32 NCHW and the machine's own fp32 peak,
all measured in one run on the same 1280x720 Y input (scikit-image's coffee, resized), with the
shipped x3 weights.

    python -m benchmarks.inference_paths                  # CPU
    python -m benchmarks.inference_paths --device cuda    # adds fp16/bf16, cudnn.benchmark, CUDA graphs

Paths: eager (NCHW fp32, what a typical SRCNN repo runs), channels_last, torch.compile, ONNX Runtime
on the exported model (onnx, onnxscript, onnxruntime: requirements.txt), and on CUDA fp16/bf16
autocast, the fp16 path with cudnn.benchmark, and that path replayed as a CUDA graph. Each runs
`--repeats` times after a warm-up; the median gives megapixels of output per second, and GFLOP/s from
the 2 * 57,184 multiply-adds per output pixel of 9-5-5. The peak is the best of a few
`--matmul-size`-square fp32 matmuls (PyTorch's and, on CPUs, NumPy's), timed before and after
the paths. "max |dY|" is the largest difference from eager fp32 on the
output Y, in 8-bit levels: test.py may pick a path only where it stays below 1.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from skimage import data as skimage_data

import cli
from inference import Upscaler, choose_device, default_inference_path, median_seconds
from models import load_model
from utils import y_channel



def matmul_gflops(size: int, repeats: int, device: torch.device) -> dict[str, float]:
    """The machine's practical fp32 peak: the fastest of a few size^3 matmuls, through PyTorch and, on
    CPUs, NumPy's BLAS too (PyTorch's MKL runs a slower path on AMD CPUs such as this one)."""
    a, b = torch.rand(size, size, device=device), torch.rand(size, size, device=device)
    runs = {"torch.mm": lambda: torch.mm(a, b)}
    if device.type == "cpu":
        a_np, b_np = a.numpy(), b.numpy()
        runs["numpy matmul"] = lambda: a_np @ b_np
    rates = {}
    for name, run in runs.items():
        run()  # warm-up
        rates[name] = 2 * size ** 3 / min(median_seconds(run, 1, device) for _ in range(repeats)) / 1e9
    return rates


def flops_per_pixel(model: torch.nn.Module) -> int:
    """2 x multiply-adds per output pixel of a network whose convolutions all run at output size (SRCNN)."""
    return sum(2 * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1]
               for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def cuda_graph_path(upscaler: Upscaler, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The upscaler captured once for x's shape and replayed: no per-layer launch overhead."""
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as capture requires
        for _ in range(3):
            upscaler(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = upscaler(static_x)

    def run(x: torch.Tensor) -> torch.Tensor:
        static_x.copy_(x)
        graph.replay()
        return static_out
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--weights-file", type=Path, default=Path("weights/srcnn_x3.pth"), help="the network to time")
    cli.add_device(parser, default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path (the median counts)")
    parser.add_argument("--matmul-size", type=int, default=4096, help="side of the square matmuls that measure the peak")
    parser.add_argument("--skip", nargs="*", default=[], help="paths to leave out (e.g. compile, onnxruntime)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    device = choose_device(args.device)
    torch.manual_seed(0)

    image = np.asarray(Image.fromarray(skimage_data.coffee()).resize((1280, 720), Image.BICUBIC))
    x = torch.from_numpy(y_channel(image) / 255).float()[None, None].to(device)
    model = load_model(args.weights_file)[0]
    flops = flops_per_pixel(model)
    matmuls = matmul_gflops(args.matmul_size, 3, device)

    paths = ["eager", "channels_last", "compile", "onnxruntime", "fp16", "bf16"]
    runs: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    setup: dict[str, float] = {}
    for path in [p for p in paths if p == "eager" or p not in args.skip]:
        start = time.perf_counter()
        runs[path] = Upscaler(model, path, device)
        runs[path](x)  # warm-up, and torch.compile's compilation
        setup[path] = time.perf_counter() - start
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # for fixed shapes: cuDNN times its algorithms once per shape
        runs["fp16 + cudnn.benchmark"] = Upscaler(model, "fp16", device)
        runs["fp16 + cudnn.benchmark"](x)
        runs["fp16 + CUDA graph"] = cuda_graph_path(runs["fp16 + cudnn.benchmark"], x)

    reference = runs["eager"](x).clamp(0, 1).cpu()
    # the peak again after the paths have run, keeping the better rate: shared machines and boost clocks
    # make a single matmul timing swing by a third
    matmuls = {name: max(rate, matmuls[name]) for name, rate in matmul_gflops(args.matmul_size, 3, device).items()}
    peak = max(matmuls.values())
    pixels = x.shape[-2] * x.shape[-1]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"SRCNN 9-5-5, 1280x720 Y, {name}, torch {torch.__version__}, {flops:,} FLOP/pixel")
    print(f"fp32 peak ({args.matmul_size}^3 matmul): {peak:.1f} GFLOP/s ("
          + ", ".join(f"{name} {rate:.1f}" for name, rate in matmuls.items())
          + f"); test.py's default here: {default_inference_path(device)}\n")
    print("| path | MP/s | GFLOP/s | % of fp32 peak | x eager NCHW | max abs diff on Y (8-bit levels) | setup + first call (s) |")
    print("|---|---|---|---|---|---|---|")
    baseline = None
    for path, run in runs.items():  # eager first: the baseline
        mps = pixels / median_seconds(lambda: run(x), args.repeats, device) / 1e6
        baseline = baseline or mps
        diff = (run(x).float().clamp(0, 1).cpu() - reference).abs().max().item() * 255
        print(f"| {path} | {mps:.2f} | {mps * flops / 1e3:.1f} | {100 * mps * flops / 1e3 / peak:.0f}% | "
              f"{mps / baseline:.2f}x | {diff:.3f} | {setup.get(path, float('nan')):.1f} |")


if __name__ == "__main__":
    main()
