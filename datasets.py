"""Training patches from HDF5 as float tensors in [0, 1], and whole validation images as uint8 arrays."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from utils import MIN_MEASURED_SIDE, benchmark_pairs, first_line


def open_h5(path: str | Path, required: tuple[str, ...]) -> h5py.File:
    """Open an HDF5 file made by preprocess.py, with a clear error when it is not one."""
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as err:
        raise ValueError(f"{path}: not an HDF5 file ({err})") from None
    missing = [name for name in required if name not in f]
    if missing:
        f.close()
        raise ValueError(f"{path}: no {' or '.join(missing)} in this HDF5 file; make it with preprocess.py")
    return f


def patch_shape(side: int, channels: int) -> tuple[int, ...]:
    """How a patch is stored: side x side for Y, channels x side x side for YCbCr or RGB."""
    return (side, side) if channels == 1 else (channels, side, side)


PATCH_ATTRIBUTES = ("scale", "blur_sigma", "color", "patch_size", "lr_patch_size", "lr_size")  # preprocess.py writes them
PROVENANCE_ATTRIBUTES = ("arguments", "source", "preset")  # how a file was asked for (paths, a preset's name), not what it holds


def made_with(attrs: dict) -> dict[str, str]:
    """The settings a patch file was made with, as text: the same file made again elsewhere matches."""
    return {key: str(value) for key, value in sorted(attrs.items()) if key not in PROVENANCE_ATTRIBUTES}


def sample_digest(f: h5py.File, path: str | Path, samples: int = 8) -> str:
    """sha256 of a few pairs spread over the file, not the whole file: one made again from the same images
    with the same settings matches; one from other images (Holopix50k's other view) does not."""
    digest = hashlib.sha256()
    try:
        for index in sorted({round(i * (len(f["lr"]) - 1) / (samples - 1)) for i in range(samples)}):
            digest.update(f["lr"][index].tobytes() + f["hr"][index].tobytes())
    except OSError as err:  # a checksum failure in a sampled chunk, before verify_checksums reads them all
        raise corrupt(path, err) from None
    return digest.hexdigest()


def corrupt(path: str | Path, err: OSError) -> ValueError:
    """The one-line error for a patch file whose checksums fail (HDF5 raises OSError)."""
    return ValueError(f"{path}: its patch data is corrupt ({first_line(err)}); make it again")


def check_patches(f: h5py.File, path: str | Path) -> None:
    """Refuse, before any training, a patch file that would train to nonsense: attributes missing, patches
    that are not uint8, LR and HR counts or shapes that do not pair up as the attributes say."""
    missing = [name for name in PATCH_ATTRIBUTES if name not in f.attrs]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} attribute(s): not a preprocess.py patch file")
    lr, hr, attrs = f["lr"], f["hr"], f.attrs
    if lr.dtype != np.uint8 or hr.dtype != np.uint8:
        raise ValueError(f"{path}: patches are {lr.dtype}/{hr.dtype}, not uint8 as preprocess.py writes them")
    if len(lr) != len(hr) or len(lr) == 0:
        raise ValueError(f"{path}: {len(lr)} lr and {len(hr)} hr patches" + ("" if len(lr) else "; it holds none"))
    channels = 1 if attrs["color"] == "y" else 3
    lr_side, hr_side = int(attrs["lr_patch_size"]), int(attrs["patch_size"])
    lr_ok = lr_side * (int(attrs["scale"]) if attrs["lr_size"] else 1) == hr_side
    if not lr_ok or lr.shape[1:] != patch_shape(lr_side, channels) or hr.shape[1:] != patch_shape(hr_side, channels):
        raise ValueError(f"{path}: lr patches {lr.shape[1:]} and hr patches {hr.shape[1:]} do not match its attributes "
                         f"(patch_size {hr_side}, lr_patch_size {lr_side}, color {attrs['color']}, scale {attrs['scale']})")


def verify_checksums(f: h5py.File, path: str | Path, keep: bool) -> dict[str, np.ndarray] | None:
    """Read every patch once, so that HDF5 checks each chunk's Fletcher-32 checksum (preprocess.py stores
    them): flipped bytes stop the run now, not mid-epoch. With `keep`, returns the arrays (read whole);
    otherwise reads in blocks, so a file larger than memory stays on disk. Files without checksums (made
    before preprocess.py stored them) are read unverified, with a warning."""
    if not all(f[name].fletcher32 for name in ("lr", "hr")):
        print(f"warning: {path} has no checksums (an older preprocess.py made it); its bytes are not verified",
              file=sys.stderr)
    try:
        if keep:
            return {name: f[name][()] for name in ("lr", "hr")}
        for name in ("lr", "hr"):
            for start in range(0, len(f[name]), 1024):
                f[name][start:start + 1024]  # reading is the check
        return None
    except OSError as err:
        raise corrupt(path, err) from None


class PatchDataset(Dataset):
    """(lr, hr) patches from a preprocess.py file, C x p x p and C x P x P in [0, 1] (C = 1 for Y, 3 for
    YCbCr/RGB; p = P, or P / scale for a --lr-size file).

    By default the file is opened lazily in each DataLoader worker (an h5py handle must not cross a
    fork) and read one patch at a time, so no process holds it in memory: Holopix-sized files stay on
    disk. `in_memory` reads the whole file once instead (T91 is 50 MB): on a GPU, per-batch disk reads
    would otherwise take longer than the training step. Reading is deterministic; augmentation
    (`augment_pairs`) happens in the training loop, where its randomness can be replayed. The file is
    checked first (check_patches), and with `verify` read once through its checksums (verify_checksums;
    under torchrun one rank does it for all).
    """

    def __init__(self, path: str | Path, in_memory: bool = False, verify: bool = True) -> None:
        self.path, self.file = str(path), None
        with open_h5(path, ("lr", "hr")) as f:
            self.attrs = dict(f.attrs)
            check_patches(f, path)
            self.length, self.digest = len(f["lr"]), sample_digest(f, path)
            self.file = verify_checksums(f, path, keep=in_memory) if in_memory or verify else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.file is None:
            self.file = h5py.File(self.path, "r")
        lr, hr = (torch.from_numpy(self.file[name][index]).float().div_(255) for name in ("lr", "hr"))
        if lr.dim() == 2:  # Y patches are stored without a channel axis
            lr, hr = lr.unsqueeze(0), hr.unsqueeze(0)
        return lr, hr

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A batch (DataLoader calls this when it exists). In memory, one fancy index per array is 3x
        faster than a call per patch; from disk, h5py's fancy indexing is slower, so patches are read
        one by one."""
        if not isinstance(self.file, dict):
            return [self[index] for index in indices]
        lr, hr = (torch.from_numpy(self.file[name][indices]).float().div_(255) for name in ("lr", "hr"))
        if lr.dim() == 3:
            lr, hr = lr.unsqueeze(1), hr.unsqueeze(1)
        return list(zip(lr, hr))


def augment_pairs(lr: torch.Tensor, hr: torch.Tensor, generator: torch.Generator, total: int | None = None,
                  start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One of the 8 flips/90-degree rotations per (lr, hr) pair of a batch, the same for both, drawn from
    `generator`. A rank holding pairs start..start+len(lr) of a global batch of `total` draws for the
    whole batch and keeps its part, so the split batch is augmented exactly as the whole one."""
    end = start + len(lr)
    turns = torch.randint(4, (total or end,), generator=generator)[start:end].tolist()
    flips = torch.randint(2, (total or end,), generator=generator)[start:end].tolist()
    pairs = [(torch.rot90(a, k, (-2, -1)), torch.rot90(b, k, (-2, -1))) for a, b, k in zip(lr, hr, turns)]
    pairs = [(a.flip(-1), b.flip(-1)) if flip else (a, b) for (a, b), flip in zip(pairs, flips)]
    return torch.stack([a for a, _ in pairs]), torch.stack([b for _, b in pairs])




def eval_pairs(source: str | Path, scale: int, blur_sigma: float = 0.0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Whole validation images as (name, hr, lr) uint8 arrays, what evaluate.evaluate_pairs scores:
    from a preprocess.py `--eval` HDF5 file, or a folder read by `benchmark_pairs` (*_HR/*_LR pairs as
    Set5/Set14 ship, or HR images degraded with `blur_sigma` and MATLAB bicubic). Every pair is checked
    to be measurable here, so that a bad validation set stops a training run before its first epoch."""
    pairs = list(benchmark_pairs(source, scale, blur_sigma)) if Path(source).is_dir() else eval_file_pairs(source, scale, blur_sigma)
    if not pairs:
        raise ValueError(f"{source}: no HR images to evaluate (only *_LR images?)")
    for name, hr, lr in pairs:
        if hr.dtype != np.uint8 or lr.dtype != np.uint8:
            raise ValueError(f"{source}: {name}: images are {hr.dtype}/{lr.dtype}, not uint8")
        if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale) or hr.shape[2:] != lr.shape[2:]:
            raise ValueError(f"{source}: {name}: HR {hr.shape} is not {scale}x its LR {lr.shape}")
        if min(hr.shape[:2]) - 2 * scale < MIN_MEASURED_SIDE:
            raise ValueError(f"{source}: {name}: {hr.shape[1]}x{hr.shape[0]} is too small to measure at x{scale} "
                             f"(SSIM needs {MIN_MEASURED_SIDE + 2 * scale} pixels a side)")
    return pairs


def eval_file_pairs(source: str | Path, scale: int, blur_sigma: float) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The pairs of a preprocess.py --eval file, whose stored LR images must have been made with `blur_sigma`."""
    with open_h5(source, ("lr", "hr")) as f:
        if not all(isinstance(f[name], h5py.Group) for name in ("lr", "hr")):
            raise ValueError(f"{source}: holds training patches, not whole images: make validation files with "
                             "preprocess.py --eval")
        if f.attrs.get("scale", scale) != scale:
            raise ValueError(f"{source}: made for scale {f.attrs['scale']}, not {scale}")
        stored = float(f.attrs.get("blur_sigma", 0.0))
        if abs(stored - blur_sigma) > 1e-9:  # its LR images are fixed: they cannot be made with another blur
            raise ValueError(f"{source}: its LR images were made with blur sigma {stored:g}, not {blur_sigma:g}")
        if sorted(f["hr"]) != sorted(f["lr"]):
            raise ValueError(f"{source}: its lr and hr groups hold different images")
        return [(str(f["hr"][key].attrs.get("name", key)), f["hr"][key][()], f["lr"][key][()])
                for key in sorted(f["hr"], key=int)]
