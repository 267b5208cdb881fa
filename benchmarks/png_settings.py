"""How long Pillow and OpenCV take to write a 1080p photo as PNG, and how big the file is, under each
zlib setting: the reason test.py writes its outputs with OpenCV (utils.save_image's fast_png).

    python -m benchmarks.png_settings --repeats 7

The photos are scikit-image's bundled colour images, resized to --size by Pillow's bicubic; each
setting's time is the best of --repeats encodes (in memory, so the disk does not count), summed over
the photos.
"""
from __future__ import annotations

import argparse
import io
import time
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image
from skimage import data as skimage_data

import cli
from utils import fast_png_bytes

PHOTOS = ("coffee", "astronaut", "chelsea", "rocket")
PILLOW_SETTINGS = {  # name: Pillow's PNG options
    "Pillow, level 6 (its default)": {"compress_level": 6},
    "Pillow, level 1": {"compress_level": 1},
    "Pillow, level 1, RLE": {"compress_level": 1, "compress_type": zlib.Z_RLE},
    "Pillow, level 1, Huffman only": {"compress_level": 1, "compress_type": zlib.Z_HUFFMAN_ONLY},
}


def pillow_encoder(options: dict) -> Callable[[np.ndarray], bytes]:
    def encode(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", **options)
        return buffer.getvalue()
    return encode


def encoders() -> dict[str, Callable[[np.ndarray], bytes]]:
    """{name: a function from a uint8 RGB image to PNG bytes}, Pillow's level 6 first (the baseline)."""
    return {**{name: pillow_encoder(options) for name, options in PILLOW_SETTINGS.items()},
            "OpenCV, level 1, RLE, Sub filter (its defaults; test.py)": fast_png_bytes}


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--size", type=cli.photo_size, default=(1920, 1080), metavar="WxH",
                        help="the photos' size (default: 1920x1080)")
    parser.add_argument("--repeats", type=int, default=7, help="encodes per photo and setting (the best counts)")
    return parser


def encode_seconds(image: np.ndarray, encode: Callable[[np.ndarray], bytes], repeats: int) -> tuple[float, int]:
    """(best time of `repeats` encodes, bytes) of one image, after one untimed encode (OpenCV's import)."""
    encode(image)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encoded = encode(image)
        best = min(best, time.perf_counter() - start)
    return best, len(encoded)


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be 1 or more")
    photos = [np.asarray(Image.fromarray(np.asarray(getattr(skimage_data, name)())).convert("RGB")
                         .resize(args.size, Image.Resampling.BICUBIC)) for name in PHOTOS]
    print(f"{len(photos)} photos at {args.size[0]}x{args.size[1]}, best of {args.repeats}:")
    print("| setting | seconds (all photos) | MB | x level 6 time |\n|---|---|---|---|")
    baseline = None
    for name, encode in encoders().items():
        seconds, size = map(sum, zip(*(encode_seconds(photo, encode, args.repeats) for photo in photos)))
        baseline = baseline or seconds
        print(f"| {name} | {seconds:.3f} | {size / 1e6:.2f} | {seconds / baseline:.2f}x |")


if __name__ == "__main__":
    main()
