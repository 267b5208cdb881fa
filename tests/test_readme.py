"""The README is part of the product: its commands are the ones CI runs and parse as written, its numbers
are what the shipped weights give, and its Quick start leaves the checkout as it found it."""
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, REPO, need

from evaluate import evaluate_dataset
from inference import Upscaler
from models import load_model

README = (REPO / "README.md").read_text()


def load_script(relative: str):
    """A script as a module, by path (test.py would otherwise be Python's own `test` package)."""
    name = f"script_{relative.replace('/', '_')[:-3]}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / relative)
        sys.modules[name] = importlib.util.module_from_spec(spec)  # before running it: dataclasses look it up
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def commands(text: str) -> list[list[str]]:
    """Every command line of a Markdown text's bash blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)\n```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].split("  #")[0].strip()
            if line:
                lines.append([expanded for word in shlex.split(line) for expanded in expand_braces(word)])
    return lines


def expand_braces(word: str) -> list[str]:
    """What bash makes of `srcnn_x{2,3,4}`: one word per alternative."""
    match = re.fullmatch(r"(.*?)\{([^{}]*,[^{}]*)\}(.*)", word)
    if not match:
        return [word]
    return [expanded for choice in match[2].split(",") for expanded in expand_braces(match[1] + choice + match[3])]


def script_and_args(words: list[str]) -> tuple[str, list[str]] | None:
    """(script path, its arguments) for `python X.py ...`, `python -m pkg.name ...` and `torchrun ... X.py ...`."""
    if words[0] == "python" and words[1] == "-m":
        return words[2].replace(".", "/") + ".py", words[3:]
    if words[0] == "python":
        return words[1], words[2:]
    if words[0] == "torchrun":
        script = next(i for i, w in enumerate(words) if w.endswith(".py"))
        return words[script], words[script + 1:]
    return None


def test_readme_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    blocks = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    assert ci in blocks, ci  # the README's test command, verbatim


def test_readme_is_short():
    assert len(README.encode()) <= 15_000


@pytest.mark.parametrize("document", ["README.md", "docs/training.md", "docs/studies.md", "docs/speed.md",
                                      "docs/robustness.md"])
def test_every_command_parses_and_names_files_that_exist(document):
    """Each python/torchrun command's arguments parse with its script's own parser; data/ paths exist where
    the README says the data is (checked against ../shared/data here), repo paths exist in the repo."""
    parsed = 0
    for words in commands((REPO / document).read_text()):
        found = script_and_args(words)
        if found is None:
            assert words[0] in ("python3", "tensorboard"), words  # the Quick start (run by CI) and the viewer
            continue
        script, args = found
        load_script(script).build_parser().parse_args(args)  # exits (fails the test) on any unknown flag or value
        parsed += 1
        for arg in args:
            # Holopix50k cannot be fetched here; test_preprocess.py runs --holopix50k on a generated tree
            if arg.startswith("data/") and not arg.startswith("data/Holopix50k") and DATA.exists():
                assert (DATA / arg.removeprefix("data/")).exists(), (words, arg)
            if arg.startswith("weights/"):
                assert (REPO / arg).exists(), (words, arg)
    assert parsed >= {"README.md": 15}.get(document, 1)


def test_readme_links_and_images_exist():
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README):
        assert (REPO / target).exists(), target


def test_quick_start_leaves_the_checkout_as_it_was_and_tensorboard_is_installed(tmp_path):
    """`python test.py` writes into the untracked output/, never into tracked files; the README's
    `tensorboard` is installed by requirements.txt, beside the Python that runs the tests."""
    status = lambda: subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    before = status()
    result = subprocess.run([sys.executable, "test.py"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "-> output" in result.stdout and (REPO / "output" / "coffee_srcnn_x3_comparison.png").exists()
    assert status() == before
    assert re.search(r"^tensorboard\b", (REPO / "requirements.txt").read_text(), re.M)
    assert (Path(sys.executable).parent / "tensorboard").exists()


def test_readme_results_table_is_made_from_the_benchmark_data():
    table = README.split("<!-- results:start -->\n")[1].split("\n<!-- results:end -->")[0]
    results = json.loads((REPO / "results" / "benchmarks.json").read_text())
    assert table == load_script("benchmarks/eval_benchmarks.py").results_table(results)
    manifest = json.loads((REPO / "weights" / "manifest.json").read_text())
    for key, mean in results.items():  # the model card's numbers come from the same evaluation (publish.py's)
        name, scale = key.split("_x")
        card = manifest[f"srcnn_x{scale}.pth"]["benchmarks"][name]
        assert (card["psnr"], card["ssim"]) == (round(mean["psnr"], 4), round(mean["ssim"], 4)), key


def test_benchmark_data_is_what_the_shipped_weights_give(data):
    results = json.loads((REPO / "results" / "benchmarks.json").read_text())
    assert set(results) == {f"{name}_x{scale}" for name in ("Set5", "Set14") for scale in (2, 3, 4)}
    for key, stored in results.items():
        name, scale = key.split("_x")
        model, _ = load_model(REPO / "weights" / f"srcnn_x{scale}.pth")
        mean = evaluate_dataset(Upscaler(model, "eager"), need(data / name / f"x{scale}"), int(scale))["mean"]
        for metric in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim"):
            tolerance = 5e-5 if "ssim" in metric else 0.005  # ONNX Runtime kernels differ between CPUs by float rounding
            assert mean[metric] == pytest.approx(stored[metric], abs=tolerance), (key, metric)
