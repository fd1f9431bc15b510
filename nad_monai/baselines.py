"""Classical denoisers as batched functions on ``(N, 1, H, W)`` tensors in [0, 1], and their tuning.

Every function maps noisy images to denoised images of the same shape, dtype and device. The
diffusion baselines (heat equation, Perona-Malik) share ``nad_monai.diffusion`` with the network;
Gaussian smoothing comes from SciPy, TV and NLM from scikit-image, BM3D from the ``bm3d`` package,
BM4D of whole volumes (``VOLUME_METHODS``) from the ``bm4d`` package (``bench`` extra, both under a
non-commercial licence), overcomplete 3D DCT shrinkage of whole volumes from ``nad_monai.volume_dct`` and its block-matched
Wiener refinement from ``nad_monai.volume_block_matching``,
and the Rician-aware non-local means from dipy (installed by ``data/rebuild.sh``). Parameters are tuned
on a validation set by grid search (``tune``), never left at defaults; NLM, BM3D, BM4D, the 3D DCT, its refinement and
dipy get their noise level from ``estimate_noise_sigma``
(the network's own wavelet MAD estimate), scaled by a tuned factor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import product

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

from .diffusion import ClassicalDiffusion, max_step
from .networks import estimate_noise_sigma
from .volume_block_matching import PASSES, block_matched_denoise_volume
from .volume_dct import dct_denoise_volume


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


def heat_equation(noisy: torch.Tensor, time: float = 1.0, neighbours: int = 4) -> torch.Tensor:
    """Isotropic diffusion for ``time`` (pixels^2; a Gaussian blur of sigma ``sqrt(2 time)``).

    Steps are at most half the explicit bound: a step at the bound replaces each pixel by the mean
    of its neighbours and leaves the pixel-scale checkerboard of noise undamped.
    """
    steps = max(1, int(np.ceil(time / (max_step(neighbours) / 2))))
    return perona_malik(noisy, kind="constant", steps=steps, neighbours=neighbours, lam=time / steps)


def _per_image(noisy: torch.Tensor, denoise: Callable[[np.ndarray, float], np.ndarray]) -> torch.Tensor:
    """Apply ``denoise(image, sigma)`` to each float64 ``(H, W)`` image of a ``(N, 1, H, W)`` batch; ``sigma``
    is the image's estimated noise level (``estimate_noise_sigma``, at least 1e-4)."""
    sigmas = estimate_noise_sigma(noisy.detach()).clamp_min(1e-4).tolist()
    out = [denoise(img[0].detach().cpu().double().numpy(), s) for img, s in zip(noisy, sigmas)]
    return torch.as_tensor(np.stack(out)[:, None], dtype=noisy.dtype, device=noisy.device)


def gaussian_smoothing(noisy: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels (SciPy, mirrored borders)."""
    return _per_image(noisy, lambda img, _: gaussian_filter(img, sigma, mode="mirror"))


def tv_chambolle(noisy: torch.Tensor, weight: float = 0.1) -> torch.Tensor:
    """Total-variation denoising (scikit-image Chambolle), per image; larger ``weight`` smooths more."""
    return _per_image(noisy, lambda img, _: denoise_tv_chambolle(img, weight=weight))


def nl_means(noisy: torch.Tensor, h: float = 0.8, patch_size: int = 5, patch_distance: int = 6) -> torch.Tensor:
    """Non-local means (scikit-image, fast mode), filter strength ``h`` times each image's estimated noise sigma."""

    def denoise(img: np.ndarray, sigma: float) -> np.ndarray:
        return denoise_nl_means(img, h=h * sigma, sigma=sigma, patch_size=patch_size, patch_distance=patch_distance, fast_mode=True)

    return _per_image(noisy, denoise)


def bm3d_denoise(noisy: torch.Tensor, sigma_scale: float = 1.0) -> torch.Tensor:
    """BM3D (``bm3d`` package, both stages) with ``sigma_scale`` times each image's estimated noise sigma.

    Needs the ``bench`` extra (``pip install -e ".[bench]"``); its licence allows non-commercial use only.
    """
    import bm3d

    return _per_image(noisy, lambda img, sigma: bm3d.bm3d(img, sigma_psd=sigma_scale * sigma))


def _volume_sigma(noisy: torch.Tensor) -> float:
    """The noise level of one volume ``(Z, 1, H, W)``: the median of its slices' estimated sigmas."""
    return float(estimate_noise_sigma(noisy.detach()).clamp_min(1e-4).median())


def _per_volume(noisy: torch.Tensor, sigma_scale: float, denoise: Callable[[torch.Tensor, float], torch.Tensor]) -> torch.Tensor:
    """Apply ``denoise(volume, sigma)`` to one volume ``(Z, 1, H, W)`` as a float32 ``(Z, H, W)`` tensor, ``sigma``
    being ``sigma_scale`` times ``_volume_sigma``; the result in ``noisy``'s shape and dtype."""
    return denoise(noisy.detach()[:, 0].float(), sigma_scale * _volume_sigma(noisy))[:, None].to(noisy.dtype)


def bm4d_denoise(noisy: torch.Tensor, sigma_scale: float = 1.0) -> torch.Tensor:
    """BM4D (``bm4d`` package, both stages) of one volume given as its slices in order, ``(Z, 1, H, W)``: the
    4D-group counterpart of BM3D, matching blocks across neighbouring slices too. Its noise level is
    ``sigma_scale`` times the median of the slices' estimated sigmas.

    Needs the ``bench`` extra (``pip install -e ".[bench]"``); its licence allows non-commercial use only.
    """
    import bm4d

    sigma = _volume_sigma(noisy)
    volume = noisy.detach().cpu().double().numpy()[:, 0].transpose(1, 2, 0)  # (H, W, Z)
    out = np.asarray(bm4d.bm4d(volume, sigma_psd=sigma_scale * sigma)).transpose(2, 0, 1)[:, None]
    return torch.as_tensor(out, dtype=noisy.dtype, device=noisy.device)


def dct3d_denoise(noisy: torch.Tensor, sigma_scale: float = 1.0) -> torch.Tensor:
    """Overcomplete 3D DCT shrinkage (``nad_monai.volume_dct``: hard thresholding, then Wiener; 8-cubes at
    step 2) of one volume given as its slices in order, ``(Z, 1, H, W)``: a transform-domain denoiser that sees
    the neighbouring slices like BM4D, without block matching and under our licence. Its noise level is
    ``sigma_scale`` times the median of the slices' estimated sigmas."""
    return _per_volume(noisy, sigma_scale, dct_denoise_volume)


def block_matched_denoise(noisy: torch.Tensor, sigma_scale: float = 1.0, passes: int = len(PASSES)) -> torch.Tensor:
    """3D DCT shrinkage, then the first ``passes`` passes of ``PASSES`` of block-matched collaborative Wiener
    filtering (``nad_monai.volume_block_matching``) of one volume given as its slices in order, ``(Z, 1, H, W)``:
    BM4D's grouping of similar cubes under our licence. Its noise level is ``sigma_scale`` times the median of
    the slices' estimated sigmas."""
    return _per_volume(noisy, sigma_scale, lambda volume, sigma: block_matched_denoise_volume(volume, sigma, PASSES[:passes]))


def dipy_nlmeans(noisy: torch.Tensor, sigma_scale: float = 1.0, patch_radius: int = 1, block_radius: int = 5) -> torch.Tensor:
    """dipy's non-local means with Rician bias correction, ``sigma_scale`` times each image's estimated noise sigma."""
    from dipy.denoise.nlmeans import nlmeans

    def denoise(img: np.ndarray, sigma: float) -> np.ndarray:
        return nlmeans(img[..., None], sigma=sigma_scale * sigma, rician=True, patch_radius=patch_radius, block_radius=block_radius)[..., 0]

    return _per_image(noisy, denoise)


METHODS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian": gaussian_smoothing,
    "heat": heat_equation,
    "perona_malik": perona_malik,
    "tv": tv_chambolle,
    "nlm": nl_means,
    "bm3d": bm3d_denoise,
    "dipy_nlmeans": dipy_nlmeans,
}
"""Baselines of single images by name."""

VOLUME_METHODS: dict[str, Callable[..., torch.Tensor]] = {"bm4d": bm4d_denoise, "dct3d": dct3d_denoise, "bm_wiener3d": block_matched_denoise}
"""Baselines of whole volumes, given as their slices in order ``(Z, 1, H, W)``, by name."""

GRIDS: dict[str, dict[str, list]] = {
    "gaussian": {"sigma": [0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0]},
    "heat": {"time": [0.03, 0.06, 0.125, 0.25, 0.5, 1.0, 2.0]},
    "perona_malik": {"kind": ["exponential", "rational"], "k": [0.03, 0.05, 0.08, 0.12, 0.2], "steps": [8, 16, 32]},
    "tv": {"weight": [0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24]},
    "nlm": {"h": [0.4, 0.6, 0.8, 1.0, 1.2, 1.6]},
    "bm3d": {"sigma_scale": [0.75, 1.0, 1.25, 1.5, 2.0]},
    "dipy_nlmeans": {"sigma_scale": [0.75, 1.0, 1.25, 1.5, 2.0]},
    "bm4d": {"sigma_scale": [0.75, 1.0, 1.25, 1.5, 2.0]},
    "dct3d": {"sigma_scale": [0.75, 1.0, 1.25, 1.5, 2.0]},
    "bm_wiener3d": {"sigma_scale": [0.75, 1.0, 1.25, 1.5, 2.0], "passes": [1, 3]},
}
"""Default tuning grids (images in [0, 1], noise levels 0.05-0.20)."""


def baseline(method: str) -> Callable[..., torch.Tensor]:
    """The baseline ``method`` of ``METHODS`` or ``VOLUME_METHODS``."""
    if method not in METHODS and method not in VOLUME_METHODS:
        raise ValueError(f"unknown baseline {method!r}, expected one of {sorted(METHODS)} or of {sorted(VOLUME_METHODS)} (whole volumes)")
    return METHODS[method] if method in METHODS else VOLUME_METHODS[method]


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
        method: a key of ``METHODS``, or of ``VOLUME_METHODS`` with each batch one volume's slices in order.
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
            out = baseline(method)(x, **kwargs)
            scores.append(score(out if s is None else rician_bias_correction(out, s), y))
        if np.mean(scores) > best[1]:
            best = (kwargs, float(np.mean(scores)))
    return best
