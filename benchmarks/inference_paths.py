"""Inference speed of SRCNN 9-5-5, FSRCNN and FSRCNN-s by path, against plain eager fp32 NCHW and the
machine's fp32 peak, all measured in one run on the same 1278x720 output (scikit-image's coffee,
resized; x3: FSRCNN reads the 426x240 LR image), with the shipped x3 weights (FSRCNN-s: random weights,
speed only).

    python -m benchmarks.inference_paths                  # CPU
    python -m benchmarks.inference_paths --device cuda    # adds fp16/bf16, cudnn.benchmark, CUDA graphs

Paths: eager (NCHW fp32, what a typical SRCNN repo runs), channels_last, torch.compile, ONNX Runtime
on the exported graph (onnx, onnxscript, onnxruntime: requirements.txt), and on CUDA fp16/bf16
autocast, the fp16 path with cudnn.benchmark, and that path replayed as a CUDA graph. Each runs
`--repeats` times after a warm-up; the median gives megapixels of output per second, and GFLOP/s from
the multiply-adds each network computes per output pixel (FSRCNN's last layer as the sub-pixel
convolution it runs as). The peak is the larger of the CPU's nominal one (cores x clock x fp32 lanes
x 2 FMA units x 2, from /proc/cpuinfo; turbo clocks can pass it) and the best measured rate of a few
compute-bound kernels (square fp32 matmuls in PyTorch and NumPy, a 256-channel 3x3 convolution),
both printed. "max |dY|" is the largest difference from eager fp32 on the output Y, in 8-bit levels:
test.py may pick a path only where it stays below 1. `auto`'s pick for each network on this machine
(path_choice.py) is printed too.
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
from models import FSRCNN, SRCNN, build_model, load_model
from path_choice import cpu_model
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


def conv_gflops(repeats: int, device: torch.device) -> float:
    """A wide 3x3 convolution (256 -> 256 channels on 64x64, channels_last), which oneDNN and cuDNN run
    near the peak: a second estimate that does not rest on the matmul library."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(device, memory_format=torch.channels_last).eval()
    x = torch.rand(1, 256, 64, 64, device=device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        conv(x)
        seconds = min(median_seconds(lambda: conv(x), 1, device) for _ in range(repeats))
    return 2 * 256 * 256 * 9 * 64 * 64 / seconds / 1e9


def nominal_cpu_gflops() -> tuple[float, str] | None:
    """cores x nominal clock x fp32 lanes (16 with AVX-512, 8 with AVX2) x 2 FMA units x 2 FLOP, with
    how it was reckoned; None where /proc/cpuinfo does not say."""
    try:
        with open("/proc/cpuinfo") as file:
            info = file.read()
    except OSError:
        return None
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    flags = set(info.split())
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    if not mhz:
        return None
    cores = torch.get_num_threads()
    return cores * max(mhz) / 1e3 * lanes * 2 * 2, f"{cores} cores x {max(mhz) / 1e3:.2f} GHz x {lanes} lanes x 2 FMA x 2"


def flops_per_pixel(model: SRCNN | FSRCNN) -> int:
    """2 x the multiply-adds per output pixel: SRCNN's convolutions all run at output size; FSRCNN's run
    at LR size (1/scale^2 of the output pixels) and its last layer as the sub-pixel convolution."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    macs = sum(m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] for m in convs)
    if not model.takes_lr:
        return 2 * macs
    kernel = model.subpixel_kernel()[0]  # (channels * scale^2) x d x T x T, over LR pixels
    return round(2 * (macs + kernel.numel()) / model.scale ** 2)


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
    parser.add_argument("--weights-file", type=Path, nargs="+",
                        default=[Path("weights/srcnn_x3.pth"), Path("weights/fsrcnn_x3.pth")],
                        help="the x3 networks to time (FSRCNN-s, with random weights, is timed as well)")
    cli.add_device(parser, default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per path (the median counts)")
    parser.add_argument("--matmul-size", type=int, default=4096, help="side of the square matmuls that measure the peak")
    parser.add_argument("--skip", nargs="*", default=[], help="paths to leave out (e.g. compile, onnxruntime)")
    return parser


def timed_paths(model: SRCNN | FSRCNN, x: torch.Tensor, args: argparse.Namespace, device: torch.device) -> tuple[dict, dict]:
    """{path: upscaler} for every path not skipped (eager first: the baseline), and each one's setup +
    first call in seconds (torch.compile compiles then; ONNX Runtime exports, once per set of weights)."""
    paths = ["eager", "channels_last", "compile", "onnxruntime", "fp16", "bf16"]
    runs: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    setup: dict[str, float] = {}
    for path in [p for p in paths if p == "eager" or p not in args.skip]:
        if path in ("fp16", "bf16") and device.type == "cpu" and model.takes_lr:
            continue  # no fast CPU kernels (docs/speed.md); minutes for nothing on FSRCNN's many layers
        start = time.perf_counter()
        runs[path] = Upscaler(model, path, device)
        runs[path](x)
        setup[path] = time.perf_counter() - start
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # for fixed shapes: cuDNN times its algorithms once per shape
        runs["fp16 + cudnn.benchmark"] = Upscaler(model, "fp16", device)
        runs["fp16 + cudnn.benchmark"](x)
        runs["fp16 + CUDA graph"] = cuda_graph_path(runs["fp16 + cudnn.benchmark"], x)
    return runs, setup


def peak_gflops(args: argparse.Namespace, device: torch.device) -> tuple[float, str]:
    """The peak percentages are taken against, and how it was found."""
    measured = matmul_gflops(args.matmul_size, 3, device)
    measured["3x3 conv, 256 channels"] = conv_gflops(3, device)
    estimates = {f"{name} (measured)": rate for name, rate in measured.items()}
    nominal = nominal_cpu_gflops() if device.type == "cpu" else None
    if nominal:
        estimates[f"nominal: {nominal[1]}"] = nominal[0]
    peak = max(estimates.values())
    return peak, ", ".join(f"{name} {rate:.1f}" for name, rate in estimates.items())


def print_network(name: str, model: SRCNN | FSRCNN, image: np.ndarray, args: argparse.Namespace,
                  device: torch.device, peak: float) -> None:
    """One network's table: each path's MP/s, GFLOP/s, % of peak, speed-up, difference and setup."""
    source = image[:720 // 3 * 3, :1280 // 3 * 3]
    if model.takes_lr:
        source = np.asarray(Image.fromarray(source).resize((source.shape[1] // 3, source.shape[0] // 3), Image.BICUBIC))
    x = torch.from_numpy(y_channel(source) / 255).float()[None, None].to(device)
    runs, setup = timed_paths(model, x, args, device)
    flops, pixels = flops_per_pixel(model), 1278 * 720
    print(f"\n{name}: {flops:,} FLOP per output pixel; auto here: {default_inference_path(device, model)}\n")
    print("| path | MP/s | GFLOP/s | % of fp32 peak | x eager NCHW | max abs diff on Y (8-bit levels) | setup + first call (s) |")
    print("|---|---|---|---|---|---|---|")
    reference, baseline = runs["eager"](x).clamp(0, 1).cpu(), None
    for path, run in runs.items():
        mps = pixels / median_seconds(lambda: run(x), args.repeats, device) / 1e6
        baseline = baseline or mps
        diff = (run(x).float().clamp(0, 1).cpu() - reference).abs().max().item() * 255
        print(f"| {path} | {mps:.2f} | {mps * flops / 1e3:.1f} | {100 * mps * flops / 1e3 / peak:.0f}% | "
              f"{mps / baseline:.2f}x | {diff:.3f} | {setup.get(path, float('nan')):.1f} |")


def main() -> None:
    args = build_parser().parse_args()
    device = choose_device(args.device)
    torch.manual_seed(0)
    image = np.asarray(Image.fromarray(skimage_data.coffee()).resize((1280, 720), Image.BICUBIC))
    networks = {}
    for path in args.weights_file:
        model, meta = load_model(path)
        if meta.get("scale", 3) != 3:
            raise SystemExit(f"error: {path}: x{meta['scale']} weights; this benchmark times x3 networks")
        networks[str(path)] = model
    networks["FSRCNN-s (random weights)"] = build_model("fsrcnn-s", scale=3).eval()
    peak, how = peak_gflops(args, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{cpu_model()}, {torch.get_num_threads()} threads"
    print(f"1278x720 output, x3, {where}, torch {torch.__version__}")
    print(f"fp32 peak: {peak:.1f} GFLOP/s, the largest of: {how}")
    for name, model in networks.items():
        print_network(name, model, image, args, device, peak)


if __name__ == "__main__":
    main()
