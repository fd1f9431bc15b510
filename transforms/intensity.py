"""Invertible intensity normalisation to the network's [0, 1] range (inference), array and dictionary forms.

``UnitRange`` maps ``x -> (x - low) / (high - low)`` with ``(low, high)`` = (minimum, 99.5th
percentile) of the image (``nad_monai.intensity.unit_range_bounds``) and records both in the
MetaTensor's applied operations, so ``inverse`` (or MONAI's ``Invertd`` on a prediction) brings
an output back to the input's own intensity units. Unclipped by default, so the inverse is exact.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import InvertibleTransform, MapTransform, Transform
from monai.utils import TraceKeys, TransformBackends, convert_to_dst_type, convert_to_tensor

from nad_monai.intensity import unit_range_bounds


class UnitRange(InvertibleTransform, Transform):
    """Normalise an image to the network's range: minimum -> 0, 99.5th percentile -> 1.

    Args:
        clip: clip the result to [0, 1] (then the top 0.5% cannot be restored by ``inverse``).

    Input: channel-first image of any shape and dtype; output: float32 of the same shape, type
    and device. Raises ``ValueError`` for NaN/Inf or constant images.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, clip: bool = False) -> None:
        self.clip = clip

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = convert_to_tensor(img, track_meta=get_track_meta(), dtype=torch.float32)
        low, high = unit_range_bounds(x)
        out = (x - low) / (high - low)
        if self.clip:
            out = out.clamp(0.0, 1.0)
        self.push_transform(out, extra_info={"low": low, "high": high})  # recorded on MetaTensors only
        if isinstance(img, torch.Tensor):
            return out
        return convert_to_dst_type(out, img, dtype=torch.float32)[0]  # numpy in, numpy out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Map a [0, 1] image (or a prediction carrying this transform's record) back to the input units."""
        transform = self.pop_transform(data)
        info = transform[TraceKeys.EXTRA_INFO]
        return data * (info["high"] - info["low"]) + info["low"]


class UnitRanged(MapTransform, InvertibleTransform):
    """Dictionary wrapper of ``UnitRange`` for ``keys``; ``inverse`` undoes it per key."""

    backend = UnitRange.backend

    def __init__(self, keys: KeysCollection, clip: bool = False, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.normalise = UnitRange(clip=clip)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalise(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalise.inverse(d[key])
        return d


UnitRangeD = UnitRangeDict = UnitRanged
