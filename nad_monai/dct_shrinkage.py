"""Sliding-window DCT shrinkage in torch: the network's transform-domain pilot estimate.

Every ``p x p`` patch (one per pixel, stride 1) is taken to its 2D DCT-II, each coefficient is kept
or dropped by comparing it with a threshold proportional to the noise level, and the patches are
transformed back and averaged where they overlap (Yu & Sapiro 2011; the hard-thresholding stage of
BM3D without the block matching)::

    c_k(q)  = <x patch at q, DCT basis k>                       # orthonormal, so noise std stays sigma
    keep_k  = sigmoid((|c_k| - t_k sigma) / (softness sigma))    # ~ hard threshold at t_k sigma; DC always kept
    y(p)    = sum_q w(q) sum_k keep_k c_k(q) basis_k(p - q) / sum_q w(q) 1[p in patch q]
    w(q)    = 1 / sum_k keep_k(q)                                # sparser patches weigh more, as in BM3D

A hand-set ``t = 2.7`` everywhere is the classical method (within about 0.1 dB of a hard
threshold); learning ``t_k`` per frequency lets training decide how much of each frequency is noise.
Sparse transforms keep thin edges and fine texture that local averaging blurs, which is where BM3D
beats diffusion. Borders are replicate-padded; constant images are fixed points.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def dct_matrix(size: int) -> torch.Tensor:
    """The orthonormal 1D DCT-II matrix ``(size, size)`` in float64, row ``k`` the ``k``-th basis vector (DC first)."""
    n = torch.arange(size, dtype=torch.float64)
    return torch.stack([math.sqrt((1 if k == 0 else 2) / size) * torch.cos(math.pi * (2 * n + 1) * k / (2 * size)) for k in range(size)])


def dct_basis(patch_size: int) -> torch.Tensor:
    """The orthonormal 2D DCT-II basis as convolution filters ``(patch_size**2, 1, p, p)``, DC first."""
    if patch_size < 2:
        raise ValueError(f"patch_size must be >= 2, got {patch_size}")
    c = dct_matrix(patch_size)  # (k, n): c @ c.T = identity
    return torch.einsum("ki,lj->klij", c, c).reshape(patch_size * patch_size, 1, patch_size, patch_size).float()


def patch_coefficients(x: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """2D DCT coefficients ``(N, p*p, H, W)`` of every pixel's ``p x p`` patch (rows and columns
    ``q - p//2 .. q + (p-1)//2`` of pixel ``q``, borders replicate-padded) of images ``x`` ``(N, 1, H, W)``."""
    p = basis.size(-1)
    before, after = p // 2, p - 1 - p // 2
    return F.conv2d(F.pad(x, [before, after, before, after], mode="replicate"), basis)


def overlap_add(coefficients: torch.Tensor, weight: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Images ``(N, 1, H, W)`` from weighted patch coefficients ``(N, p*p, H, W)`` laid out as by
    ``patch_coefficients``: every patch transformed back and added where it lies, divided by the sum
    of the weights ``(N, 1, H, W)`` over the patches covering each pixel."""
    p = basis.size(-1)
    before, height, width = p // 2, coefficients.size(2), coefficients.size(3)
    total = F.conv_transpose2d(coefficients, basis)  # inverse 2D DCT and overlap-add in one
    count = F.conv_transpose2d(weight, torch.ones_like(basis[:1]))
    return (total / count)[:, :, before : before + height, before : before + width]


def dct_shrinkage(x: torch.Tensor, thresholds: torch.Tensor, sigma: torch.Tensor, basis: torch.Tensor, softness: float = 0.25) -> torch.Tensor:
    """Sliding-window DCT shrinkage of images ``x`` ``(N, 1, H, W)``; TorchScript-compatible.

    Args:
        x: images ``(N, 1, H, W)``, intensity units.
        thresholds: ``(p**2,)`` thresholds per DCT coefficient, in units of ``sigma`` (the DC entry is ignored).
        sigma: noise standard deviation per image ``(N,)``, intensity units, > 0.
        basis: ``dct_basis(p)``.
        softness: width of the keep/drop transition, in units of ``sigma``.

    Returns:
        ``(N, 1, H, W)``, differentiable in ``x``, ``thresholds`` and ``sigma``.
    """
    if x.dim() != 4 or x.size(1) != 1:
        raise ValueError("expected images of shape (N, 1, H, W)")
    coefficients = patch_coefficients(x, basis)
    s = sigma.view(-1, 1, 1, 1)
    keep = torch.sigmoid((coefficients.abs() - thresholds.view(1, -1, 1, 1) * s) / (softness * s))
    keep = torch.cat([torch.ones_like(keep[:, :1]), keep[:, 1:]], dim=1)
    weight = 1.0 / keep.sum(dim=1, keepdim=True)
    return overlap_add(coefficients * keep * weight, weight, basis)


class DCTShrinkage(nn.Module):
    """``dct_shrinkage`` with learned per-frequency thresholds ``t_k`` (units of ``sigma + floor``).

    Args:
        patch_size: patch side, pixels (8 as in BM3D: 64 coefficients).
        threshold: initial ``t_k`` for every frequency; 2.7 is BM3D's hard threshold.
        floor: added to ``sigma`` so that clean images (sigma = 0) keep nearly every coefficient.

    ``forward(x, sigma)`` maps images ``(N, 1, H, W)`` and noise levels ``(N,)`` to ``(N, 1, H, W)``.
    """

    def __init__(self, patch_size: int = 8, threshold: float = 2.7, floor: float = 0.01):
        super().__init__()
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.patch_size, self.floor = patch_size, floor
        self.register_buffer("basis", dct_basis(patch_size), persistent=False)
        self.threshold_logits = nn.Parameter(torch.full((patch_size * patch_size,), threshold).expm1().log())  # softplus inverse

    def thresholds(self) -> torch.Tensor:
        """``t_k``, ``(patch_size**2,)``, positive, in units of the noise level."""
        return F.softplus(self.threshold_logits)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return dct_shrinkage(x, self.thresholds(), sigma + self.floor, self.basis)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}"
