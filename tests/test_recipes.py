"""The from-scratch recipes (weights/recipes.json) cannot rot: each runs, smoke-sized, on a fresh clone."""
import json
from pathlib import Path

import h5py
import pytest
import torch
from conftest import assert_clean_error, run_module

from evaluate import evaluate_dataset
from hub import read_manifest
from inference import Upscaler
from models import load_model
from recipes import KEYS, SMOKE_IMAGES, SMOKE_STEPS, chain, read_recipes


FROM_SCRATCH = min(name for name, recipe in read_recipes().items() if recipe["init"] is None)  # no chain to run first


def flag(args: list[str], name: str, default: str | None = None) -> str | None:
    return args[args.index(name) + 1] if name in args else default


@pytest.mark.parametrize("name", sorted(read_recipes()))
def test_every_recipe_runs_smoke_sized_from_scratch(name, data, tmp_path):
    recipes = read_recipes()
    recipe = recipes[name]
    assert recipe["ships"] in read_manifest(), f"{name} reproduces {recipe['ships']}, which is not shipped"
    result = run_module("weights.reproduce", name, "--data", data, "--output-dir", tmp_path, "--smoke")
    assert result.returncode == 0, result.stderr[-2000:]
    for step in chain(recipes, name):  # the init recipes ran first, each from its own patches
        train = recipes[step]["train"]
        with h5py.File(tmp_path / f"{step}_smoke.h5") as patches:
            assert patches.attrs["scale"] == int(flag(train, "--scale"))
            assert len(patches["hr"]) < 5000  # a few images' worth: the full recipes' hold 69,226 to 375,744
        best = torch.load(tmp_path / f"{step}_smoke" / "best.pth", weights_only=True)["meta"]
        assert best["step"] == SMOKE_STEPS
        fsrcnn = flag(train, "--arch", "9-5-5").startswith("fsrcnn")
        assert best.get("padding") == (None if fsrcnn else flag(train, "--padding", "same"))  # FSRCNN has none
        assert best["arch"] == flag(train, "--arch", "9-5-5")
        last = torch.load(tmp_path / f"{step}_smoke" / "last.pth", weights_only=True)
        assert last["train_seconds"] > 0 and float(last["args"]["lr"]) == float(flag(train, "--lr"))
        assert last["args"]["init"] == (str(tmp_path / f"{recipes[step]['init']}_smoke" / "best.pth")
                                        if recipes[step]["init"] else "None")
        made = tmp_path / f"{step}_smoke_eval.h5"  # a robust or blur recipe validates on LR it made
        benchmark = Path(data).resolve() / recipes[step]["eval"]  # reproduce.py resolves --data: scripts run from the repo root
        assert last["args"]["eval_file"] == str(made if "eval_preprocess" in recipes[step] else benchmark)
        if "eval_preprocess" in recipes[step]:
            with h5py.File(made) as validation:
                assert validation.attrs["mode"] == "eval" and validation.attrs["scale"] == int(flag(train, "--scale"))
                made_with = recipes[step]["eval_preprocess"]  # mixed degradations, or a blur (the loss study's files)
                assert validation.attrs["degradation"] == flag(made_with, "--degradation", "matlab")
                assert validation.attrs["blur_sigma"] == float(flag(made_with, "--blur-sigma", "0"))
                assert len(validation["hr"]) == SMOKE_IMAGES  # --max-images holds for an --eval file too
    report = json.loads((tmp_path / f"{name}_smoke" / "reproduce.json").read_text())
    assert report["smoke"] and report["step"] == SMOKE_STEPS and report["machine"]["cores"] >= 1
    assert report["weights"] == str(tmp_path / f"{name}_smoke" / "best.pth")  # outside the repo: the whole path
    assert report["benchmarks"]["Set5"]["shipped_psnr"] == read_manifest()[recipe["ships"]]["benchmarks"]["Set5"]["psnr"]
    assert f"{name} Set5:" in result.stdout
    # the same command again picks up where it is: nothing made twice, the finished run not trained further
    again = run_module("weights.reproduce", name, "--data", data, "--output-dir", tmp_path, "--smoke")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "wrote" not in again.stdout
    assert torch.load(tmp_path / f"{name}_smoke" / "last.pth", weights_only=True)["step"] == SMOKE_STEPS
    # a full run never continues the smoke run: its own patch file and folder
    assert not (tmp_path / f"{name}.h5").exists() and not (tmp_path / name).exists()
    assert not (tmp_path / f"{name}_eval.h5").exists()


def test_a_patch_file_made_from_other_settings_is_refused(data, tmp_path):
    name = FROM_SCRATCH
    (tmp_path / f"{name}_smoke.h5").write_bytes(b"made by hand")
    assert_clean_error(run_module("weights.reproduce", name, "--data", data, "--output-dir", tmp_path, "--smoke"),
                       f"{name}_smoke.h5", "delete it")


def test_missing_data_is_one_line_before_any_work(tmp_path):
    name = FROM_SCRATCH
    (tmp_path / "data").mkdir()
    result = run_module("weights.reproduce", name, "--data", tmp_path / "data", "--output-dir", tmp_path / "out")
    assert_clean_error(result, str(tmp_path / "data" / "T91"), "not found")
    assert not (tmp_path / "out").exists()


def test_init_weights_replace_the_init_chain(data, tmp_path):
    """--init: the recipe alone, from the given file (an archived run of its init recipe, here the shipped file)."""
    name = "srcnn_real_x2"
    init = Path("weights/srcnn_x2.pth").resolve()
    assert read_recipes()[name]["init"] == "srcnn_x2"
    result = run_module("weights.reproduce", name, "--data", data, "--output-dir", tmp_path, "--smoke", "--init", init)
    assert result.returncode == 0, result.stderr[-2000:]
    made = sorted(path.name for path in tmp_path.iterdir() if not path.name.startswith("."))  # not the lock files
    assert made == [f"{name}_smoke{end}" for end in ("", ".h5", ".h5.recipe.json", "_eval.h5", "_eval.h5.recipe.json")]
    assert torch.load(tmp_path / f"{name}_smoke" / "last.pth", weights_only=True)["args"]["init"] == str(init)
    assert json.loads((tmp_path / f"{name}_smoke" / "reproduce.json").read_text())["init"] == "weights/srcnn_x2.pth"
    # the run continues only from where it started: another --init, or the init chain, is refused before any work
    other = Path("weights/training/srcnn_x2_recipe/cpu1/best.pth").resolve()
    for again in (["--init", other], []):
        assert_clean_error(run_module("weights.reproduce", name, "--data", data, "--output-dir", tmp_path, "--smoke",
                                      *again), f"{name}_smoke was started from {init}", "delete the folder")
    assert not (tmp_path / "srcnn_x3_smoke.h5").exists()


def test_an_unreadable_run_folder_is_named_by_reproduce_before_any_work(data, tmp_path):
    folder = tmp_path / "srcnn_real_x2_smoke"
    folder.mkdir()
    (folder / "last.pth").write_bytes(b"not a checkpoint")
    result = run_module("weights.reproduce", "srcnn_real_x2", "--data", data, "--output-dir", tmp_path, "--smoke",
                        "--init", Path("weights/srcnn_x2.pth").resolve())
    assert_clean_error(result, "reproduce: no readable", str(folder / "last.pth"))
    assert not (tmp_path / "srcnn_real_x2_smoke.h5").exists()


def test_a_blur_recipe_is_measured_on_blurred_lr_as_its_shipped_file_was(data, tmp_path):
    """publish.py measured srcnn_blur_x3_*.pth on Set5/Set14 blurred by their blur_sigma: the recipes' runs too."""
    name = "srcnn_blur_x3_mse"
    sigma = read_manifest()[read_recipes()[name]["ships"]]["blur_sigma"]  # publish.py measured it on blurred LR
    result = run_module("weights.reproduce", name, "--data", data, "--output-dir", tmp_path, "--smoke",
                        "--init", Path("weights/srcnn_x3.pth").resolve())
    assert result.returncode == 0, result.stderr[-2000:]
    reported = json.loads((tmp_path / f"{name}_smoke" / "reproduce.json").read_text())["benchmarks"]["Set5"]["psnr"]
    best = Upscaler(load_model(tmp_path / f"{name}_smoke" / "best.pth")[0], "eager")
    blurred, sharp = (evaluate_dataset(best, Path(data) / "Set5" / "x3", 3, "y", blur)["mean"]["psnr"] for blur in (sigma, 0.0))
    assert reported == round(blurred, 4) and abs(blurred - sharp) > 0.05  # 0.08 dB here


@pytest.mark.parametrize("recipe, init, words", [
    (FROM_SCRATCH, "weights/fsrcnn_x3.pth", ["--init weights/fsrcnn_x3.pth", "starts from scratch"]),
    ("srcnn_real_x2", "weights/srcnn_x3.pth", ["9-5-5 x3 y weights", "srcnn_x2's, 9-5-5 x2 y"]),
    ("srcnn_real_x2", "weights/fsrcnn_x2.pth", ["fsrcnn x2 y weights", "9-5-5 x2 y"]),
    ("srcnn_real_x3", "weights/srcnn_rgb_x3.pth", ["9-5-5 x3 rgb weights", "9-5-5 x3 y"]),
    ("srcnn_real_x2", "weights/no_such.pth", ["--init", "no_such.pth", "no such weights file"]),
])
def test_init_weights_of_another_network_are_refused_before_any_work(recipe, init, words, data, tmp_path):
    result = run_module("weights.reproduce", recipe, "--data", data, "--output-dir", tmp_path / "out", "--init", init)
    assert_clean_error(result, *words)
    assert not (tmp_path / "out").exists()


def test_an_init_chain_is_made_in_order_and_a_loop_or_a_missing_recipe_is_refused():
    recipes = {"a": {"init": None}, "b": {"init": "a"}, "c": {"init": "b"}, "loop": {"init": "loop"}}
    assert chain(recipes, "c") == ["a", "b", "c"]
    with pytest.raises(ValueError, match="starts from itself"):
        chain(recipes, "loop")
    with pytest.raises(ValueError, match="no recipe 'x'"):
        chain({"b": {"init": "x"}}, "b")


def test_a_malformed_recipes_file_names_itself_and_the_missing_key(tmp_path):
    broken = tmp_path / "recipes.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="recipes.json"):
        read_recipes(broken)
    broken.write_text(json.dumps({"srcnn_x3": {key: None for key in KEYS if key != "train"}}))
    with pytest.raises(ValueError, match="recipe 'srcnn_x3' has no train"):
        read_recipes(broken)


def test_a_run_folder_copied_into_another_checkout_continues_from_the_same_init(tmp_path):
    """As train.py --resume checks it: the init recorded at the same place beside the run folder is the same
    start, so an archived run continues in another clone; another file there is not."""
    from checkpoints import RESUME_KEYS
    from weights import reproduce
    first, second = tmp_path / "first", tmp_path / "second"
    state = {key: 0 for key in RESUME_KEYS} | {"args": {"init": str(first / "weights" / "init.pth"),
                                                      "output_dir": str(first / "runs" / "r")}}
    (second / "runs" / "r").mkdir(parents=True)
    torch.save(state, second / "runs" / "r" / "last.pth")  # the folder as copied: its record names the first clone
    reproduce.check_started_from(second / "runs" / "r", second / "weights" / "init.pth")
    for other in (second / "weights" / "other.pth", None):
        with pytest.raises(SystemExit, match="was started from .*first/weights/init.pth, not"):
            reproduce.check_started_from(second / "runs" / "r", other)


def test_archived_recipe_records_name_their_files_relative_to_the_repo():
    """reproduce.json records paths inside the repo relative to it, so an archived record reads the same in
    every clone; an absolute path would name one machine's checkout."""
    from weights import reproduce
    assert reproduce.shown(reproduce.ROOT / "runs" / "recipes" / "x" / "best.pth") == "runs/recipes/x/best.pth"
    records = sorted(Path("weights/training").rglob("reproduce.json"))
    assert len(records) >= 10
    for record in records:
        report = json.loads(record.read_text())
        assert not Path(report["weights"]).is_absolute() and not Path(report.get("init") or ".").is_absolute(), record


def test_a_stopped_step_is_not_called_a_failure(monkeypatch, capsys):
    """Ctrl-C reaches train.py, which saves and exits 130: the recipe says how to go on, and exits 130 too."""
    import signal
    from weights import reproduce
    monkeypatch.setattr(reproduce, "run_to_the_end", lambda command: 128 + signal.SIGINT)
    with pytest.raises(SystemExit) as stopped:
        reproduce.script("train.py", "recipe fsrcnn_x3, training", [])
    assert stopped.value.code == 130 and "stopped by SIGINT; the same command continues it" in capsys.readouterr().err
    monkeypatch.setattr(reproduce, "run_to_the_end", lambda command: 1)
    with pytest.raises(SystemExit, match="train.py failed"):
        reproduce.script("train.py", "recipe fsrcnn_x3, training", [])


def test_an_interrupted_patch_file_is_continued_and_an_interrupted_eval_file_made_again(monkeypatch, tmp_path):
    """preprocess.py refuses --resume for an --eval file (written whole), so the recipe asks for --overwrite."""
    from weights import reproduce
    calls = []
    monkeypatch.setattr(reproduce, "script", lambda name, step, args: calls.append(args))
    for file, args, again in (("p.h5", ["--images", "T91"], "--resume"), ("e.h5", ["--images", "val", "--eval"], "--overwrite")):
        (tmp_path / f"{file}.partial").write_bytes(b"left by a kill")
        reproduce.make_file("r", "what", tmp_path / file, {"images": []}, args)
        assert calls[-1] == [*args, again]
        assert json.loads((tmp_path / f"{file}.recipe.json").read_text()) == {"images": []}
    reproduce.make_file("r", "what", tmp_path / "fresh.h5", {"images": []}, ["--images", "T91"])
    assert calls[-1] == ["--images", "T91"]


def test_a_made_file_from_other_settings_is_refused_and_one_from_the_same_reused(monkeypatch, tmp_path):
    from weights import reproduce
    monkeypatch.setattr(reproduce, "script", lambda *args: pytest.fail("made again"))
    out = tmp_path / "r_eval.h5"
    out.write_bytes(b"made before")
    (tmp_path / "r_eval.h5.recipe.json").write_text(json.dumps({"preprocess": ["--scale", "3"]}))
    reproduce.make_file("r", "validation file", out, {"preprocess": ["--scale", "3"]}, [])
    with pytest.raises(SystemExit, match="r_eval.h5 was not made from recipe r's current settings.*delete it"):
        reproduce.make_file("r", "validation file", out, {"preprocess": ["--scale", "4"]}, [])


def test_a_validation_file_recipe_must_make_an_eval_file_at_its_scale(tmp_path):
    recipe = {key: None for key in KEYS} | {"train": ["--scale", "3"]}
    broken = tmp_path / "recipes.json"
    for made in (["--scale", "3"], ["--scale", "4", "--eval"]):
        broken.write_text(json.dumps({"r": recipe | {"eval_preprocess": made}}))
        with pytest.raises(ValueError, match="recipe 'r': eval_preprocess must make an --eval file at the training --scale"):
            read_recipes(broken)
    broken.write_text(json.dumps({"r": recipe | {"eval_preprocess": ["--scale", "3", "--eval"]}}))
    assert read_recipes(broken)["r"]["eval_preprocess"] == ["--scale", "3", "--eval"]
