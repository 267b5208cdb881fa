"""The one way this repo scores a network: upscale an image, a folder or a benchmark set and measure
PSNR/SSIM against the HR image on the SR protocol. train.py's validation, test.py, weights/publish.py
and every benchmark call it, so their numbers cannot drift apart. Bicubic, this repo's networks and
other people's (peers.OpenCVPeer) are all measured by `score_output`: evaluate_pairs scores a network
beside bicubic, evaluate_method any `Method` (a function from the LR image to its output).

The protocol (utils.py implements each step): MATLAB-bicubic LR, Y of MATLAB's rgb2ycbcr rounded to
8 bits (raw intensity for grayscale), the network's output rounded to 8 bits, `scale` pixels shaved,
range 255. PSNR is always against the ground-truth HR image, never the network's own input.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from utils import (from_color, psnr, rgb2ycbcr, ssim, to_color, to_uint8, unit_to_uint8, upscale_bicubic, with_y,
                   y_channel)

if TYPE_CHECKING:  # PyTorch is imported only where needed: a plain upscale on an ONNX graph never imports it
    from graphs import GraphUpscaler
    from inference import Upscaler

    Network = Upscaler | GraphUpscaler  # what runs a network: takes_lr, run_array

PAPER_RESULTS = Path(__file__).resolve().parent / "paper_results.json"


@cache
def paper_results() -> dict:
    """The SRCNN and FSRCNN papers' Set5/Set14 numbers: {model: {set: {scale: {"psnr", "ssim"?}}}}."""
    return json.loads(PAPER_RESULTS.read_text())


def paper_psnr(model: str, dataset: str, scale: int) -> float | None:
    """A paper's PSNR for `model` ("srcnn" or "fsrcnn") on a benchmark set at a scale, if it reports one."""
    return paper_results().get(model, {}).get(dataset, {}).get(str(scale), {}).get("psnr")


def upscale(upscaler: Network, lr: np.ndarray, bicubic: np.ndarray, color: str,
            tile: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Run the network on a uint8 image; returns (uint8 output image, the Y it is measured on).

    SRCNN reads the bicubic image, FSRCNN the LR one. A Y network restores Y and keeps Cb/Cr from
    bicubic; its own 8-bit Y is what gets measured (re-deriving Y from the RGB file can move a pixel by
    one level). A YCbCr or RGB network writes all three channels. `tile` > 0 bounds memory by running
    tile x tile pieces (the same result); 0 runs the whole image, in tiles once its activations would
    pass tiles.ACTIVATION_BUDGET.
    """
    source = lr if upscaler.takes_lr else bicubic
    x = (to_color(source, color) / 255).astype(np.float32).transpose(2, 0, 1)[None]
    out = upscaler.run_array(x, tile)[0].transpose(1, 2, 0)  # H x W x C, 0..1 (float32)
    gray = bicubic.ndim == 2
    if color != "y":  # measured on the Y of the 8-bit image it stands for (raw intensity if gray)
        image = from_color(out.clip(0, 1).astype(np.float64) * 255, color, gray)
        return image, y_channel(image)
    sr_y = unit_to_uint8(out[..., 0])
    return sr_y if gray else with_y(bicubic, sr_y), sr_y.astype(np.float64)


def psnr_ssim(hr: np.ndarray, y: np.ndarray, scale: int) -> tuple[float, float]:
    """(PSNR, SSIM) of a Y image against the HR image on the SR protocol."""
    hr_y = y_channel(hr)
    return psnr(hr_y, y, scale), ssim(hr_y, y, scale)


def channel_psnrs(hr: np.ndarray, image: np.ndarray, scale: int) -> list[float]:
    """PSNR of Y, Cb and Cr (MATLAB's rgb2ycbcr, 8 bits) and over all RGB channels of an RGB output, on the
    protocol otherwise (`scale` pixels shaved, range 255): the SRCNN paper's colour comparison (Table 5)."""
    hr_ycc, ycc = to_uint8(rgb2ycbcr(hr)), to_uint8(rgb2ycbcr(image))
    return [psnr(hr_ycc[..., c], ycc[..., c], scale) for c in range(3)] + [psnr(hr, image, scale)]


def ms_ssim_y(hr: np.ndarray, y: np.ndarray, scale: int) -> float | None:
    """MS-SSIM (pytorch-msssim, as the training loss) of a Y image, shaved; None under 33 pixels a side."""
    import losses, torch  # PyTorch only when MS-SSIM is asked for
    crop = lambda image: torch.from_numpy(image[scale:-scale, scale:-scale] / 255).float()[None, None]
    hr_y = y_channel(hr)
    return float(losses.ms_ssim(crop(y), crop(hr_y))) if min(hr_y.shape) - 2 * scale >= 33 else None


Method = Callable[[np.ndarray], np.ndarray]
"""Any upscaler scored by evaluate_method: a uint8 LR image -> its output at the HR size, an RGB image
(measured on its MATLAB Y, rounded to 8 bits) or the H x W Y or gray image it is measured on as it is."""


def score_output(hr: np.ndarray, output: np.ndarray, scale: int, with_ms_ssim: bool = False) -> dict[str, float]:
    """{"psnr", "ssim"} (and "ms_ssim" if asked, where the image is large enough) of one method's output
    against the HR image on the SR protocol: the one place every number of this repo is measured."""
    y = y_channel(output)  # an H x W Y or gray image comes back as it is, as float
    if y.shape != hr.shape[:2]:
        raise ValueError(f"an output of {y.shape[1]}x{y.shape[0]} cannot be scored against its "
                         f"{hr.shape[1]}x{hr.shape[0]} HR image")
    psnr_value, ssim_value = psnr_ssim(hr, y, scale)
    ms_ssim_value = ms_ssim_y(hr, y, scale) if with_ms_ssim else None
    return {"psnr": psnr_value, "ssim": ssim_value, **({"ms_ssim": ms_ssim_value} if ms_ssim_value is not None else {})}


def bicubic_method(scale: int) -> Method:
    """The baseline as a Method: MATLAB bicubic of the LR image (utils.upscale_bicubic)."""
    return lambda lr: upscale_bicubic(lr, scale)


def network_method(upscaler: Network, scale: int, color: str = "y", tile: int = 0) -> Method:
    """A network as a Method: `upscale` of the LR image (SRCNN reads its MATLAB-bicubic upscale), giving
    the Y it is measured on, so evaluate_method scores it exactly as evaluate_pairs does."""
    return lambda lr: upscale(upscaler, lr, upscale_bicubic(lr, scale), color, tile)[1]


def score_pair(upscaler: Network, hr: np.ndarray, lr: np.ndarray, scale: int, color: str = "y",
               with_ms_ssim: bool = False) -> dict[str, float]:
    """Bicubic's and the network's PSNR/SSIM on one HR image and its LR image (and their MS-SSIM if asked)."""
    bicubic = upscale_bicubic(lr, scale)
    sr_y = upscale(upscaler, lr, bicubic, color)[1]
    baseline = score_output(hr, bicubic, scale, with_ms_ssim)
    row = {**{f"bicubic_{key}": value for key, value in baseline.items()}, **score_output(hr, sr_y, scale, with_ms_ssim)}
    return dict(sorted(row.items(), key=lambda item: item[0].endswith("ms_ssim")))  # PSNR/SSIM first, MS-SSIM last


def _table(score: Callable[[np.ndarray, np.ndarray], dict[str, float]], pairs: Iterable[tuple[str, np.ndarray, np.ndarray]],
           scale: int, progress: str | None) -> dict:
    """{"scale", "images": [{"image", **score(hr, lr)}, ...], "mean": the mean of each score} over the pairs."""
    if progress:
        from tqdm import tqdm  # here, not at the top: a single image needs no bar and tqdm costs 0.02-0.04 s
        pairs = tqdm(pairs, desc=progress, unit="img", file=sys.stderr)
    rows = [{"image": name, **score(hr, lr)} for name, hr, lr in pairs]
    if not rows:
        raise ValueError("no images to evaluate")
    keys = list(dict.fromkeys(key for row in rows for key in row if key != "image"))
    mean = {key: float(np.mean([r[key] for r in rows if key in r])) for key in keys}
    return {"scale": scale, "images": rows, "mean": mean}


def evaluate_pairs(upscaler: Network, pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], scale: int,
                   color: str = "y", with_ms_ssim: bool = False, progress: str | None = None) -> dict:
    """Per-image rows and their means for (name, hr, lr) pairs, the network's scores beside bicubic's
    (bicubic_psnr, ...); `progress` names a tqdm bar if given."""
    return _table(lambda hr, lr: score_pair(upscaler, hr, lr, scale, color, with_ms_ssim), pairs, scale, progress)


def evaluate_method(method: Method, pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], scale: int,
                    with_ms_ssim: bool = False, progress: str | None = None) -> dict:
    """evaluate_pairs for any Method (bicubic_method, network_method, a peers.OpenCVPeer): the same rows and
    means, of psnr, ssim (and ms_ssim), measured by the same code."""
    return _table(lambda hr, lr: score_output(hr, method(lr), scale, with_ms_ssim), pairs, scale, progress)


def evaluate_dataset(upscaler: Network, source: Path, scale: int, color: str = "y", blur_sigma: float = 0.0) -> dict:
    """evaluate_pairs on what train.py validates on: a benchmark folder (*_HR/*_LR pairs), a folder of HR
    images (degraded with `blur_sigma` and MATLAB bicubic, as preprocess.py does) or a preprocess.py
    --eval file."""
    from datasets import eval_pairs  # h5py and PyTorch's Dataset, which scoring a single image never needs
    pairs = eval_pairs(source, scale, blur_sigma)
    return {"dataset": str(source), **evaluate_pairs(upscaler, pairs, scale, color, progress=f"{source} x{scale}")}
