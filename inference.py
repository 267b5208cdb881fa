"""Running a network for inference: on which device, by which path (eager, channels_last,
torch.compile, ONNX Runtime, fp16/bf16 autocast), whole or in tiles; ONNX export; timing.

`Upscaler` is the one way the scripts run a trained network; evaluate.py scores what it returns.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from files import atomic_write, make_folder
from hub import cache_folder
from models import FSRCNN, SRCNN
from utils import first_line

MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}  # tensor layouts

# How test.py can run a network (benchmarks/inference_paths.py times each against plain eager fp32 NCHW):
# the tensor layout, torch.compile, ONNX Runtime on the exported graph, and reduced-precision autocast.
INFERENCE_PATHS = ("eager", "channels_last", "compile", "onnxruntime", "fp16", "bf16")


def default_inference_path(device: torch.device) -> str:
    """The fastest path that matches eager fp32 within 1/255 on `device` (docs/speed.md):
    ONNX Runtime on CPUs (2.2x eager there; channels_last, 1.7x, where onnxruntime is not installed),
    fp16 autocast on CUDA GPUs (tensor cores)."""
    if device.type == "cuda":
        return "fp16"
    return "onnxruntime" if all(_installed(name) for name in ("onnxruntime", "onnxscript")) else "channels_last"


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (hidden on purpose)
        return False


class InferenceError(RuntimeError):
    """A network that cannot be run by the path asked for; the message says why."""


ONNX_TOLERANCE = 1e-4  # how far a cached graph's output may be from eager fp32 on the example input


def _example_input(model: SRCNN | FSRCNN) -> torch.Tensor:
    """The input ONNX export traces and a cached graph is checked on: fixed, so every check is the same."""
    side = 2 * model.halo + 8
    return torch.rand(1, model.config()["channels"], side, side, generator=torch.Generator().manual_seed(0))


def _checked_session(path: Path, model: SRCNN | FSRCNN) -> tuple[object | None, str | None]:
    """(a CPU session of the graph at `path`, None) when it loads and gives eager fp32's result on the
    example input within ONNX_TOLERANCE; else (None, what is wrong with the file)."""
    import onnxruntime
    example = _example_input(model)
    with torch.no_grad():
        expected = copy.deepcopy(model).cpu().super_resolve(example).numpy()
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": example.numpy()})[0]
    except Exception as err:  # onnxruntime raises its own types for unreadable, invalid or other graphs
        return None, f"does not load ({first_line(err)})"
    difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    if not difference <= ONNX_TOLERANCE:
        return None, f"does not match the network (off by {difference:.2g})"
    return session, None


def _onnxruntime_run(model: SRCNN | FSRCNN, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """An ONNX Runtime session of the model's inference graph. The graph is exported once per set of
    weights (a few seconds) into the cache, named by a hash of the weights and the PyTorch version. A
    cached graph is checked before use (eager fp32's result on the example input, within ONNX_TOLERANCE):
    one that fails to load or differs is exported again, with a warning; a fresh one that fails is an error."""
    import onnxruntime
    digest = hashlib.sha256(f"{model.config()} {torch.__version__}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    path = cache_folder() / "onnx" / f"{digest.hexdigest()[:16]}.onnx"
    session, problem = _checked_session(path, model) if path.exists() else (None, None)
    if session is None:
        if problem:
            print(f"warning: cached ONNX graph {path} {problem}; exporting it again", file=sys.stderr)
        make_folder(path.parent)
        export_onnx(model, path)
        session, problem = _checked_session(path, model)
        if session is None:
            raise InferenceError(f"{path}: the exported ONNX graph {problem}")
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        session = onnxruntime.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.contiguous().cpu().numpy()})[0]).to(device)


# Past this many bytes of activations for the whole image, Upscaler runs the network in tiles (the same
# result): peak memory follows this budget, not the image, in every mode. At 1 GiB, SRCNN runs images
# of up to 1.3 MP whole, so every benchmark and validation image (SunHays80, Holopix50k) scores as before.
ACTIVATION_BUDGET = 1 << 30


def activation_bytes_per_pixel(model: nn.Module) -> int:
    """An upper bound on the bytes of activations running `model` holds per input pixel: float32, the
    input and twice every convolution's output (oneDNN's and ONNX Runtime's reordered copies: SRCNN 9-5-5
    measured 640 B per pixel eager on CPUs, this says 780), a transposed convolution's scale^2 times over."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    upsampled = [m.out_channels * m.stride[0] * m.stride[1] for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    return 4 * (convs[0].in_channels + 2 * sum(conv.out_channels for conv in convs) + 2 * sum(upsampled))


class Upscaler:
    """A network ready for inference: `upscaler(x)` is model.super_resolve(x) in float32, run by one of
    INFERENCE_PATHS on `device`, whole or `tile` x `tile` input pixels at a time. Works on its own copy
    of the model, so several upscalers of one model do not change each other's layout."""

    def __init__(self, model: SRCNN | FSRCNN, path: str = "auto", device: torch.device = torch.device("cpu")) -> None:
        path = default_inference_path(device) if path == "auto" else path
        if path not in INFERENCE_PATHS:
            raise ValueError(f"unknown inference path {path!r}; choose from auto, {', '.join(INFERENCE_PATHS)}")
        self.path, self.device = path, device
        self.layout = torch.contiguous_format if path in ("eager", "onnxruntime") else torch.channels_last
        self.model = copy.deepcopy(model).to(device, memory_format=self.layout).eval()
        self.dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(path)
        if path == "compile":  # dynamic=True: one compiled graph for every image size, not one per size
            self.run = torch.compile(self.model.super_resolve, dynamic=True)
        elif path == "onnxruntime":
            self.run = _onnxruntime_run(self.model, device)
        else:
            self.run = self.model.super_resolve

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, tile: int = 0) -> torch.Tensor:
        """The network's output for a batch `x`; `tile` 0 runs it whole, or in tiles of auto_tile's size
        when the whole image's activations would pass ACTIVATION_BUDGET."""
        x = x.to(self.device).contiguous(memory_format=self.layout)
        tile = tile or self.auto_tile(x.shape)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float16, enabled=self.dtype is not None):
            return (self._tiled(x, tile) if tile else self.run(x)).float()

    def auto_tile(self, shape: torch.Size | tuple[int, ...]) -> int:
        """0 when the activations for an input of `shape` (N x C x H x W) fit ACTIVATION_BUDGET, else the
        largest tile side whose tiles, read with their margins, fit it."""
        per_pixel = activation_bytes_per_pixel(self.model) * shape[0]
        if shape[-2] * shape[-1] * per_pixel <= ACTIVATION_BUDGET:
            return 0
        return max(16, math.isqrt(ACTIVATION_BUDGET // per_pixel) - 2 * self.model.halo)

    def _tiled(self, x: torch.Tensor, tile: int) -> torch.Tensor:
        """The whole-image result computed tile x tile input pixels at a time, each tile read with a margin
        of the receptive-field radius (one pixel less changes the result), so memory follows the tile."""
        h, w = x.shape[-2:]
        s, r = self.model.scale if self.model.takes_lr else 1, self.model.halo
        out = None
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                cy0, cx0 = max(0, y0 - r), max(0, x0 - r)
                part = self.run(x[..., cy0:min(h, y1 + r), cx0:min(w, x1 + r)])
                if out is None:
                    out = part.new_empty(*part.shape[:2], h * s, w * s)
                out[..., y0 * s:y1 * s, x0 * s:x1 * s] = part[..., (y0 - cy0) * s:(y1 - cy0) * s,
                                                               (x0 - cx0) * s:(x1 - cx0) * s]
        return out


class _Inference(nn.Module):
    """super_resolve() as forward(), FSRCNN's sub-pixel kernel computed once: the graph ONNX export records."""

    def __init__(self, model: SRCNN | FSRCNN) -> None:
        super().__init__()
        self.model = model
        if model.takes_lr:
            with torch.no_grad():
                kernel, self.pads = model.subpixel_kernel()
            self.register_buffer("kernel", kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.super_resolve(x, (self.kernel, self.pads)) if self.model.takes_lr else self.model.super_resolve(x)


def export_onnx(model: SRCNN | FSRCNN, path: str | Path) -> None:
    """Write the network's inference as one ONNX file, input "input" (N x C x H x W in [0, 1]: the bicubic
    image for SRCNN, the LR image for FSRCNN) and output "output", with any height and width.
    Needs the onnx and onnxscript packages (requirements.txt). The file is written atomically (two
    processes may export the same cached graph); a failed write is a files.WriteError naming it."""
    model = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()
    height, width = torch.export.Dim("height", min=model.halo + 1), torch.export.Dim("width", min=model.halo + 1)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's chatter (deprecations, torchvision absent) is not the user's concern
            exporter_log.setLevel(logging.ERROR)
            program = torch.onnx.export(_Inference(model).eval(), (_example_input(model),), input_names=["input"],
                                        output_names=["output"], dynamic_shapes={"x": {2: height, 3: width}},
                                        dynamo=True, verbose=False)
    finally:
        exporter_log.setLevel(level)
    with atomic_write(path) as tmp:
        program.save(tmp, external_data=False)


def choose_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA when PyTorch sees a GPU; asking for CUDA without one is a clear error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but PyTorch sees no CUDA device")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def median_seconds(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of `run()` over `repeats` calls, waiting for the GPU where there is one.
    Callers warm up first (allocator, kernel choice, compilation)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
