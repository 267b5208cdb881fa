"""Writing and reading training checkpoints so that no crash, kill or full disk loses a run: every file
goes through a temporary name and a rename, and the checkpoint it replaces is kept until the new one is
complete."""
from __future__ import annotations

import sys
from pathlib import Path

import torch


def save_atomic(obj: dict, path: Path, keep_previous: bool = False) -> None:
    """torch.save through a temporary file, so a crash or a full disk never leaves a half-written file;
    with `keep_previous`, the file it replaces stays as previous-<name> until the new one is complete."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        if keep_previous and path.exists():
            path.replace(path.with_name(f"previous-{path.name}"))
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise SystemExit(f"error: cannot write {path}: {err.strerror or err}") from None


def load_checkpoint(path: Path) -> dict:
    """last.pth, or previous-last.pth with a warning when last.pth is missing or corrupt."""
    previous = path.with_name(f"previous-{path.name}")
    for candidate in (path, previous):
        try:
            return torch.load(candidate, map_location="cpu", weights_only=True)  # RNG states must stay on the CPU
        except FileNotFoundError:
            continue
        except Exception as err:  # a truncated or garbled file
            print(f"warning: {candidate} is unreadable ({str(err).splitlines()[0]}); trying {previous.name}", file=sys.stderr)
    raise SystemExit(f"error: --resume: no readable {path} or {previous}")
