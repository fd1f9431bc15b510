"""The evaluation protocol shared by the benchmark scripts: deterministic noisy test sets, head masks, scores.

Noise is added exactly as the bundle's validation and evaluation do
(``transforms.RandNoiseCorruptiond`` seeded by slice id), so every script and every run scores the
same noisy images. Scores are per image, over the whole image and over the head mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.transforms import Compose, CopyItemsd
from scipy.ndimage import binary_dilation, binary_fill_holes

from transforms import RandNoiseCorruptiond

from .metrics import denoising_metrics, masked_metrics

MODELS = ("gaussian", "rician", "speckle")
SIGMAS = (0.05, 0.10, 0.15, 0.20)
MIXED_RANGE = (0.05, 0.20)
"""Noise level range of the ``mixed`` setting: one of the three models per image, s uniform in it."""

HEAD_THRESHOLD = 0.1
"""Clean intensity above which a pixel is head (images in [0, 1]); holes filled, dilated by 2 pixels."""


def noisy_pairs(items: Sequence[dict], model: str, sigma: float | None = None) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """``(noisy, clean, id)`` per slice item, each ``(1, 1, H, W)``, corrupted deterministically.

    ``model`` is one of ``MODELS`` with level ``sigma``, or ``"mixed"`` (``sigma`` ignored: a model
    from ``MODELS`` and a level in ``MIXED_RANGE`` per image, seeded by the slice id).
    """
    models, level = (list(MODELS), MIXED_RANGE) if model == "mixed" else (model, sigma)
    corrupt = Compose([CopyItemsd(keys="image", names="label"), RandNoiseCorruptiond(keys="image", models=models, sigma=level, seed_key="id")])
    pairs = []
    for item in items:
        d = corrupt(item)
        pairs.append((torch.as_tensor(d["image"])[None], torch.as_tensor(d["label"])[None], item["id"]))
    return pairs


def head_mask(clean: torch.Tensor) -> torch.Tensor:
    """Boolean head mask ``(N, 1, H, W)`` of clean images: above ``HEAD_THRESHOLD``, holes filled, dilated 2 pixels."""
    masks = []
    for img in clean[:, 0].cpu().numpy():
        m = binary_dilation(binary_fill_holes(img > HEAD_THRESHOLD), iterations=2)
        masks.append(m if m.any() else np.ones_like(m))
    return torch.as_tensor(np.stack(masks)[:, None], device=clean.device)


def score_images(pairs: Sequence[tuple[torch.Tensor, torch.Tensor, str]], denoise: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, np.ndarray]:
    """Per-image ``psnr``, ``ssim``, ``edge_mse`` and their ``head_`` versions of ``denoise(noisy)`` clipped to [0, 1]."""
    metrics = denoising_metrics()
    values: dict[str, list[float]] = {}
    with torch.inference_mode():
        for noisy, clean, _ in pairs:
            pred = denoise(noisy).clamp(0, 1)
            scores = {name: metric(pred, clean).flatten() for name, metric in metrics.items()}
            scores.update({f"head_{name}": v for name, v in masked_metrics(pred, clean, head_mask(clean)).items()})
            for name, v in scores.items():
                values.setdefault(name, []).append(float(v[0]))
    return {name: np.asarray(v) for name, v in values.items()}
