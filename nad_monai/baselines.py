"""Classical denoisers as batched functions on ``(N, 1, H, W)`` tensors in [0, 1], and their tuning.

Every function maps noisy images to denoised images of the same shape, dtype and device. The
diffusion baselines share ``nad_monai.diffusion`` with the network; TV comes from scikit-image.
Parameters are tuned on a validation set by grid search (``tune``), never left at defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import product

import numpy as np
import torch
from skimage.restoration import denoise_tv_chambolle

from .diffusion import ClassicalDiffusion, max_step


def rician_bias_correction(y: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Remove the Rician magnitude bias after denoising: ``sqrt(max(y**2 - 2 sigma**2, 0))``.

    ``sigma`` is the noise level (scalar, or ``(N,)`` per image). Gaussian-model denoisers keep the
    upward bias of Rician magnitudes (background mean ``sigma * sqrt(pi / 2)``); without this
    correction they are compared with a handicap.
    """
    s = torch.as_tensor(sigma, dtype=y.dtype, device=y.device).reshape(-1, *([1] * (y.ndim - 1)))
    return torch.sqrt(torch.clamp(y**2 - 2 * s**2, min=0))


def perona_malik(noisy: torch.Tensor, kind: str = "exponential", k: float = 0.1, steps: int = 16, neighbours: int = 4, lam: float | None = None) -> torch.Tensor:
    """Classical Perona-Malik (``kind`` exponential/rational) or heat equation (constant); lam defaults to the bound."""
    lam = max_step(neighbours) if lam is None else lam
    with torch.no_grad():
        return ClassicalDiffusion(kind, k=k, lam=lam, steps=steps, neighbours=neighbours)(noisy)


def tv_chambolle(noisy: torch.Tensor, weight: float = 0.1) -> torch.Tensor:
    """Total-variation denoising (scikit-image Chambolle), per image; larger ``weight`` smooths more."""
    out = [denoise_tv_chambolle(img[0].detach().cpu().double().numpy(), weight=weight) for img in noisy]
    return torch.as_tensor(np.stack(out)[:, None], dtype=noisy.dtype, device=noisy.device)


METHODS: dict[str, Callable[..., torch.Tensor]] = {"perona_malik": perona_malik, "tv": tv_chambolle}
"""Baselines by name."""

GRIDS: dict[str, dict[str, list]] = {
    "perona_malik": {"kind": ["exponential", "rational"], "k": [0.03, 0.05, 0.08, 0.12, 0.2], "steps": [8, 16, 32]},
    "tv": {"weight": [0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24]},
}
"""Default tuning grids (images in [0, 1], noise levels 0.05-0.20)."""


def grid(params: Mapping[str, Iterable]) -> list[dict]:
    """Every combination of a parameter grid, as keyword dictionaries."""
    keys = list(params)
    return [dict(zip(keys, values)) for values in product(*(params[k] for k in keys))]


def tune(
    method: str,
    noisy: list[torch.Tensor],
    clean: list[torch.Tensor],
    score: Callable[[torch.Tensor, torch.Tensor], float],
    params: Mapping[str, Iterable] | None = None,
    correct: list[float | None] | None = None,
) -> tuple[dict, float]:
    """Grid-search a baseline's parameters on validation images; higher ``score`` is better.

    Args:
        method: a key of ``METHODS``.
        noisy, clean: lists of ``(N, 1, H, W)`` batches (sizes may differ between batches).
        score: ``score(denoised, clean)`` for one batch, averaged over batches (e.g. mean PSNR).
        params: the grid (default ``GRIDS[method]``).
        correct: per batch, the Rician sigma to bias-correct with, or None for no correction.

    Returns:
        ``(best parameters, best mean score)``.
    """
    correct = correct or [None] * len(noisy)
    best: tuple[dict, float] = ({}, -float("inf"))
    for kwargs in grid(params or GRIDS[method]):
        scores = []
        for x, y, s in zip(noisy, clean, correct):
            out = METHODS[method](x, **kwargs)
            scores.append(score(out if s is None else rician_bias_correction(out, s), y))
        if np.mean(scores) > best[1]:
            best = (kwargs, float(np.mean(scores)))
    return best
