"""Bad inputs to test.py and visualize_filters.py end in one readable line naming the file and the problem:
insane weights files, bad arguments, outputs over --max-pixels, unwritable outputs, results JSON cannot
hold (an infinite PSNR)."""
import contextlib
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run, textured_image
from PIL import Image

from models import build_model
from utils import degrade, load_image


@contextlib.contextmanager
def read_only(folder):
    """`folder`, made unwritable even for root (chattr +i: as root, chmod stops nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("needs root, for chattr +i")
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {made.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_insane_weights_files_are_one_line_errors(tmp_path):
    """Through test.py: an empty file, a crafted 6 KB file declaring a 100000-filter network (which would
    allocate gigabytes on the coffee image), FSRCNN weights missing a layer, colour weights that do not say
    which colour space (tests/test_models.py has every other case, through load_model)."""
    state = build_model("9-5-5").state_dict()
    (tmp_path / "empty.pth").write_bytes(b"")
    stride0 = lambda *shape: torch.zeros(1).expand(*shape)
    torch.save({**state, "conv1.weight": stride0(100_000, 1, 9, 9), "conv1.bias": stride0(100_000),
                "conv2.weight": stride0(32, 100_000, 5, 5)}, tmp_path / "crafted.pth")
    assert (tmp_path / "crafted.pth").stat().st_size < 20_000
    fsrcnn = build_model("fsrcnn", scale=3).state_dict()
    del fsrcnn["shrink.0.weight"]
    torch.save({"model": fsrcnn, "meta": {"scale": 3}}, tmp_path / "fsrcnn.pth")
    torch.save(build_model("9-5-5", channels=3).state_dict(), tmp_path / "colour.pth")
    cases = {"empty.pth": "empty file", "crafted.pth": "more than 1024 channels", "fsrcnn.pth": "shrink.0.weight",
             "colour.pth": "record no colour space"}
    for name, fragment in cases.items():
        result = run("test.py", "--weights-file", tmp_path / name, "--inference-path", "eager", "--output-dir",
                     tmp_path / "out", timeout=120)
        assert_clean_error(result, name, fragment)
    assert not (tmp_path / "out").exists()


def test_bad_arguments_are_one_line_errors(tmp_path, weights):
    lr_only = tmp_path / "lr_only"
    lr_only.mkdir()
    Image.fromarray(textured_image(30, 30)).save(lr_only / "a_LR.png")
    cases = [
        (["--tile", -1], ["--tile must be 0 or more"]),
        (["--max-pixels", 0], ["--max-pixels must be 1 or more"]),
        (["--dataset", lr_only], [str(lr_only), "no HR images"]),
    ]
    for args, fragments in cases:
        result = run("test.py", "--weights-file", weights, "--inference-path", "eager", "--output-dir", tmp_path / "o",
                     *args)
        assert_clean_error(result, *fragments)
    assert_clean_error(run("visualize_filters.py", "--weights-file", weights, "--zoom", 0), "--zoom must be 1 or more")
    past = run("visualize_filters.py", "--weights-file", weights, "--layers", "conv1", "conv2", "--input-channel", 64,
               "--output-dir", tmp_path / "filters")
    assert_clean_error(past, "--input-channel 64: conv2 has 64 input channels (0-63)")
    assert not (tmp_path / "filters").exists()  # refused before anything is drawn


def test_low_res_output_over_max_pixels_is_refused_before_the_work(tmp_path, weights):
    """A 40x40 LR image is under --max-pixels 10000, its x4 output (160x160) is not: refused, nothing written."""
    Image.fromarray(textured_image(40, 40)).save(tmp_path / "small.png")
    args = ["--image-file", tmp_path / "small.png", "--low-res", "--scale", 4, "--weights-file", weights,
            "--inference-path", "eager", "--output-dir", tmp_path / "out"]
    assert_clean_error(run("test.py", *args, "--max-pixels", 10_000), "small.png", "x4 output, 160x160",
                       "over the limit of 10,000 pixels")
    assert not list((tmp_path / "out").iterdir())  # checked writable up front, nothing written
    assert run("test.py", *args, "--max-pixels", 160 * 160).returncode == 0


def test_identical_images_give_valid_json(tmp_path, weights):
    """A flat image pair: bicubic restores it exactly, its PSNR is infinite. The JSON says null (Python's
    json would write Infinity, which is not JSON) and the table still prints."""
    folder = tmp_path / "flat"
    folder.mkdir()
    hr = np.full((60, 60, 3), 128, np.uint8)
    Image.fromarray(hr).save(folder / "f_HR.png")
    Image.fromarray(degrade(hr, 3)[0]).save(folder / "f_LR.png")
    result = run("test.py", "--dataset", folder, "--weights-file", weights, "--inference-path", "eager",
                 "--json", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    table = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda name: pytest.fail(f"JSON holds {name}"))
    assert table["images"][0]["bicubic_psnr"] is None and table["mean"]["bicubic_psnr"] is None
    assert table["mean"]["bicubic_ssim"] == 1.0 and isinstance(table["mean"]["psnr"], float)
    assert result.stdout.strip().splitlines()[-1].split()[:3] == ["mean", "inf", "1.0000"]


def test_unwritable_outputs_are_one_line_errors(tmp_path, weights):
    folder = tmp_path / "pairs"
    folder.mkdir()
    hr = textured_image(48, 48)
    Image.fromarray(hr).save(folder / "a_HR.png")
    Image.fromarray(degrade(hr, 3)[0]).save(folder / "a_LR.png")
    common = ["--weights-file", weights, "--inference-path", "eager"]
    with read_only(tmp_path / "locked") as locked:
        cases = [  # --json and --export-onnx are written after all the work: their folder is checked before it
            ("test.py", ["--dataset", folder, "--json", locked / "r.json"], "cannot write in"),
            ("test.py", ["--export-onnx", locked / "net.onnx"], "cannot write in"),
            ("test.py", ["--output-dir", locked], "cannot write in"),
            ("test.py", ["--output-dir", locked / "sub"], "cannot create " + str(locked / "sub")),
            ("visualize_filters.py", ["--output-dir", locked], "cannot write " + str(locked / "filters_conv1_x3.png")),
        ]
        for script, args, fragment in cases:
            extra = ["--weights-file", weights] if script == "visualize_filters.py" else common
            result = run(script, *extra, *args)
            assert_clean_error(result, str(locked), fragment)
            assert "PSNR" not in result.stdout  # nothing was evaluated


def test_visualize_filters_draws_fsrcnn_feature_layer(tmp_path):
    torch.manual_seed(0)
    model = build_model("fsrcnn", scale=2)
    torch.save({"model": model.state_dict(), "meta": model.config()}, tmp_path / "fsrcnn.pth")
    result = run("visualize_filters.py", "--weights-file", tmp_path / "fsrcnn.pth", "--zoom", 2, "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    grid = load_image(tmp_path / "filters_feature_x2.png")  # named after the weights' scale
    assert grid.shape == (2 * (7 * 6 + 1), 2 * (8 * 6 + 1))  # 56 filters of 5x5 in 8 columns, 1-pixel gaps
    assert grid.std() > 10
    assert_clean_error(run("visualize_filters.py", "--weights-file", tmp_path / "fsrcnn.pth", "--layers", "conv2"),
                       "fsrcnn.pth", "no conv2 layer", "feature")
