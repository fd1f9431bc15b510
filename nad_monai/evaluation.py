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

from transforms import RandNoiseCorruptiond, background

from .datasets import neighbour_indices
from .metrics import denoising_metrics, masked_metrics

MODELS = ("gaussian", "rician", "speckle")
SIGMAS = (0.05, 0.10, 0.15, 0.20)
MIXED_RANGE = (0.05, 0.20)
"""Noise level range of the ``mixed`` setting: one of the three models per image, s uniform in it."""


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


def _volume_and_index(slice_id: str) -> tuple[str, int]:
    """``"<file>#axis<a>:<k>"`` -> ``("<file>#axis<a>", k)``: which stack of slices, and where in it."""
    volume, _, index = slice_id.rpartition(":")
    return volume, int(index)


def volumes(pairs: Sequence[tuple[torch.Tensor, torch.Tensor, str]]) -> dict[str, tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """``noisy_pairs`` of every slice of some volumes (``min_foreground=0``) regrouped per volume and axis:
    ``{"<file>#axis<a>": (noisy (Z, 1, H, W), clean (Z, 1, H, W), ids)}`` in slice order. Raises
    ValueError if a slice is missing between a volume's slice 0 and its last one (missing end slices
    cannot be told from a shorter volume)."""
    groups: dict[str, list[tuple[int, tuple[torch.Tensor, torch.Tensor, str]]]] = {}
    for pair in pairs:
        volume, k = _volume_and_index(pair[2])
        groups.setdefault(volume, []).append((k, pair))
    stacks = {}
    for volume, members in groups.items():
        members.sort(key=lambda m: m[0])
        if [k for k, _ in members] != list(range(len(members))):
            raise ValueError(f"{volume}: slices missing; build the pairs from every slice (min_foreground=0)")
        stacks[volume] = (torch.cat([m[1][0] for m in members]), torch.cat([m[1][1] for m in members]), [m[1][2] for m in members])
    return stacks


def with_neighbours(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor, str]], stacks: dict[str, tuple[torch.Tensor, torch.Tensor, list[str]]], context: int
) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """``pairs`` for a 2.5D denoiser: each noisy ``(1, 1, H, W)`` slice becomes the stack ``(1, 1 + 2 context, H, W)``
    of noisy slices k - context, ..., k + context of its volume (``nad_monai.datasets.neighbour_indices``), taken
    from ``stacks``, the ``volumes`` of the ``noisy_pairs`` of every slice of the same volumes. Noise is seeded by
    slice id, so the middle slice is the very noisy slice of ``pairs`` and every method sees the same noise. Past a
    volume's ends the end slice is repeated, here the same noisy slice (no new information; in training,
    ``nad_monai.datasets`` stacks it before the noise, so each copy gets its own). Under ``"mixed"`` noise each
    neighbour has its own model and level, which no real scan has."""
    out = []
    for noisy, clean, slice_id in pairs:
        volume, k = _volume_and_index(slice_id)
        all_noisy = stacks[volume][0]
        picks = neighbour_indices(k, len(all_noisy), context)
        if not torch.equal(all_noisy[k], noisy[0]):
            raise ValueError(f"{slice_id}: the noisy slice differs from its volume's; build both with the same noise setting")
        out.append((all_noisy[picks][:, 0][None], clean, slice_id))
    return out


def head_mask(clean: torch.Tensor) -> torch.Tensor:
    """Boolean head mask ``(N, 1, H, W)`` of clean images (``transforms.background.head_mask`` of each:
    above 0.1, holes filled, dilated 2 pixels)."""
    masks = [background.head_mask(img) for img in clean[:, 0].cpu().numpy()]
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
