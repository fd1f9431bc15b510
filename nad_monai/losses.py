"""Training loss: ``w_ssim * (1 - SSIM) + w_l1 * L1 + w_grad * gradient MSE + w_mse * MSE`` (defaults 1, 1, 0.1, 0)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss
from torch import nn

from .metrics import SSIM_SETTINGS


def gradient_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of forward differences along both image axes, ``(N, C, H, W)`` inputs."""
    loss = pred.new_zeros(())
    for dim in (-2, -1):
        loss = loss + F.mse_loss(torch.diff(pred, dim=dim), torch.diff(target, dim=dim))
    return loss


class DenoisingLoss(nn.Module):
    """``ssim_weight * (1 - SSIM) + l1_weight * L1 + gradient_weight * gradient_mse + mse_weight * MSE``.

    SSIM is MONAI's ``SSIMLoss`` with the settings every table uses (``metrics.SSIM_SETTINGS``:
    gaussian 11x11 window, sigma 1.5, data range 1). Inputs ``(N, 1, H, W)`` in [0, 1]; scalar output.

    Args:
        ssim_weight: weight of the structural term; more keeps texture and contrast.
        l1_weight: weight of the mean absolute error; more favours exact intensities.
        gradient_weight: weight of the gradient term; more penalises blurred or invented edges.
        mse_weight: weight of the mean squared error, the loss PSNR measures (off by default).
    """

    def __init__(self, ssim_weight: float = 1.0, l1_weight: float = 1.0, gradient_weight: float = 0.1, mse_weight: float = 0.0):
        super().__init__()
        self.ssim = SSIMLoss(**SSIM_SETTINGS)
        self.ssim_weight, self.l1_weight, self.gradient_weight, self.mse_weight = ssim_weight, l1_weight, gradient_weight, mse_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.l1_weight * F.l1_loss(pred, target)
        if self.ssim_weight:
            loss = loss + self.ssim_weight * self.ssim(pred, target)
        if self.gradient_weight:
            loss = loss + self.gradient_weight * gradient_mse(pred, target)
        if self.mse_weight:
            loss = loss + self.mse_weight * F.mse_loss(pred, target)
        return loss
