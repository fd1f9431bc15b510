"""The one implementation of PSNR, SSIM and Edge MSE used for every method in every table.

All take images ``(N, 1, H, W)`` with intensities in [0, 1] and give one value per image; they are
MONAI ``CumulativeIterationMetric`` objects, so the same objects serve tables (``denoising_metrics``)
and Ignite training/evaluation (``metric_handlers``, through MONAI's ``IgniteMetricHandler``).

- PSNR: MONAI ``PSNRMetric``, data range 1 (dB).
- SSIM: MONAI ``SSIMMetric``, gaussian window 11x11, sigma 1.5, data range 1.
- Edge MSE: ``mean((|Sobel(clean)| - |Sobel(denoised)|)**2)``, Sobel magnitude = hypot of the two
  axis responses of MONAI's unnormalised 3x3 ``SobelGradients`` (a unit step gives 4).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import PSNRMetric, SSIMMetric
from monai.metrics.regression import RegressionMetric, compute_ssim_and_cs
from monai.transforms import SobelGradients
from monai.utils import MetricReduction, convert_to_tensor

SSIM_SETTINGS = {"spatial_dims": 2, "data_range": 1.0, "kernel_type": "gaussian", "win_size": 11, "kernel_sigma": 1.5}
"""SSIM settings shared by the loss and the metric."""

_SOBEL = SobelGradients(kernel_size=3, normalize_kernels=False, padding_mode="replicate")


def sobel_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel responses ``(G_rows, G_cols)`` of images ``(N, C, H, W)``, each the same shape (differentiable)."""
    n, c, h, w = x.shape
    grads = convert_to_tensor(_SOBEL(x.reshape(n * c, h, w)), track_meta=False)  # (2 * N * C, H, W): all axis-0, then all axis-1
    return grads[: n * c].reshape(n, c, h, w), grads[n * c :].reshape(n, c, h, w)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude ``hypot(G_rows, G_cols)`` of images ``(N, C, H, W)``, same shape."""
    return torch.hypot(*sobel_gradients(x))


class EdgeMSEMetric(RegressionMetric):
    """Mean squared difference of Sobel gradient magnitudes of prediction and reference, per image.

    Lower is better: 0 when the denoised image has exactly the reference's edges.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False):
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)

    def _compute_metric(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        diff = sobel_magnitude(y) - sobel_magnitude(y_pred)
        return diff.pow(2).flatten(1).mean(dim=1, keepdim=True)


def denoising_metrics() -> dict[str, RegressionMetric]:
    """Fresh ``{"psnr", "ssim", "edge_mse"}`` metric objects; call them as ``metric(y_pred, y)``."""
    return {"psnr": PSNRMetric(max_val=1.0), "ssim": SSIMMetric(**SSIM_SETTINGS), "edge_mse": EdgeMSEMetric()}


def masked_metrics(y_pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR, SSIM and Edge MSE over the pixels of ``mask`` only (e.g. the head), one value per image.

    Same definitions as ``denoising_metrics``: the SSIM map is MONAI's (``compute_ssim_and_cs``,
    the settings of ``SSIM_SETTINGS``, valid part of the window only) averaged over the mask. All
    inputs ``(N, 1, H, W)``; ``mask`` boolean, non-empty per image.
    """
    m = mask.to(y.dtype)
    area = m.flatten(1).sum(1)
    mse = ((y_pred - y) ** 2 * m).flatten(1).sum(1) / area
    edge = ((sobel_magnitude(y) - sobel_magnitude(y_pred)) ** 2 * m).flatten(1).sum(1) / area
    settings = {k: v for k, v in SSIM_SETTINGS.items() if k != "win_size"}
    win = SSIM_SETTINGS["win_size"]
    ssim_map, _ = compute_ssim_and_cs(
        y_pred, y, kernel_size=[win, win], kernel_sigma=[settings.pop("kernel_sigma")] * 2, **settings
    )
    inner = m[:, :, win // 2 : win // 2 + ssim_map.size(2), win // 2 : win // 2 + ssim_map.size(3)]
    ssim = (ssim_map * inner).flatten(1).sum(1) / inner.flatten(1).sum(1)
    return {"psnr": 10 * torch.log10(1.0 / mse), "ssim": ssim, "edge_mse": edge}


def metric_handlers(output_transform: Callable, save_details: bool = True) -> dict[str, IgniteMetricHandler]:
    """Ignite metric handlers for the three metrics, named ``val_psnr``, ``val_ssim``, ``val_edge_mse``.

    Args:
        output_transform: maps an engine's output to ``(y_pred, y)``, e.g. MONAI's
            ``from_engine(["pred", "label"])``.
        save_details: keep per-image values in ``engine.state.metric_details`` (for CSV reports).
    """
    return {
        f"val_{name}": IgniteMetricHandler(metric_fn=metric, output_transform=output_transform, save_details=save_details)
        for name, metric in denoising_metrics().items()
    }
