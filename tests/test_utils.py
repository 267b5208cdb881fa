"""utils.py against MATLAB: the shipped LR images were made by MATLAB imresize, and the published
bicubic PSNRs by MATLAB rgb2ycbcr + the shave-`scale` protocol."""
import json

import numpy as np
import pytest
from conftest import need
from skimage.metrics import structural_similarity

from utils import (degrade, imresize, load_image, modcrop, psnr, rgb2ycbcr, shave, ssim, to_uint8, upscale_bicubic,
                   y_channel, ycbcr2rgb)

SETS = [(name, scale) for name in ("Set5", "Set14") for scale in (2, 3, 4)]


def pairs(data, name, scale):
    folder = need(data / name / f"x{scale}")
    for hr_path in sorted(folder.glob("*_HR.png")):
        yield load_image(hr_path), load_image(hr_path.with_name(hr_path.name.replace("_HR", "_LR")))


def test_degrade_reproduces_every_matlab_made_lr_file_bit_exactly(data):
    """Every *_LR.png in the shared data from its *_HR.png: MATLAB's rounding (halves away from zero) and
    its imresize's replicated edges; NumPy's half-to-even or mirrored edges change ~1% of the values."""
    files = sorted(data.rglob("*_LR.png"))
    assert len(files) >= 57  # Set5 and Set14 at x2, x3, x4
    for lr_path in files:
        scale = int(lr_path.parent.name.removeprefix("x"))
        hr = load_image(lr_path.with_name(lr_path.name.replace("_LR", "_HR")))
        np.testing.assert_array_equal(degrade(hr, scale)[0], load_image(lr_path), err_msg=str(lr_path))


def test_rounding_is_matlabs():
    assert to_uint8(np.array([0.5, 1.5, 2.5, 254.5, -0.5, 300.0])).tolist() == [1, 2, 3, 255, 0, 255]


@pytest.mark.parametrize("name,scale", SETS)
def test_bicubic_baseline_matches_published_psnr(data, name, scale):
    reference = json.loads(need(data / "reference_psnr.json").read_text())[f"{name}_x{scale}"]["Bicubic"]
    mine = [psnr(y_channel(hr), y_channel(upscale_bicubic(lr, scale)), scale) for hr, lr in pairs(data, name, scale)]
    assert len(mine) == len(reference["psnr_per_image"])
    np.testing.assert_allclose(mine, reference["psnr_per_image"], atol=0.01)
    assert abs(np.mean(mine) - reference["psnr_mean"]) < 0.01


def test_imresize_shapes_and_constant_images():
    image = np.full((17, 10, 3), 77, np.uint8)
    assert imresize(image, 3).shape == (51, 30, 3)
    assert imresize(image, 1 / 3).shape == (6, 4, 3)  # ceil, as MATLAB
    assert np.all(imresize(image, 1 / 3) == 77) and imresize(image, 1 / 3).dtype == np.uint8
    assert np.allclose(imresize(image.astype(float), 2), 77)


def test_imresize_upscale_interpolates_a_ramp_exactly():
    ramp = np.tile(np.arange(40, dtype=float), (8, 1))
    up = imresize(ramp, 2)
    # interior samples of a linear ramp sit at (x + 0.5) / 2 - 0.5 in input coordinates; cubic is exact on lines
    expected = (np.arange(80) + 0.5) / 2 - 0.5
    np.testing.assert_allclose(up[4, 8:-8], expected[8:-8], atol=1e-9)


def test_rgb2ycbcr_matches_matlab_constants():
    assert np.allclose(rgb2ycbcr(np.array([255, 255, 255])), [235, 128, 128], atol=1e-3)
    assert np.allclose(rgb2ycbcr(np.array([0, 0, 0])), [16, 128, 128])
    assert np.allclose(rgb2ycbcr(np.array([255, 0, 0])), [81.481, 90.203, 240], atol=1e-3)
    rgb = np.random.default_rng(0).integers(0, 256, (20, 20, 3))
    np.testing.assert_allclose(ycbcr2rgb(rgb2ycbcr(rgb)), rgb, atol=1e-9)


def test_y_channel_is_uint8_y_for_rgb_and_raw_for_gray():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 5, 3)).astype(np.uint8)
    np.testing.assert_array_equal(y_channel(rgb), to_uint8(rgb2ycbcr(rgb)[..., 0]))
    gray = rgb[..., 0]
    np.testing.assert_array_equal(y_channel(gray), gray)


def test_modcrop_and_shave():
    image = np.zeros((101, 77, 3))
    assert modcrop(image, 4).shape == (100, 76, 3)
    assert shave(np.zeros((10, 12)), 3).shape == (4, 6)


def test_psnr_and_ssim_follow_the_protocol():
    rng = np.random.default_rng(2)
    hr = rng.uniform(0, 255, (40, 40))
    sr = hr.copy()
    sr[:3] = 0  # errors only inside the shaved border do not count
    assert psnr(hr, sr, 3) == float("inf")
    noisy = hr + 5.0
    assert psnr(hr, noisy, 3) == pytest.approx(10 * np.log10(255 ** 2 / 25))
    assert ssim(hr, hr, 3) == pytest.approx(1.0)
    expected = structural_similarity(hr[3:-3, 3:-3], noisy[3:-3, 3:-3], data_range=255, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert ssim(hr, noisy, 3) == pytest.approx(expected)
    assert ssim(hr, hr + rng.normal(0, 20, hr.shape), 3) < ssim(hr, noisy, 3)
