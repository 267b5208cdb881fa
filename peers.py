"""What people deploy instead of this project, run as they run it: OpenCV's dnn_superres module with the
published FSRCNN, FSRCNN-s and ESPCN TensorFlow graphs (FSRCNN_x3.pb, FSRCNN-small_x3.pb, ESPCN_x3.pb).

A user reads an image with cv2.imread (BGR, three channels even for a grayscale file) and calls
`upsample`; `OpenCVPeer` does exactly that on this repo's RGB / gray uint8 arrays, so that evaluate.py
scores the peer's own 8-bit output on the same protocol as bicubic and this project's networks.
benchmarks/robustness.py compares them; the graphs are not in the repo (see ../shared/peers/README.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from utils import first_line, to_uint8

# the name a user passes to setModel -> the file-name prefix the graphs are published under
GRAPHS = {"fsrcnn": "FSRCNN", "fsrcnn-small": "FSRCNN-small", "espcn": "ESPCN"}


class PeerError(ValueError):
    """A peer that cannot be run (OpenCV or its contrib module missing, no graph file, an unreadable one);
    the message names the file or the package, in one line for a script's `error: ...`."""


def graph_path(folder: str | Path, name: str, scale: int) -> Path:
    """Where the graph of peer `name` at `scale` is published: <folder>/<FSRCNN|FSRCNN-small|ESPCN>_x<scale>.pb."""
    if name not in GRAPHS:
        raise PeerError(f"unknown OpenCV peer {name!r} (one of {', '.join(GRAPHS)})")
    return Path(folder) / f"{GRAPHS[name]}_x{scale}.pb"


def _dnn_superres() -> object:
    """cv2.dnn_superres, which only the contrib build of OpenCV has (a plain opencv-python lacks it)."""
    try:
        import cv2
    except ImportError:
        raise PeerError("OpenCV is not installed: pip install opencv-contrib-python-headless") from None
    if not hasattr(cv2, "dnn_superres"):
        raise PeerError(f"OpenCV {cv2.__version__} has no dnn_superres module: install opencv-contrib-python-headless "
                        "instead of opencv-python(-headless)")
    return cv2.dnn_superres


class OpenCVPeer:
    """`peer(lr)` is OpenCV's super-resolution of a uint8 RGB (H x W x 3) or gray (H x W) image: the uint8
    image `scale` times larger, RGB for RGB and gray for gray, as a user's cv2 code would write it."""

    def __init__(self, folder: str | Path, name: str, scale: int) -> None:
        self.name, self.scale, self.path = name, scale, graph_path(folder, name, scale)
        if not self.path.is_file():
            raise PeerError(f"{self.path}: no such file (the OpenCV {GRAPHS[name]} x{scale} graph)")
        self.model = _dnn_superres().DnnSuperResImpl_create()
        try:
            self.model.readModel(str(self.path))
            self.model.setModel(name.split("-")[0], scale)  # fsrcnn-small runs as "fsrcnn": only the graph differs
        except Exception as err:  # cv2.error, whose message is OpenCV's multi-line report
            raise PeerError(f"{self.path}: not a readable dnn_superres graph ({first_line(err)})") from None

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        """The peer's output for one image: what `upsample` writes, in this repo's RGB (or gray) layout."""
        if lr.dtype != np.uint8 or lr.ndim not in (2, 3) or (lr.ndim == 3 and lr.shape[2] != 3):
            raise PeerError(f"OpenCV peers take uint8 RGB or gray images, not {lr.dtype} of shape {lr.shape}")
        gray = lr.ndim == 2
        bgr = np.repeat(lr[..., None], 3, axis=2) if gray else np.ascontiguousarray(lr[..., ::-1])  # as cv2.imread gives
        out = self.model.upsample(bgr)
        if gray:  # three equal channels in: chroma is flat, so the channels agree; their mean is the gray output
            return to_uint8(out.astype(np.float64).mean(axis=2))
        return np.ascontiguousarray(out[..., ::-1])

    def __repr__(self) -> str:
        return f"OpenCVPeer({str(self.path)!r}, {self.name!r}, {self.scale})"
