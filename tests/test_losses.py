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


def test_weighted_loss_combines_its_terms():
    torch.manual_seed(1)
    hr, sr = torch.rand(2, 1, 33, 33), torch.rand(2, 1, 33, 33)
    mse = torch.mean((sr - hr) ** 2)
    expected = 0.2 * mse - 0.3 * losses.psnr(sr, hr) + 0.5 * (1 - losses.ssim(sr, hr))
    assert losses.get_loss("weighted", (0.2, 0.3, 0.5))(sr, hr).item() == pytest.approx(expected.item(), rel=1e-5)


def test_ms_ssim_window_fits_the_patch():
    assert losses.ms_ssim_window(200) == 11
    assert losses.ms_ssim_window(120) == 7
    assert losses.ms_ssim_window(33) == 3
    with pytest.raises(ValueError, match="at least 33x33"):
        losses.ms_ssim_window(21)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get_loss("l1")
