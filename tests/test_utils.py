"""utils.py against MATLAB: the shipped LR images were made by MATLAB imresize, and the published
bicubic PSNRs by MATLAB rgb2ycbcr + the shave-`scale` protocol."""
import json
import math

import numpy as np
import pytest
from conftest import need
from skimage import data as skimage_data
from skimage.metrics import structural_similarity

import utils
from utils import (STRIP_ROWS, _kernel, _resize, _rounded_sum, _upscale, degrade, gaussian_blur, imresize, load_image,
                   modcrop, psnr, rgb2ycbcr, round_half_away, shave, ssim, to_uint8, upscale_bicubic, with_y, y_channel,
                   ycbcr2rgb)

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
    assert to_uint8(np.array([0.49, 1.51, 254.49, 255.49, 255.5, -3.7, -0.51, 127.0])).tolist() == [0, 2, 254, 255, 255, 0, 0, 127]
    image = np.array([[7, 200]], np.uint8)
    assert to_uint8(image).dtype == np.uint8 and to_uint8(image).tolist() == [[7, 200]]  # uint8 passes unchanged


def test_rounding_covers_every_row_of_a_tall_image():
    """Conversions run STRIP_ROWS rows at a time: every strip, the last partial one included, is written."""
    rows = 2 * STRIP_ROWS + 37
    values = np.arange(rows)[:, None] % 250 + np.array([0.5, 0.49, 0.51])  # x.5 (up), x.49 (down), x.51 (up)
    expected = np.arange(rows)[:, None] % 250 + np.array([1, 0, 1])
    np.testing.assert_array_equal(to_uint8(values), expected)


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


@pytest.mark.parametrize("scale", range(1, 9))
def test_integer_upscale_taps_are_polyphase(scale):
    """What the fast upscale builds on: output i * scale + r reads from i + the same offsets for every i, at
    each position a 100,000-pixel side reaches (before clamping, the indices do not depend on the side)."""
    side = 100_000
    _, indices = _kernel(side * scale, scale)
    for r in range(scale):
        np.testing.assert_array_equal(indices[r::scale] - np.arange(side)[:, None],
                                      np.broadcast_to(indices[r], (side, indices.shape[1])), err_msg=f"phase {r}")


def test_fast_rounding_is_to_uint8s():
    """The fast upscale and to_uint8 round floor(x + 0.5) clipped to 0..255: MATLAB's halves away from zero at
    every half, the largest double below one half and the negatives included."""
    halves = np.arange(-3, 257) + 0.5
    edges = np.array([-1e300, -300, -0.51, -0.49, -0.0, 0.0, 0.49999999999999994, 127.49999999999999,
                      254.49999999999997, 255.49999999999997, 256, 1e300])
    values = np.concatenate([halves, edges, np.random.default_rng(0).uniform(-50, 300, 10_000)])
    acc, tmp = np.empty_like(values), np.empty_like(values)
    rounded = _rounded_sum([(values, np.ones_like(values))], acc, tmp).astype(np.uint8)
    matlab = np.clip(round_half_away(values), 0, 255).astype(np.uint8)  # the definition both shortcuts must meet
    np.testing.assert_array_equal(rounded, matlab)
    np.testing.assert_array_equal(to_uint8(values), matlab)
    assert rounded[halves.tolist().index(2.5)] == 3 and rounded[halves.tolist().index(-0.5)] == 0  # not NumPy's 2


@pytest.mark.parametrize("scale", [2, 3, 4, 6])
@pytest.mark.parametrize("channels", [0, 3])
def test_fast_upscale_is_the_generic_path_bit_for_bit(scale, channels):
    """Uint8 noise, gray and RGB, of odd sizes down to 1 pixel a side: what the fast path makes is, to the bit,
    what imresize's generic path makes. Noise overshoots past 0 and 255 everywhere; x2 and x4, whose weights
    are exact binary fractions, land on .5 exactly; at x6 sums that would be .5 in exact arithmetic round by
    their last bit, so there one weight per phase instead of _kernel's own, or another order of the sum,
    changes some values."""
    rng = np.random.default_rng(scale + channels)
    for h, w in [(1, 1), (1, 2), (2, 1), (2, 2), (1, 9), (7, 1), (3, 5), (13, 2), (31, 17), (64, 33)]:
        image = rng.integers(0, 256, (h, w, channels) if channels else (h, w), dtype=np.uint8)
        expected = _resize(image, scale)
        assert expected.shape == (h * scale, w * scale) + image.shape[2:] and expected.dtype == np.uint8
        np.testing.assert_array_equal(_upscale(image, scale), expected, err_msg=f"{h}x{w}")
        np.testing.assert_array_equal(upscale_bicubic(image, scale), expected, err_msg=f"{h}x{w}")


@pytest.mark.parametrize("name", ["Set5", "Set14"])
def test_fast_upscale_is_the_generic_path_on_benchmark_images(data, name):
    """Photos, not noise: every LR file upscaled at its own scale, and every HR image (Set14 has a gray one) at x2."""
    images = [(lr, scale) for scale in (2, 3, 4) for _, lr in pairs(data, name, scale)]
    images += [(hr, 2) for hr, _ in pairs(data, name, 2)]
    assert len(images) == {"Set5": 5, "Set14": 14}[name] * 4
    for image, scale in images:
        np.testing.assert_array_equal(upscale_bicubic(image, scale), _resize(image, scale))


def test_imresize_takes_the_fast_path_for_whole_upscales_of_uint8_only(monkeypatch):
    """uint8 images enlarged by a whole factor skip the generic path; shrinking, fractional factors, floats and
    empty images still take it."""
    generic, scales = _resize, []
    monkeypatch.setattr(utils, "_resize", lambda image, scale: scales.append(scale) or generic(image, scale))
    rgb = np.random.default_rng(5).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    gray = rgb[..., 0]  # 2-D: the generic path records each call once, not once more per channel
    upscale_bicubic(rgb, 3)
    for image, scale in [(rgb, 2), (rgb, 4.0), (gray, 2), (gray, 1)]:
        imresize(image, scale)
    assert scales == []
    for image, scale in [(gray, 1 / 3), (gray, 1.5), (gray.astype(float), 2), (gray[:0], 3)]:
        imresize(image, scale)
    assert scales == [1 / 3, 1.5, 2, 3]


# MATLAB R2019b: rgb2ycbcr(uint8(reshape(rgb, 1, 1, 3))), uint8 in, uint8 out
MATLAB_YCBCR = {(255, 0, 0): (81, 90, 240), (0, 255, 0): (145, 54, 34), (0, 0, 255): (41, 240, 110),
                (255, 255, 255): (235, 128, 128), (0, 0, 0): (16, 128, 128), (128, 128, 128): (126, 128, 128),
                (255, 255, 0): (210, 16, 146), (0, 255, 255): (170, 166, 16), (255, 0, 255): (106, 202, 222)}


def test_rgb2ycbcr_gives_matlabs_uint8_results():
    rgb = np.array([list(MATLAB_YCBCR)], np.uint8)  # 1 x 9 x 3
    expected = np.array([list(MATLAB_YCBCR.values())])
    np.testing.assert_array_equal(to_uint8(rgb2ycbcr(rgb)), expected)
    np.testing.assert_allclose(rgb2ycbcr(np.array([255, 0, 0])), [81.481, 90.203, 240], atol=1e-3)
    np.testing.assert_allclose(ycbcr2rgb(expected.astype(float)), rgb, atol=1.5)  # back to the colours, within rounding
    noise = np.random.default_rng(0).integers(0, 256, (20, 20, 3))
    np.testing.assert_allclose(ycbcr2rgb(rgb2ycbcr(noise)), noise, atol=1e-9)


def test_y_channel_is_matlabs_uint8_y_for_rgb_and_raw_for_gray():
    """Y rounded as MATLAB's uint8 cast: 144.553 (green) is 145 and 40.966 (blue) 41, not 144 and 40;
    every row of an image taller than a conversion strip gets its own value."""
    colours = np.array(list(MATLAB_YCBCR), np.uint8)
    rows = 2 * STRIP_ROWS + 37
    image = np.repeat(colours[np.arange(rows) % len(colours)][:, None], 4, axis=1)  # row i: colour i mod 9
    y = y_channel(image)
    assert y.shape == (rows, 4) and y.dtype == np.float64
    expected_y = np.array([ycbcr[0] for ycbcr in MATLAB_YCBCR.values()])[np.arange(rows) % len(colours)]
    np.testing.assert_array_equal(y, np.repeat(expected_y[:, None], 4, axis=1))
    gray = np.array([[0, 17, 128, 255]], np.uint8)
    np.testing.assert_array_equal(y_channel(gray), [[0, 17, 128, 255]])  # gray is its own Y, not 16..235


def test_modcrop_keeps_the_top_left():
    grid = np.arange(101 * 77).reshape(101, 77)  # the value at (r, c) is 77 r + c
    cropped = modcrop(grid, 4)
    assert cropped.shape == (100, 76)
    assert cropped[0, 0] == 0 and cropped[-1, -1] == 77 * 99 + 75
    np.testing.assert_array_equal(cropped, 77 * np.arange(100)[:, None] + np.arange(76))
    rgb = np.stack([grid, grid + 1, grid + 2], axis=2)
    np.testing.assert_array_equal(modcrop(rgb, 3), rgb[:99, :75])
    assert modcrop(rgb, 3)[0, 0].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(modcrop(grid[:100, :76], 4), grid[:100, :76])  # already a multiple: unchanged


@pytest.mark.parametrize("sigma", [0.73, 1.6])
def test_gaussian_blur_matches_scipy_with_radius_ceil_3_sigma(sigma):
    """scipy's Gaussian filter, its radius set to ceil(3 sigma), 'reflect' edges (NumPy's 'symmetric':
    the edge pixel repeated): the same everywhere, the border included; per channel for RGB."""
    from scipy.ndimage import gaussian_filter
    radius = math.ceil(3 * sigma)
    rng = np.random.default_rng(0)
    gray = rng.uniform(0, 255, (23, 31))
    expected = gaussian_filter(gray, sigma, mode="reflect", radius=radius)
    blurred = gaussian_blur(gray, sigma)
    np.testing.assert_allclose(blurred, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(blurred[:radius], expected[:radius], rtol=0, atol=1e-9)  # at the borders
    rgb = rng.integers(0, 256, (17, 19, 3)).astype(np.uint8)
    np.testing.assert_allclose(gaussian_blur(rgb, sigma), gaussian_filter(rgb.astype(float), (sigma, sigma, 0),
                                                                          mode="reflect", radius=(radius, radius, 0)),
                               rtol=0, atol=1e-9)


def test_blurred_degradation_rounds_the_blur_to_8_bits_then_shrinks():
    """degrade with a blur: Gaussian (scipy, radius ceil(3 sigma)), stored as uint8 (MATLAB's rounding), then
    MATLAB bicubic down; the bicubic image is that LR image upscaled."""
    from scipy.ndimage import gaussian_filter
    hr = np.random.default_rng(4).integers(0, 256, (30, 36, 3)).astype(np.uint8)
    blurred = gaussian_filter(hr.astype(float), (0.73, 0.73, 0), mode="reflect", radius=(3, 3, 0))
    lr, bicubic = degrade(hr, 3, 0.73)
    assert lr.dtype == bicubic.dtype == np.uint8 and lr.shape == (10, 12, 3) and bicubic.shape == hr.shape
    np.testing.assert_array_equal(lr, imresize(np.floor(blurred + 0.5).astype(np.uint8), 1 / 3))
    np.testing.assert_array_equal(bicubic, imresize(lr, 3))
    assert not np.array_equal(lr, degrade(hr, 3)[0])  # the blur changed it


@pytest.mark.parametrize("sigma,radius", [(0.73, 3), (1.0, 3), (1.6, 5)])
def test_gaussian_blur_impulse_response_is_a_normalised_gaussian_of_radius_ceil_3_sigma(sigma, radius):
    impulse = np.zeros((31, 31))
    impulse[15, 15] = 1.0
    response = gaussian_blur(impulse, sigma)
    rows, columns = np.nonzero(response)
    assert (rows.min(), rows.max(), columns.min(), columns.max()) == (15 - radius, 15 + radius, 15 - radius, 15 + radius)
    assert response.sum() == pytest.approx(1.0, abs=1e-12)
    x = np.arange(-radius, radius + 1)
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    np.testing.assert_allclose(response[15 - radius:16 + radius, 15 - radius:16 + radius], np.outer(g, g) / g.sum() ** 2,
                               rtol=1e-12, atol=1e-15)
    # an impulse in the corner: the symmetric edge folds the kernel's outer half back onto the image
    corner = np.zeros((12, 12))
    corner[0, 0] = 1.0
    folded = gaussian_blur(corner, sigma)
    edge = np.zeros(12)
    for i, k in zip(x, g / g.sum()):  # tap i of pixel j reads pixel j + i, mirrored: -1 -> 0, -2 -> 1, ...
        for j in range(12):
            if (j + i if j + i >= 0 else -1 - (j + i)) == 0:
                edge[j] += k
    np.testing.assert_allclose(folded, np.outer(edge, edge), rtol=1e-12, atol=1e-15)


def test_modcrop_and_shave():
    image = np.zeros((101, 77, 3))
    assert modcrop(image, 4).shape == (100, 76, 3)
    grid = np.arange(10 * 12).reshape(10, 12)
    np.testing.assert_array_equal(shave(grid, 3), 12 * np.arange(3, 7)[:, None] + np.arange(3, 9))
    assert shave(grid, 0) is grid


def test_psnr_and_ssim_follow_the_protocol():
    rng = np.random.default_rng(2)
    hr = rng.uniform(0, 255, (40, 40))
    sr = hr.copy()
    sr[:3], sr[-3:], sr[:, :3], sr[:, -3:] = 0, 255, 0, 255  # errors only inside the shaved border do not count
    assert psnr(hr, sr, 3) == float("inf")
    assert ssim(hr, sr, 3) == pytest.approx(1.0)
    inside = hr.copy()
    inside[3, 3], inside[-4, -4], inside[3, -4], inside[-4, 3] = hr[3, 3] + 34, hr[-4, -4] - 34, hr[3, -4] + 34, hr[-4, 3] - 34
    # the four corners of the measured 34 x 34 centre: 4 errors of 34 among 34 * 34 pixels
    assert psnr(hr, inside, 3) == pytest.approx(10 * np.log10(255 ** 2 / (4 * 34 ** 2 / 34 ** 2)))
    assert psnr(hr, inside, 4) == float("inf")
    noisy = hr + 5.0
    assert psnr(hr, noisy, 3) == pytest.approx(10 * np.log10(255 ** 2 / 25))
    assert ssim(hr, hr, 3) == pytest.approx(1.0)
    expected = structural_similarity(hr[3:-3, 3:-3], noisy[3:-3, 3:-3], data_range=255, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert ssim(hr, noisy, 3) == pytest.approx(expected)
    assert ssim(hr, hr + rng.normal(0, 20, hr.shape), 3) < ssim(hr, noisy, 3)


def test_ssim_of_an_image_taller_than_a_strip_equals_the_whole_image_computation():
    """ssim() builds its map STRIP_ROWS rows at a time with 5 rows of context: the same mean as one
    scikit-image call on the whole shaved image."""
    rng = np.random.default_rng(3)
    hr = rng.uniform(0, 255, (2 * STRIP_ROWS + 50, 30))
    sr = np.clip(hr + rng.normal(0, 25, hr.shape) * np.linspace(0, 2, len(hr))[:, None], 0, 255)  # error varies by row
    expected = structural_similarity(hr[4:-4, 4:-4], sr[4:-4, 4:-4], data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert ssim(hr, sr, 4) == pytest.approx(expected, rel=1e-12)


def test_with_y_is_the_ycbcr_round_trip_within_a_level():
    """with_y's shortcut (rgb + (y - Y) * 255/219) against the way it replaces: rgb2ycbcr, Y swapped,
    ycbcr2rgb, rounded; on a real photo with a restored-looking Y (the photo's own Y, shifted)."""
    rgb = skimage_data.astronaut()
    y = np.clip(y_channel(rgb) + np.random.default_rng(0).integers(-20, 21, rgb.shape[:2]), 16, 235)
    ycbcr = rgb2ycbcr(rgb)
    ycbcr[..., 0] = y
    expected = to_uint8(ycbcr2rgb(ycbcr)).astype(int)
    got = with_y(rgb, y).astype(int)
    assert np.abs(got - expected).max() <= 1 and (got != expected).mean() < 1e-4
    np.testing.assert_array_equal(with_y(rgb, rgb2ycbcr(rgb)[..., 0]), rgb)  # its own Y: the same image back
