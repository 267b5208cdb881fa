"""Train several of the shipped models side by side on one machine (a GPU, ideally) within a wall-clock
budget, each with a cosine schedule that ends inside it.

    python -m weights.train_all --data data --budget 1800 srcnn_x2 srcnn_x3 srcnn_x4 fsrcnn_x3

Each recipe makes its T91 patch file with preprocess.py where it is missing, then runs train.py. All
runs share the machine at once, so the speed each will get is measured, not guessed: every recipe
first trains 3 calibration epochs with the others running alongside (epochs 1-2 time the training,
epoch 3 adds a validation). Its real run then gets as many --epochs as fit before the deadline, so
the learning rate reaches zero in time. A run still going at the deadline gets SIGINT and leaves a
resumable checkpoint. Each run's folder is <output-dir>/<recipe>, its output <recipe>.log, and
summary.json lists the planned epochs and best validation PSNRs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

import cli
from checkpoints import CHECKPOINT_FILES
from files import make_folder, write_text
from models import load_model

ROOT = Path(__file__).resolve().parent.parent

# What every run shares: Adam with a cosine schedule, flips/rotations, batches of 64 from memory (a GPU
# step is faster than a per-patch disk read), a validation every 5 epochs.
COMMON = ["--lr-schedule", "cosine", "--augment", "--batch-size", "64", "--in-memory", "--workers", "0",
          "--eval-every", "5", "--image-every", "50", "--log-every", "500"]


DOWNSCALES = ["0.9", "0.8", "0.7", "0.6"]  # the FSRCNN paper's: each T91 image also shrunk by these


def recipes(scale: int) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (preprocess.py arguments, train.py arguments) for one scale. SRCNN and FSRCNN continue
    from the shipped weights with a fresh schedule (a warm restart) on T91 with downscale augmentation,
    SRCNN with the shipped weights' valid padding; the colour models start from scratch."""
    s = str(scale)
    return {
        f"srcnn_x{s}": (["--scale", s, "--downscale", *DOWNSCALES], ["--scale", s, "--padding", "valid", "--lr", "5e-4",
                                         "--init", f"weights/srcnn_x{s}.pth"]),
        f"fsrcnn_x{s}": (["--scale", s, "--lr-size", "--downscale", *DOWNSCALES],
                         ["--scale", s, "--arch", "fsrcnn", "--lr", "5e-4",
                          "--init", f"weights/fsrcnn_x{s}.pth"]),
        f"srcnn_x{s}_ycbcr": (["--scale", s, "--channels", "3", "--color", "ycbcr"], ["--scale", s, "--lr", "1e-3"]),
        f"srcnn_x{s}_rgb": (["--scale", s, "--channels", "3", "--color", "rgb"], ["--scale", s, "--lr", "1e-3"]),
    }


RECIPES = {name: recipe for scale in (2, 3, 4) for name, recipe in recipes(scale).items()}


def patch_file(preprocess_args: list[str], folder: Path) -> Path:
    """preprocess.py's default file name for these arguments, in `folder`."""
    scale = preprocess_args[preprocess_args.index("--scale") + 1]
    color = preprocess_args[preprocess_args.index("--color") + 1] if "--color" in preprocess_args else "y"
    suffix = ("_lr" if "--lr-size" in preprocess_args else "") + ("" if color == "y" else f"_{color}") + (
        "_downscaled" if "--downscale" in preprocess_args else "")
    return folder / f"T91_x{scale}{suffix}.h5"


class Run:
    """One train.py process whose stdout goes to a log, with the time each epoch line arrived."""

    def __init__(self, name: str, args: list[str], log: Path, threads: int) -> None:
        self.name, self.epoch_times = name, {}
        self.started = time.monotonic()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, args=(log,), daemon=True)
        self.reader.start()

    def _read(self, log: Path) -> None:
        with log.open("a") as out:
            for line in self.process.stdout:
                out.write(line)
                out.flush()
                match = re.match(r"epoch (\d+):", line)
                if match:
                    self.epoch_times[int(match[1])] = time.monotonic()

    def wait(self, deadline: float) -> int:
        """Wait until the process ends; at the deadline ask it to stop (SIGINT: it saves a checkpoint)."""
        while self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.reader.join()
        return self.process.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("recipes", nargs="+", choices=sorted(RECIPES), metavar="RECIPE",
                        help=f"any of: {', '.join(sorted(RECIPES))}")
    parser.add_argument("--budget", type=float, required=True, help="seconds from start to the deadline")
    cli.add_data(parser)
    parser.add_argument("--patches-dir", type=Path, default=Path("output"), help="where the patch files are (made)")
    cli.add_output_dir(parser, Path("runs/train_all"), "one run folder per recipe, their logs and summary.json")
    cli.add_device(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the runs an earlier train_all left in --output-dir (train.py --overwrite)")
    return parser


def refuse_earlier_runs(args: argparse.Namespace) -> None:
    """Before any calibration: a recipe's run folder that holds an earlier round's run is train.py's to
    refuse, which it would do only after the calibration's minutes; say so now instead."""
    taken = [str(args.output_dir / name) for name in args.recipes
             if any((args.output_dir / name / f).exists() for f in CHECKPOINT_FILES)]
    if taken and not args.overwrite:
        raise SystemExit(f"error: {', '.join(taken)} hold(s) an earlier round's run: --overwrite replaces it, or "
                         "choose another --output-dir")


@cli.one_line_errors()
def main() -> None:
    args = build_parser().parse_args()
    deadline = time.monotonic() + args.budget
    for folder in (args.data / "T91", args.data / "Set5"):
        if not folder.is_dir():
            raise SystemExit(f"error: {folder} not found (--data must hold T91/ and Set5/)")
    refuse_earlier_runs(args)
    make_folder(args.output_dir)
    threads = max(1, (os.cpu_count() or 1) // len(args.recipes))

    for name in args.recipes:
        preprocess_args, _ = RECIPES[name]
        patches = patch_file(preprocess_args, args.patches_dir)
        if not patches.exists() and subprocess.run([sys.executable, str(ROOT / "preprocess.py"), "--images",
                                                    str(args.data / "T91"), *preprocess_args, "--output",
                                                    str(patches)], cwd=ROOT).returncode != 0:
            raise SystemExit(f"error: preprocess.py could not make {patches} for {name} (its message is above)")

    def launch(name: str, run_dir: Path, *extra: str) -> Run:
        preprocess_args, train_args = RECIPES[name]
        scale = train_args[train_args.index("--scale") + 1]
        return Run(name, ["--train-file", str(patch_file(preprocess_args, args.patches_dir)), "--eval-file",
                          str(args.data / "Set5" / f"x{scale}"), "--output-dir", str(run_dir), "--device",
                          args.device, *COMMON, *train_args, *extra], args.output_dir / f"{name}.log", threads)

    calibration = [launch(name, args.output_dir / "calibration" / name, "--epochs", "3", "--eval-every", "3", "--overwrite")
                   for name in args.recipes]
    plans = {}
    for run in calibration:
        if run.wait(deadline) != 0 or len(run.epoch_times) < 3:
            raise SystemExit(f"error: calibration of {run.name} failed; see {args.output_dir / run.name}.log")
        t = run.epoch_times
        train_s = t[2] - t[1]
        plans[run.name] = {"train_s": train_s, "validation_s": max(0.0, t[3] - t[2] - train_s),
                           "startup_s": max(0.0, t[1] - run.started - train_s)}
    runs, launched = [], time.time()
    for name in args.recipes:
        plan = plans[name]
        per_epoch = plan["train_s"] + plan["validation_s"] / int(COMMON[COMMON.index("--eval-every") + 1])
        plan["epochs"] = max(1, int(0.85 * (deadline - time.monotonic() - plan["startup_s"]) / per_epoch))
        print(f"{name}: {plan['train_s']:.1f} s/epoch training, {plan['validation_s']:.1f} s/validation "
              f"-> {plan['epochs']} epochs", flush=True)
        runs.append(launch(name, args.output_dir / name, "--epochs", str(plan["epochs"]),
                           *(["--overwrite"] if args.overwrite else [])))
    for run in runs:
        plan = plans[run.name]
        plan["exit_code"] = run.wait(deadline)
        plan["epochs_done"] = max(run.epoch_times, default=0)
        best = args.output_dir / run.name / "best.pth"
        this_round = best.exists() and best.stat().st_mtime >= launched  # not a best.pth a refused run left
        plan["best_val_psnr"] = load_model(best)[1].get("val_psnr") if this_round else None
    write_text(args.output_dir / "summary.json", json.dumps(
        {"device": torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu",
         "budget_s": args.budget, "runs": plans}, indent=1))
    for name, plan in plans.items():
        print(f"{name}: {plan['epochs_done']}/{plan['epochs']} epochs, best val PSNR {plan['best_val_psnr']}")


if __name__ == "__main__":
    main()
