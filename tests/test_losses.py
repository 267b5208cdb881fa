import math

import numpy as np
import pytest
import torch

import losses


@pytest.mark.parametrize("name", ["mse", "psnr", "ssim", "ms-ssim", "weighted"])
def test_every_loss_falls_as_the_output_nears_the_target(name):
    torch.manual_seed(0)
    hr = torch.rand(4, 1, 33, 33)
    noise = torch.randn_like(hr)
    loss = losses.get_loss(name)
    values = [loss((hr + s * noise).clamp(0, 1), hr).item() for s in (0.2, 0.1, 0.02)]
    assert values[0] > values[1] > values[2]


def test_losses_are_differentiable():
    hr = torch.rand(2, 1, 33, 33)
    sr = torch.rand(2, 1, 33, 33, requires_grad=True)
    for name in ("mse", "psnr", "ssim", "ms-ssim", "weighted"):
        losses.get_loss(name)(sr, hr).backward()
        assert torch.isfinite(sr.grad).all()
        sr.grad = None


def test_psnr_is_finite_at_zero_error_and_correct_otherwise():
    hr = torch.rand(1, 1, 8, 8)
    assert torch.isfinite(losses.psnr(hr, hr))
    assert losses.psnr(hr + 0.1, hr).item() == pytest.approx(20.0, abs=1e-3)


def pair():
    """A smooth image and a noisy copy, two of them: MSE (~0.008), -PSNR (~-21) and 1 - SSIM (~0.5) differ
    clearly, so weights given to the wrong term change the weighted loss by far more than rounding."""
    from conftest import textured_image
    hr = torch.from_numpy(np.stack([textured_image(40, 40, seed=s, channels=1) for s in (0, 1)]) / 255.0).float()[:, None]
    noise = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, hr.shape)).float()
    return (hr + noise).clamp(0, 1), hr


def reference_terms(sr, hr):
    """MSE, PSNR and SSIM from their definitions; SSIM by scikit-image with the same Gaussian window."""
    from skimage.metrics import structural_similarity
    sr64, hr64 = sr.double().numpy(), hr.double().numpy()
    mse = float(np.mean((sr64 - hr64) ** 2))
    ssim = float(np.mean([structural_similarity(a[0], b[0], data_range=1.0, gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False) for a, b in zip(sr64, hr64)]))
    return mse, 10 * math.log10(1 / mse), ssim


def test_each_loss_has_its_defined_value():
    sr, hr = pair()
    mse, psnr, ssim = reference_terms(sr, hr)
    assert 0.005 < mse < 0.02 and 15 < psnr < 25 and 0.3 < ssim < 0.8
    assert losses.get_loss("mse")(sr, hr).item() == pytest.approx(mse, rel=1e-5)
    assert losses.get_loss("psnr")(sr, hr).item() == pytest.approx(-psnr, rel=1e-5)
    assert losses.psnr(sr, hr).item() == pytest.approx(psnr, rel=1e-5)
    assert losses.get_loss("ssim")(sr, hr).item() == pytest.approx(1 - ssim, rel=1e-4)
    assert losses.ssim(sr, hr).item() == pytest.approx(ssim, rel=1e-4)


def test_psnr_of_a_batch_is_that_of_its_mean_squared_error():
    hr = torch.zeros(2, 1, 8, 8)
    sr = hr.clone()
    sr[0] += 0.1  # MSE 0.01 on one image, 0 on the other: batch MSE 0.005
    assert losses.psnr(sr, hr).item() == pytest.approx(10 * math.log10(1 / 0.005), abs=1e-4)


@pytest.mark.parametrize("weights", [(0.2, 0.3, 0.5), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)])
def test_weighted_loss_combines_its_terms(weights):
    sr, hr = pair()
    mse, psnr, ssim = reference_terms(sr, hr)
    expected = weights[0] * mse - weights[1] * psnr + weights[2] * (1 - ssim)
    assert losses.get_loss("weighted", weights)(sr, hr).item() == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert losses.weighted(*weights)(sr, hr).item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_weighted_loss_defaults_are_0_4_mse_0_5_psnr_0_1_ssim():
    sr, hr = pair()
    mse, psnr, ssim = reference_terms(sr, hr)
    expected = 0.4 * mse - 0.5 * psnr + 0.1 * (1 - ssim)
    for loss in (losses.weighted(), losses.get_loss("weighted")):
        assert loss(sr, hr).item() == pytest.approx(expected, rel=1e-5)
    # a permutation of the weights moves the value by far more than the tolerance
    swapped = 0.1 * mse - 0.5 * psnr + 0.4 * (1 - ssim)
    assert abs(swapped - expected) > 100 * 1e-5 * abs(expected)


def test_ms_ssim_window_fits_the_patch():
    assert losses.ms_ssim_window(200) == 11
    assert losses.ms_ssim_window(120) == 7
    assert losses.ms_ssim_window(33) == 3
    with pytest.raises(ValueError, match="at least 33x33"):
        losses.ms_ssim_window(21)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get_loss("l1")
