"""Which inference path `--inference-path auto` takes for a network on a CPU: the faster of channels_last
(PyTorch) and onnxruntime (the exported graph) as measured on this machine for this network, once, and
cached. CPUs of the same kind differ (AVX2 on some, AVX-512 on others) and so do the networks: on one
AVX-512 machine ONNX Runtime ran SRCNN 1.2x faster than channels_last and FSRCNN 4x slower, so no fixed
rule holds. A run that could do without PyTorch (test.py on a ready graph) also weighs the 1-2 s that
importing PyTorch costs against the time the faster path would save on that run's pixels.

No PyTorch here: test.py reads the cache before deciding whether to import it.
"""
from __future__ import annotations

import json
import os
import time
from importlib import metadata
from typing import Callable

import numpy as np

from files import make_folder, write_text
from hub import cache_folder

CPU_PATHS = ("channels_last", "onnxruntime")  # the paths auto chooses between on a CPU
MEASURE_SIDE = 384  # output pixels a side of the timed runs: big enough that per-call overhead is small


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def machine_key(config: dict) -> str:
    """The network and what its speed depends on: the CPU model and the cores used, the vector units
    (flags) and the versions of PyTorch and ONNX Runtime."""
    cpu, flags = "unknown CPU", []
    try:
        info = open("/proc/cpuinfo").read()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = sorted({flag for flag in info.split() if flag in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")})
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return json.dumps({"cpu": cpu, "cores": cores, "flags": flags, "torch": _version("torch"),
                       "onnxruntime": _version("onnxruntime"), "network": config}, sort_keys=True)


def _cache_file():
    return cache_folder() / "inference_paths.json"


def cached_rates(config: dict) -> dict | None:
    """{"rates": {path: output MP/s}, "torch_import_s": seconds} measured for this network on this
    machine, or None before the first measurement."""
    try:
        return json.loads(_cache_file().read_text()).get(machine_key(config))
    except (OSError, ValueError):
        return None


def store_rates(config: dict, rates: dict[str, float], torch_import_s: float) -> dict:
    """Record a measurement (atomically: two runs may store at once; the last one wins)."""
    try:
        entries = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        entries = {}
    entry = {"rates": rates, "torch_import_s": torch_import_s}
    entries[machine_key(config)] = entry
    make_folder(_cache_file().parent)
    write_text(_cache_file(), json.dumps(entries, indent=1))
    return entry


def measure(runners: dict[str, object], channels: int, input_side: int) -> dict[str, float]:
    """Output megapixels per second of each runner (an object with run_array, e.g. inference.Upscaler or
    graphs.GraphUpscaler) on one fixed input, the best of 3 timed runs after a warm-up."""
    x = np.random.default_rng(0).random((1, channels, input_side, input_side), dtype=np.float32)
    rates = {}
    for path, runner in runners.items():
        runner.run_array(x)
        best = min(_seconds(lambda: runner.run_array(x)) for _ in range(3))
        rates[path] = MEASURE_SIDE ** 2 / best / 1e6
    return rates


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def fastest(entry: dict) -> str:
    """The path with the highest measured rate."""
    return max(entry["rates"], key=entry["rates"].get)


def graph_pays(entry: dict, output_pixels: int) -> bool:
    """Whether a run of `output_pixels` finishes sooner on the graph without PyTorch than on the fastest
    path after importing PyTorch."""
    rates = entry["rates"]
    if "onnxruntime" not in rates:
        return False
    on_graph = output_pixels / 1e6 / rates["onnxruntime"]
    return on_graph <= output_pixels / 1e6 / rates[fastest(entry)] + entry["torch_import_s"]
