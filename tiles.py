"""Running a network on an image in tiles: the same output as one pass, with memory that follows the
tile instead of the image. Arrays or tensors alike (N x C x H x W), so the PyTorch paths
(inference.Upscaler) and the ONNX Runtime one (graphs.GraphUpscaler) share it."""
from __future__ import annotations

import math
from typing import Callable, TypeVar

Array = TypeVar("Array")  # numpy.ndarray or torch.Tensor

# Past this many bytes of activations for the whole image, the network runs in tiles (the same result):
# peak memory follows this budget, not the image, in every mode. At 1 GiB, SRCNN runs images of up to
# 1.3 MP whole, so every benchmark and validation image (SunHays80, Holopix50k) scores as before.
ACTIVATION_BUDGET = 1 << 30


def auto_tile(shape: tuple[int, ...], bytes_per_pixel: int, halo: int, share: int = 1) -> int:
    """0 when the activations for an input of `shape` (N x C x H x W) fit ACTIVATION_BUDGET / share, else
    the largest tile side whose tiles, read with their margins of `halo` pixels, fit it."""
    budget, per_pixel = ACTIVATION_BUDGET // share, bytes_per_pixel * shape[0]
    if shape[-2] * shape[-1] * per_pixel <= budget:
        return 0
    return max(16, math.isqrt(budget // per_pixel) - 2 * halo)


def run_tiled(run: Callable[[Array], Array], x: Array, tile: int, scale: int, halo: int,
              empty: Callable[[Array, tuple[int, ...]], Array]) -> Array:
    """run(x) computed tile x tile input pixels at a time, each tile read with a margin of the receptive
    field's radius `halo` (one pixel less changes the result); `scale` is how much larger the output is
    (1 for SRCNN), and empty(part, shape) allocates the output like the first part."""
    h, w = x.shape[-2:]
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            cy0, cx0 = max(0, y0 - halo), max(0, x0 - halo)
            part = run(x[..., cy0:min(h, y1 + halo), cx0:min(w, x1 + halo)])
            if out is None:
                out = empty(part, (*part.shape[:2], h * scale, w * scale))
            out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = part[..., (y0 - cy0) * scale:(y1 - cy0) * scale,
                                                                           (x0 - cx0) * scale:(x1 - cx0) * scale]
    return out
