"""Writing and reading training checkpoints so that no crash, kill or full disk loses a run: every file
goes through files.atomic_write (temporary name, fsync, rename), and the checkpoint it replaces is kept
as previous-<name> until the new one is complete."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from files import WriteError, atomic_write, previous_path
from utils import first_line

CHECKPOINT_FILES = ("last.pth", "previous-last.pth", "best.pth")  # what train.py keeps in a run folder
RESUME_KEYS = {"model", "optimizer", "scheduler", "scaler", "rng", "epoch", "step", "best_psnr"}  # what --resume reads


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run folder can be resumed: last.pth, or the previous-last.pth a kill between two renames
    can leave alone."""
    return any((run_dir / name).exists() for name in ("last.pth", "previous-last.pth"))


def save_atomic(obj: dict, path: Path, keep_previous: bool = False) -> None:
    """torch.save that never leaves a half-written file; with `keep_previous`, the file it replaces stays
    as previous-<name>. A failed write (torch reports a full disk as a RuntimeError) is a one-line exit."""
    try:
        with atomic_write(path, keep_previous) as tmp:
            torch.save(obj, tmp)
    except WriteError as err:
        raise SystemExit(f"error: {err}") from None


def load_checkpoint(path: Path, *, reader: str) -> dict:
    """last.pth, or previous-last.pth with a warning when last.pth is missing, empty or corrupt (`reader`:
    who asked, named in the error when neither is readable)."""
    previous = previous_path(path)
    for candidate in (path, previous):
        try:
            state = torch.load(candidate, map_location="cpu", weights_only=True)  # RNG states must stay on the CPU
        except FileNotFoundError:
            continue
        except Exception as err:  # a truncated, empty or garbled file
            print(f"warning: {candidate} is unreadable ({first_line(err)}); trying {previous.name}", file=sys.stderr)
            continue
        if isinstance(state, dict) and RESUME_KEYS <= state.keys():
            return state
        print(f"warning: {candidate} is not a training checkpoint; trying {previous.name}", file=sys.stderr)
    raise SystemExit(f"error: {reader}: no readable {path} or {previous}")


def same_file(key: str, recorded: dict, current: dict) -> bool:
    """Whether `key` of a checkpoint's recorded args names the file `current` does: the same file written
    another way (./data, a link), or at the same place beside the run folder, so that a run folder copied
    with its patch file into another checkout (an archived run continued) still resumes."""
    if os.path.realpath(recorded[key]) == os.path.realpath(current[key]):
        return True
    beside = lambda run_args: os.path.relpath(os.path.abspath(run_args[key]), os.path.abspath(run_args["output_dir"]))
    # checkpoints from before the flag was called --output-dir recorded outputs_dir: their real path alone counts
    return "output_dir" in recorded and beside(recorded) == beside(current)
