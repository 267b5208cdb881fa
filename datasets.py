"""Training patches from HDF5 as float tensors in [0, 1], and whole validation images as uint8 arrays."""
from __future__ import annotations

from pathlib import Path
import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from utils import benchmark_pairs


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


class PatchDataset(Dataset):
    """(lr, hr) patches from a preprocess.py file, C x p x p and C x P x P in [0, 1] (C = 1 for Y, 3 for
    YCbCr/RGB; p = P, or P / scale for a --lr-size file).

    By default the file is opened lazily in each DataLoader worker (an h5py handle must not cross a
    fork) and read one patch at a time, so no process holds it in memory: Holopix-sized files stay on
    disk. `in_memory` reads the whole file once instead (T91 is 50 MB): on a GPU, per-batch disk reads
    would otherwise take longer than the training step. Reading is deterministic; augmentation
    (`augment_pairs`) happens in the training loop, where its randomness can be replayed.
    """

    def __init__(self, path: str | Path, in_memory: bool = False) -> None:
        self.path, self.file = str(path), None
        with open_h5(path, ("lr", "hr")) as f:
            if len(f["lr"]) != len(f["hr"]):
                raise ValueError(f"{path}: {len(f['lr'])} lr but {len(f['hr'])} hr patches")
            self.length = len(f["lr"])
            self.attrs = dict(f.attrs)
            if in_memory:
                self.file = {"lr": f["lr"][()], "hr": f["hr"][()]}
        if self.length == 0:
            raise ValueError(f"{path}: holds no patches")

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
    Set5/Set14 ship, or HR images degraded with `blur_sigma` and MATLAB bicubic)."""
    if Path(source).is_dir():
        return list(benchmark_pairs(source, scale, blur_sigma))
    with open_h5(source, ("lr", "hr")) as f:
        if f.attrs.get("scale", scale) != scale:
            raise ValueError(f"{source}: made for scale {f.attrs['scale']}, not {scale}")
        stored = float(f.attrs.get("blur_sigma", 0.0))
        if abs(stored - blur_sigma) > 1e-9:  # its LR images are fixed: they cannot be made with another blur
            raise ValueError(f"{source}: its LR images were made with blur sigma {stored:g}, not {blur_sigma:g}")
        return [(str(f["hr"][key].attrs.get("name", key)), f["hr"][key][()], f["lr"][key][()])
                for key in sorted(f["hr"], key=int)]
