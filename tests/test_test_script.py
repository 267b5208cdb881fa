"""test.py as a user runs it: files written, numbers printed, errors readable."""
import json

import numpy as np
import pytest
import torch
from conftest import REPO, FixedOutput, assert_clean_error, need, run, textured_image
from PIL import Image
from skimage import data as skimage_data

import comparison
from evaluate import upscale
from models import build_model
from utils import degrade, load_image, modcrop, psnr, upscale_bicubic, y_channel


def zoomed_crop(sheet, column, width, height, crop):
    """The zoom panel of one comparison column, where comparison.py pastes it."""
    left, top = column * (width + comparison.GAP), comparison.HEADER + height + comparison.GAP
    return sheet[top:top + crop[0] * comparison.ZOOM, left:left + crop[1] * comparison.ZOOM]


def test_hr_image_gives_bicubic_srcnn_and_a_labelled_comparison_with_a_zoomed_crop(tmp_path, weights):
    Image.fromarray(textured_image(100, 82)).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    result = run("test.py", "--image-file", tmp_path / "photo.png", "--weights-file", weights, "--output-dir", out)
    assert result.returncode == 0, result.stderr
    hr = modcrop(load_image(tmp_path / "photo.png"), 3)
    bicubic = load_image(out / "photo_bicubic_x3.png")
    np.testing.assert_array_equal(bicubic, degrade(hr, 3)[1])
    sr = load_image(out / "photo_srcnn_x3.png")
    assert sr.shape == hr.shape == (99, 81, 3)
    sheet = load_image(out / "photo_srcnn_x3_comparison.png")
    header = comparison.HEADER
    assert sheet.shape == (header + 2 * 99 + comparison.GAP, 3 * 81 + 2 * comparison.GAP, 3)
    for column in range(3):  # each panel is labelled: dark text on the white header
        assert (sheet[:header, column * (81 + 4):column * (81 + 4) + 81] < 100).any()
    overview = sheet[header:header + 99, 85:85 + 81]
    unmarked = ~(overview == comparison.MARK).all(axis=2)  # all but the red box around the zoomed region
    np.testing.assert_array_equal(overview[unmarked], sr[unmarked])
    assert 50 < (~unmarked).sum() < 200
    crop = (99 // comparison.ZOOM, 81 // comparison.ZOOM)
    y, x = comparison.detail_box(hr, *crop)  # the most detailed region of the original, enlarged from each image
    for column, image in enumerate((bicubic, sr, hr)):
        enlarged = image[y:y + crop[0], x:x + crop[1]].repeat(comparison.ZOOM, 0).repeat(comparison.ZOOM, 1)
        np.testing.assert_array_equal(zoomed_crop(sheet, column, 81, 99, crop), enlarged)
    expected = psnr(y_channel(hr), y_channel(bicubic), 3)
    assert f"bicubic PSNR {expected:.2f} dB" in result.stdout


def test_detail_box_finds_the_textured_region():
    flat = np.full((60, 80), 128, np.uint8)
    flat[30:45, 50:70] = textured_image(15, 20, channels=1)
    y, x = comparison.detail_box(flat, 15, 20)
    assert abs(y - 30) <= 1 and abs(x - 50) <= 1  # the edge of the patch has gradients too


def test_lr_input_is_only_upscaled(tmp_path, weights):
    Image.fromarray(textured_image(30, 40, channels=1)).save(tmp_path / "small.png")
    result = run("test.py", "--image-file", tmp_path / "small.png", "--low-res", "--scale", 2, "--weights-file", weights,
                 "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "PSNR" not in result.stdout and "trained for x3" in result.stderr
    assert load_image(tmp_path / "small_srcnn_x2.png").shape == (60, 80)  # grayscale stays grayscale
    assert sorted(p.name for p in tmp_path.glob("small_*")) == ["small_srcnn_x2.png"]  # the result only, unless asked
    result = run("test.py", "--image-file", tmp_path / "small.png", "--low-res", "--scale", 2, "--weights-file", weights,
                 "--output-dir", tmp_path, "--compare")
    assert result.returncode == 0, result.stderr
    assert load_image(tmp_path / "small_bicubic_x2.png").shape == (60, 80)
    assert load_image(tmp_path / "small_srcnn_x2_comparison.png").shape == (comparison.HEADER + 2 * 60 + 4, 2 * 80 + 4, 3)


def test_folder_of_images(tmp_path, weights):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(textured_image(48, 48, seed=i)).save(folder / f"im{i}.png")
    result = run("test.py", "--image-file", folder, "--weights-file", weights, "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*_srcnn_x3.png")) == ["im0_srcnn_x3.png", "im1_srcnn_x3.png"]
    assert "upscale: 100%" in result.stderr and "2/2" in result.stderr  # the folder's progress bar
    assert [line.split(" x3:")[0] for line in result.stdout.splitlines() if " x3:" in line] == ["im0", "im1"]  # in order


def test_a_folder_whose_images_share_a_name_is_refused_before_any_work(tmp_path, weights):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        Image.fromarray(textured_image(24, 24)).save(tmp_path / "in" / sub / "x.png")
    result = run("test.py", "--image-file", tmp_path / "in", "--low-res", "--weights-file", weights,
                 "--output-dir", tmp_path / "out")
    assert_clean_error(result, "a/x.png and", "b/x.png would write the same output files")
    assert not list((tmp_path / "out").glob("*.png"))


def test_dataset_table_and_json(data, tmp_path, weights):
    set14 = need(data / "Set14" / "x4")
    reference = json.loads((data / "reference_psnr.json").read_text())["Set14_x4"]["Bicubic"]
    result = run("test.py", "--dataset", set14, "--scale", 4, "--weights-file", weights, "--json", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    table = json.loads((tmp_path / "r.json").read_text())
    assert [r["image"] for r in table["images"]][:2] == ["img_001_SRF_4", "img_002_SRF_4"]
    np.testing.assert_allclose([r["bicubic_psnr"] for r in table["images"]], reference["psnr_per_image"], atol=0.01)
    assert result.stdout.strip().splitlines()[-1].split()[:2] == ["mean", f"{table['mean']['bicubic_psnr']:.2f}"]


def test_default_run_uses_shipped_weights_on_coffee(tmp_path):
    result = run("test.py", "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    bicubic, srcnn = (float(line.split(f"{k} PSNR ")[1].split()[0]) for k in ("bicubic", "SRCNN"))
    assert srcnn > bicubic + 0.5  # the shipped weights really restore detail
    assert (tmp_path / "coffee_srcnn_x3_comparison.png").exists()


RECORDED = REPO / "tests" / "data"  # test.py's outputs on a coffee crop with today's shipped files, eager fp32
# (re-record a file's PNG when it is replaced: python test.py --image-file crop.png --low-res --scale 3
# --weights-file weights/<file> --inference-path eager); before_issue25/: test.py's outputs and the
# networks' float32 outputs before #25, with the files shipped then
BEFORE_25 = RECORDED / "before_issue25"


def coffee_crop():
    return skimage_data.coffee()[100:148, 200:264]


@pytest.mark.parametrize("network", ["fsrcnn_x3", "srcnn_x3"])
def test_the_work_after_the_network_gives_the_recorded_output_within_a_level(network):
    """The colour work on the network's recorded output (so any CPU computes the same thing) against the
    PNG test.py wrote from it before the float32 Y swap of issue #25: no value more than one 8-bit level
    apart, and few even that."""
    output = np.load(BEFORE_25 / "coffee_crop_network_outputs.npz")[network]
    lr = coffee_crop()
    sr = upscale(FixedOutput(output, takes_lr=network.startswith("fsrcnn")), lr, upscale_bicubic(lr, 3), "y")[0]
    recorded = load_image(BEFORE_25 / f"coffee_crop_{network}.png").astype(int)
    assert sr.shape == recorded.shape == (144, 192, 3)
    assert np.abs(sr.astype(int) - recorded).max() <= 1 and (sr != recorded).mean() < 1e-3


@pytest.mark.parametrize("network", ["fsrcnn_x3", "srcnn_x3"])
def test_photo_upscale_matches_the_recorded_output(tmp_path, network):
    """The whole run, shipped weights on ONNX Runtime: another CPU's kernels may round the network's Y a
    level the other way here and there, which moves an RGB value by up to 2."""
    Image.fromarray(coffee_crop()).save(tmp_path / "crop.png")
    result = run("test.py", "--image-file", tmp_path / "crop.png", "--low-res", "--scale", 3,
                 "--weights-file", f"weights/{network}.pth", "--inference-path", "onnxruntime", "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    got = load_image(tmp_path / f"crop_{network}.png").astype(int)
    recorded = load_image(RECORDED / f"coffee_crop_{network}.png").astype(int)
    assert np.abs(got - recorded).max() <= 2 and (got != recorded).mean() < 1e-2


def test_bad_inputs_are_one_line_errors(tmp_path, weights):
    (tmp_path / "notes.png").write_text("not an image")
    Image.fromarray(textured_image(64, 64)).save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:300])
    state = build_model("9-5-5").state_dict()
    state["conv3.weight"] = torch.zeros(1, 16, 5, 5)
    torch.save(state, tmp_path / "wrong.pth")
    (tmp_path / "empty").mkdir()
    Image.fromarray(textured_image(4, 4)).save(tmp_path / "tiny.png")
    cases = [
        (["--image-file", tmp_path / "notes.png"], ["notes.png", "not a readable image"]),
        (["--image-file", tmp_path / "cut.png"], ["cut.png", "not a readable image"]),
        (["--image-file", tmp_path / "tiny.png", "--scale", 3], ["tiny", "too small"]),
        (["--image-file", tmp_path / "empty"], ["empty", "no images found"]),
        (["--image-file", tmp_path / "missing.png"], ["missing.png", "no such file"]),
        (["--scale", 1], ["invalid choice: 1"]),
        (["--scale", 7], ["invalid choice: 7"]),
        (["--blur-sigma", -1], ["--blur-sigma must be 0 or more"]),
    ]
    for args, fragments in cases:
        assert_clean_error(run("test.py", "--weights-file", weights, "--output-dir", tmp_path / "o", *args), *fragments)
    assert_clean_error(run("test.py", "--weights-file", tmp_path / "wrong.pth"), "wrong.pth", "do not chain")
    assert_clean_error(run("test.py", "--weights-file", tmp_path / "none.pth"), "none.pth", "no such weights file")


def test_visualize_filters_draws_a_grid_per_layer(tmp_path, weights):
    result = run("visualize_filters.py", "--weights-file", weights, "--layers", "conv1", "conv3", "--zoom", 2,
                 "--output-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    conv1 = load_image(tmp_path / "filters_conv1_x3.png")
    assert conv1.shape == (2 * (8 * 10 + 1), 2 * (8 * 10 + 1))  # 64 filters of 9x9 in an 8x8 grid, 1-pixel gaps
    assert conv1.std() > 10  # filters, not a blank canvas
    # conv3 has one output: its 32 input slices of 5x5
    assert load_image(tmp_path / "filters_conv3_x3.png").shape == (2 * (4 * 6 + 1), 2 * (8 * 6 + 1))


def test_tiled_run_writes_the_same_image(tmp_path, weights):
    Image.fromarray(textured_image(90, 120)).save(tmp_path / "big.png")
    for tile, out in ((0, "whole"), (24, "tiled")):
        result = run("test.py", "--image-file", tmp_path / "big.png", "--weights-file", weights, "--tile", tile,
                     "--output-dir", tmp_path / out)
        assert result.returncode == 0, result.stderr
    whole, tiled = (load_image(tmp_path / d / "big_srcnn_x3.png").astype(int) for d in ("whole", "tiled"))
    assert np.abs(whole - tiled).max() <= 1 and np.mean(whole != tiled) < 1e-3  # float summation order only


def test_blur_sigma_is_honoured_in_dataset_mode_and_said(tmp_path, weights):
    """A blur changes how LR is made in a pair folder (LR from HR, the *_LR files unused) and in an HR-only
    folder, and test.py says which degradation it used."""
    pairs, plain = tmp_path / "pairs", tmp_path / "plain"
    pairs.mkdir(), plain.mkdir()
    for i in range(2):
        hr = textured_image(60, 72, seed=i)
        Image.fromarray(hr).save(pairs / f"im{i}_HR.png")
        Image.fromarray(degrade(hr, 3)[0]).save(pairs / f"im{i}_LR.png")
        Image.fromarray(hr).save(plain / f"im{i}.png")
    for folder in (pairs, plain):
        means = {}
        for blur in (0, 1.0):
            result = run("test.py", "--dataset", folder, "--weights-file", weights, "--blur-sigma", blur,
                         "--json", tmp_path / "r.json")
            assert result.returncode == 0, result.stderr
            means[blur] = json.loads((tmp_path / "r.json").read_text())["mean"]["bicubic_psnr"]
            said = result.stdout.splitlines()[0]
            assert said.startswith("degradation: " + ("Gaussian blur sigma 1, then " if blur else "MATLAB bicubic"))
            assert ("not used" in said) == bool(blur)
        assert means[1.0] < means[0] - 0.5, (folder, means)


def test_weights_trained_with_blur_degrade_with_it_unless_overridden(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "blurred.pth"
    torch.save({"model": build_model("9-5-5").state_dict(), "meta": {"scale": 3, "blur_sigma": 0.73}}, path)
    Image.fromarray(textured_image(60, 60)).save(tmp_path / "a.png")
    hr = modcrop(load_image(tmp_path / "a.png"), 3)
    for extra, blur in (([], 0.73), (["--blur-sigma", 0], 0.0)):
        result = run("test.py", "--image-file", tmp_path / "a.png", "--weights-file", path, "--output-dir", tmp_path, *extra)
        assert result.returncode == 0, result.stderr
        assert ("Gaussian blur sigma 0.73" in result.stdout) == bool(blur)
        np.testing.assert_array_equal(load_image(tmp_path / "a_bicubic_x3.png"), degrade(hr, 3, blur)[1])
