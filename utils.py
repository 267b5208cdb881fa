"""Image helpers for SR, written to match the MATLAB code that SR papers report numbers with.

Every function here is pure (arrays in, arrays out) and has one job. Images are numpy arrays,
H x W (grayscale / Y) or H x W x 3 (RGB / YCbCr), on the 0..255 scale unless a docstring says otherwise.
"""
from __future__ import annotations

import functools
import math
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageOps

from files import atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# MATLAB rgb2ycbcr (ITU-R BT.601, studio swing: Y in 16..235, Cb/Cr in 16..240), for RGB in 0..255.
_YCBCR_FROM_RGB = np.array([[65.481, 128.553, 24.966],
                            [-37.797, -74.203, 112.0],
                            [112.0, -93.786, -18.214]]) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and the problem."""


class WeightsError(ValueError):
    """A weights file that cannot be loaded; the message names the file and the problem."""


MAX_PIXELS = 100_000_000  # refuse larger images (decompression bombs) unless asked: 100 MP is 1.2 GB as float32 RGB
STRIP_ROWS = 256  # per-pixel conversions run this many rows at a time, so their float64 temporaries stay small


def by_rows(per_pixel: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Run a per-pixel array function on STRIP_ROWS rows at a time into one output array: the same
    result, with temporary memory that follows the strip instead of the image (a 12-megapixel photo
    otherwise needs several 288 MB float64 temporaries per conversion)."""
    @functools.wraps(per_pixel)
    def run(image: np.ndarray) -> np.ndarray:
        first = per_pixel(image[:STRIP_ROWS])
        out = np.empty((len(image), *first.shape[1:]), first.dtype)
        out[:STRIP_ROWS] = first
        for start in range(STRIP_ROWS, len(image), STRIP_ROWS):
            out[start:start + STRIP_ROWS] = per_pixel(image[start:start + STRIP_ROWS])
        return out
    return run


def _to_8bit(img: Image.Image) -> np.ndarray:
    """Pixels of a decoded image as uint8: H x W for grayscale modes, H x W x 3 RGB for the rest.

    16/32-bit and float grayscale is scaled to 8 bits by its own range (a 16-bit file uses 0..65535),
    alpha is dropped, palettes and CMYK are converted by Pillow.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        deep = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or deep.max() > 255 else 255.0
        return to_uint8(deep * 255.0 / top)
    if img.mode == "F":  # floats in 0..1 or already 0..255
        pixels = np.asarray(img, dtype=np.float64)
        return to_uint8(pixels * (255.0 if pixels.max() <= 1 else 1.0))
    return np.asarray(img.convert("L" if img.mode in ("1", "L", "LA") else "RGB"))


_PILLOW_LIMIT = threading.Lock()  # Pillow's decompression-bomb limit is one global, and readers run in threads


def _open(path: str | Path) -> Image.Image:
    """Image.open with Pillow's fixed pixel limit off: the callers apply --max-pixels to the header."""
    with _PILLOW_LIMIT:
        pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from an image file's header, nothing decoded; None for a file that is not one."""
    try:
        with _open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError):
        return None


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as uint8, H x W for grayscale files, H x W x 3 RGB for everything else,
    turned upright by its EXIF orientation; files over `max_pixels` pixels are refused unread."""
    try:
        with _open(path) as img:
            if img.width * img.height > max_pixels:  # the header alone: nothing is decoded yet
                raise ImageError(f"{path}: {img.width}x{img.height} is over the limit of {max_pixels:,} pixels "
                                 f"(a decompression bomb?); raise --max-pixels to accept it")
            img.load()
            return _to_8bit(ImageOps.exif_transpose(img))
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({err})") from None


def save_image(path: str | Path, image: np.ndarray, fast_png: bool = False) -> None:
    """Write a uint8 (or 0..255 float, rounded) image atomically (files.atomic_write: a failed write is a
    WriteError naming the path, and no half-written file remains). A PNG is written by Pillow at its default
    zlib level (6) for the repo's figures, or with `fast_png` by OpenCV (zlib level 1, the RLE strategy,
    its Sub filter) for test.py's outputs, as OpenCV's users get them: on four 1080p photos 1.6x faster than
    Pillow at the same zlib settings (whose per-row adaptive filter is the cost) for 26% more bytes, and 7x
    faster than level 6 (benchmarks/png_settings.py)."""
    path = Path(path)
    image_format = path.suffix.lstrip(".").upper().replace("JPG", "JPEG")
    with atomic_write(path) as tmp:
        if fast_png and image_format == "PNG":
            tmp.write_bytes(fast_png_bytes(to_uint8(image)))
        else:
            Image.fromarray(to_uint8(image)).save(tmp, format=image_format)


def fast_png_bytes(image: np.ndarray) -> bytes:
    """A uint8 gray or RGB image as PNG, encoded by OpenCV with its defaults (zlib level 1, the RLE strategy,
    the Sub filter; setting the level alone also changes the filter)."""
    import cv2  # here, not at the top: 0.04 s, and only test.py's outputs use it
    pixels = image if image.ndim == 2 else np.ascontiguousarray(image[..., ::-1])  # OpenCV's channel order: BGR
    try:
        ok, encoded = cv2.imencode(".png", pixels)
    except cv2.error as err:  # not a RuntimeError: atomic_write would not name the file
        raise RuntimeError(f"OpenCV could not encode the image as PNG ({first_line(err)})") from None
    if not ok:
        raise RuntimeError("OpenCV could not encode the image as PNG")
    return encoded.tobytes()


def list_images(folder: str | Path) -> list[Path]:
    """All image files below a folder (recursive), sorted so runs are reproducible."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def first_line(err: BaseException) -> str:
    """An exception in a few words, for a one-line message: its first line, or its type when it has no
    message (EOFError)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def round_half_away(values: np.ndarray) -> np.ndarray:
    """MATLAB's round: halves away from zero (NumPy's np.round takes them to the even neighbour)."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


@by_rows
def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and clip to uint8, as MATLAB does when it casts a double image to uint8: halves away from
    zero. In one pass fewer than round_half_away: floor(x + 0.5) is that rounding for x >= 0, a negative
    x gives 0 either way, and the cast truncates what the clip leaves, which is the floor."""
    if image.dtype == np.uint8:
        return image
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of `scale`."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


@by_rows
def rgb2ycbcr(rgb: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr for 0..255 RGB; returns float YCbCr (round with to_uint8 for MATLAB's uint8 result)."""
    return rgb.astype(np.float64) @ _YCBCR_FROM_RGB.T + _YCBCR_OFFSET


@by_rows
def ycbcr2rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of rgb2ycbcr (MATLAB ycbcr2rgb), float RGB on 0..255, not clipped."""
    return (ycbcr.astype(np.float64) - _YCBCR_OFFSET) @ np.linalg.inv(_YCBCR_FROM_RGB).T


def with_y(rgb: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The uint8 RGB image whose Y is `y` and whose Cb/Cr are those of `rgb`: to_uint8(ycbcr2rgb(...)) of
    rgb2ycbcr(rgb) with Y replaced, computed as rgb + (y - Y(rgb)) * 255/219, since Y enters R, G and B
    with that one weight, in float32 (a pixel may round one level apart from the round trip: a test).
    STRIP_ROWS rows at a time."""
    gain = 255 / 219
    weights = (_YCBCR_FROM_RGB[0] * gain).astype(np.float32)
    offset = np.float32(_YCBCR_OFFSET[0] * gain - 0.5)  # the 0.5 makes the cast's truncation a rounding
    out = np.empty(rgb.shape, np.uint8)
    for start in range(0, len(rgb), STRIP_ROWS):
        rows = slice(start, start + STRIP_ROWS)
        strip = rgb[rows].astype(np.float32)
        shift = y[rows].astype(np.float32) * np.float32(gain) - strip @ weights - offset
        out[rows] = np.clip(strip + shift[..., None], 0, 255).astype(np.uint8)
    return out


@by_rows
def y_channel(image: np.ndarray) -> np.ndarray:
    """The channel SR is evaluated on: MATLAB's uint8 Y for RGB, the raw intensity for grayscale."""
    if image.ndim == 2:
        return image.astype(np.float64)
    return round_half_away(rgb2ycbcr(image)[..., 0])


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with a = -0.5, as in MATLAB's imresize."""
    ax = np.abs(x)
    ax2, ax3 = ax ** 2, ax ** 3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _kernel(out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based source indices (out_len x taps) of MATLAB imresize along one axis, before the
    edges are clamped (so they do not depend on the input's length); taps that weigh nothing anywhere are left out."""
    kernel_width = 4.0
    if scale < 1:  # antialiasing: stretch the kernel so it low-passes before subsampling
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(scale * distance) if scale < 1 else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    used = np.any(weights != 0, axis=0)
    return weights[:, used], indices[:, used].astype(np.int64) - 1


def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and source indices (out_len x taps) of MATLAB imresize along one axis."""
    weights, indices = _kernel(out_len, scale)
    # replicated edges: the MATLAB imresize that made the benchmark LR files clamps out-of-range indices
    # (newer releases mirror them, which changes up to 11 levels at the border of those files)
    return weights, np.clip(indices, 0, in_len - 1)


def _resize_axis(image: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    weights, indices = _contributions(image.shape[axis], out_len, scale)
    moved = np.moveaxis(image, axis, 0)
    out = np.zeros((out_len,) + moved.shape[1:], dtype=np.float64)
    for tap in range(weights.shape[1]):
        w = weights[:, tap].reshape((-1,) + (1,) * (moved.ndim - 1))
        out += w * moved[indices[:, tap]]
    return np.moveaxis(out, 0, axis)


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    """imresize's generic path, for any factor and class: a channel, then an axis, at a time."""
    if image.ndim == 3:
        return np.stack([_resize(image[..., c], scale) for c in range(image.shape[2])], axis=2)
    out = image
    for axis in (0, 1):
        out = _resize_axis(out.astype(np.float64), axis, int(math.ceil(image.shape[axis] * scale)), scale)
        if image.dtype == np.uint8:
            out = to_uint8(out)
    return out


_STRIP = 1 << 15  # float64 values per strip of an integer upscale: its 256 KB temporaries stay in the L2 cache


def _phases(in_len: int, scale: int) -> list[list[tuple[int, np.ndarray]]]:
    """The taps of an integer upscale along one axis, by output phase: output i * scale + r is the sum, in
    this order, of weights[i] * input[i + shift] over phase r's (shift, weights), the input clamped at its edges.

    They are _kernel's taps: each output of a phase reads at the same offsets from its i (tests/test_utils.py
    checks), and keeps its own weights, which differ in the last bit between outputs of a phase at x3. A tap
    that weighs nothing in a phase is left out: adding 0 changes no sum.
    """
    weights, indices = _kernel(in_len * scale, scale)
    return [[(int(indices[r, t]), weights[r::scale, t]) for t in range(weights.shape[1]) if weights[r::scale, t].any()]
            for r in range(scale)]


def _reach(phases: list[list[tuple[int, np.ndarray]]]) -> int:
    """How far outside the input the taps read: the edge padding that stands in for clamped indices."""
    return max(abs(shift) for taps in phases for shift, _ in taps)


def _rounded_sum(terms: list[tuple[np.ndarray, np.ndarray]], acc: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """The sum of source * weights over `terms`, in `acc`, ready for a cast to uint8.

    The float64 sum of _resize_axis (the same products, added in the same order), then to_uint8's rounding
    in fewer passes: floor(sum + 0.5) clipped to 0..255 is its half away from zero for a sum >= 0, and a
    negative sum is 0 either way; the cast truncates what is left, which is the floor.
    """
    for j, (source, weights) in enumerate(terms):
        np.multiply(source, weights, out=tmp if j else acc)
        if j:
            acc += tmp
    acc += 0.5
    return np.clip(acc, 0, 255, out=acc)


def _upscale_rows(image: np.ndarray, scale: int) -> np.ndarray:
    """Axis 0 of an n x K uint8 array upscaled by an integer factor: to_uint8 of _resize_axis, bit for bit,
    from shifted slices (views, not gathers), a strip of output rows at a time."""
    n, k = image.shape
    phases = _phases(n, scale)
    reach = _reach(phases)
    padded = np.pad(image, ((reach, reach), (0, 0)), mode="edge")
    out = np.empty((n, scale, k), np.uint8)  # [i, r] is output row i * scale + r
    step = min(n, max(1, _STRIP // k))
    acc, tmp = np.empty((step, k)), np.empty((step, k))
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = padded[start:stop + 2 * reach].astype(np.float64)  # input rows start - reach .. stop + reach
        for r, taps in enumerate(phases):
            terms = [(block[reach + shift:reach + shift + stop - start], w[start:stop, None]) for shift, w in taps]
            out[start:stop, r] = _rounded_sum(terms, acc[:stop - start], tmp[:stop - start])
    return out.reshape(n * scale, k)


def _upscale_columns(image: np.ndarray, scale: int) -> np.ndarray:
    """Axis 1 of an m x n x C uint8 array upscaled the same way, a strip of rows at a time."""
    m, n, c = image.shape
    phases = _phases(n, scale)
    reach = _reach(phases)
    # a weight per value, not per pixel: broadcast over the C channels, NumPy's innermost loop would be C long
    phases = [[(shift, np.repeat(w[:, None], c, axis=1)) for shift, w in taps] for taps in phases]
    padded = np.pad(image, ((0, 0), (reach, reach), (0, 0)), mode="edge")
    out = np.empty((m, n, scale, c), np.uint8)  # [:, i, r] is output column i * scale + r
    step = min(m, max(1, _STRIP // (n * c)))
    acc, tmp = np.empty((step, n, c)), np.empty((step, n, c))
    for start in range(0, m, step):
        stop = min(start + step, m)
        block = padded[start:stop].astype(np.float64)
        for r, taps in enumerate(phases):
            terms = [(block[:, reach + shift:reach + shift + n], w) for shift, w in taps]
            out[start:stop, :, r] = _rounded_sum(terms, acc[:stop - start], tmp[:stop - start])
    return out.reshape(m, n * scale, c)


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """imresize of a non-empty uint8 image by an integer factor: the uint8 image its generic path makes, with
    all channels at once, in strips that stay in the CPU's cache: a fifth of its time (640x360 RGB at x3: 0.05 s)."""
    h, w = image.shape[:2]
    rows = _upscale_rows(image.reshape(h, -1), scale).reshape(h * scale, w, -1)
    return _upscale_columns(rows, scale).reshape((h * scale, w * scale) + image.shape[2:])


def imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB `imresize(image, scale, 'bicubic')`: antialiased when shrinking, replicated edges.

    Like MATLAB, the output side is ceil(side * scale), rows are resized before columns, and the
    class is kept: a uint8 image comes back uint8, rounded after each pass (MATLAB's imresizemex
    stores the intermediate image as uint8 too); anything else comes back float64. The generic path
    (_resize) resizes channels one at a time, which keeps the float64 temporaries to one channel's size;
    a uint8 image enlarged by a whole factor (the bicubic baseline) takes a fast path (_upscale) to the
    same uint8 image.
    """
    if image.dtype == np.uint8 and scale >= 1 and scale == int(scale) and image.size:
        return _upscale(image, int(scale))
    return _resize(image, scale)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur per channel with a kernel of radius ceil(3 sigma) and symmetric edges."""
    radius = int(math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-x ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    out = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        out = sum(k * np.take(padded, np.arange(i, i + out.shape[axis]), axis=axis) for i, k in enumerate(kernel))
    return out


def degrade(hr: np.ndarray, scale: int, blur_sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The SRCNN degradation of a modcropped uint8 HR image.

    Optional Gaussian blur, MATLAB bicubic down by `scale`, then back up; each step is stored as
    uint8, as MATLAB writes images. Returns (lr, bicubic) as uint8, bicubic the size of `hr`.
    """
    if hr.shape[0] % scale or hr.shape[1] % scale:
        raise ValueError(f"image of size {hr.shape[1]}x{hr.shape[0]} is not modcropped to scale {scale}")
    source = to_uint8(gaussian_blur(hr, blur_sigma)) if blur_sigma > 0 else hr
    lr = imresize(source, 1 / scale)
    return lr, upscale_bicubic(lr, scale)


def upscale_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: MATLAB imresize of a uint8 image by `scale`."""
    return imresize(to_uint8(lr), scale)


def shave(image: np.ndarray, border: int) -> np.ndarray:
    """Drop `border` pixels from each side (SR papers shave `scale` pixels before measuring)."""
    return image[border:-border, border:-border] if border > 0 else image


def psnr(hr_y: np.ndarray, sr_y: np.ndarray, border: int) -> float:
    """PSNR in dB on the 0..255 range after shaving `border` pixels: of Y (or gray) images on the protocol,
    or over all channels of H x W x 3 images (benchmarks/color_table.py's RGB column)."""
    diff = shave(hr_y.astype(np.float64), border) - shave(sr_y.astype(np.float64), border)
    mse = np.mean(diff ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


MIN_MEASURED_SIDE = 11  # an image must keep one 11x11 SSIM window once `scale` pixels are shaved from each side


def ssim(hr_y: np.ndarray, sr_y: np.ndarray, border: int) -> float:
    """SSIM of Wang et al. (11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03), range 255, shaved.

    scikit-image computes it; a map pixel sees 5 pixels around it and the mean leaves out the 5-pixel
    edge, so the map is built STRIP_ROWS rows at a time with 5 rows of context each (the same number,
    in a fraction of the memory of a whole 12-megapixel float64 map and its ten intermediates).
    """
    hr_y, sr_y = shave(hr_y, border), shave(sr_y, border)
    if min(hr_y.shape) < 11:
        raise ValueError(f"a {hr_y.shape[1]}x{hr_y.shape[0]} image (after shaving {border}) is smaller than SSIM's 11x11 window")
    from skimage.metrics import structural_similarity  # here, not at the top: it pulls in SciPy (0.4 s), which a plain upscale never needs
    radius, total, count = 5, 0.0, 0
    for start in range(radius, len(hr_y) - radius, STRIP_ROWS):
        stop = min(start + STRIP_ROWS, len(hr_y) - radius)
        rows = slice(start - radius, stop + radius)
        _, ssim_map = structural_similarity(hr_y[rows].astype(np.float64), sr_y[rows].astype(np.float64), data_range=255,
                                            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True)
        inner = ssim_map[radius:-radius, radius:-radius]
        total, count = total + inner.sum(), count + inner.size
    return float(total / count)


def filter_grid(weights: np.ndarray, columns: int = 8, gap: int = 1) -> np.ndarray:
    """Tile N x h x w filters into one uint8 image, each filter stretched to its own min..max."""
    n, h, w = weights.shape
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + gap) + gap, columns * (w + gap) + gap), 255, np.uint8)
    for i, f in enumerate(weights):
        span = f.max() - f.min()
        tile = (f - f.min()) / span * 255 if span > 0 else np.full_like(f, 128)
        r, c = divmod(i, columns)
        grid[gap + r * (h + gap): gap + r * (h + gap) + h, gap + c * (w + gap): gap + c * (w + gap) + w] = to_uint8(tile)
    return grid


COLORS = ("y", "ycbcr", "rgb")  # what a network sees: Y alone (1 channel), or all of YCbCr or RGB (3)


def to_color(image: np.ndarray, color: str) -> np.ndarray:
    """H x W x C float (0..255) network input: 8-bit Y (raw gray), or 8-bit YCbCr / RGB of the image.

    A grayscale image given to a 3-channel colour space is treated as RGB with three equal channels.
    """
    if color == "y":
        return y_channel(image)[..., None]
    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    return to_uint8(rgb2ycbcr(rgb)).astype(np.float64) if color == "ycbcr" else rgb.astype(np.float64)


def from_color(x: np.ndarray, color: str, gray: bool) -> np.ndarray:
    """The uint8 image a 3-channel network output (H x W x 3, 0..255) stands for: RGB, or gray when the
    source was gray (the mean of the channels, inverting `to_color`)."""
    rgb = ycbcr2rgb(x) if color == "ycbcr" else x
    return to_uint8(rgb.mean(axis=2) if gray else rgb)


@by_rows  # the float64 copy follows the strip, not the image
def unit_to_uint8(x: np.ndarray) -> np.ndarray:
    """A network's 0..1 output as 8-bit levels, rounded as to_uint8 rounds: scaled in float64, so that no
    float32 product moves a value across a half."""
    return to_uint8(x.astype(np.float64) * 255)


def benchmark_pairs(folder: str | Path, scale: int, blur_sigma: float = 0.0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, hr, lr) uint8 images from a folder.

    A benchmark folder (`*_HR.png` beside `*_LR.png`, as Set5/Set14 ship) gives its own MATLAB-made LR,
    unless `blur_sigma` > 0: then its LR is made from the HR image as for any other image, which is taken
    as HR, modcropped and degraded as preprocess.py does (blur, then MATLAB bicubic).
    """
    files = list_images(folder)
    if not files:
        raise ValueError(f"{folder}: no images found")
    by_name = {p.name: p for p in files}
    for path in files:
        stem = path.stem
        if stem.endswith("_LR"):
            continue
        if stem.endswith("_HR"):
            lr_path = next((by_name[n] for n in (stem[:-3] + "_LR" + path.suffix, stem[:-3] + "_LR.png") if n in by_name), None)
            if lr_path is None:
                raise ValueError(f"{path}: no matching _LR image")
            hr, lr = load_image(path), load_image(lr_path)
            if (hr.shape[0] != lr.shape[0] * scale or hr.shape[1] != lr.shape[1] * scale
                    or hr.shape[2:] != lr.shape[2:]):
                raise ValueError(f"{path}: HR {hr.shape[1]}x{hr.shape[0]} is not {scale}x its LR "
                                 f"{lr.shape[1]}x{lr.shape[0]}; wrong --scale?")
            # the shipped LR has no blur: with one, LR is made from HR, as for any other image
            yield stem[:-3], hr, degrade(hr, scale, blur_sigma)[0] if blur_sigma > 0 else lr
        else:
            hr = modcrop(load_image(path), scale)
            if min(hr.shape[:2]) < 2 * scale:
                raise ImageError(f"{path}: {hr.shape[1]}x{hr.shape[0]} is too small for scale {scale}")
            yield stem, hr, degrade(hr, scale, blur_sigma)[0]
