"""The networks, and loading their weights.

SRCNN (Dong, Loy, He, Tang, TPAMI 2015): patch extraction, non-linear mapping, reconstruction.

    F1(Y) = max(0, W1 * Y + B1)     W1: n1 filters of f1 x f1 x c
    F2(Y) = max(0, W2 * F1(Y) + B2) W2: n2 filters of f2 x f2 x n1
    F(Y)  = W3 * F2(Y) + B3         W3: c filters of f3 x f3 x n2

Its input is the bicubic-upscaled image; the output has the same size with padding="same" and is
smaller by `border` pixels on each side with padding="valid" (the paper's setting).

FSRCNN (Dong, Loy, Tang, ECCV 2016) takes the LR image itself and upsamples at the end:
conv 5x5 (d) -> shrink 1x1 (s) -> m x conv 3x3 (s) -> expand 1x1 (d), each followed by PReLU,
then a 9x9 transposed convolution with stride = scale.
"""
from __future__ import annotations

import copy
import hashlib
import http.client
import importlib.util
import logging
import os
import re
import urllib.request
import warnings
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
from tqdm import tqdm
from torch import nn

MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
# SRCNN f1-f2-f3 of the paper's Table 1 / Fig. 8 (n1=64, n2=32 throughout); FSRCNN (d, s, m) of its Section 3.
ARCHS = {"9-1-5": (9, 1, 5), "9-3-5": (9, 3, 5), "9-5-5": (9, 5, 5), "fsrcnn": (56, 12, 4), "fsrcnn-s": (32, 5, 1)}


class SRCNN(nn.Module):
    takes_lr = False  # input: the bicubic-upscaled image

    def __init__(self, f1: int = 9, f2: int = 5, f3: int = 5, n1: int = 64, n2: int = 32,
                 channels: int = 1, padding: str = "same", paper_init: bool = False) -> None:
        super().__init__()
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', not {padding!r}")
        self.padding = padding
        pad = (lambda f: f // 2) if padding == "same" else (lambda f: 0)
        self.conv1 = nn.Conv2d(channels, n1, f1, padding=pad(f1))
        self.conv2 = nn.Conv2d(n1, n2, f2, padding=pad(f2))
        self.conv3 = nn.Conv2d(n2, channels, f3, padding=pad(f3))
        self.relu = nn.ReLU(inplace=True)
        # The receptive-field radius: how far an output pixel sees, and what valid padding loses per side.
        self.halo = (f1 - 1) // 2 + (f2 - 1) // 2 + (f3 - 1) // 2
        self.border = 0 if padding == "same" else self.halo
        if paper_init:  # Section 4: weights from N(0, 0.001^2), biases 0
            for conv in (self.conv1, self.conv2, self.conv3):
                nn.init.normal_(conv.weight, std=1e-3)
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return self.conv3(x)

    def super_resolve(self, bicubic: torch.Tensor) -> torch.Tensor:
        """Output the size of the input for either padding: valid convolutions get a replicated border."""
        if self.border:
            bicubic = nn.functional.pad(bicubic, [self.border] * 4, mode="replicate")
        return self(bicubic)

    def config(self) -> dict:
        """Everything needed to rebuild this network, stored beside its weights."""
        return {"model": "srcnn", "f1": self.conv1.kernel_size[0], "f2": self.conv2.kernel_size[0],
                "f3": self.conv3.kernel_size[0], "n1": self.conv1.out_channels, "n2": self.conv2.out_channels,
                "channels": self.conv1.in_channels, "padding": self.padding}


def _conv_prelu(c_in: int, c_out: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.PReLU(c_out))


class FSRCNN(nn.Module):
    takes_lr = True  # input: the LR image; the last layer upsamples by `scale`
    border = 0
    padding = "same"

    def __init__(self, scale: int, d: int = 56, s: int = 12, m: int = 4, channels: int = 1) -> None:
        super().__init__()
        self.scale = scale
        self.halo = 2 + m + 2  # LR pixels an output pixel sees: 5x5, m 3x3, and at most 2 through the deconvolution
        self.feature = _conv_prelu(channels, d, 5)
        self.shrink = _conv_prelu(d, s, 1)
        self.mapping = nn.Sequential(*[layer for _ in range(m) for layer in _conv_prelu(s, s, 3)])
        self.expand = _conv_prelu(s, d, 1)
        # output side: (n - 1) * scale - 2 * 4 + 9 + (scale - 1) = n * scale
        self.deconv = nn.ConvTranspose2d(d, channels, 9, stride=scale, padding=4, output_padding=scale - 1)
        for module in self.modules():  # Section 4.2: He et al.'s init for the convolutions (PReLU), N(0, 0.001^2) for the deconvolution
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.deconv.weight, std=1e-3)
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.expand(self.mapping(self.shrink(self.feature(x)))))

    def super_resolve(self, lr: torch.Tensor,
                      subpixel: tuple[torch.Tensor, tuple[int, int]] | None = None) -> torch.Tensor:
        """forward() for inference, with the deconvolution computed as its equivalent sub-pixel
        convolution (a plain convolution to scale^2 channels, then pixel shuffle): the same numbers,
        several times faster on CPUs, whose transposed-convolution kernels are slow. `subpixel` is
        subpixel_kernel()'s result when the caller keeps it (ONNX export)."""
        features = self.expand(self.mapping(self.shrink(self.feature(lr))))
        kernel, (left, right) = subpixel or self.subpixel_kernel()
        out = nn.functional.conv2d(nn.functional.pad(features, [left, right, left, right]), kernel)
        return nn.functional.pixel_shuffle(out, self.scale) + self.deconv.bias.view(1, -1, 1, 1)

    def subpixel_kernel(self) -> tuple[torch.Tensor, tuple[int, int]]:
        """Output pixel y*s + r takes input y - j through deconvolution tap k = j*s + r + p; gather those
        taps into a (channels*s*s) x d x T x T convolution kernel over LR pixels, and its padding."""
        w, s, p = self.deconv.weight, self.scale, self.deconv.padding[0]  # w: d x channels x k x k
        k = w.shape[-1]
        j_min, j_max = -((s - 1 + p) // s), (k - 1 - p) // s
        kernel = w.new_zeros(w.shape[1], s, s, w.shape[0], j_max - j_min + 1, j_max - j_min + 1)
        phases = [(r, j, j * s + r + p) for r in range(s) for j in range(j_min, j_max + 1) if 0 <= j * s + r + p < k]
        for ry, jy, ky in phases:
            for rx, jx, kx in phases:
                kernel[:, ry, rx, :, j_max - jy, j_max - jx] = w[:, :, ky, kx].T
        return kernel.reshape(-1, w.shape[0], *kernel.shape[-2:]), (j_max, -j_min)

    def config(self) -> dict:
        return {"model": "fsrcnn", "d": self.feature[0].out_channels, "s": self.shrink[0].out_channels,
                "m": len(self.mapping) // 2, "channels": self.feature[0].in_channels, "scale": self.scale}


# How test.py can run a network (benchmarks/inference_paths.py times each against plain eager fp32 NCHW):
# the tensor layout, torch.compile, ONNX Runtime on the exported graph, and reduced-precision autocast.
INFERENCE_PATHS = ("eager", "channels_last", "compile", "onnxruntime", "fp16", "bf16")


def default_inference_path(device: torch.device) -> str:
    """The fastest path that matches eager fp32 within 1/255 on `device` (the README's speed table):
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


def cache_folder() -> Path:
    """Where downloaded weights and exported ONNX graphs are kept: $SRCNN_CACHE, or ~/.cache/srcnn."""
    return Path(os.environ.get("SRCNN_CACHE", Path.home() / ".cache" / "srcnn"))


def _onnxruntime_run(model: SRCNN | FSRCNN, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """An ONNX Runtime session of the model's inference graph. The graph is exported once per set of
    weights (a few seconds) into the cache, named by a hash of the weights and the PyTorch version."""
    import onnxruntime
    digest = hashlib.sha256(f"{model.config()} {torch.__version__}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    path = cache_folder() / "onnx" / f"{digest.hexdigest()[:16]}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model, path)
    cuda = device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    session = onnxruntime.InferenceSession(str(path), providers=["CUDAExecutionProvider" if cuda else "CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.contiguous().cpu().numpy()})[0]).to(device)


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
        x = x.to(self.device).contiguous(memory_format=self.layout)
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float16, enabled=self.dtype is not None):
            return (self._tiled(x, tile) if tile else self.run(x)).float()

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


def build_model(arch: str = "9-5-5", channels: int = 1, padding: str = "same", paper_init: bool = False,
                scale: int = 3) -> SRCNN | FSRCNN:
    """A network by name: an SRCNN f1-f2-f3 (padding, init options) or FSRCNN / FSRCNN-s (for `scale`)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    if arch.startswith("fsrcnn"):
        d, s, m = ARCHS[arch]
        return FSRCNN(scale, d, s, m, channels)
    f1, f2, f3 = ARCHS[arch]
    return SRCNN(f1, f2, f3, channels=channels, padding=padding, paper_init=paper_init)


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


def export_onnx(model: SRCNN | FSRCNN, path: Path) -> None:
    """Write the network's inference as one ONNX file, input "input" (N x C x H x W in [0, 1]: the bicubic
    image for SRCNN, the LR image for FSRCNN) and output "output", with any height and width.
    Needs the onnx and onnxscript packages (requirements.txt)."""
    model = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()
    height, width = torch.export.Dim("height", min=model.halo + 1), torch.export.Dim("width", min=model.halo + 1)
    example = torch.rand(1, model.config()["channels"], 2 * model.halo + 8, 2 * model.halo + 8)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # two processes may export the same cached graph
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's chatter (deprecations, torchvision absent) is not the user's concern
            exporter_log.setLevel(logging.ERROR)
            torch.onnx.export(_Inference(model).eval(), (example,), tmp, input_names=["input"], output_names=["output"],
                              dynamic_shapes={"x": {2: height, 3: width}}, external_data=False, dynamo=True,
                              verbose=False)
        tmp.replace(path)
    finally:
        exporter_log.setLevel(level)
        tmp.unlink(missing_ok=True)


class WeightsError(ValueError):
    """A weights file that cannot be loaded; the message names the file and the problem."""


def _state_dict_of(obj: object, path: Path) -> tuple[dict, dict]:
    """Find the state dict (and this project's metadata, if any) in the layouts people publish."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # this project
        return obj["model"], obj.get("meta", {})
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):  # common training scripts
        return obj["model_state_dict"], {}
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}  # a plain state_dict
    raise WeightsError(f"{path}: no state dict found (expected SRCNN conv1/conv2/conv3 or FSRCNN weights)")


def _srcnn_for(state: dict, meta: dict, padding: str | None, path: Path) -> SRCNN:
    names = [f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")]
    missing = [n for n in names if n not in state]
    if missing or any(state[n].dim() != (4 if n.endswith("weight") else 1) for n in names):
        raise WeightsError(f"{path}: not SRCNN weights (missing or malformed: {', '.join(missing) or 'tensor ranks'})")
    w1, w2, w3 = state["conv1.weight"], state["conv2.weight"], state["conv3.weight"]
    if w2.shape[1] != w1.shape[0] or w3.shape[1] != w2.shape[0] or w3.shape[0] != w1.shape[1]:
        raise WeightsError(f"{path}: layer shapes do not chain: conv1 {tuple(w1.shape)}, "
                           f"conv2 {tuple(w2.shape)}, conv3 {tuple(w3.shape)}")
    return SRCNN(f1=w1.shape[-1], f2=w2.shape[-1], f3=w3.shape[-1], n1=w1.shape[0], n2=w2.shape[0],
                 channels=w1.shape[1], padding=padding or meta.get("padding", "same"))


def _fsrcnn_for(state: dict, meta: dict, scale: int | None, path: Path) -> FSRCNN:
    scale = meta.get("scale") or scale
    if not scale:  # the stride of the deconvolution is not in its weights
        raise WeightsError(f"{path}: FSRCNN weights without a recorded scale; pass --scale")
    mapping = [k for k in state if re.fullmatch(r"mapping\.\d+\.weight", k) and state[k].dim() == 4]
    feature = state["feature.0.weight"]
    return FSRCNN(scale, d=feature.shape[0], s=state["shrink.0.weight"].shape[0], m=len(mapping), channels=feature.shape[1])


def load_model(path: str | Path, padding: str | None = None, scale: int | None = None) -> tuple[SRCNN | FSRCNN, dict]:
    """Load SRCNN or FSRCNN weights, building the network from the shapes it finds.

    Reads this project's files ({"model", "meta"}), {"model_state_dict": ...} checkpoints and plain
    state dicts (SRCNN's conv1/conv2/conv3, e.g. yjn870/SRCNN-pytorch; "module." prefixes from
    DataParallel are dropped). `padding` overrides SRCNN's stored padding ("same" when a file does
    not say); `scale` is needed only for FSRCNN weights that do not record theirs.
    Returns (model in eval mode, metadata dict).
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary code
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except Exception as err:  # torch raises many types for corrupt or unsafe files
        raise WeightsError(f"{path}: not a loadable weights file ({str(err).splitlines()[0]})") from None
    state, meta = _state_dict_of(obj, path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    fsrcnn = "feature.0.weight" in state
    model = _fsrcnn_for(state, meta, scale, path) if fsrcnn else _srcnn_for(state, meta, padding, path)
    try:
        model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
    except RuntimeError as err:
        raise WeightsError(f"{path}: weights do not fit {'FSRCNN' if fsrcnn else 'SRCNN'} "
                           f"({str(err).splitlines()[-1].strip()})") from None
    return model.eval(), meta


MODEL_CARD = Path(__file__).resolve().parent / "weights" / "README.md"


def card_sha256(filename: str) -> str | None:
    """The sha256 the model card (weights/README.md) lists for a weights file name, if any."""
    if not MODEL_CARD.exists():
        return None
    match = re.search(rf"^\| `{re.escape(filename)}` \|.*`([0-9a-f]{{64}})` \|$", MODEL_CARD.read_text(), re.M)
    return match.group(1) if match else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_weights(url: str, sha256: str | None = None, cache_dir: Path | None = None,
                     allow_http: bool = False) -> Path:
    """Fetch weights from a URL once into a cache folder, verified against a sha256.

    The checksum comes from `sha256` or, failing that, the model card's entry for the file name; a
    download without a known checksum, over plain http (unless allowed), with a wrong checksum or cut
    short is refused, and nothing unverified is left in the cache.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("https", "http") or (parsed.scheme == "http" and not allow_http):
        raise WeightsError(f"{url}: only https URLs are fetched (plain http needs --allow-http)")
    name = Path(parsed.path).name or "weights.pth"
    expected = (sha256 or card_sha256(name) or "").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise WeightsError(f"{url}: no sha256 to check the download against; pass --sha256")
    cache_dir = cache_dir or cache_folder()
    target = cache_dir / f"{expected[:12]}-{name}"
    if target.exists() and file_sha256(target) == expected:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0)
            with tqdm(total=size or None, unit="B", unit_scale=True, desc=f"download {name}") as progress:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    progress.update(len(block))
        if size and partial.stat().st_size != size:
            raise WeightsError(f"{url}: download cut short ({partial.stat().st_size} of {size} bytes)")
        actual = file_sha256(partial)
        if actual != expected:
            raise WeightsError(f"{url}: sha256 mismatch (expected {expected}, got {actual}); not used")
        partial.replace(target)
        return target
    except (OSError, http.client.HTTPException) as err:
        raise WeightsError(f"{url}: download failed ({err!r})") from None
    finally:
        partial.unlink(missing_ok=True)


def choose_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA when PyTorch sees a GPU; asking for CUDA without one is a clear error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but PyTorch sees no CUDA device")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name)
