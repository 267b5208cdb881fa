"""Cut a folder of images (or a Holopix50k split) into an HDF5 file of LR/HR patches for train.py.

Each image is modcropped, optionally Gaussian-blurred, MATLAB-bicubic downscaled by --scale and
upscaled back (SRCNN's input is the bicubic image; FSRCNN's, with --lr-size, the LR image); both are
converted to the Y channel of MATLAB's rgb2ycbcr (or, with --channels 3, to YCbCr or RGB) and cut
into --patch-size patches every --stride pixels. With --downscale, each image is also used shrunk by
each factor (MATLAB bicubic) as the FSRCNN paper's data augmentation does. With --degradation mix,
every patch gets its own degradation drawn from degradations.MIX (resize kernel, blur, JPEG; seeded by
--seed and the image's name, recorded per patch in the file's `degradations` dataset); --mix-kernels
weights the kernels, --mix-blur-probability and --mix-jpeg-probability how often a blur and JPEG are drawn.

    python preprocess.py --images data/T91 --scale 3 --preset paper
    python preprocess.py --images data/T91 --scale 3 --lr-size                 # for FSRCNN
    python preprocess.py --images data/T91 --scale 3 --downscale 0.9 0.8 0.7 0.6  # 3.2x the patches
    python preprocess.py --images data/T91 --scale 3 --channels 3 --color rgb  # colour SRCNN
    python preprocess.py --images data/T91 data/SunHays80/train --scale 3 --degradation mix  # the robust weights'
    python preprocess.py --images data/Set5/x3 --scale 3 --eval
    python preprocess.py --holopix50k /data/Holopix50k --split train --preset holopix --max-images 5000

Without --output the file is output/<set>_x<scale>[...].h5, named by default_output().
"""
from __future__ import annotations

import argparse
import errno
import json
import multiprocessing
import multiprocessing.pool
import os
import shutil
import signal
import sys
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import islice
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

import cli
import degradations
from datasets import patch_shape
from files import check_writable, fsync_path, hold_lock, make_folder, write_failure
from utils import (MAX_PIXELS, ImageError, benchmark_pairs, degrade, imresize, list_images, load_image, modcrop, to_color,
                   to_uint8, upscale_bicubic)

PRESETS = {  # patch size, stride, blur sigma
    "paper": (33, 14, 0.0),  # SRCNN paper, Section 4.1 (T91, 33x33 sub-images, stride 14)
    "holopix": (120, 78, 0.73),  # the reference setup on Holopix50k
}


def holopix_images(root: Path, split: str, views: list[str]) -> list[Path]:
    """Images of a Holopix50k split: <root>/<split>/<view>/*.jpg."""
    folders = [root / split / view for view in views]
    absent = [str(f) for f in folders if not f.is_dir()]
    if absent:
        raise SystemExit(f"error: {', '.join(absent)}: not found; expected <root>/{{train,val,test}}/{{left,right}}/")
    return sorted(p for folder in folders for p in folder.glob("*.jpg"))


def cut_patches(image: np.ndarray, size: int, stride: int) -> np.ndarray:
    """All size x size windows whose top-left corner lies on the stride grid, as N x size x size (x C)."""
    h, w = image.shape[:2]
    corners = [(y, x) for y in range(0, h - size + 1, stride) for x in range(0, w - size + 1, stride)]
    if not corners:
        return np.empty((0, size, size) + image.shape[2:], image.dtype)
    return np.stack([image[y:y + size, x:x + size] for y, x in corners])


def patches_of(path: Path, scale: int, size: int, stride: int, blur_sigma: float, lr_size: bool,
               color: str = "y", max_pixels: int = MAX_PIXELS, downscales: tuple[float, ...] = (),
               mix_seed: int | None = None, mix: dict = degradations.MIX) -> tuple[Path, object]:
    """(path, (lr, hr) uint8 patches[, their degradations]) for one image, or (path, reason) when it must be skipped.

    The LR patches are cut from the bicubic-upscaled image (SRCNN's input), or with `lr_size` from
    the LR image itself (FSRCNN's): size // scale pixels on a stride // scale grid, each matched to
    the HR patch it covers. Patches are N x P x P for Y, N x 3 x P x P for YCbCr or RGB. Each factor
    in `downscales` adds the patches of the image shrunk by it (factors too small for a patch add none).
    With `mix_seed`, each patch is degraded its own way, drawn from `mix` (mixed_patches), and their names
    come third.
    """
    try:
        image = load_image(path, max_pixels)
    except ImageError as err:
        return path, str(err)

    def cut(image: np.ndarray, side: int, step: int) -> np.ndarray:
        return as_patches(cut_patches(to_uint8(to_color(image, color)), side, step), color)

    pairs = []
    for index, factor in enumerate((1.0, *downscales)):
        hr = modcrop(image if factor == 1 else imresize(image, factor), scale)
        if min(hr.shape[:2]) < size:
            if factor == 1:
                return path, f"{path}: {hr.shape[1]}x{hr.shape[0]} is smaller than the {size}x{size} patch size"
            continue
        if mix_seed is not None:  # one stream per image and factor: the same patches in any worker, on any resume
            rng = np.random.default_rng([mix_seed, zlib.crc32(path.name.encode()), index])
            lr, hr_patches, names = mixed_patches(hr, scale, size, stride, lr_size, rng, mix)
            pairs.append((as_patches(np.stack([to_uint8(to_color(p, color)) for p in lr]), color),
                          as_patches(np.stack([to_uint8(to_color(p, color)) for p in hr_patches]), color),
                          np.array(names, dtype=object)))
            continue
        lr, bicubic = degrade(hr, scale, blur_sigma)
        if not lr_size:
            pairs.append((cut(bicubic, size, stride), cut(hr, size, stride)))
        else:
            small, step = size // scale, max(1, stride // scale)
            pairs.append((cut(lr, small, step), cut(hr, small * scale, step * scale)))
    return path, tuple(np.concatenate(side) for side in zip(*pairs))


def as_patches(patches: np.ndarray, color: str) -> np.ndarray:
    """N x P x P x C patches as preprocess.py stores them: N x P x P for Y, N x C x P x P otherwise."""
    return patches[..., 0] if color == "y" else patches.transpose(0, 3, 1, 2)


def mixed_patches(hr: np.ndarray, scale: int, size: int, stride: int, lr_size: bool,
                  rng: np.random.Generator, mix: dict = degradations.MIX
                  ) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(LR patches, HR patches, degradation names) of a modcropped HR image, each patch degraded its own way
    (degradations.sample). The patch's region plus a margin of 8 LR pixels on each side (mirrored past
    the image's edges) is degraded, and upscaled for SRCNN, then its centre kept: no patch sees the
    border of its own region, where resize kernels and JPEG blocks would behave unlike a whole photo's."""
    margin = 8 * scale
    hr_side, step = (size // scale * scale, max(1, stride // scale) * scale) if lr_size else (size, stride)
    region = -(-(hr_side + 2 * margin) // scale) * scale  # a multiple of the scale, like any modcropped image
    padded = np.pad(hr, [(margin, region), (margin, region)] + [(0, 0)] * (hr.ndim - 2), mode="symmetric")
    lr_patches, hr_patches, names = [], [], []
    for y in range(0, hr.shape[0] - hr_side + 1, step):
        for x in range(0, hr.shape[1] - hr_side + 1, step):
            degradation = degradations.sample(rng, mix)
            lr = degradations.apply(padded[y:y + region, x:x + region], scale, degradation)
            if lr_size:
                start, side = margin // scale, hr_side // scale
                lr_patches.append(lr[start:start + side, start:start + side])
            else:
                lr_patches.append(upscale_bicubic(lr, scale)[margin:margin + hr_side, margin:margin + hr_side])
            hr_patches.append(hr[y:y + hr_side, x:x + hr_side])
            names.append(str(degradation))
    return lr_patches, hr_patches, names


def patch_datasets(out: h5py.File, lr_side: int, hr_side: int, channels: int, mixed: bool) -> None:
    """lr, hr, sources, source_patches (and, for mixed degradations, each patch's degradation): resizable
    datasets, created empty unless the file being resumed has them."""
    if mixed and "degradations" not in out:
        out.create_dataset("degradations", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype())
    if "lr" not in out:
        for name, side in (("lr", lr_side), ("hr", hr_side)):
            shape = patch_shape(side, channels)
            out.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=np.uint8, chunks=(1, *shape),
                               fletcher32=True)  # per-patch checksums, checked on every read
        out.create_dataset("sources", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype())
        out.create_dataset("source_patches", shape=(0,), maxshape=(None,), dtype=np.int64)


SPARE_BYTES = 4 << 20  # kept free beyond each write, for HDF5's own metadata and the final flush


def ensure_space(out: h5py.File, needed: int) -> None:
    """Stop, before writing, when the disk cannot take `needed` more bytes: HDF5 crashes the process
    (a segmentation fault) instead of raising when the disk fills under it."""
    free = shutil.disk_usage(Path(out.filename).resolve().parent).free
    if free < needed * 1.1 + SPARE_BYTES:
        raise OSError(errno.ENOSPC, f"No space left on device ({free / 1e6:.1f} MB free, the next image needs "
                                    f"{needed / 1e6:.1f} MB)")


def append(dataset: h5py.Dataset, rows: np.ndarray) -> None:
    start = len(dataset)
    dataset.resize(start + len(rows), axis=0)
    dataset[start:] = rows


def in_order(pool: multiprocessing.pool.Pool, work: Callable, items: list, window: int) -> Iterator:
    """pool.imap(work, items) with at most `window` results in flight: Pool.imap runs ahead without
    limit, so a writer slower than the workers (a slow disk) would let finished images pile up in memory."""
    pending = deque()
    for item in items:
        pending.append(pool.apply_async(work, (item,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def source_name(path: Path, roots: list[Path]) -> str:
    """How the file records an image: its path below its --images folder (prefixed by that folder's name
    when there are several), or the path itself."""
    for root in roots:
        if path.is_relative_to(root):
            relative = str(path.relative_to(root))
            return f"{root.name}/{relative}" if len(roots) > 1 else relative
    return str(path)


def write_patches(out: h5py.File, results: Iterable[tuple[Path, object]], roots: list[Path],
                  progress: tqdm) -> tuple[int, list[str]]:
    """Append every image's patches as it arrives, then its name and count, then flush: memory stays one
    image deep, and a killed run leaves a file that --resume can trust up to its last listed image."""
    lr_set, hr_set, sources, counts = (out[name] for name in ("lr", "hr", "sources", "source_patches"))
    skipped = []
    for path, result in results:
        progress.update()
        if isinstance(result, str):
            skipped.append(result)
            tqdm.write(f"warning: {result}; skipped", file=sys.stderr)
            continue
        lr, hr, *names = result
        ensure_space(out, lr.nbytes + hr.nbytes)
        append(lr_set, lr)
        append(hr_set, hr)
        if names:
            append(out["degradations"], names[0])
        append(sources, np.array([source_name(path, roots)], dtype=object))
        append(counts, np.array([len(lr)]))
        out.flush()
        progress.set_postfix(patches=len(lr_set))
    return len(lr_set), skipped


def resume_point(out: h5py.File, paths: list[Path], roots: list[Path]) -> int:
    """Trim a partial file to its last fully written image; return how many of `paths` it covers."""
    lr_set, hr_set, sources, counts = (out[name] for name in ("lr", "hr", "sources", "source_patches"))
    done = min(len(sources), len(counts))
    names = [s.decode() if isinstance(s, bytes) else s for s in sources[:done]]
    relative = [source_name(p, roots) for p in paths]
    position = {name: i for i, name in enumerate(relative)}
    if any(name not in position for name in names) or [position[n] for n in names] != sorted(position[n] for n in names):
        raise ValueError(f"{out.filename}: its images are not the start of this run's image list; start afresh")
    patches = int(counts[:done].sum())
    per_patch = [lr_set, hr_set] + ([out["degradations"]] if "degradations" in out else [])
    for dataset, length in [(d, patches) for d in per_patch] + [(sources, done), (counts, done)]:
        dataset.resize(length, axis=0)
    return position[names[-1]] + 1 if names else 0


def write_eval(out: h5py.File, folder: Path, scale: int, blur_sigma: float, progress: tqdm,
               mix_seed: int | None = None, mix: dict = degradations.MIX,
               max_images: int | None = None) -> tuple[int, list[str]]:
    """Whole images for validation: groups lr/<i> and hr/<i> of uint8 images (RGB or gray), each with its name.
    With `mix_seed`, each image's LR is made by its own draw from `mix`, kept as an attribute; with
    `max_images`, only the first ones (--max-images)."""
    count = 0
    for name, hr, lr in islice(benchmark_pairs(folder, scale, blur_sigma), max_images):
        progress.update()
        if mix_seed is not None:
            degradation = degradations.sample(np.random.default_rng([mix_seed, zlib.crc32(name.encode())]), mix)
            lr = degradations.apply(hr, scale, degradation)
        ensure_space(out, hr.nbytes + lr.nbytes)
        for group, image in (("lr", lr), ("hr", hr)):
            out.create_dataset(f"{group}/{count}", data=image).attrs["name"] = name
        if mix_seed is not None:
            out[f"lr/{count}"].attrs["degradation"] = str(degradation)
        count += 1
    return count, []


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, nargs="+", metavar="FOLDER",
                        help="folder(s) of images (searched recursively)")
    source.add_argument("--holopix50k", type=Path, metavar="ROOT", help="Holopix50k root folder")
    parser.add_argument("--split", choices=["train", "val", "test"], default="train", help="Holopix50k split")
    parser.add_argument("--views", nargs="+", choices=["left", "right"], default=["left", "right"],
                        help="Holopix50k views")
    cli.add_scale(parser)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                        help="patch size, stride and blur: paper = 33/14/none, holopix = 120/78/0.73")
    parser.add_argument("--patch-size", type=int, help="overrides the preset")
    parser.add_argument("--stride", type=int, help="overrides the preset")
    parser.add_argument("--blur-sigma", type=float, help="Gaussian blur before downscaling (0 = none); overrides the preset")
    parser.add_argument("--max-images", type=int, help="use only the first N images (sorted by path; default: all)")
    parser.add_argument("--lr-size", action="store_true",
                        help="LR patches at LR size (for FSRCNN), not bicubic-upscaled (for SRCNN)")
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3], help="1: Y only (the paper's main setting)")
    parser.add_argument("--color", default="ycbcr", choices=["ycbcr", "rgb"], help="colour space with --channels 3")
    parser.add_argument("--downscale", type=float, nargs="+", default=[], metavar="FACTOR",
                        help="also use each image shrunk by these factors (the FSRCNN paper: 0.9 0.8 0.7 0.6)")
    parser.add_argument("--degradation", choices=["matlab", "mix"], default="matlab",
                        help="matlab: the SR protocol's (blur if asked, MATLAB bicubic); mix: every patch its own, "
                             "drawn from degradations.MIX (the robust weights' training data)")
    parser.add_argument("--mix-kernels", nargs="+", choices=degradations.KERNELS, metavar="KERNEL",
                        help="--degradation mix draws the resize kernel uniformly from this list: name one twice to "
                        "draw it twice as often, up to 9 times (of %(choices)s; default: each once)")
    parser.add_argument("--mix-blur-probability", type=float, default=degradations.MIX["blur_probability"],
                        metavar="P", help="--degradation mix blurs a patch (sigma drawn from "
                        f"{degradations.MIX['blur_sigma']}) with this probability")
    parser.add_argument("--mix-jpeg-probability", type=float, default=degradations.MIX["jpeg_probability"],
                        metavar="P", help="--degradation mix compresses a patch as JPEG (quality drawn from "
                        f"{degradations.MIX['jpeg_quality']}) with this probability")
    parser.add_argument("--seed", type=int, default=123, help="seeds --degradation mix's draws")
    parser.add_argument("--eval", action="store_true", help="store whole images for validation instead of patches")
    parser.add_argument("--output", type=Path, help="the HDF5 file (default: output/<source>_x<scale>[_<settings>][_eval].h5)")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="refuse larger images (decompression bombs)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from its OUTPUT.partial file (same images and settings)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh, deleting an interrupted run's OUTPUT.partial file (a finished OUTPUT is "
                             "replaced only once the new one is complete)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes cutting images (default: the CPU count)")
    return parser


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments, with the preset's patch size, stride and blur filled in and every conflict refused."""
    args = parser.parse_args()
    size, stride, blur_sigma = PRESETS[args.preset]
    args.patch_size, args.stride = args.patch_size or size, args.stride or stride
    args.blur_sigma = blur_sigma if args.blur_sigma is None else args.blur_sigma
    if args.patch_size < 1 or args.stride < 1 or args.blur_sigma < 0 or args.workers < 1:
        parser.error("--patch-size, --stride and --workers must be positive, --blur-sigma not negative")
    if args.lr_size and args.patch_size < args.scale:
        parser.error(f"--patch-size {args.patch_size} is smaller than the scale")
    if any(not 0 < factor < 1 for factor in args.downscale):
        parser.error("--downscale factors must lie between 0 and 1")
    if args.eval and args.downscale:
        parser.error("--downscale augments training patches, not --eval images")
    if args.eval and args.holopix50k:
        parser.error("--eval reads a folder of images (--images)")
    if args.resume and args.overwrite:
        parser.error("--resume continues OUTPUT.partial, --overwrite deletes it: choose one")
    if args.resume and args.eval:
        parser.error("an --eval file is written whole: --overwrite starts an interrupted one afresh")
    if args.degradation == "mix" and args.blur_sigma:
        parser.error("--degradation mix draws each image's blur itself: not with a --blur-sigma (use --preset paper, "
                     "or --blur-sigma 0)")
    not_folders = [str(folder) for folder in args.images or [] if not folder.is_dir()]
    if not_folders:
        parser.error(f"--images {' '.join(not_folders)}: not a folder")
    if args.eval and len(args.images) > 1:
        parser.error("--eval reads one folder of images")
    args.roots = args.images or [args.holopix50k]
    args.color = "y" if args.channels == 1 else args.color
    probabilities = (args.mix_blur_probability, args.mix_jpeg_probability)
    if args.degradation != "mix" and (args.mix_kernels or probabilities != default_probabilities()):
        parser.error("--mix-kernels and --mix-*-probability set --degradation mix's draws: not with --degradation matlab")
    if not all(0 <= p <= 1 for p in probabilities):
        parser.error("--mix-blur-probability and --mix-jpeg-probability must lie between 0 and 1")
    counts = [(args.mix_kernels or degradations.KERNELS).count(kernel) for kernel in degradations.KERNELS]
    if max(counts) > 9:
        parser.error("--mix-kernels names a kernel at most 9 times (its count is one digit of the file name)")
    # in KERNELS order, whatever the order given: the same mix draws the same patches under the same name
    args.mix_kernels = [kernel for kernel, count in zip(degradations.KERNELS, counts) for _ in range(count)]
    args.mix = {**degradations.MIX, "kernels": args.mix_kernels, "blur_probability": args.mix_blur_probability,
                "jpeg_probability": args.mix_jpeg_probability}
    return args


def default_probabilities() -> tuple[float, float]:
    """degradations.MIX's (blur, JPEG) probabilities: the defaults of --mix-blur- and --mix-jpeg-probability."""
    return degradations.MIX["blur_probability"], degradations.MIX["jpeg_probability"]


def set_name(folder: Path, scale: int) -> str:
    """Set5/x3 -> Set5: a benchmark folder is named after its set, not its scale; SunHays80/train ->
    SunHays80_train (as holopix50k_train): a split folder after its set and split, not the split alone."""
    folder = folder.resolve()  # `--images train` run inside SunHays80/
    if folder.name == f"x{scale}":
        return folder.parent.name
    return f"{folder.parent.name}_{folder.name}" if folder.name in ("train", "val", "test") else folder.name


def patch_tag(args: argparse.Namespace) -> str:
    """_p<size>, _s<stride>, _blur<sigma> for each that is not the paper's (33x33 every 14 pixels, no blur),
    so that --preset holopix and --preset paper of one folder do not share a file name (an eval file: blur only)."""
    size, stride, blur_sigma = PRESETS["paper"]
    chosen = {"blur": (f"{args.blur_sigma:g}", f"{blur_sigma:g}")}
    if not args.eval:
        chosen = {"p": (str(args.patch_size), str(size)), "s": (str(args.stride), str(stride)), **chosen}
    return "".join(f"_{key}{value}" for key, (value, paper) in chosen.items() if value != paper)


def default_output(args: argparse.Namespace) -> Path:
    """output/<source>[+<source>...]_x<scale>[_p<size>][_s<stride>][_blur<sigma>][_lr][_<colour>][_downscaled]
    [_mix[-<counts>][-blur<P>][-jpeg<P>]][_eval].h5; the patch settings as patch_tag() names them; <counts>: how
    often --mix-kernels names each kernel, in degradations.KERNELS order, where that is not once each (the
    default); -blur<P>, -jpeg<P>: a probability that is not the default; <source>: set_name() of each --images
    folder, or holopix50k_<split>."""
    name = "+".join(set_name(root, args.scale) for root in args.images) if args.images else f"holopix50k_{args.split}"
    mix = ""
    if args.degradation == "mix":
        mix = "_mix" if args.mix_kernels == list(degradations.KERNELS) else \
            "_mix-" + "".join(str(args.mix_kernels.count(kernel)) for kernel in degradations.KERNELS)
        blur, jpeg = default_probabilities()
        mix += (f"-blur{args.mix_blur_probability:g}" if args.mix_blur_probability != blur else "") + \
            (f"-jpeg{args.mix_jpeg_probability:g}" if args.mix_jpeg_probability != jpeg else "")
    suffix = mix + "_eval" if args.eval else ("_lr" if args.lr_size else "") + (
        "" if args.color == "y" else f"_{args.color}") + ("_downscaled" if args.downscale else "") + mix
    return Path("output") / f"{name}_x{args.scale}{patch_tag(args)}{suffix}.h5"


def file_settings(args: argparse.Namespace) -> dict:
    """What the HDF5 attributes record, and what a resumed file must match."""
    settings = dict(scale=args.scale, blur_sigma=args.blur_sigma, mode="eval" if args.eval else "patches", color=args.color,
                    degradation=args.degradation)
    if not args.eval:
        lr_side, hr_side = patch_sides(args)
        settings.update(patch_size=hr_side, lr_patch_size=lr_side, stride=args.stride, lr_size=args.lr_size,
                        downscales=" ".join(map(str, args.downscale)))
    if args.degradation == "mix":
        settings.update(seed=args.seed, degradation_mix=json.dumps(args.mix))
    return settings


def patch_sides(args: argparse.Namespace) -> tuple[int, int]:
    """(LR, HR) patch side: equal for SRCNN, LR = patch-size // scale for --lr-size (FSRCNN)."""
    size = args.patch_size
    return (size // args.scale, size // args.scale * args.scale) if args.lr_size else (size, size)


def fill(out: h5py.File, args: argparse.Namespace, paths: list[Path], resuming: bool, progress: tqdm) -> tuple[int, list[str]]:
    """Write every image's patches (or, with --eval, the whole images) into the open partial file."""
    settings = file_settings(args)
    mix_seed = args.seed if args.degradation == "mix" else None
    if resuming:
        differ = [k for k, v in settings.items() if out.attrs.get(k) != v]
        if differ:
            raise ValueError(f"{out.filename}: made with other settings ({', '.join(differ)}); start afresh")
    out.attrs.update(settings, source=" ".join(map(str, args.roots)), preset=args.preset,
                     arguments=json.dumps({k: str(v) for k, v in vars(args).items()}))
    if args.eval:
        return write_eval(out, args.roots[0], args.scale, args.blur_sigma, progress, mix_seed, args.mix, args.max_images)
    patch_datasets(out, *patch_sides(args), args.channels, mixed=args.degradation == "mix")
    start = resume_point(out, paths, args.roots) if resuming else 0
    if resuming:
        print(f"resuming {out.filename}: {start} of {len(paths)} images done", file=sys.stderr)
    progress.update(start)
    work = partial(patches_of, scale=args.scale, size=args.patch_size, stride=args.stride, blur_sigma=args.blur_sigma,
                   lr_size=args.lr_size, color=args.color, max_pixels=args.max_pixels, downscales=tuple(args.downscale),
                   mix_seed=mix_seed, mix=args.mix)
    if args.workers == 1:
        return write_patches(out, map(work, paths[start:]), args.roots, progress)
    with multiprocessing.Pool(args.workers) as pool:
        return write_patches(out, in_order(pool, work, paths[start:], 2 * args.workers), args.roots, progress)


def write_file(args: argparse.Namespace, paths: list[Path], output: Path, total: int) -> tuple[int, list[str]]:
    """Fill OUTPUT.partial and rename it to OUTPUT once complete, holding a lock on OUTPUT all the while so
    that a second preprocess.py cannot touch it. A partial file is removed only by the process that created
    it, and only when it cannot be resumed; an interrupted run's partial file is never discarded unasked."""
    partial_path = output.with_name(output.name + ".partial")
    check_writable(output.parent)
    with hold_lock(output.with_name(f".{output.name}.lock"), str(output)):
        resuming = args.resume and partial_path.exists()
        if args.resume and not resuming:
            print(f"--resume: no {partial_path}; starting afresh", file=sys.stderr)
        if partial_path.exists() and not (args.resume or args.overwrite):
            how = "start it afresh with --overwrite" if args.eval else \
                "continue it with --resume, or start afresh with --overwrite"
            raise SystemExit(f"error: {partial_path} holds an interrupted run: {how}")
        return fill_partial(args, paths, partial_path, output, total, resuming)


def fill_partial(args: argparse.Namespace, paths: list[Path], partial_path: Path, output: Path, total: int,
                 resuming: bool) -> tuple[int, list[str]]:
    """fill() into the partial file, fsynced and renamed to `output` when complete. On a kill or a full disk
    a patch file keeps its partial file for --resume; on any other failure, one this run created is removed."""
    keep_partial = resuming  # a partial file the user asked to continue is theirs: never deleted on error
    progress = tqdm(total=total, desc=f"preprocess x{args.scale}", unit="img")
    try:
        with h5py.File(partial_path, "a" if resuming else "w") as out:
            count, skipped = fill(out, args, paths, resuming, progress)
        progress.close()
        if count == 0:
            raise SystemExit(f"error: no {'images' if args.eval else 'patches'} written: all {len(paths)} images were skipped")
        fsync_path(partial_path)  # on disk before its name says it is complete
        partial_path.replace(output)
        fsync_path(output.parent, directory=True)
        return count, skipped
    except KeyboardInterrupt:
        keep_partial = not args.eval  # --eval files are written whole: there is nothing to resume
        print(f"interrupted: {partial_path} holds the images done so far; continue with --resume"
              if keep_partial else f"interrupted: nothing written to {output}", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None  # a stop, as train.py's: weights.reproduce says how to go on
    except (ImageError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    except OSError as err:  # a full disk, an unwritable folder, a partial file a kill left unreadable
        keep_partial = keep_partial or (err.errno == errno.ENOSPC and not args.eval)
        hint = f"; {partial_path} is kept: free some space and continue with --resume" if keep_partial and not resuming else ""
        raise SystemExit(f"error: cannot write {output}: {write_failure(err, output.parent)}{hint}") from None
    finally:
        progress.close()
        if not keep_partial:
            partial_path.unlink(missing_ok=True)


@cli.one_line_errors()
def main() -> None:
    # A shell starts a background job with SIGINT ignored, and Python then raises no KeyboardInterrupt: a
    # kill -INT (or weights.reproduce passing on Ctrl-C) must still stop it cleanly, as it stops train.py
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parse_args(parser)
    paths = [path for root in args.images for path in list_images(root)] if args.images else \
        holopix_images(args.holopix50k, args.split, args.views)
    paths = paths[: args.max_images]
    if not paths:
        parser.error(f"{' '.join(map(str, args.roots))}: no images found (png, jpg, bmp, tif)")
    output = args.output or default_output(args)
    make_folder(output.parent)
    total = sum(not p.stem.endswith("_LR") for p in paths) if args.eval else len(paths)  # an LR file is no image of its own
    count, skipped = write_file(args, paths, output, total)
    print(f"wrote {output}: {count} {'images' if args.eval else 'patch pairs'} from {total - len(skipped)} images"
          f" ({len(skipped)} skipped), scale {args.scale}, blur sigma {args.blur_sigma}")


if __name__ == "__main__":
    main()
