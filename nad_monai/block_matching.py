"""Block-matching Wiener filtering in torch: the network's block-matching pilot estimate.

BM3D's second stage (Dabov et al. 2007) with every pixel a reference patch, guided by a sliding-
window DCT hard-thresholding of the input (``dct_shrinkage`` at BM3D's 2.7 sigma, in place of
BM3D's block-matched first stage). For each ``p x p`` patch the ``group_size`` patches most like it
in a ``window x window`` search window of the guide are stacked into a group, taken to a 3D
transform (2D DCT-II of each patch, 1D DCT-II across the group), Wiener-shrunk, taken back, and
every member is added, weighted, to the pixels it covers::

    e        = dct_shrinkage(x, 2.7, sigma)                     # the guide: a first estimate
    group(q) = the patches at q_1 = q, q_2, ... q_G of e closest to e's patch at q (mean squared difference)
    keep     = E**2 / (E**2 + sigma**2),  E = T3(group of e)    # per 3D coefficient
    y(p)     = sum over groups and members of w T3^-1(keep T3(group of x)) at p / sum of w there,  w = 1 / sum keep**2

``T3`` is orthonormal, so the noise in each coefficient keeps standard deviation sigma. What no
local filter does is collect the repeats of a structure from across the window: a thin edge or a
sulcus filtered together with its look-alikes keeps its shape. The filter has no parameters to
learn (a network learns how to use it); which patches form a group carries no gradient, the
filtering does. Memory grows as ``N * p**2 * group_size * H * W`` floats (several hundred MB for
one 256 x 256 slice at p = 8, G = 8). Borders are replicate-padded. As in BM3D the group mean is
Wiener-filtered too: a constant ``c`` comes back as ``c E**2 / (E**2 + sigma**2)``, ``E = c p sqrt(G)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .dct_shrinkage import dct_basis, dct_matrix, dct_shrinkage, overlap_add, patch_coefficients


def match_patches(image: torch.Tensor, patch_size: int, window: int, group_size: int) -> torch.Tensor:
    """The ``group_size`` patches most like each pixel's own, within its search window.

    Args:
        image: ``(N, 1, H, W)``; the patch at pixel ``q`` covers rows and columns ``q - p//2 .. q + (p-1)//2``.
        patch_size: patch side ``p``, pixels.
        window: odd search-window side, pixels; candidates outside the image are skipped (an image
            with fewer than ``group_size`` patches in a window repeats its border patches).
        group_size: patches per group, at most ``window**2``.

    Returns:
        ``(N, group_size, H * W)`` flat pixel indices ``y * W + x`` of each group's patches, the
        reference itself first, then by increasing mean squared difference. No gradient.
    """
    if window < 1 or window % 2 == 0 or not 1 <= group_size <= window * window:
        raise ValueError(f"need an odd window >= 1 and 1 <= group_size <= window**2, got {window}, {group_size}")
    n, height, width = image.size(0), image.size(2), image.size(3)
    r, before, after = window // 2, patch_size // 2, patch_size - 1 - patch_size // 2
    image = image.detach()
    padded = F.pad(image, [r, r, r, r], mode="replicate")
    candidates: list[torch.Tensor] = []
    for dy in range(window):
        for dx in range(window):
            candidates.append(padded[:, :, dy : dy + height, dx : dx + width])
    shifted = torch.cat(candidates, dim=1)  # (N, window**2, H, W): candidate (dy, dx) at channel dy * window + dx
    squared = F.pad((image - shifted) ** 2, [before, after, before, after], mode="replicate")
    distance = F.avg_pool2d(F.avg_pool2d(squared, (patch_size, 1), stride=1), (1, patch_size), stride=1)  # separable box mean
    distance = distance.reshape(n, window * window, height * width)
    offsets = torch.arange(-r, r + 1, device=image.device)
    ys = torch.arange(height, device=image.device).view(1, height, 1) + offsets.view(window, 1, 1)  # candidate rows (window, H, 1)
    xs = torch.arange(width, device=image.device).view(1, 1, width) + offsets.view(window, 1, 1)  # candidate columns (window, 1, W)
    inside = ((ys >= 0) & (ys < height)).unsqueeze(1) & ((xs >= 0) & (xs < width)).unsqueeze(0)  # (window, window, H, W)
    distance = distance.masked_fill(~inside.view(1, window * window, height * width), math.inf)
    distance[:, (window * window) // 2] = -1.0  # the reference leads its own group
    where = (ys.clamp(0, height - 1) * width).unsqueeze(1) + xs.clamp(0, width - 1).unsqueeze(0)  # (window, window, H, W)
    order = distance.topk(group_size, dim=1, largest=False).indices
    return where.reshape(1, window * window, height * width).expand(n, -1, -1).gather(1, order)


def _group(coefficients: torch.Tensor, indices: torch.Tensor, group_basis: torch.Tensor) -> torch.Tensor:
    """3D transform ``(N, p*p, G, H*W)`` of the groups ``indices`` ``(N, G, H*W)``, from ``patch_coefficients``."""
    n, f, g = coefficients.size(0), coefficients.size(1), indices.size(1)
    members = coefficients.flatten(2).gather(2, indices.reshape(n, 1, -1).expand(-1, f, -1)).view(n, f, g, -1)
    return torch.einsum("hg,nfgl->nfhl", group_basis, members)


def _aggregate(spectra: torch.Tensor, weight: torch.Tensor, indices: torch.Tensor, basis: torch.Tensor, group_basis: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Invert the 3D transform and add every member, times its group's ``weight`` ``(N, 1, 1, H*W)``, where it lies."""
    n, f = spectra.size(0), spectra.size(1)
    members = torch.einsum("hg,nfhl->nfgl", group_basis, spectra) * weight  # member patches' 2D coefficients
    where = indices.reshape(n, 1, -1)
    total = torch.zeros(n, f, height * width, dtype=spectra.dtype, device=spectra.device).scatter_add(2, where.expand(-1, f, -1), members.reshape(n, f, -1))
    count = torch.zeros(n, 1, height * width, dtype=spectra.dtype, device=spectra.device).scatter_add(2, where, weight.expand_as(members[:, :1]).reshape(n, 1, -1))
    return overlap_add(total.view(n, f, height, width), count.view(n, 1, height, width), basis)


def block_matching_wiener(
    x: torch.Tensor, guide: torch.Tensor, sigma: torch.Tensor, basis: torch.Tensor, group_basis: torch.Tensor, window: int = 11
) -> torch.Tensor:
    """BM3D's Wiener stage on images ``x`` ``(N, 1, H, W)``, every pixel a reference, grouped and weighted by ``guide``.

    Args:
        x: images ``(N, 1, H, W)``, intensity units.
        guide: a first estimate of ``x`` ``(N, 1, H, W)``; patches are matched on it and its 3D
            spectrum sets the Wiener weights.
        sigma: noise standard deviation per image ``(N,)``, intensity units, > 0.
        basis: ``dct_basis(p)``.
        group_basis: ``dct_matrix(group_size)`` as ``x``'s dtype; its size sets the patches per group.
        window: odd search-window side, pixels.

    Returns:
        ``(N, 1, H, W)``.
    """
    if x.dim() != 4 or x.size(1) != 1 or guide.shape != x.shape:
        raise ValueError("expected images and guides of the same shape (N, 1, H, W)")
    indices = match_patches(guide, basis.size(-1), window, group_basis.size(0))
    power = _group(patch_coefficients(guide, basis), indices, group_basis) ** 2
    keep = power / (power + sigma.view(-1, 1, 1, 1) ** 2)
    weight = 1.0 / (keep**2).sum(dim=(1, 2), keepdim=True).clamp(min=1e-12)
    return _aggregate(_group(patch_coefficients(x, basis), indices, group_basis) * keep, weight, indices, basis, group_basis, x.size(2), x.size(3))


class BlockMatchingWiener(nn.Module):
    """``block_matching_wiener`` guided by ``dct_shrinkage`` of the input at a fixed threshold; no parameters.

    Args:
        patch_size: patch side, pixels (8 as in BM3D), of the guide and of the groups.
        window: odd search-window side, pixels.
        group_size: patches per group.
        threshold: the guide's hard threshold, in units of the noise level (BM3D's 2.7).
        floor: added to ``sigma`` so that clean images (sigma = 0) keep nearly every coefficient.

    ``forward(x, sigma)`` maps images ``(N, 1, H, W)`` and noise levels ``(N,)`` to ``(N, 1, H, W)``.
    """

    def __init__(self, patch_size: int = 8, window: int = 11, group_size: int = 8, threshold: float = 2.7, floor: float = 0.01):
        super().__init__()
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.window, self.group_size, self.floor = window, group_size, floor
        self.register_buffer("basis", dct_basis(patch_size), persistent=False)
        self.register_buffer("group_basis", dct_matrix(group_size).float(), persistent=False)
        self.register_buffer("thresholds", torch.full((patch_size * patch_size,), threshold), persistent=False)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = sigma + self.floor
        guide = dct_shrinkage(x, self.thresholds, sigma, self.basis)
        return block_matching_wiener(x, guide, sigma, self.basis, self.group_basis, self.window)

    def extra_repr(self) -> str:
        return f"window={self.window}, group_size={self.group_size}"
