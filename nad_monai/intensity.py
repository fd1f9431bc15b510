"""The intensity normalisation rule shared by the shipped demo data and every reader.

Rule: the minimum maps to 0, the 99.5th percentile maps to 1, values are clipped to [0, 1].
For MR magnitude images (minimum 0) this is ``x / p99.5(x)`` clipped, so true zero stays zero,
which keeps the Rician background statistics of corrupted images exact. The rule is idempotent:
a volume already normalised by it comes back unchanged.
"""

from __future__ import annotations

import numpy as np
from monai.config import NdarrayOrTensor
from monai.transforms import ScaleIntensityRangePercentiles
from monai.utils import convert_to_dst_type

UPPER_PERCENTILE = 99.5
"""Percentile of the input intensities that maps to 1.0."""

_NORMALISE = ScaleIntensityRangePercentiles(lower=0.0, upper=UPPER_PERCENTILE, b_min=0.0, b_max=1.0, clip=True)


def unit_range(img: NdarrayOrTensor) -> NdarrayOrTensor:
    """Map an image of any shape to [0, 1] by the robust rule above (min -> 0, p99.5 -> 1, clipped).

    Args:
        img: intensities in any unit, numpy array or torch tensor of any shape.

    Returns:
        The same array type, device and shape as ``img``, float32, in [0, 1].

    Raises:
        ValueError: if the image is constant or contains NaN/Inf (no range to normalise).
    """
    if not bool((img == img).all()) or not bool(abs(img).max() < float("inf")):
        raise ValueError("image contains NaN or Inf values")
    if img.max() <= img.min():
        raise ValueError(f"image is constant (every voxel = {float(img.max()):g})")
    img = convert_to_dst_type(img, img, dtype=np.float32)[0]
    return convert_to_dst_type(_NORMALISE(img), img)[0]
