"""The networks, and loading their weights (running them is inference.py's job, fetching them hub.py's).

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

import math
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from utils import WeightsError, first_line  # WeightsError lives in utils: hub.py raises it without importing PyTorch

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


# What a weights file may declare, checked from its tensors' shapes before any network is built: a file
# of a few KB can declare any shape (a stride-0 tensor stores one number), and a network built from it
# would allocate what the shapes say. The papers' widest layer is 64, their largest filter 9, their m 4.
MAX_CHANNELS = 1024
MAX_KERNEL = 15  # SRCNN's filter sides; FSRCNN's are fixed by its architecture
MAX_MAPPING = 16
MAX_PARAMETERS = 10_000_000  # SRCNN 9-5-5 has 57,281
SCALES = (2, 3, 4)  # FSRCNN's deconvolution stride, as train.py trains it


def _state_dict_of(obj: object, path: Path) -> tuple[dict, dict]:
    """Find the state dict (and this project's metadata, if any) in the layouts people publish."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):  # this project
        state, meta = obj["model"], obj.get("meta", {})
    elif isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):  # common training scripts
        state, meta = obj["model_state_dict"], {}
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, meta = obj, {}  # a plain state_dict
    else:
        raise WeightsError(f"{path}: no state dict found (expected SRCNN conv1/conv2/conv3 or FSRCNN weights)")
    if not isinstance(meta, dict):
        raise WeightsError(f"{path}: its metadata is a {type(meta).__name__}, not a dict")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: state dict entry {key!r} is not a named tensor")
    return {k.removeprefix("module."): v for k, v in state.items()}, meta  # DataParallel's prefix


def _malformed(state: dict, ranks: dict[str, int], family: str, path: Path) -> None:
    """Refuse a state dict without the tensors, of the ranks, that a network's shape is read from."""
    bad = [name for name, rank in ranks.items() if name not in state or state[name].dim() != rank]
    if bad:
        raise WeightsError(f"{path}: not {family} weights (missing or malformed: {', '.join(bad)})")


def _check_layer(path: Path, name: str, weight: torch.Tensor, max_kernel: int | None = None) -> None:
    """A convolution weight (out x in x k x k) of sane size: no empty dimension, at most MAX_CHANNELS
    filters and inputs, and (where given) an odd square kernel of at most `max_kernel`."""
    shape = tuple(weight.shape)
    if 0 in shape:
        raise WeightsError(f"{path}: {name} has a zero-size dimension {shape}")
    if max(shape[:2]) > MAX_CHANNELS:
        raise WeightsError(f"{path}: {name} {shape} has more than {MAX_CHANNELS} channels")
    if max_kernel and (shape[2] != shape[3] or shape[2] % 2 == 0 or shape[2] > max_kernel):
        raise WeightsError(f"{path}: {name} has a {shape[2]}x{shape[3]} kernel; SRCNN's are square, odd and at "
                           f"most {max_kernel}")


def _check_channels(path: Path, name: str, weight: torch.Tensor) -> None:
    if weight.shape[1] not in (1, 3):
        raise WeightsError(f"{path}: {name} takes {weight.shape[1]} input channels, not 1 (Y) or 3 (colour)")


def _srcnn_maker(state: dict, meta: dict, padding: str | None, path: Path) -> Callable[[], SRCNN]:
    _malformed(state, {f"conv{i}.{p}": 4 if p == "weight" else 1 for i in (1, 2, 3) for p in ("weight", "bias")},
               "SRCNN", path)
    w1, w2, w3 = state["conv1.weight"], state["conv2.weight"], state["conv3.weight"]
    for name, weight in (("conv1.weight", w1), ("conv2.weight", w2), ("conv3.weight", w3)):
        _check_layer(path, name, weight, MAX_KERNEL)
    _check_channels(path, "conv1.weight", w1)
    if w2.shape[1] != w1.shape[0] or w3.shape[1] != w2.shape[0] or w3.shape[0] != w1.shape[1]:
        raise WeightsError(f"{path}: layer shapes do not chain: conv1 {tuple(w1.shape)}, "
                           f"conv2 {tuple(w2.shape)}, conv3 {tuple(w3.shape)}")
    padding = padding or meta.get("padding", "same")
    if padding not in ("same", "valid"):
        raise WeightsError(f"{path}: records padding {padding!r}, not 'same' or 'valid'")
    return lambda: SRCNN(f1=w1.shape[-1], f2=w2.shape[-1], f3=w3.shape[-1], n1=w1.shape[0], n2=w2.shape[0],
                         channels=w1.shape[1], padding=padding)


def _fsrcnn_maker(state: dict, meta: dict, scale: int | None, path: Path) -> Callable[[], FSRCNN]:
    scale = meta.get("scale") or scale
    if not scale:  # the stride of the deconvolution is not in its weights
        raise WeightsError(f"{path}: FSRCNN weights without a recorded scale; pass --scale")
    if type(scale) is not int or scale not in SCALES:
        raise WeightsError(f"{path}: FSRCNN weights for scale {scale!r}; this repo's are x2, x3 or x4")
    _malformed(state, {"feature.0.weight": 4, "shrink.0.weight": 4}, "FSRCNN", path)
    feature, shrink = state["feature.0.weight"], state["shrink.0.weight"]
    _check_layer(path, "feature.0.weight", feature)
    _check_layer(path, "shrink.0.weight", shrink)
    _check_channels(path, "feature.0.weight", feature)
    m = sum(1 for k in state if re.fullmatch(r"mapping\.\d+\.weight", k) and state[k].dim() == 4)
    if m > MAX_MAPPING:
        raise WeightsError(f"{path}: {m} FSRCNN mapping layers, more than {MAX_MAPPING}")
    return lambda: FSRCNN(scale, d=feature.shape[0], s=shrink.shape[0], m=m, channels=feature.shape[1])


def _family(key: str) -> str:
    """conv1.weight -> conv, mapping.3.bias -> mapping: the layer family a state dict key belongs to."""
    return re.sub(r"\d+$", "", key.split(".")[0])


def _fitted(make: Callable[[], SRCNN | FSRCNN], state: dict, path: Path) -> SRCNN | FSRCNN:
    """Build the network only once `state` is known to fit it exactly: the shapes are compared with a
    skeleton on the meta device (nothing allocated), then the values are checked to be finite floats."""
    with torch.device("meta"):
        expected = {k: v.shape for k, v in make().state_dict().items()}
    family = "FSRCNN" if "feature.0.weight" in expected else "SRCNN"
    families = {_family(key) for key in expected}  # other keys (an optimizer's, say) are not the network's
    missing = [key for key in expected if key not in state]
    odd = [key for key in state if key not in expected and _family(key) in families]
    if missing or odd:
        found = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unexpected {', '.join(odd)}"] if odd else [])
        raise WeightsError(f"{path}: not {family} weights ({'; '.join(found)})")
    for key, shape in expected.items():
        if state[key].shape != shape:
            raise WeightsError(f"{path}: weights do not fit {family} ({key} is {tuple(state[key].shape)}, "
                               f"expected {tuple(shape)})")
    count = sum(math.prod(shape) for shape in expected.values())
    if count > MAX_PARAMETERS:
        raise WeightsError(f"{path}: {family} of {count:,} parameters, more than {MAX_PARAMETERS:,}")
    for key in expected:
        if not state[key].is_floating_point() or state[key].layout != torch.strided:
            raise WeightsError(f"{path}: {key} is not a dense floating-point tensor ({state[key].dtype})")
        if not torch.isfinite(state[key]).all():
            raise WeightsError(f"{path}: {key} holds NaN/Inf values")
    model = make()
    model.load_state_dict({k: state[k] for k in expected})
    return model


def load_model(path: str | Path, padding: str | None = None, scale: int | None = None) -> tuple[SRCNN | FSRCNN, dict]:
    """Load SRCNN or FSRCNN weights, building the network from the shapes it finds.

    Reads this project's files ({"model", "meta"}), {"model_state_dict": ...} checkpoints and plain
    state dicts (SRCNN's conv1/conv2/conv3, e.g. yjn870/SRCNN-pytorch; "module." prefixes from
    DataParallel are dropped). `padding` overrides SRCNN's stored padding ("same" when a file does
    not say); `scale` is needed only for FSRCNN weights that do not record theirs. Shapes are checked
    against the MAX_* bounds before anything is built, and values are checked to be finite.
    Returns (model in eval mode, metadata dict).
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:  # torch's own word for it is a bare EOFError
        raise WeightsError(f"{path}: empty file (0 bytes), not weights")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary code
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except Exception as err:  # torch raises many types for corrupt or unsafe files, some without a message
        raise WeightsError(f"{path}: not a loadable weights file ({first_line(err)})") from None
    state, meta = _state_dict_of(obj, path)
    if "feature.0.weight" in state:
        make = _fsrcnn_maker(state, meta, scale, path)
    else:
        make = _srcnn_maker(state, meta, padding, path)
    return _fitted(make, state, path).eval(), meta


def network_name(model: SRCNN | FSRCNN, color: str = "y") -> str:
    """What output files and tables call a network: srcnn, fsrcnn, or srcnn_rgb / srcnn_ycbcr for colour ones."""
    return model.config()["model"] + ("" if color == "y" else f"_{color}")
