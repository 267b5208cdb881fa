"""The reference experiment: SRCNN 9-5-5 on blurred high-resolution photos, trained with five losses.

    python -m weights.loss_study --data data      # preprocess, train (resumable), then score and draw

The degradation is the reference setup's (Gaussian blur sigma 0.73, then MATLAB bicubic x3; 120x120
patches every 78 pixels, `preprocess.py --preset holopix`), on SunHays80/train, the stand-in here for
Holopix50k. Every loss (mse, psnr, weighted 0.4/0.5/0.1, ssim, ms-ssim) trains from the same
initialisation (--init: by default the shipped T91 x3 network, so the five runs are fine-tunes that
differ only in their loss; `--init none` starts from random weights (seed 123), as the reference did, and
needs many more epochs), on the same batches in the same order with the same flips and rotations, with
the same optimiser (Adam, cosine schedule) for the same number of steps; best.pth is chosen by PSNR on
SunHays80/val. The runs take turns, --round-epochs at a time, so all five advance together; rerunning the
command continues every run from its checkpoint (Ctrl-C or SIGTERM reach the running train.py, which
saves mid-epoch; a crash loses at most the epoch in progress), and refuses other settings than the
study's first run recorded in study.json. --budget: no turn starts after that many seconds.

Once every run has finished its --epochs, the models, bicubic and the shipped T91 network
(weights/srcnn_x3.pth, trained without blur) are scored by evaluate.py (PSNR, SSIM, MS-SSIM on Y) on
SunHays80/val, Set5 x3 and Set14 x3 under the same blur: results/loss_study.{json,md}, each run by its
best.pth (so the SunHays80/val column, which also chose it, is optimistic), with the step it came from;
and results/loss_study_crops.png shows the same detailed region of validation photos and bundled samples
as bicubic | mse | weighted | psnr | original, each with its PSNR. `--score-only` does these two with the
runs' best.pth as they are (a study in progress).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
from skimage import data as skimage_data

import cli
from checkpoints import has_checkpoint, load_checkpoint
from child_process import run_to_the_end
from comparison import crop_grid
from datasets import eval_pairs
from evaluate import evaluate_pairs, psnr_ssim, upscale
from files import make_folder, write_text
from inference import Upscaler
from models import WeightsError, load_model
from utils import degrade, modcrop, save_image, upscale_bicubic, y_channel

LOSSES = ("mse", "psnr", "weighted", "ssim", "ms-ssim")
BLUR_SIGMA, SCALE = 0.73, 3
SETS = ("SunHays80/val", "Set5/x3", "Set14/x3")
T91_WEIGHTS = Path("weights/srcnn_x3.pth")
FIGURE_METHODS = ("mse", "weighted", "psnr")  # the reference README's figure: bicubic | these | original


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    cli.add_data(parser)
    cli.add_output_dir(parser, Path("weights/training/loss_study"),
                       "one train.py run folder per loss, kept in the repo so that a later session continues them")
    parser.add_argument("--train-file", type=Path, default=Path("output/SunHays80_train_x3_blur.h5"),
                        help="the training patch file (made by preprocess.py when missing)")
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES), help="the losses to train")
    parser.add_argument("--init", default=str(T91_WEIGHTS), help="weights every run starts from, or none (random)")
    parser.add_argument("--epochs", type=int, default=10, help="length of every run (its cosine schedule)")
    parser.add_argument("--round-epochs", type=int, default=1, help="epochs each run trains before the next takes a turn")
    parser.add_argument("--batch-size", type=int, default=16, help="patches per step")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam's learning rate (the last layer: 0.1x)")
    parser.add_argument("--budget", type=float, help="seconds after which no new turn starts (default: none)")
    cli.add_device(parser)
    parser.add_argument("--score-only", action="store_true", help="no training: score and draw the runs as they are")
    parser.add_argument("--results-dir", type=Path, default=Path("results"),
                        help="where loss_study.json, .md and loss_study_crops.png go")
    return parser


def make_patches(args: argparse.Namespace) -> None:
    if args.train_file.exists():
        return
    command = [sys.executable, "preprocess.py", "--images", str(args.data / "SunHays80" / "train"), "--scale", str(SCALE),
               "--preset", "holopix", "--blur-sigma", str(BLUR_SIGMA), "--output", str(args.train_file), "--resume"]
    if subprocess.run(command).returncode:
        raise SystemExit(f"error: preprocess.py could not make {args.train_file} (its message is above)")


def train_command(args: argparse.Namespace, loss: str, max_steps: int) -> list[str]:
    """train.py for one loss; everything but the loss (and so the run folder) is the same for all."""
    run_dir = args.output_dir / loss
    return [sys.executable, "train.py", "--train-file", str(args.train_file), "--eval-file",
            str(args.data / "SunHays80" / "val"), "--scale", str(SCALE), "--loss", loss, "--padding", "valid",
            "--lr", str(args.lr), "--lr-schedule", "cosine", "--epochs", str(args.epochs), "--batch-size",
            str(args.batch_size), "--augment", "--in-memory", "--workers", "0", "--seed", "123", "--max-steps",
            str(max_steps), "--image-every", "0", "--device", args.device, "--output-dir", str(run_dir),
            *(["--init", args.init] if args.init != "none" else []),
            *(["--resume"] if has_checkpoint(run_dir) else [])]


def steps_done(run_dir: Path) -> int:
    return load_checkpoint(run_dir / "last.pth", reader="loss_study")["step"] if has_checkpoint(run_dir) else 0


def check_settings(args: argparse.Namespace) -> None:
    """The first run of the study records its settings; a rerun with others would mix them, so it is refused."""
    settings = {"patches": str(args.train_file),  # the record's name for it, as archived studies hold it
                **{key: str(getattr(args, key)) for key in ("epochs", "batch_size", "lr", "init")}}
    record = args.output_dir / "study.json"
    if record.exists() and json.loads(record.read_text()) != settings:
        recorded = ", ".join(f"{key} {value}" for key, value in json.loads(record.read_text()).items())
        raise SystemExit(f"error: {record} records other settings ({recorded}); "
                         f"use them or another --output-dir")
    make_folder(args.output_dir)
    write_text(record, json.dumps(settings, indent=1) + "\n")


def train_in_turns(args: argparse.Namespace, steps_per_epoch: int) -> bool:
    """Every loss trains --round-epochs, in turn, until all reach --epochs or the budget is spent;
    returns whether all have finished."""
    started, total = time.monotonic(), args.epochs * steps_per_epoch
    while True:
        behind = {loss: steps_done(args.output_dir / loss) for loss in args.losses}
        behind = {loss: steps for loss, steps in behind.items() if steps < total}
        if not behind:
            return True
        target = min(total, (min(behind.values()) // steps_per_epoch + args.round_epochs) * steps_per_epoch)
        for loss, steps in behind.items():
            if steps >= target:
                continue
            if args.budget and time.monotonic() - started > args.budget:
                return False
            print(f"loss_study: {loss}, steps {steps} -> {target} of {total}", flush=True)
            code = run_to_the_end(train_command(args, loss, target))
            if code:
                raise SystemExit(code if code > 128 else f"error: train.py --loss {loss} failed (its message is above)")
            if steps_done(args.output_dir / loss) <= steps:
                raise SystemExit(f"error: train.py --loss {loss} made no progress past step {steps}")


def networks(args: argparse.Namespace) -> dict[str, Path]:
    """The networks compared: the shipped T91 one, then each loss's best.pth."""
    runs = {loss: args.output_dir / loss / "best.pth" for loss in args.losses}
    missing = [str(path) for path in runs.values() if not path.exists()]
    if missing:
        raise SystemExit(f"error: no {', '.join(missing)}: train first")
    return {"srcnn_x3.pth (T91, no blur)": T91_WEIGHTS, **runs}


def score(args: argparse.Namespace) -> dict:
    """{set: {method: {"psnr", "ssim", "ms_ssim"}}}, every LR made with blur 0.73 + MATLAB bicubic x3."""
    results = {}
    for name in SETS:
        pairs = eval_pairs(args.data / name, SCALE, BLUR_SIGMA)
        table = {}
        for label, path in networks(args).items():
            mean = evaluate_pairs(Upscaler(load_model(path)[0], "eager"), pairs, SCALE, with_ms_ssim=True,
                                  progress=f"{name} {label}")["mean"]
            table["bicubic"] = {key: mean[f"bicubic_{key}"] for key in ("psnr", "ssim", "ms_ssim")}
            table[label] = {key: mean[key] for key in ("psnr", "ssim", "ms_ssim")}
            table[label]["step"] = load_model(path)[1].get("step")  # where its best.pth comes from
        results[name] = {"bicubic": table.pop("bicubic"), **table}
    return results


def markdown(results: dict, steps: int, batch: int) -> str:
    header = " | ".join(f"{name} PSNR / SSIM / MS-SSIM" for name in SETS)
    lines = [f"Blur {BLUR_SIGMA} + MATLAB bicubic x{SCALE}; every loss trained {steps} steps of batch {batch} from the "
             "same initialisation on the same batches; each scored by its best.pth, chosen by SunHays80/val PSNR (so "
             "that column is optimistic).", "",
             f"| method | best.pth at step | {header} |", "|---|---|" + "---|" * len(SETS)]
    for method in results[SETS[0]]:
        cells = [" / ".join(f"{results[name][method][k]:.{2 if k == 'psnr' else 4}f}" for k in ("psnr", "ssim", "ms_ssim"))
                 for name in SETS]
        lines.append(f"| {method} | {results[SETS[0]][method].get('step') or ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure_rows(args: argparse.Namespace) -> list[list[tuple[str, np.ndarray]]]:
    """Two validation photos and two bundled samples, each as bicubic | the FIGURE_METHODS | original."""
    models = {loss: Upscaler(load_model(args.output_dir / loss / "best.pth")[0], "eager")
              for loss in FIGURE_METHODS if loss in args.losses}
    images = [(name, hr) for name, hr, _ in eval_pairs(args.data / "SunHays80" / "val", SCALE)[:2]]
    images += [(name, modcrop(getattr(skimage_data, name)(), SCALE)) for name in ("astronaut", "chelsea")]
    rows = []
    for _, hr in images:
        lr, bicubic = degrade(hr, SCALE, BLUR_SIGMA)
        row = [(f"bicubic {psnr_ssim(hr, y_channel(bicubic), SCALE)[0]:.2f} dB", bicubic)]
        for loss, upscaler in models.items():
            sr, sr_y = upscale(upscaler, lr, upscale_bicubic(lr, SCALE), "y")
            row.append((f"{loss} {psnr_ssim(hr, sr_y, SCALE)[0]:.2f} dB", sr))
        rows.append(row + [("original", hr)])
    return rows


def write_results(args: argparse.Namespace, steps: int) -> None:
    results = score(args)
    make_folder(args.results_dir)
    write_text(args.results_dir / "loss_study.json", json.dumps({"steps": steps, "results": results}, indent=1) + "\n")
    write_text(args.results_dir / "loss_study.md", markdown(results, steps, args.batch_size) + "\n")
    save_image(args.results_dir / "loss_study_crops.png", crop_grid(figure_rows(args)))
    print(markdown(results, steps, args.batch_size))


@cli.one_line_errors(WeightsError, ValueError)
def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if min(args.epochs, args.round_epochs, args.batch_size) < 1:
        parser.error("--epochs, --round-epochs and --batch-size must be at least 1")
    make_patches(args)
    with h5py.File(args.train_file, "r") as f:
        steps_per_epoch = len(f["hr"]) // args.batch_size  # as train.py counts them
        if (f.attrs.get("blur_sigma"), f.attrs.get("scale")) != (BLUR_SIGMA, SCALE):
            raise SystemExit(f"error: {args.train_file} was made with blur {f.attrs.get('blur_sigma')} and scale "
                             f"{f.attrs.get('scale')}, not the study's {BLUR_SIGMA} and x{SCALE}")
    check_settings(args)
    if not args.score_only and not train_in_turns(args, steps_per_epoch):
        print(f"loss_study: budget spent; rerun the same command to continue from {args.output_dir}/*/last.pth")
        return
    write_results(args, min(steps_done(args.output_dir / loss) for loss in args.losses))


if __name__ == "__main__":
    main()
