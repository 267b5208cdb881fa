"""How a real low-resolution photo may have been made from its high-resolution scene, each step done by the
library that defines it: MATLAB bicubic (utils.imresize, the SR protocol), Pillow's bicubic, OpenCV's
cv2.resize with INTER_CUBIC, INTER_LINEAR or INTER_AREA (INTER_CUBIC and INTER_LINEAR do not antialias),
an optional Gaussian blur before and an optional JPEG compression (Pillow, 4:2:0 chroma) after.

preprocess.py --degradation mix draws one per patch (the robust weights' training data);
benchmarks/robustness.py scores every network on each of TABLE.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from utils import gaussian_blur, imresize, to_uint8

KERNELS = ("matlab", "pil", "cv2-cubic", "cv2-linear", "cv2-area")

# preprocess.py --degradation mix: a kernel drawn uniformly, a blur half the time, JPEG half the time
MIX = {"kernels": list(KERNELS), "blur_probability": 0.5, "blur_sigma": [0.0, 1.2],
       "jpeg_probability": 0.5, "jpeg_quality": [60, 95]}


@dataclass(frozen=True)
class Degradation:
    """One way of making LR from HR: blur (sigma 0: none), resize kernel, JPEG quality (0: none)."""
    kernel: str = "matlab"
    blur_sigma: float = 0.0
    jpeg_quality: int = 0

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"unknown resize kernel {self.kernel!r} (one of {', '.join(KERNELS)})")
        if self.blur_sigma < 0 or not (self.jpeg_quality == 0 or 1 <= self.jpeg_quality <= 100):
            raise ValueError(f"blur sigma must be >= 0 and JPEG quality 1..100 (0: none), not "
                             f"{self.blur_sigma} and {self.jpeg_quality}")

    def __str__(self) -> str:
        return self.kernel + (f"+blur{self.blur_sigma:g}" if self.blur_sigma else "") + \
            (f"+jpeg{self.jpeg_quality}" if self.jpeg_quality else "")

    @classmethod
    def parse(cls, text: str) -> Degradation:
        """The inverse of str(): "cv2-cubic", "matlab+blur1", "pil+blur0.6+jpeg75"."""
        match = re.fullmatch(r"([a-z0-9-]+)(?:\+blur([0-9.]+))?(?:\+jpeg([0-9]+))?", text)
        if not match:
            raise ValueError(f"{text!r}: not a degradation (KERNEL[+blurSIGMA][+jpegQUALITY], e.g. cv2-cubic+jpeg75)")
        return cls(match[1], float(match[2] or 0), int(match[3] or 0))


# benchmarks/robustness.py's rows: every kernel clean, then a blurred and a compressed input
TABLE = tuple(Degradation(kernel) for kernel in KERNELS) + (Degradation("matlab", blur_sigma=1.0),
                                                            Degradation("cv2-cubic", jpeg_quality=75))


def resize_down(hr: np.ndarray, scale: int, kernel: str) -> np.ndarray:
    """A uint8 image shrunk by the integer `scale` (sides already multiples of it) with one kernel."""
    h, w = hr.shape[:2]
    if kernel == "matlab":
        return imresize(hr, 1 / scale)
    if kernel == "pil":
        return np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.Resampling.BICUBIC))
    import cv2  # opencv-contrib-python-headless (requirements.txt): only the cv2 kernels need it
    flag = {"cv2-cubic": cv2.INTER_CUBIC, "cv2-linear": cv2.INTER_LINEAR, "cv2-area": cv2.INTER_AREA}[kernel]
    return cv2.resize(hr, (w // scale, h // scale), interpolation=flag)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """A uint8 image through Pillow's JPEG encoder at `quality` and back (colour with 4:2:0 chroma, as cameras)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("L" if image.ndim == 2 else "RGB"))


def apply(hr: np.ndarray, scale: int, degradation: Degradation) -> np.ndarray:
    """The uint8 LR image of a modcropped uint8 HR image (RGB or gray) under `degradation`."""
    if hr.shape[0] % scale or hr.shape[1] % scale:
        raise ValueError(f"image of size {hr.shape[1]}x{hr.shape[0]} is not modcropped to scale {scale}")
    source = to_uint8(gaussian_blur(hr, degradation.blur_sigma)) if degradation.blur_sigma else hr
    lr = resize_down(source, scale, degradation.kernel)
    return jpeg(lr, degradation.jpeg_quality) if degradation.jpeg_quality else lr


def sample(rng: np.random.Generator, mix: dict = MIX) -> Degradation:
    """One degradation drawn from `mix` (MIX's keys)."""
    kernel = str(rng.choice(mix["kernels"]))
    blur = float(rng.uniform(*mix["blur_sigma"])) if rng.random() < mix["blur_probability"] else 0.0
    quality = int(rng.integers(mix["jpeg_quality"][0], mix["jpeg_quality"][1] + 1)) \
        if rng.random() < mix["jpeg_probability"] else 0
    return Degradation(kernel, round(blur, 2), quality)
