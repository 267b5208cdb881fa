"""The from-scratch training recipes of the shipped weights (weights/recipes.json): for each, the
preprocess.py and train.py arguments that make it in one schedule, and its smoke version for CI.

A recipe names its images (folders under --data), its preprocess.py and train.py arguments, the
validation set, and optionally another recipe whose best weights it starts from (`init`), which is
then made first. Paths are laid out under one folder: <folder>/<name>.h5 (the patches) and
<folder>/<name>/ (the train.py run).
"""
from __future__ import annotations

import json
from pathlib import Path

RECIPES_FILE = Path(__file__).resolve().parent / "weights" / "recipes.json"
SMOKE_IMAGES, SMOKE_STEPS = 3, 4  # a few steps on a few images: the recipe runs, not what it reaches


def read_recipes(path: Path = RECIPES_FILE) -> dict[str, dict]:
    return json.loads(path.read_text())


def chain(recipes: dict[str, dict], name: str) -> list[str]:
    """The recipes to run for `name`, its init's first (an x4 run from the x3 recipe's weights)."""
    order, seen = [], set()
    while name is not None:
        if name not in recipes:
            raise ValueError(f"{RECIPES_FILE}: no recipe {name!r} (there are: {', '.join(sorted(recipes))})")
        if name in seen:
            raise ValueError(f"{RECIPES_FILE}: recipe {name!r} starts from itself through its init chain")
        seen.add(name)
        order.insert(0, name)
        name = recipes[name].get("init")
    return order


def patch_file(folder: Path, name: str) -> Path:
    return folder / f"{name}.h5"


def run_folder(folder: Path, name: str) -> Path:
    return folder / name


def preprocess_args(recipe: dict, name: str, data: Path, folder: Path, smoke: bool) -> list[str]:
    """preprocess.py's arguments for the recipe's patch file."""
    images = [str(data / source) for source in recipe["images"]]
    return ["--images", *images, *recipe["preprocess"], "--output", str(patch_file(folder, name)),
            *(["--max-images", str(SMOKE_IMAGES)] if smoke else [])]


def train_args(recipes: dict[str, dict], name: str, data: Path, folder: Path, smoke: bool) -> list[str]:
    """train.py's arguments for the recipe's run, starting from its init recipe's best weights."""
    recipe = recipes[name]
    init = recipe.get("init")
    return ["--train-file", str(patch_file(folder, name)), "--eval-file", str(data / recipe["eval"]),
            "--output-dir", str(run_folder(folder, name)), *recipe["train"],
            *(["--init", str(run_folder(folder, init) / "best.pth")] if init else []),
            *(["--max-steps", str(SMOKE_STEPS), "--image-every", "0"] if smoke else [])]
