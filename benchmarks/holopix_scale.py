"""Preprocessing and loading at Holopix50k scale, on a synthetic set of 1280x720 JPEGs tiled from T91.

    python -m benchmarks.holopix_scale --image-count 200 --workers 2

1. Writes N Holopix-like images (<tmp>/train/left/*.jpg), then times `preprocess.py --holopix50k ...
   --preset holopix` and samples the summed RSS of its whole process tree: images/s, patches, file
   size, peak memory, and the patch count checked against the count computed independently.
2. Reads random patches from the file through train.py's loader (PatchDataset + DataLoader) by
   worker count, and times SRCNN 9-5-5 training steps on the same patches: what the loader delivers
   against what the model consumes.
3. Copies the first `--layout-patches` patch pairs into files of other HDF5 layouts (more patches per
   chunk, gzip, lzf) and times random single-patch reads in each, as training makes them: how the
   layout preprocess.py uses (one uncompressed patch per chunk) was chosen. The file is in the page
   cache here, so this measures HDF5's own cost per read, not the disk's.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

import cli
from datasets import PatchDataset
from models import build_model
from utils import list_images, load_image

ROOT = Path(__file__).resolve().parent.parent

WIDTH, HEIGHT = 1280, 720


def make_images(folder: Path, count: int, tiles: list[np.ndarray]) -> None:
    """1280x720 RGB images, each a different mosaic of T91 crops (or noise if T91 is absent)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in tqdm(range(count), desc="synthetic images", unit="img"):
        canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        for y in range(0, HEIGHT, 120):
            for x in range(0, WIDTH, 160):
                tile = tiles[rng.integers(len(tiles))] if tiles else rng.integers(0, 256, (120, 160, 3), np.uint8)
                ty, tx = rng.integers(tile.shape[0] - 119), rng.integers(tile.shape[1] - 159)
                canvas[y:y + 120, x:x + 160] = tile[ty:ty + 120, tx:tx + 160]
        Image.fromarray(canvas).save(folder / f"{i:05d}.jpg", quality=90)


def preprocess(root: Path, output: Path, workers: int) -> dict:
    command = [sys.executable, str(ROOT / "preprocess.py"), "--holopix50k", str(root), "--split", "train",
               "--views", "left", "--preset", "holopix", "--scale", "3", "--workers", str(workers), "--output", str(output)]
    start, peak = time.perf_counter(), 0
    proc = psutil.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    if proc.returncode:
        raise SystemExit(f"error: preprocess.py failed ({proc.returncode})")
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak / 2 ** 20}


def loader_rate(path: Path, workers: int, batch: int = 64, batches: int = 100) -> float:
    dataset = PatchDataset(path)
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers,
                        sampler=RandomSampler(dataset, num_samples=batch * batches, generator=torch.Generator().manual_seed(0)))
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start = time.perf_counter()
    count = sum(len(lr) for lr, _ in iterator)
    return count / (time.perf_counter() - start)


LAYOUTS = {  # name: (patches per chunk, compression, compression options)
    "1 patch/chunk, none (preprocess.py)": (1, None, None),
    "1 patch/chunk, gzip 4": (1, "gzip", 4),
    "1 patch/chunk, lzf": (1, "lzf", None),
    "16 patches/chunk, none": (16, None, None),
    "64 patches/chunk, none": (64, None, None),
    "64 patches/chunk, gzip 4": (64, "gzip", 4),
}


def layout_rates(source: Path, folder: Path, patches: int, reads: int = 2000) -> dict[str, tuple[float, float]]:
    """{layout: (bytes per patch pair on disk, random single-patch-pair reads per second)}."""
    import h5py
    with h5py.File(source) as f:
        lr, hr = f["lr"][:patches], f["hr"][:patches]
    order = np.random.default_rng(0).integers(0, len(lr), reads)
    results = {}
    for i, (name, (per_chunk, compression, options)) in enumerate(LAYOUTS.items()):
        path = folder / f"layout{i}.h5"
        with h5py.File(path, "w") as f:
            for key, data in (("lr", lr), ("hr", hr)):
                f.create_dataset(key, data=data, chunks=(per_chunk, *data.shape[1:]), compression=compression,
                                 compression_opts=options)
        with h5py.File(path) as f:  # as PatchDataset reads: one index at a time
            start = time.perf_counter()
            for index in order:
                f["lr"][index], f["hr"][index]
            rate = reads / (time.perf_counter() - start)
        results[name] = (path.stat().st_size / len(lr), rate)
    return results


def model_rate(side: int, batch: int = 16, steps: int = 5) -> float:
    model = build_model("9-5-5")
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.rand(batch, 1, side, side)
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        loss = torch.mean((model(x) - x) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return batch * steps / (time.perf_counter() - start)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--image-count", type=int, default=200, help="synthetic 1280x720 images to make")
    cli.add_workers(parser, "preprocess.py worker processes", default=2)
    parser.add_argument("--loader-workers", type=int, nargs="+", default=[0, 1, 2, 4], help="DataLoader worker counts to time")
    parser.add_argument("--layout-patches", type=int, default=5000, help="patch pairs in each layout comparison file")
    cli.add_data(parser)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    t91 = args.data / "T91"  # tiles of real images; noise where it is absent
    tiles = [im for im in (load_image(p) for p in list_images(t91)) if im.ndim == 3 and min(im.shape[:2]) >= 120 and im.shape[1] >= 160] \
        if t91.is_dir() else []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "holo"
        make_images(root / "train" / "left", args.image_count, tiles)
        output = Path(tmp) / "holo.h5"
        stats = preprocess(root, output, args.workers)
        import h5py
        with h5py.File(output) as f:
            patches = len(f["hr"])
        expected = args.image_count * len(range(0, HEIGHT - 120 + 1, 78)) * len(range(0, (WIDTH // 3 * 3) - 120 + 1, 78))
        print(f"preprocess: {args.image_count} images of {WIDTH}x{HEIGHT}, {args.workers} workers: "
              f"{args.image_count / stats['seconds']:.1f} images/s, {patches} patches (expected {expected}, "
              f"{'ok' if patches == expected else 'MISMATCH'}), {output.stat().st_size / 2 ** 20:.0f} MB, "
              f"peak RSS {stats['peak_rss_mb']:.0f} MB (whole process tree)")
        consumed = model_rate(120)
        print(f"model: SRCNN 9-5-5 training on 120x120 patches consumes {consumed:.0f} patches/s "
              f"({torch.get_num_threads()} threads)")
        for workers in args.loader_workers:
            rate = loader_rate(output, workers)
            print(f"loader: {workers} workers deliver {rate:.0f} patches/s ({rate / consumed:.1f}x what the model consumes)")
        print(f"\n| HDF5 layout ({min(args.layout_patches, patches)} patch pairs) | KB per pair | random pair reads/s |")
        print("|---|---|---|")
        for name, (size, rate) in layout_rates(output, Path(tmp), args.layout_patches).items():
            print(f"| {name} | {size / 1024:.1f} | {rate:.0f} |")


if __name__ == "__main__":
    main()
