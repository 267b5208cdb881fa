"""Reading train.py run folders back: TensorBoard scalars, the order of a model's archived runs, and
epochs from steps (batch sizes differ between runs)."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalar(run: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) pairs, one per step (the last written, should a resumed run have logged a step twice)."""
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return []
    return sorted({e.step: e.value for e in events.Scalars(tag)}.items())


def started(run: Path) -> int:
    """When a run began: the earliest timestamp in its event file names (events.out.tfevents.TIME.HOST)."""
    return min(int(p.name.split(".")[3]) for p in run.glob("events.out.tfevents.*"))


def stages(folder: Path) -> list[Path]:
    """The train.py runs a model folder holds: itself, or its subfolders in the order they ran."""
    if any(folder.glob("events.out.tfevents.*")):
        return [folder]
    return sorted((p for p in folder.iterdir() if p.is_dir() and any(p.glob("events.out.tfevents.*"))), key=started)


def best_meta(run: Path) -> dict:
    """The record of the run's best.pth: network, scale, validation set, step and (fractional) epoch."""
    if not (run / "best.pth").is_file():
        raise ValueError(f"{run}: no best.pth (a run stopped before its first validation?)")
    return torch.load(run / "best.pth", map_location="cpu", weights_only=True)["meta"]


def steps_per_epoch(run: Path) -> float:
    """From the run's best.pth, which records both its step and its (fractional) epoch."""
    meta = best_meta(run)
    return meta["step"] / meta["epoch"]


def clock_curve(run: Path) -> list[dict]:
    """One row per validation: step, training minutes so far (train.py's time/train_seconds, summed over
    --resume sessions, validation not counted), validation PSNR."""
    seconds, validations = dict(read_scalar(run, "time/train_seconds")), read_scalar(run, "val/psnr")
    if not seconds:
        raise ValueError(f"{run}: no time/train_seconds scalar (a train.py run from before the clock was logged?)")
    if any(step not in seconds or math.isnan(seconds[step]) for step, _ in validations):
        raise ValueError(f"{run}: some validations have no training clock (resumed from a checkpoint older than it)")
    return [{"step": step, "minutes": round(seconds[step] / 60, 2), "psnr": round(psnr, 4)} for step, psnr in validations]


def first_reaching(rows: list[dict], target: float) -> dict | None:
    """The first row of a clock_curve at or above the target PSNR."""
    return next((row for row in rows if row["psnr"] >= target), None)
