"""The intensity normalisation rule shared by the shipped demo data, every reader and inference.

Rule: the minimum maps to 0, the 99.5th percentile maps to 1 (``unit_range_bounds``). Training
data are clipped to [0, 1] (``unit_range``); inference does not clip, so the mapping can be
inverted exactly (``transforms.UnitRange``). For MR magnitude images (minimum 0) this is
``x / p99.5(x)``, so true zero stays zero, which keeps the Rician background statistics of
corrupted images exact. ``unit_range`` is idempotent: a volume already normalised by it comes back
unchanged.
"""

from __future__ import annotations

import numpy as np
from monai.config import NdarrayOrTensor
from monai.transforms.utils_pytorch_numpy_unification import percentile
from monai.utils import convert_to_dst_type

UPPER_PERCENTILE = 99.5
"""Percentile of the input intensities that maps to 1.0."""


def unit_range_bounds(img: NdarrayOrTensor) -> tuple[float, float]:
    """``(low, high)`` = (minimum, 99.5th percentile) of an image of any shape, in its own units.

    Raises:
        ValueError: the image contains NaN/Inf or has no range (high <= low).
    """
    img = convert_to_dst_type(img, img, dtype=np.float32)[0]
    if not bool((img == img).all()) or not bool(abs(img).max() < float("inf")):
        raise ValueError("image contains NaN or Inf values")
    low, high = float(img.min()), float(percentile(img, UPPER_PERCENTILE))
    if high <= low:
        raise ValueError(f"image has no intensity range (minimum {low:g}, {UPPER_PERCENTILE}th percentile {high:g})")
    return low, high


def unit_range(img: NdarrayOrTensor) -> NdarrayOrTensor:
    """Map an image of any shape to [0, 1] by the rule above, clipped (min -> 0, p99.5 -> 1).

    Args:
        img: intensities in any unit, numpy array or torch tensor of any shape.

    Returns:
        The same array type, device and shape as ``img``, float32, in [0, 1].

    Raises:
        ValueError: if the image contains NaN/Inf or is constant (no range to normalise).
    """
    img = convert_to_dst_type(img, img, dtype=np.float32)[0]
    low, high = unit_range_bounds(img)  # no second copy: img is float32 already
    return ((img - low) / (high - low)).clip(0.0, 1.0)
