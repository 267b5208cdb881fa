"""Running a network for inference: on which device, by which path (eager, channels_last,
torch.compile, ONNX Runtime, fp16/bf16 autocast), whole or in tiles; ONNX export; timing.

`Upscaler` is the one way the scripts run a trained network; evaluate.py scores what it returns.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from cli import INFERENCE_PATHS
from files import atomic_write, make_folder
from graphs import EXAMPLE_INPUT_VERSION, RECORD_KEY, GraphError, GraphUpscaler, encode_output, example_input, installed, open_graph
from hub import cache_folder, file_sha256
from models import FSRCNN, SRCNN, load_model, network_name
from path_choice import MEASURE_SIDE, cached_rates, fastest, measure, store_rates
from tiles import auto_tile, run_tiled

MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}  # tensor layouts


def default_inference_path(device: torch.device, model: SRCNN | FSRCNN | None = None) -> str:
    """What `auto` runs, of the paths that match eager fp32 within 1/255 (docs/speed.md): fp16 autocast
    on CUDA GPUs (tensor cores); on CPUs the faster of channels_last and ONNX Runtime for this network on
    this machine (path_choice.py: measured once, cached), channels_last where onnxruntime is not installed,
    ONNX Runtime when no network is given."""
    if device.type == "cuda":
        return "fp16"
    if not all(installed(name) for name in ("onnxruntime", "onnxscript")):
        return "channels_last"
    if model is None:
        return "onnxruntime"
    return fastest(cached_rates(model.config()) or measure_cpu_paths(model))


def measure_cpu_paths(model: SRCNN | FSRCNN, graph: GraphUpscaler | None = None) -> dict:
    """Time channels_last and ONNX Runtime (`graph`, or the cached export) on this network, and how long
    importing PyTorch takes (a fresh interpreter), and cache it all (path_choice.store_rates)."""
    runners = {"channels_last": Upscaler(model, "channels_last"), "onnxruntime": graph or Upscaler(model, "onnxruntime")}
    side = MEASURE_SIDE // (model.scale if model.takes_lr else 1)
    rates = measure(runners, model.config()["channels"], side)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    return store_rates(model.config(), rates, time.perf_counter() - start)


class InferenceError(ValueError):
    """A network that cannot be run by the path asked for; the message says why."""


def _example_input(model: SRCNN | FSRCNN) -> torch.Tensor:
    """The input ONNX export traces and a graph is checked on (graphs.example_input: fixed)."""
    return torch.from_numpy(example_input(model.config()["channels"], model.halo))


def _example_output(model: SRCNN | FSRCNN) -> np.ndarray:
    """Eager fp32's output on the example input: what a graph of this network must compute."""
    model = copy.deepcopy(model).cpu().float().eval()
    with torch.no_grad():
        return model.super_resolve(_example_input(model)).numpy()


def graph_record(model: SRCNN | FSRCNN, meta: dict | None = None, weights_sha256: str | None = None) -> dict:
    """What a graph records of its network (graphs.GraphUpscaler.record): enough to run it without
    PyTorch, and eager fp32's output on the example input that graphs.open_graph checks it against."""
    expected = _example_output(model)
    meta = meta or {}
    return {"network": network_name(model, meta.get("color", "y")), "takes_lr": model.takes_lr,
            "scale": getattr(model, "scale", None), "halo": model.halo, "channels": model.config()["channels"],
            "bytes_per_pixel": activation_bytes_per_pixel(model), "config": model.config(),
            "meta": {key: meta[key] for key in ("color", "blur_sigma", "scale", "degradation") if key in meta},
            "weights_sha256": weights_sha256, "torch": torch.__version__, "example_output": encode_output(expected),
            "example_input": EXAMPLE_INPUT_VERSION}


def _onnxruntime_run(model: SRCNN | FSRCNN, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """An ONNX Runtime session of the model's inference graph. The graph is exported once per set of
    weights (a few seconds) into the cache, named by a hash of the weights and the PyTorch version. A
    cached graph is checked before use (graphs.open_graph): one that fails to load or differs is exported
    again, with a warning; a fresh one that fails is an error."""
    import onnxruntime
    digest = hashlib.sha256(f"{model.config()} {torch.__version__}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    path = cache_folder() / "onnx" / f"{digest.hexdigest()[:16]}.onnx"
    graph = None
    if path.exists():
        try:
            graph = open_graph(path, expected=_example_output(model))  # this network's, not what the file says
        except GraphError as err:
            print(f"warning: cached ONNX graph {err}; exporting it again", file=sys.stderr)
    if graph is None:
        graph = write_graph(model, path)
    session = graph.session
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        session = onnxruntime.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.contiguous().cpu().numpy()})[0]).to(device)


def write_graph(model: SRCNN | FSRCNN, path: Path, meta: dict | None = None,
                weights_sha256: str | None = None) -> GraphUpscaler:
    """Export the network's graph with its record to `path` and open it; a graph that fails its checks
    right after export is an InferenceError."""
    make_folder(path.parent)
    record = graph_record(model, meta, weights_sha256)
    export_onnx(model, path, record)
    try:
        return open_graph(path, weights_sha256, _example_output(model))
    except GraphError as err:
        raise InferenceError(f"the exported ONNX graph {err}") from None


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
        path = default_inference_path(device, model) if path == "auto" else path
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
        return auto_tile(shape, activation_bytes_per_pixel(self.model), self.model.halo)

    def _tiled(self, x: torch.Tensor, tile: int) -> torch.Tensor:
        """The whole-image result computed tile x tile input pixels at a time (tiles.run_tiled)."""
        scale = self.model.scale if self.model.takes_lr else 1
        return run_tiled(self.run, x, tile, scale, self.model.halo, lambda part, shape: part.new_empty(shape))

    def run_array(self, x: np.ndarray, tile: int = 0) -> np.ndarray:
        """__call__ on an N x C x H x W float32 array, returning one (what graphs.GraphUpscaler offers)."""
        return self(torch.from_numpy(x), tile).cpu().numpy()

    @property
    def takes_lr(self) -> bool:
        return self.model.takes_lr


class _Inference(nn.Module):
    """super_resolve() as forward(): the graph ONNX export records (FSRCNN's as _FSRCNNGraph)."""

    def __init__(self, model: SRCNN | FSRCNN) -> None:
        super().__init__()
        self.model = _FSRCNNGraph(model) if model.takes_lr else model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if isinstance(self.model, _FSRCNNGraph) else self.model.super_resolve(x)


class _FSRCNNGraph(nn.Module):
    """FSRCNN's super_resolve, to the bit, in the form ONNX Runtime runs fastest: the sub-pixel last layer
    computed once, and every PReLU as max(x, a*x), two elementwise operators that ONNX Runtime runs
    faster than its PRelu (the largest item of its FSRCNN profile). max(x, a*x) is PReLU for slopes
    a <= 1; a channel whose slope is over 1 is negated where it is made and where it is read, since there
    PReLU(x) = min(x, a*x) = -max(-x, -a*x) (negation is exact in floating point)."""

    def __init__(self, model: FSRCNN) -> None:
        super().__init__()
        stages = [model.feature, model.shrink, *(model.mapping[i:i + 2] for i in range(0, len(model.mapping), 2)),
                  model.expand]
        with torch.no_grad():
            kernel, self.pads = model.subpixel_kernel()
            weights = [stage[0].weight.clone() for stage in stages] + [kernel.clone()]
            biases = [stage[0].bias.clone() for stage in stages]
            slopes = [stage[1].weight.clone() for stage in stages]
            for i, slope in enumerate(slopes):
                flip = slope > 1
                weights[i][flip], biases[i][flip] = -weights[i][flip], -biases[i][flip]
                weights[i + 1][:, flip] = -weights[i + 1][:, flip]
        self.weights = nn.ParameterList([nn.Parameter(w, requires_grad=False) for w in weights])
        self.biases = nn.ParameterList([nn.Parameter(b, requires_grad=False) for b in biases])
        self.slopes = nn.ParameterList([nn.Parameter(a.view(1, -1, 1, 1), requires_grad=False) for a in slopes])
        self.paddings = [stage[0].padding[0] for stage in stages]
        self.scale, self.output_bias = model.scale, nn.Parameter(model.deconv.bias.detach().view(1, -1, 1, 1).clone(),
                                                                  requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for weight, bias, slope, padding in zip(self.weights, self.biases, self.slopes, self.paddings):
            x = nn.functional.conv2d(x, weight, bias, padding=padding)
            x = torch.maximum(x, x * slope)
        left, right = self.pads
        out = nn.functional.conv2d(nn.functional.pad(x, [left, right, left, right]), self.weights[-1])
        return nn.functional.pixel_shuffle(out, self.scale) + self.output_bias


def export_onnx(model: SRCNN | FSRCNN, path: str | Path, record: dict | None = None) -> None:
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
    program.model.metadata_props[RECORD_KEY] = json.dumps(record or graph_record(model))
    with atomic_write(path) as tmp:
        program.save(tmp, external_data=False)


def write_graph_beside(weights: Path) -> Path:
    """Export a weights file's graph to <weights>.onnx, where graphs.ready_graph finds it."""
    model, meta = load_model(weights)
    graph = weights.with_suffix(".onnx")
    write_graph(model, graph, meta, file_sha256(weights))
    return graph


def choose_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA when PyTorch sees a GPU; asking for CUDA without one is a clear error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but PyTorch sees no CUDA device")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 in hardware: Ampere or later, or a CPU with AVX512-BF16 or AMX (asked
    of oneDNN, through the private op that PyTorch's own CPU tests use: there is no public query)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


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
