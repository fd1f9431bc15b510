"""Zero the air around the head of a clean reference image, array and dictionary forms.

The air around a real scan's head holds no signal: what a magnitude image records there is the
scanner's own noise floor (Rayleigh, mean ``s sqrt(pi/2)``). Of the training volumes, the two
``heudiconv`` b0 runs carry a floor of mean 0.008 in [0, 1] units; a network trained to reproduce
those references learns to leave that floor in the air of every image it denoises. Setting the air
of the reference to zero before the noise is added makes the target the noise-free magnitude, 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor
from scipy.ndimage import binary_dilation, binary_fill_holes

HEAD_THRESHOLD = 0.1
"""Intensity above which a pixel of a clean image in [0, 1] is head."""
HEAD_DILATION = 2
"""Pixels by which the head mask is grown beyond that threshold, so the head's dark rim stays."""


def head_mask(image: np.ndarray, threshold: float = HEAD_THRESHOLD, dilation: int = HEAD_DILATION) -> np.ndarray:
    """Boolean head mask of one 2D image ``(H, W)`` in [0, 1]: above ``threshold``, holes filled,
    dilated by ``dilation`` pixels. An image with nothing above ``threshold`` is all head (nothing is
    masked out of it)."""
    mask = binary_fill_holes(image > threshold)
    if dilation > 0:
        mask = binary_dilation(mask, iterations=dilation)
    return mask if mask.any() else np.ones_like(mask)


class ZeroBackground(Transform):
    """Set every pixel outside the head mask (``head_mask``) of each channel to zero.

    Args:
        threshold: intensity above which a pixel is head (images in [0, 1]).
        dilation: pixels by which the mask is grown.

    Input: channel-first 2D image ``(C, H, W)`` (e.g. a slice, or a stack of neighbouring slices),
    intensities in [0, 1]; each channel gets its own mask. Output: the same shape, type and device.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, threshold: float = HEAD_THRESHOLD, dilation: int = HEAD_DILATION) -> None:
        if dilation < 0:
            raise ValueError(f"dilation must be >= 0, got {dilation}")
        self.threshold, self.dilation = threshold, dilation

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if img.ndim != 3:
            raise ValueError(f"expected a channel-first 2D image (C, H, W), got shape {tuple(img.shape)}")
        x = convert_to_tensor(img)
        masks = np.stack([head_mask(channel, self.threshold, self.dilation) for channel in x.detach().cpu().numpy()])
        out = x * torch.as_tensor(masks, device=x.device, dtype=x.dtype)
        return convert_to_dst_type(out, img)[0]


class ZeroBackgroundd(MapTransform):
    """Dictionary wrapper of ``ZeroBackground`` for ``keys``."""

    backend = ZeroBackground.backend

    def __init__(
        self, keys: KeysCollection, threshold: float = HEAD_THRESHOLD, dilation: int = HEAD_DILATION, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.zero = ZeroBackground(threshold, dilation)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.zero(d[key])
        return d


ZeroBackgroundD = ZeroBackgroundDict = ZeroBackgroundd
