"""Training losses on images in [0, 1]. SSIM and MS-SSIM come from pytorch-msssim, a small, tested,
differentiable implementation (Gaussian 11x11, sigma 1.5, the constants of Wang et al.)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as _ms_ssim
from pytorch_msssim import ssim as _ssim

WINDOW = 11


def psnr(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Batch PSNR in dB for data range 1, finite at zero error."""
    return -10 * torch.log10(F.mse_loss(sr, hr) + 1e-10)


def ssim(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    return _ssim(sr, hr, data_range=1.0, size_average=True, win_size=WINDOW)


def ms_ssim_window(side: int) -> int:
    """Gaussian window for five-scale MS-SSIM on images whose smaller side is `side`.

    pytorch-msssim needs side > 16 * (window - 1) for its four halvings: the standard 11 from 161
    pixels up; smaller training patches (33 or 120) get the largest odd window that fits.
    """
    window = min(WINDOW, (side - 1) // 16 + 1)
    window -= 1 - window % 2
    if window < 3:
        raise ValueError(f"MS-SSIM needs images of at least 33x33 pixels, got a side of {side}")
    return window


def ms_ssim(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    return _ms_ssim(sr, hr, data_range=1.0, size_average=True, win_size=ms_ssim_window(min(sr.shape[-2:])))


def weighted(w_mse: float = 0.4, w_psnr: float = 0.5, w_ssim: float = 0.1) -> Callable:
    """w_mse * MSE + w_psnr * (-PSNR) + w_ssim * (1 - SSIM); the defaults are the reference setup's."""
    def loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return w_mse * F.mse_loss(sr, hr) - w_psnr * psnr(sr, hr) + w_ssim * (1 - ssim(sr, hr))
    return loss


def get_loss(name: str, weights: tuple[float, float, float] = (0.4, 0.5, 0.1)) -> Callable:
    """The training loss by name; every one falls as the image gets closer to the target."""
    losses = {
        "mse": F.mse_loss,
        "psnr": lambda sr, hr: -psnr(sr, hr),
        "ssim": lambda sr, hr: 1 - ssim(sr, hr),
        "ms-ssim": lambda sr, hr: 1 - ms_ssim(sr, hr),
        "weighted": weighted(*weights),
    }
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(losses)}")
    return losses[name]
