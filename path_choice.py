"""Which inference path `--inference-path auto` takes for a network on a CPU: the faster of channels_last
(PyTorch) and onnxruntime (the exported graph) as measured on this machine for this network, once, and
cached ($SRCNN_CACHE/inference_paths.json; delete it to measure again). CPUs of the same kind differ (AVX2
on some, AVX-512 on others) and so do the networks: one AVX-512 machine ran SRCNN 1.2x faster on ONNX
Runtime than channels_last and FSRCNN (before its graph's PReLU rewrite) 4x slower, so no fixed rule
holds (docs/speed.md). A measurement taken while other work held the cores is taken again once they are
free. A run that could do without PyTorch (test.py on a ready graph) also weighs the 1-2 s that
importing PyTorch costs against the time the faster path would save on that run's pixels.

No PyTorch here: test.py reads the cache before deciding whether to import it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from typing import Callable

import numpy as np

from files import WriteError, make_folder, write_text
from graphs import SESSION_CONFIG
from hub import cache_folder

MEASURE_SIDE = 576  # output pixels a side of the timed runs: big enough that per-call overhead is small
CACHE_NAME = "inference_paths.json"


def _version(package: str) -> str:
    """The installed version of `package`, from the name of the <name>-<version>.dist-info folder beside
    it (the wheel layout pip installs), or importlib.metadata's answer where there is none: importing
    importlib.metadata costs 21-52 ms under load (docs/speed.md) of a 0.8 s upscale, and the package far more."""
    try:
        spec = importlib.util.find_spec(package)  # where it would be imported from; nothing is imported
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        prefix, folder = package + "-", os.path.dirname(os.path.dirname(spec.origin))
        try:
            names = os.listdir(folder)
        except OSError:  # a built-in or zipped package, an unreadable folder
            names = []
        found = [name[len(prefix):-len(".dist-info")] for name in names
                 if name.startswith(prefix) and name.endswith(".dist-info")]
        if len(found) == 1:
            return found[0]
    from importlib import metadata
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or "unknown CPU"."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "unknown CPU")
    except OSError:
        return "unknown CPU"


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as info:
            words = set(info.read().split())
    except OSError:
        return []
    return sorted(words & {"avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"})


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine_key(config: dict) -> str:
    """The network and what its speed depends on: the CPU model and the cores used, the vector units
    (flags), the versions of PyTorch and ONNX Runtime, and the ONNX Runtime session's settings."""
    return json.dumps({"cpu": cpu_model(), "cores": _cores(), "flags": _cpu_flags(), "torch": _version("torch"),
                       "onnxruntime": _version("onnxruntime"), "onnxruntime_config": SESSION_CONFIG,
                       "network": config}, sort_keys=True)


def _busy() -> bool:
    """Whether other work holds over half the cores (the 1-minute load average): timings then mislead."""
    return hasattr(os, "getloadavg") and os.getloadavg()[0] > _cores() / 2


def _entries() -> dict:
    try:
        entries = json.loads((cache_folder() / CACHE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def cached_rates(config: dict) -> dict | None:
    """{"rates": {path: output MP/s}, "torch_import_s": seconds, "busy": bool} measured for this network
    on this machine, or None: before the first measurement, for a malformed entry, and for one measured
    while the machine was busy once it is not (it is measured again then)."""
    entry = _entries().get(machine_key(config))
    valid = isinstance(entry, dict) and isinstance(entry.get("rates"), dict) and entry["rates"] and \
        all(isinstance(rate, (int, float)) and rate > 0 for rate in entry["rates"].values()) and \
        isinstance(entry.get("torch_import_s"), (int, float))
    if not valid or (entry.get("busy") and not _busy()):
        return None
    return entry


def store_rates(config: dict, rates: dict[str, float], torch_import_s: float) -> dict:
    """Record a measurement in the cache ($SRCNN_CACHE/inference_paths.json; atomically, the last of two
    runs wins) and return it. A cache that cannot be written costs a warning: the run goes on with it."""
    entry = {"rates": rates, "torch_import_s": torch_import_s, "busy": _busy()}
    entries = {**_entries(), machine_key(config): entry}
    try:
        write_text(make_folder(cache_folder()) / CACHE_NAME, json.dumps(entries, indent=1))
    except (WriteError, OSError) as err:
        print(f"warning: the inference-path measurement is not cached ({err})", file=sys.stderr)
    return entry


def measure(runners: dict[str, object], channels: int, input_side: int) -> dict[str, float]:
    """Output megapixels per second of each runner (an object with run_array, e.g. inference.Upscaler or
    graphs.GraphUpscaler) on one fixed input, the best of 5 timed runs after a warm-up."""
    x = np.random.default_rng(0).random((1, channels, input_side, input_side), dtype=np.float32)
    rates = {}
    for path, runner in runners.items():
        runner.run_array(x)
        best = min(_seconds(lambda: runner.run_array(x)) for _ in range(5))
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
