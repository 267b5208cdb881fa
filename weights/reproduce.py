"""Train a shipped file from scratch by its recipe (weights/recipes.json), then measure it as the
shipped file is measured: protocol PSNR/SSIM on Set5 and Set14, beside the shipped file's own.

    python -m weights.reproduce srcnn_x3 --data data            # preprocess, train, measure
    python -m weights.reproduce srcnn_x3 --data data --smoke    # a few steps on a few images (CI)

A recipe whose `init` is another recipe runs that one first, or, with --init, starts from an archived
run of it (weights/training/<init>_recipe/*/best.pth: minutes instead of hours). Each step is skipped
when its output is already there, and a stopped run is continued (train.py --resume; only from the
weights it started from), so the same command picks up after an interruption (Ctrl-C reaches
preprocess.py or train.py, which save before they exit). Smoke runs use their own files
(<name>_smoke). The result, with the training clock (train.py's time/train_seconds: minutes in training
steps, validation not counted) and the machine, goes to <output-dir>/<recipe>/reproduce.json.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch

import cli
from checkpoints import has_checkpoint, load_checkpoint, same_file
from child_process import run_to_the_end
from evaluate import evaluate_dataset
from files import check_writable, make_folder, write_text
from hub import read_manifest
from inference import Upscaler
from models import WeightsError, load_model
from path_choice import cpu_model
from recipes import (chain, eval_file, eval_preprocess_args, eval_settings, network, patch_file, patch_settings,
                     preprocess_args, read_recipes, run_folder, scale, start_weights, train_args)
from run_logs import clock_curve, first_reaching

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ("Set5", "Set14")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("recipe", choices=sorted(read_recipes()), help="the recipe (a shipped file's name, no .pth)")
    cli.add_data(parser)
    cli.add_output_dir(parser, Path("runs/recipes"), "where the patch files and run folders go")
    parser.add_argument("--init", type=Path, metavar="WEIGHTS",
                        help="start from these weights instead of running the recipe's init recipe first (an "
                             "archived run of it, e.g. weights/training/srcnn_x2_recipe/cpu1/best.pth for srcnn_real_x2)")
    parser.add_argument("--smoke", action="store_true",
                        help="a few steps on a few images, to show the recipe runs (what CI does)")
    return parser


def check_inputs(recipes: dict, names: list[str], args: argparse.Namespace) -> None:
    """Every folder the chain reads, and a writable output folder, before any of its minutes."""
    needed = [args.data / source for name in names for source in recipes[name]["images"]]
    needed += [args.data / recipes[name]["eval"] for name in names]
    needed += [args.data / dataset / f"x{scale(recipes[names[-1]])}" for dataset in BENCHMARKS]
    missing = [str(folder) for folder in needed if not folder.is_dir()]
    if missing:
        raise SystemExit(f"error: recipe {args.recipe} needs {', '.join(dict.fromkeys(missing))} (not found; see "
                         "the README's 'Data')")
    make_folder(args.output_dir)
    check_writable(args.output_dir)


def check_init(recipes: dict, args: argparse.Namespace) -> None:
    """--init only where the recipe has an init recipe, and only weights of that recipe's network, scale and
    colour: refused here, before the hours of patches after which train.py would find it."""
    init = recipes[args.recipe]["init"]
    if init is None:
        raise SystemExit(f"error: --init {args.init}: recipe {args.recipe} starts from scratch (it has no init recipe)")
    try:
        meta = load_model(args.init)[1]
    except WeightsError as err:
        raise SystemExit(f"error: --init: {err}") from None
    found = {"arch": meta.get("arch", "9-5-5"), "scale": meta.get("scale"), "color": meta.get("color", "y")}
    if found != network(recipes[init]):
        describe = lambda net: f"{net['arch']} x{net['scale'] or '? (no scale recorded)'} {net['color']}"
        raise SystemExit(f"error: --init {args.init}: {describe(found)} weights; recipe {args.recipe} starts "
                         f"from recipe {init}'s, {describe(network(recipes[init]))}")


def check_started_from(folder: Path, init: Path | None) -> None:
    """A stopped or finished run continues only from the weights it started from: checked before the init
    chain's hours, not after them."""
    if not has_checkpoint(folder):
        return
    recorded = load_checkpoint(folder / "last.pth", reader="reproduce")["args"]
    started = recorded.get("init", "None")
    current = {"init": str(init), "output_dir": str(folder)}  # as train.py checks it on --resume
    if (started == "None") != (init is None) or (init and not same_file("init", recorded, current)):
        raise SystemExit(f"error: {folder} was started from {started if started != 'None' else 'scratch'}, not "
                         f"{init or 'scratch'}; give that --init, or delete the folder to train again")


def shown(path: Path | None) -> str | None:
    """A path as reproduce.json records it: relative to the repo when inside it."""
    return None if path is None else str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def script(name: str, step: str, args: list[str]) -> None:
    """One of the repo's scripts, waited for; its own one-line error is the message if it fails. Stopped
    by Ctrl-C or SIGTERM, it has saved its work: not a failure, and the exit code says which signal."""
    code = run_to_the_end([sys.executable, str(ROOT / name), *args])
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        print(f"{step}: stopped by {signal.Signals(code - 128).name}; the same command continues it", file=sys.stderr)
        raise SystemExit(code)
    if code != 0:
        raise SystemExit(f"error: {step}: {name} failed (its message is above)")


def make_patches(recipes: dict, name: str, args: argparse.Namespace) -> None:
    """The recipe's patch file and, if it has one made, its validation file."""
    recipe = recipes[name]
    make_file(name, "patches", patch_file(args.output_dir, name, args.smoke), patch_settings(recipe, args.smoke),
              preprocess_args(recipe, name, args.data, args.output_dir, args.smoke))
    if "eval_preprocess" in recipe:
        make_file(name, "validation file", eval_file(args.output_dir, name, args.smoke),
                  eval_settings(recipe, args.smoke),
                  eval_preprocess_args(recipe, name, args.data, args.output_dir, args.smoke))


def make_file(name: str, what: str, out: Path, settings: dict, preprocess: list[str]) -> None:
    """preprocess.py's output, unless one made from the same settings is there (a different one is refused).
    An interrupted patch file is continued; an interrupted --eval file, written whole, is made again."""
    record = out.with_name(out.name + ".recipe.json")
    if out.exists():
        if not record.exists() or json.loads(record.read_text()) != settings:
            raise SystemExit(f"error: {out} was not made from recipe {name}'s current settings ({record}); "
                             "delete it to make it again")
        return
    partial = out.with_name(out.name + ".partial")
    again = ("--overwrite" if "--eval" in preprocess else "--resume") if partial.exists() else None
    script("preprocess.py", f"recipe {name}, {what}", [*preprocess, *([again] if again else [])])
    write_text(record, json.dumps(settings) + "\n")


def train(recipes: dict, name: str, args: argparse.Namespace) -> None:
    """train.py from scratch (or from --init's weights), or --resume where a checkpoint is (a finished run
    trains no further); logs of a run killed before its first checkpoint are replaced."""
    folder = run_folder(args.output_dir, name, args.smoke)
    again = ["--resume"] if has_checkpoint(folder) else ["--overwrite"] if folder.exists() else []
    init = args.init if name == args.recipe else None
    script("train.py", f"recipe {name}, training", [*train_args(recipes, name, args.data, args.output_dir,
                                                                   args.smoke, init), *again])


def measure(recipe: dict, best: Path, init: Path | None, args: argparse.Namespace) -> dict:
    """Set5 and Set14 of the run's best weights (chosen on the recipe's eval set; a blur recipe's LR blurred
    first, as the shipped file was measured), the shipped file's beside them, the training clock and the machine."""
    model, meta = load_model(best)
    shipped = read_manifest().get(recipe["ships"], {}).get("benchmarks", {})
    reached = first_reaching(clock_curve(best.parent), recipe["target_psnr"])
    result = {"recipe": args.recipe, "ships": recipe["ships"], "smoke": args.smoke, "weights": shown(best),
              "init": shown(init),
              "selected_on": " ".join([recipe["eval"], *recipe.get("eval_preprocess", [])]), "step": meta["step"],
              "minutes_to_best": round(meta["train_seconds"] / 60, 1),
              "target": {"psnr": recipe["target_psnr"], "reached_at_minutes": reached and reached["minutes"]},
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
              "benchmarks": {}}
    for dataset in BENCHMARKS[:1] if args.smoke else BENCHMARKS:  # a smoke run shows the path, not a score
        mean = evaluate_dataset(Upscaler(model, "eager"), args.data / dataset / f"x{meta['scale']}", meta["scale"],
                                meta.get("color", "y"), float(meta.get("blur_sigma", 0.0)))["mean"]  # as publish.py
        ours, theirs = round(mean["psnr"], 4), shipped.get(dataset, {}).get("psnr")
        result["benchmarks"][dataset] = {"psnr": ours, "ssim": round(mean["ssim"], 4), "shipped_psnr": theirs}
        print(f"{args.recipe} {dataset}: {ours:.2f} dB" + (f" (shipped {recipe['ships']}: {theirs:.2f}, "
                                                          f"{ours - theirs:+.2f})" if theirs else ""))
    return result


@cli.one_line_errors(WeightsError, ValueError)
def main() -> None:
    args = build_parser().parse_args()
    recipes = read_recipes()
    args.data, args.output_dir = args.data.resolve(), args.output_dir.resolve()  # the scripts run from the repo root
    if args.init:
        check_init(recipes, args)
        args.init = args.init.resolve()
    names = [args.recipe] if args.init else chain(recipes, args.recipe)
    folder = run_folder(args.output_dir, args.recipe, args.smoke)
    start = start_weights(recipes, args.recipe, args.output_dir, args.smoke, args.init)
    check_started_from(folder, start)
    check_inputs(recipes, names, args)
    for name in names:
        make_patches(recipes, name, args)
        train(recipes, name, args)
    result = measure(recipes[args.recipe], folder / "best.pth", start, args)
    write_text(folder / "reproduce.json", json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
