"""The from-scratch training recipes of the shipped weights (weights/recipes.json): for each, the
preprocess.py and train.py arguments that make it in one schedule, and its smoke version for CI.

A recipe names its images (folders under --data), its preprocess.py and train.py arguments, the
validation set, and optionally another recipe whose best weights it starts from (`init`), which is
then made first. The validation set is a benchmark folder as it is, or, with `eval_preprocess`,
preprocess.py's --eval file of that folder made with those arguments (the robust weights are selected
on LR of mixed degradations). Paths are laid out under one folder: <folder>/<name>.h5 (the patches),
<folder>/<name>_eval.h5 (a made validation file) and <folder>/<name>/ (the train.py run).
"""
from __future__ import annotations

import json
from pathlib import Path

RECIPES_FILE = Path(__file__).resolve().parent / "weights" / "recipes.json"
SMOKE_IMAGES, SMOKE_STEPS = 3, 4  # a few steps on a few images: the recipe runs, not what it reaches
KEYS = ("ships", "images", "preprocess", "train", "eval", "init", "target_psnr")


def read_recipes(path: Path = RECIPES_FILE) -> dict[str, dict]:
    """{name: recipe}; a malformed file or a recipe without one of KEYS is a ValueError naming both."""
    try:
        recipes = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: {err}") from None
    for name, recipe in recipes.items():
        missing = [key for key in KEYS if key not in recipe]
        if missing:
            raise ValueError(f"{path}: recipe {name!r} has no {', '.join(missing)}")
        made = recipe.get("eval_preprocess")
        if made is not None and ("--eval" not in made or flag(made, "--scale") != flag(recipe["train"], "--scale")):
            raise ValueError(f"{path}: recipe {name!r}: eval_preprocess must make an --eval file at the training --scale")
    return recipes


def flag(args: list[str], name: str) -> str | None:
    """The value after `name` in an argument list, if it is there."""
    return args[args.index(name) + 1] if name in args else None


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


def stem(name: str, smoke: bool) -> str:
    """Smoke runs get their own files, so a full run never continues one."""
    return f"{name}_smoke" if smoke else name


def patch_file(folder: Path, name: str, smoke: bool = False) -> Path:
    return folder / f"{stem(name, smoke)}.h5"


def eval_file(folder: Path, name: str, smoke: bool = False) -> Path:
    return folder / f"{stem(name, smoke)}_eval.h5"


def run_folder(folder: Path, name: str, smoke: bool = False) -> Path:
    return folder / stem(name, smoke)


def patch_settings(recipe: dict, smoke: bool) -> dict:
    """What a patch file is made from, recorded beside it: a file made from other settings is not reused."""
    return {"images": recipe["images"], "preprocess": recipe["preprocess"], "smoke": smoke}


def eval_settings(recipe: dict, smoke: bool) -> dict:
    return {"images": [recipe["eval"]], "preprocess": recipe["eval_preprocess"], "smoke": smoke}


def preprocess_args(recipe: dict, name: str, data: Path, folder: Path, smoke: bool) -> list[str]:
    """preprocess.py's arguments for the recipe's patch file."""
    return preprocess_command(patch_settings(recipe, smoke), data, patch_file(folder, name, smoke))


def eval_preprocess_args(recipe: dict, name: str, data: Path, folder: Path, smoke: bool) -> list[str]:
    """preprocess.py's arguments for the recipe's validation file (a recipe with `eval_preprocess`)."""
    return preprocess_command(eval_settings(recipe, smoke), data, eval_file(folder, name, smoke))


def preprocess_command(settings: dict, data: Path, output: Path) -> list[str]:
    images = [str(data / source) for source in settings["images"]]
    return ["--images", *images, *settings["preprocess"], "--output", str(output),
            *(["--max-images", str(SMOKE_IMAGES)] if settings["smoke"] else [])]


def eval_set(recipe: dict, name: str, data: Path, folder: Path, smoke: bool) -> Path:
    """What train.py validates on: the made file, or the benchmark folder itself."""
    return eval_file(folder, name, smoke) if "eval_preprocess" in recipe else data / recipe["eval"]


def start_weights(recipes: dict[str, dict], name: str, folder: Path, smoke: bool,
                  given: Path | None = None) -> Path | None:
    """What the recipe's run starts from: `given` (weights of its init recipe made elsewhere), else its init
    recipe's best.pth, or nothing (from scratch)."""
    init = recipes[name].get("init")
    if given is not None and init is None:
        raise ValueError(f"recipe {name!r} starts from scratch: it takes no init weights")
    return given if given is not None else run_folder(folder, init, smoke) / "best.pth" if init else None


def train_args(recipes: dict[str, dict], name: str, data: Path, folder: Path, smoke: bool,
               init_weights: Path | None = None) -> list[str]:
    """train.py's arguments for the recipe's run, starting from its start_weights."""
    recipe = recipes[name]
    start = start_weights(recipes, name, folder, smoke, init_weights)
    return ["--train-file", str(patch_file(folder, name, smoke)),
            "--eval-file", str(eval_set(recipe, name, data, folder, smoke)),
            "--output-dir", str(run_folder(folder, name, smoke)), *recipe["train"],
            *(["--init", str(start)] if start else []),
            *(["--max-steps", str(SMOKE_STEPS), "--image-every", "0"] if smoke else [])]


def scale(recipe: dict) -> int:
    return int(flag(recipe["train"], "--scale"))


def network(recipe: dict) -> dict:
    """What the recipe trains, as weights' metadata names it: arch, scale and colour."""
    color = (flag(recipe["preprocess"], "--color") or "ycbcr") if flag(recipe["preprocess"], "--channels") == "3" else "y"
    return {"arch": flag(recipe["train"], "--arch") or "9-5-5", "scale": scale(recipe), "color": color}
