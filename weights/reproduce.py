"""Train a shipped file from scratch by its recipe (weights/recipes.json), then measure it as the
shipped file is measured: protocol PSNR/SSIM on Set5 and Set14, beside the shipped file's own.

    python -m weights.reproduce srcnn_x3 --data data            # preprocess, train, measure
    python -m weights.reproduce srcnn_x3 --data data --smoke    # a few steps on a few images (CI)

A recipe whose `init` is another recipe runs that one first. Each step is skipped when its output is
already there, and a stopped run is continued (train.py --resume), so the same command picks up after
an interruption. The result, with the training clock (train.py's time/train_seconds), goes to
<output-dir>/<recipe>/reproduce.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cli
from checkpoints import CHECKPOINT_FILES
from evaluate import evaluate_dataset
from files import make_folder, write_text
from hub import read_manifest
from inference import Upscaler
from models import WeightsError, load_model
from run_logs import clock_curve, first_reaching
from recipes import chain, patch_file, preprocess_args, read_recipes, run_folder, train_args

ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    recipes = read_recipes()
    parser = cli.parser(__doc__)
    parser.add_argument("recipe", choices=sorted(recipes), help="the recipe (a shipped file's name, no .pth)")
    cli.add_data(parser)
    cli.add_output_dir(parser, Path("runs/recipes"), "where the patch files and run folders go")
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps on a few images, to show the recipe runs (what CI does)")
    return parser


def script(name: str, args: list[str]) -> None:
    """Run one of the repo's scripts; its own one-line error is the message if it fails."""
    if subprocess.run([sys.executable, str(ROOT / name), *args], cwd=ROOT).returncode != 0:
        raise SystemExit(f"error: {name} {' '.join(args[:2])} ... failed (its message is above)")


def make_patches(recipes: dict, name: str, args: argparse.Namespace) -> None:
    out = patch_file(args.output_dir, name)
    if out.exists():
        return
    partial = out.with_name(out.name + ".partial")
    script("preprocess.py", [*preprocess_args(recipes[name], name, args.data, args.output_dir, args.smoke),
                             *(["--resume"] if partial.exists() else [])])


def train(recipes: dict, name: str, args: argparse.Namespace) -> None:
    folder = run_folder(args.output_dir, name)
    started = any((folder / f).exists() for f in CHECKPOINT_FILES)
    script("train.py", [*train_args(recipes, name, args.data, args.output_dir, args.smoke),
                        *(["--resume"] if started else [])])


def measure(recipes: dict, name: str, args: argparse.Namespace) -> dict:
    """Set5 and Set14 of the run's best weights, the shipped file's beside them, and the training clock."""
    recipe, best = recipes[name], run_folder(args.output_dir, name) / "best.pth"
    model, meta = load_model(best)
    shipped = read_manifest().get(recipe["ships"], {}).get("benchmarks", {})
    result = {"recipe": name, "ships": recipe["ships"], "smoke": args.smoke, "weights": str(best),
              "step": meta["step"], "minutes_to_best": round(meta.get("train_seconds", 0.0) / 60, 1), "benchmarks": {}}
    reached = first_reaching(clock_curve(best.parent), recipe["target_psnr"])
    result["target"] = {"psnr": recipe["target_psnr"], "reached_at_minutes": reached and reached["minutes"]}
    for dataset in ("Set5",) if args.smoke else ("Set5", "Set14"):  # a smoke run shows the path, not a score
        mean = evaluate_dataset(Upscaler(model, "eager"), args.data / dataset / f"x{meta['scale']}", meta["scale"],
                                meta.get("color", "y"))["mean"]
        ours, theirs = round(mean["psnr"], 4), shipped.get(dataset, {}).get("psnr")
        result["benchmarks"][dataset] = {"psnr": ours, "ssim": round(mean["ssim"], 4), "shipped_psnr": theirs}
        print(f"{name} {dataset}: {ours:.2f} dB" + (f" (shipped {recipe['ships']}: {theirs:.2f}, "
                                                     f"{ours - theirs:+.2f})" if theirs else ""))
    return result


@cli.one_line_errors(WeightsError, ValueError)
def main() -> None:
    args = build_parser().parse_args()
    recipes = read_recipes()
    make_folder(args.output_dir)
    for name in chain(recipes, args.recipe):
        make_patches(recipes, name, args)
        train(recipes, name, args)
    result = measure(recipes, args.recipe, args)
    write_text(run_folder(args.output_dir, args.recipe) / "reproduce.json", json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
