"""Differentiable non-local means in torch: the network's non-local pilot estimate.

Every pixel becomes a weighted mean of the pixels in a ``window x window`` search window around
it, weighted by how alike their ``patch_size x patch_size`` patches are (Buades et al. 2005)::

    D(p, q) = mean over the patch of (x(p + t) - x(q + t))**2             # intensity units squared
    w(p, q) = exp(-max(D(p, q) - 2 sigma**2, 0) / h**2)
    y(p)    = sum_q w(p, q) x(q) / sum_q w(p, q)

``2 sigma**2`` is what two patches of pure noise differ by on average, so patches that differ only
by noise get weight 1 (scikit-image's ``denoise_nl_means`` does the same when given ``sigma``).
Every output is a convex combination of input pixels: it stays in the input's [min, max] and a
constant image is a fixed point. Borders are replicate-padded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def nonlocal_means(x: torch.Tensor, h: torch.Tensor, sigma: torch.Tensor, patch_size: int = 5, window: int = 9) -> torch.Tensor:
    """Non-local means of images ``x`` ``(N, 1, H, W)``; TorchScript-compatible.

    Args:
        x: images ``(N, 1, H, W)``, intensity units (e.g. [0, 1]).
        h: filtering strength per image, ``(N,)``, intensity units, > 0: larger averages less alike patches.
        sigma: noise standard deviation per image, ``(N,)``, intensity units (0 to subtract nothing).
        patch_size: odd side of the compared patches, pixels.
        window: odd side of the search window, pixels; the cost grows with ``window**2``.

    Returns:
        The filtered images, ``(N, 1, H, W)``, differentiable in ``x``, ``h`` and ``sigma``.
    """
    if x.dim() != 4 or x.size(1) != 1:
        raise ValueError("expected images of shape (N, 1, H, W)")
    if patch_size < 1 or patch_size % 2 == 0 or window < 1 or window % 2 == 0:
        raise ValueError("patch_size and window must be odd and positive")
    height, width, r = x.size(2), x.size(3), window // 2
    padded = F.pad(x, [r, r, r, r], mode="replicate")
    inv_h2 = (1.0 / h**2).view(-1, 1, 1, 1)
    noise = (2.0 * sigma**2).view(-1, 1, 1, 1)
    total = torch.zeros_like(x)
    weights = torch.zeros_like(x)
    for dy in range(window):
        for dx in range(window):
            candidate = padded[:, :, dy : dy + height, dx : dx + width]
            distance = F.avg_pool2d((x - candidate) ** 2, patch_size, stride=1, padding=patch_size // 2, count_include_pad=False)
            w = torch.exp(-torch.clamp(distance - noise, min=0.0) * inv_h2)
            total = total + w * candidate
            weights = weights + w
    return total / weights


class NonLocalMeans(nn.Module):
    """``nonlocal_means`` with a learned strength ``h = softplus(a) * (sigma + floor)``, proportional to the noise level.

    Args:
        patch_size: odd patch side, pixels.
        window: odd search-window side, pixels.
        strength: initial ``h / (sigma + floor)``; 0.8 is a usual hand-tuned value for non-local means.
        floor: added to ``sigma`` so that clean images (sigma = 0) keep a finite, small ``h``.

    ``forward(x, sigma)`` maps images ``(N, 1, H, W)`` and noise levels ``(N,)`` to ``(N, 1, H, W)``.
    """

    def __init__(self, patch_size: int = 5, window: int = 9, strength: float = 0.8, floor: float = 0.01):
        super().__init__()
        if strength <= 0:
            raise ValueError(f"strength must be > 0, got {strength}")
        self.patch_size, self.window, self.floor = patch_size, window, floor
        self.strength_logit = nn.Parameter(torch.tensor(strength).expm1().log())  # softplus inverse

    def strength(self) -> torch.Tensor:
        """``h / (sigma + floor)``, a positive scalar."""
        return F.softplus(self.strength_logit)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        h = self.strength() * (sigma + self.floor)
        return nonlocal_means(x, h, sigma, self.patch_size, self.window)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, window={self.window}"
