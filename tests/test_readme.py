"""The README is part of the product: its commands are the ones CI runs, its numbers what the shipped weights give."""
import re

import pytest
from conftest import REPO, need

from models import Upscaler, load_model

README = (REPO / "README.md").read_text()


def test_readme_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    blocks = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    assert ci in blocks, ci  # the README's test command, verbatim


def results_rows():
    table = README.split("<!-- results:start -->")[1].split("<!-- results:end -->")[0]
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip(" *") for c in line.strip("|").split("|")]
        bicubic, ours = ([float(v) for v in cell.split(" / ")] for cell in cells[2:4])
        yield cells[0], int(cells[1][1:]), bicubic, ours


def test_readme_results_are_what_the_shipped_weights_give(data):
    import sys
    sys.path.insert(0, str(REPO))
    from test import evaluate_dataset  # the repo's test.py

    rows = list(results_rows())
    assert {(name, scale) for name, scale, *_ in rows} == {(n, s) for n in ("Set5", "Set14") for s in (2, 3, 4)}
    for name, scale, bicubic, ours in rows:
        model, _ = load_model(REPO / "weights" / f"srcnn_x{scale}.pth")
        mean = evaluate_dataset(Upscaler(model), need(data / name / f"x{scale}"), scale)["mean"]
        assert mean["srcnn_psnr"] == pytest.approx(ours[0], abs=0.005), (name, scale)
        assert mean["srcnn_ssim"] == pytest.approx(ours[1], abs=5e-5), (name, scale)
        assert mean["bicubic_psnr"] == pytest.approx(bicubic[0], abs=0.005), (name, scale)
