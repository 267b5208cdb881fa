"""SRCNN and FSRCNN, on Y and in colour, through the same scripts end to end on small generated data."""
import h5py
import numpy as np
import pytest
from conftest import FixedOutput, run, textured_image
from PIL import Image

from evaluate import upscale
from models import load_model
from utils import from_color, to_color, y_channel


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i in range(3):
        Image.fromarray(textured_image(96, 120, seed=i)).save(folder / f"im{i}.png")
    Image.fromarray(textured_image(96, 96, seed=9, channels=1)).save(folder / "gray.png")
    return folder


@pytest.mark.parametrize("arch,color", [("9-5-5", "y"), ("fsrcnn", "y"), ("9-5-5", "rgb"), ("fsrcnn-s", "ycbcr")])
def test_end_to_end(images, tmp_path, arch, color):
    fsrcnn = arch.startswith("fsrcnn")
    patches = tmp_path / "train.h5"
    extra = (["--lr-size"] if fsrcnn else []) + ([] if color == "y" else ["--channels", 3, "--color", color])
    made = run("preprocess.py", "--images", images, "--scale", 3, "--stride", 21, "--output", patches, *extra)
    assert made.returncode == 0, made.stderr
    channels = 1 if color == "y" else 3
    with h5py.File(patches) as f:
        lr_side = 11 if fsrcnn else 33
        assert f["lr"].shape[1:] == ((channels,) if channels == 3 else ()) + (lr_side, lr_side)
        assert f.attrs["color"] == color
    run_dir = tmp_path / "run"
    trained = run("train.py", "--arch", arch, "--train-file", patches, "--eval-file", images, "--scale", 3,
                  "--output-dir", run_dir, "--epochs", 1, "--batch-size", 4, "--lr", 1e-3, "--workers", 0)
    assert trained.returncode == 0, trained.stderr[-3000:]
    model, meta = load_model(run_dir / "best.pth")
    assert meta["color"] == color and model.takes_lr == fsrcnn
    first = model.feature[0] if fsrcnn else model.conv1
    assert first.in_channels == channels
    out = tmp_path / "out"
    tested = run("test.py", "--weights-file", run_dir / "best.pth", "--image-file", images, "--output-dir", out)
    assert tested.returncode == 0, tested.stderr
    network = ("fsrcnn" if fsrcnn else "srcnn") + ("" if color == "y" else f"_{color}")  # outputs are named after it
    assert np.asarray(Image.open(out / f"im0_{network}_x3.png")).shape == (96, 120, 3)
    assert np.asarray(Image.open(out / f"gray_{network}_x3.png")).shape == (96, 96)  # gray in, gray out
    assert tested.stdout.count(f"| {network.upper().replace('_', ' ')} PSNR") == 4
    # validation during training and test.py agree on every model kind
    table = run("test.py", "--weights-file", run_dir / "best.pth", "--dataset", images, "--json", tmp_path / "t.json",
                "--inference-path", "channels_last")  # train.py's arithmetic, for agreement to the last digit
    assert table.returncode == 0, table.stderr
    import json
    assert json.loads((tmp_path / "t.json").read_text())["mean"]["psnr"] == pytest.approx(meta["val_psnr"], abs=1e-9)


def test_fsrcnn_needs_lr_size_patches(images, tmp_path):
    patches = tmp_path / "p.h5"
    assert run("preprocess.py", "--images", images, "--scale", 3, "--output", patches).returncode == 0
    result = run("train.py", "--arch", "fsrcnn", "--train-file", patches, "--eval-file", images)
    assert result.returncode != 0 and "needs patches made with preprocess.py --lr-size" in result.stderr


def test_colour_conversions_invert():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3)).astype(np.uint8)
    for color in ("ycbcr", "rgb"):
        x = to_color(rgb, color)
        assert x.shape == (6, 7, 3)
        assert np.abs(from_color(x, color, gray=False).astype(int) - rgb).max() <= 1  # 8-bit YCbCr rounding
    as_output = lambda image: (to_color(image, "rgb") / 255).astype(np.float32).transpose(2, 0, 1)[None]
    sr, sr_y = upscale(FixedOutput(as_output(rgb)), rgb, rgb, "rgb")  # an RGB network is measured on its image's Y
    np.testing.assert_array_equal(sr, rgb)
    np.testing.assert_array_equal(sr_y, y_channel(rgb))
    gray = rgb[..., 0]
    np.testing.assert_array_equal(to_color(gray, "y")[..., 0], gray)
    np.testing.assert_array_equal(from_color(to_color(gray, "rgb"), "rgb", gray=True), gray)
    sr, sr_y = upscale(FixedOutput(as_output(gray)), gray, gray, "rgb")  # a gray input: the raw intensity
    np.testing.assert_array_equal(sr, gray)
    np.testing.assert_array_equal(sr_y, gray)
