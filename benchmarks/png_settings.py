"""How long Pillow takes to write a 1080p photo as PNG, and how big the file is, under each zlib setting:
the reason test.py writes its outputs with OpenCV's settings (utils.save_image's fast_png).

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

import numpy as np
from PIL import Image
from skimage import data as skimage_data

import cli

PHOTOS = ("coffee", "astronaut", "chelsea", "rocket")
SETTINGS = {  # name: Pillow's PNG options
    "level 6 (Pillow's default)": {"compress_level": 6},
    "level 1": {"compress_level": 1},
    "level 1, RLE (OpenCV's default; test.py)": {"compress_level": 1, "compress_type": zlib.Z_RLE},
    "level 1, Huffman only": {"compress_level": 1, "compress_type": zlib.Z_HUFFMAN_ONLY},
}


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--size", type=cli.photo_size, default=(1920, 1080), metavar="WxH",
                        help="the photos' size (default: 1920x1080)")
    parser.add_argument("--repeats", type=int, default=7, help="encodes per photo and setting (the best counts)")
    return parser


def encode_seconds(image: Image.Image, options: dict, repeats: int) -> tuple[float, int]:
    """(best time of `repeats` encodes, bytes) of one image as PNG with Pillow's `options`."""
    best = float("inf")
    for _ in range(repeats):
        buffer = io.BytesIO()
        start = time.perf_counter()
        image.save(buffer, format="PNG", **options)
        best = min(best, time.perf_counter() - start)
    return best, buffer.tell()


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be 1 or more")
    photos = [Image.fromarray(np.asarray(getattr(skimage_data, name)())).convert("RGB")
              .resize(args.size, Image.Resampling.BICUBIC) for name in PHOTOS]
    print(f"{len(photos)} photos at {args.size[0]}x{args.size[1]}, best of {args.repeats}:")
    print("| setting | seconds (all photos) | MB | x level 6 time |\n|---|---|---|---|")
    baseline = None
    for name, options in SETTINGS.items():
        seconds, size = map(sum, zip(*(encode_seconds(photo, options, args.repeats) for photo in photos)))
        baseline = baseline or seconds
        print(f"| {name} | {seconds:.3f} | {size / 1e6:.2f} | {seconds / baseline:.2f}x |")


if __name__ == "__main__":
    main()
