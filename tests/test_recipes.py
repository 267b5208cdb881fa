"""The from-scratch recipes (weights/recipes.json) cannot rot: each runs, smoke-sized, on a fresh clone."""
import json

import h5py
import pytest
import torch
from conftest import assert_clean_error, run_module

from hub import read_manifest
from recipes import SMOKE_STEPS, chain, read_recipes


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
        with h5py.File(tmp_path / f"{step}.h5") as patches:
            assert patches.attrs["scale"] == int(flag(recipes[step]["train"], "--scale"))
            assert len(patches["hr"]) < 5000  # a few images' worth: the full recipe's file holds about 275,000
        best = torch.load(tmp_path / step / "best.pth", weights_only=True)["meta"]
        assert best["step"] == SMOKE_STEPS and best["train_seconds"] > 0
        assert best["padding"] == flag(recipes[step]["train"], "--padding", best["padding"])
        assert best["arch"] == flag(recipes[step]["train"], "--arch", "9-5-5")
        last = torch.load(tmp_path / step / "last.pth", weights_only=True)
        assert float(last["args"]["lr"]) == float(flag(recipes[step]["train"], "--lr"))
        assert last["args"]["init"] == (str(tmp_path / recipes[step]["init"] / "best.pth")
                                        if recipes[step].get("init") else "None")
    report = json.loads((tmp_path / name / "reproduce.json").read_text())
    assert report["smoke"] and report["step"] == SMOKE_STEPS
    assert report["benchmarks"]["Set5"]["shipped_psnr"] == read_manifest()[recipe["ships"]]["benchmarks"]["Set5"]["psnr"]
    assert f"{name} Set5:" in result.stdout
    # run again, the same command picks up where it is: nothing made twice, the finished run not trained further
    again = run_module("weights.reproduce", name, "--data", data, "--output-dir", tmp_path, "--smoke")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "wrote" not in again.stdout and torch.load(tmp_path / name / "last.pth", weights_only=True)["step"] == SMOKE_STEPS


def test_an_init_chain_is_made_in_order_and_a_loop_or_a_missing_recipe_is_refused():
    recipes = {"a": {"init": None}, "b": {"init": "a"}, "c": {"init": "b"}, "loop": {"init": "loop"}}
    assert chain(recipes, "c") == ["a", "b", "c"]
    with pytest.raises(ValueError, match="starts from itself"):
        chain(recipes, "loop")
    with pytest.raises(ValueError, match="no recipe 'x'"):
        chain({"b": {"init": "x"}}, "b")


def test_an_unknown_recipe_is_one_line(tmp_path):
    assert_clean_error(run_module("weights.reproduce", "srcnn_x9", "--output-dir", tmp_path), "srcnn_x9")
