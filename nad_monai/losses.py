"""Training loss: ``w_ssim * (1 - SSIM) + w_l1 * L1 + w_grad * gradient MSE + w_mse * MSE + w_edge * Edge MSE``
(defaults 1, 1, 0.1, 0, 0)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss
from torch import nn

from .metrics import SSIM_SETTINGS, sobel_gradients


def gradient_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of forward differences along both image axes, ``(N, C, H, W)`` inputs."""
    loss = pred.new_zeros(())
    for dim in (-2, -1):
        loss = loss + F.mse_loss(torch.diff(pred, dim=dim), torch.diff(target, dim=dim))
    return loss


def edge_magnitude_mse(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The tables' Edge MSE as a loss: mean of ``(|Sobel(pred)| - |Sobel(target)|)**2`` over ``(N, C, H, W)`` inputs.

    ``gradient_mse`` compares gradient vectors, so at each pixel it is least for the expected gradient, which is
    weaker than the expected edge strength wherever the noise leaves the edge uncertain (blurred edges); this
    compares strengths, so it is least for the expected strength. The magnitude is ``sqrt(G_rows**2 + G_cols**2
    + eps)``, differentiable where the image is flat (``torch.hypot`` has no gradient at 0); ``eps`` in squared
    Sobel units (a unit step gives 4), so the default shifts a magnitude by at most 1e-4.
    """
    magnitudes = [torch.sqrt(sum(g**2 for g in sobel_gradients(x)) + eps) for x in (pred, target)]
    return F.mse_loss(*magnitudes)


class DenoisingLoss(nn.Module):
    """``ssim_weight * (1 - SSIM) + l1_weight * L1 + gradient_weight * gradient_mse + mse_weight * MSE
    + edge_weight * edge_magnitude_mse``.

    SSIM is MONAI's ``SSIMLoss`` with the settings every table uses (``metrics.SSIM_SETTINGS``:
    gaussian 11x11 window, sigma 1.5, data range 1). Inputs ``(N, 1, H, W)`` in [0, 1]; scalar output.

    Args:
        ssim_weight: weight of the structural term; more keeps texture and contrast.
        l1_weight: weight of the mean absolute error; more favours exact intensities.
        gradient_weight: weight of the gradient term; more penalises blurred or invented edges.
        mse_weight: weight of the mean squared error, the loss PSNR measures (off by default).
        edge_weight: weight of the Edge MSE, the tables' edge metric (off by default); more keeps edges as
            strong as the reference's instead of blurring them where the noise hides their exact position.
    """

    def __init__(self, ssim_weight: float = 1.0, l1_weight: float = 1.0, gradient_weight: float = 0.1, mse_weight: float = 0.0, edge_weight: float = 0.0):
        super().__init__()
        self.ssim = SSIMLoss(**SSIM_SETTINGS)
        self.ssim_weight, self.l1_weight, self.gradient_weight, self.mse_weight = ssim_weight, l1_weight, gradient_weight, mse_weight
        self.edge_weight = edge_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.l1_weight * F.l1_loss(pred, target)
        if self.ssim_weight:
            loss = loss + self.ssim_weight * self.ssim(pred, target)
        if self.gradient_weight:
            loss = loss + self.gradient_weight * gradient_mse(pred, target)
        if self.mse_weight:
            loss = loss + self.mse_weight * F.mse_loss(pred, target)
        if self.edge_weight:
            loss = loss + self.edge_weight * edge_magnitude_mse(pred, target)
        return loss
