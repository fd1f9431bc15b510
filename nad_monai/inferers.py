"""MONAI inferers for slice-wise networks over volumes: 2.5D stacks, and the mean over the three planes.

MONAI's ``SliceInferer`` hands a 2D network one slice at a time. A 2.5D network
(``UnrolledPeronaMalik(context_slices=c)``) also needs the ``c`` slices on each side of it, stacked as
channels in the order training used (``nad_monai.datasets.neighbour_indices``: slices ``k - c, ...,
k + c``, the first or last slice repeated past the volume's ends): ``NeighbourSliceInferer``.
``MeanOfInferers`` averages such inferers cut across different axes (sagittal, coronal and axial
slices of the same volume), the multi-planar view aggregation of FastSurfer (Henschel et al., 2020).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.inferers import Inferer, SimpleInferer, SliceInferer, SlidingWindowInferer
from monai.utils import optional_import

from .datasets import neighbour_indices

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")


class NeighbourSliceInferer(Inferer):
    """Run a 2.5D network over a volume ``(B, 1, X, Y, Z)``, slice by slice across ``spatial_dim``.

    Further channels ``(B, 1 + E, X, Y, Z)`` are given per slice: each stack gets the slice's own ``E`` values
    of them after its ``1 + 2 context`` slices of channel 0 (e.g. an estimate of the volume as a pilot,
    ``UnrolledPeronaMalik(volume_pilot=True)``).

    Args:
        context: neighbouring slices on each side of a slice (the network's ``context_slices``, >= 1).
        spatial_dim: the volume axis (0, 1 or 2 of ``X, Y, Z``) across which slices are cut.
        sw_batch_size: slices per network call.
        slice_inferer: runs the network on a batch of stacks ``(N, 1 + 2 context + E, H, W)`` and returns
            ``(N, 1, H, W)``; ``None``: ``SimpleInferer``. A ``SlidingWindowInferer`` tiles large slices.
        sw_device: where the network runs; the stacks are moved there a batch at a time (``None``:
            where the input is).
        device: where the output volume is assembled (``None``: where the input is).
        progress: show a progress bar over the batches.

    ``__call__(inputs, network)`` returns ``(B, 1, X, Y, Z)`` in the network's output dtype. The input
    volume is never copied whole to ``sw_device``, so it may be larger than the GPU's memory.
    """

    def __init__(
        self,
        context: int,
        spatial_dim: int = 2,
        sw_batch_size: int = 1,
        slice_inferer: Inferer | None = None,
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
    ):
        super().__init__()
        if context < 1:
            raise ValueError(f"context must be >= 1 (a 2D network needs monai.inferers.SliceInferer), got {context}")
        if spatial_dim not in (0, 1, 2):
            raise ValueError(f"spatial_dim must be 0, 1 or 2, got {spatial_dim}")
        if sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        self.context, self.spatial_dim, self.sw_batch_size = context, spatial_dim, sw_batch_size
        self.slice_inferer = slice_inferer or SimpleInferer()
        self.sw_device, self.device, self.progress = sw_device, device, progress

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs) -> torch.Tensor:
        if inputs.dim() != 5:
            raise ValueError(f"expected a volume batch (B, 1, X, Y, Z) (or (B, 1 + E, X, Y, Z), E channels per slice), got {tuple(inputs.shape)}")
        slices = torch.movedim(inputs[:, 0], 1 + self.spatial_dim, 1)  # (B, D, H, W)
        given = torch.movedim(inputs[:, 1:], 2 + self.spatial_dim, 1)  # (B, D, E, H, W)
        b, d, h, w = slices.shape
        if d == 0:
            raise ValueError(f"no slices across spatial_dim {self.spatial_dim} of {tuple(inputs.shape)}")
        sw_device = torch.device(self.sw_device) if self.sw_device is not None else inputs.device
        device = torch.device(self.device) if self.device is not None else inputs.device
        stacks = torch.tensor([neighbour_indices(k, d, self.context) for k in range(d)])  # (D, 1 + 2c)
        starts = range(0, d, self.sw_batch_size)
        out = None
        for start in tqdm(starts) if self.progress and has_tqdm else starts:
            picks = stacks[start : start + self.sw_batch_size]
            batch = torch.cat([slices[:, picks], given[:, start : start + len(picks)]], dim=2)  # (B, n, 1 + 2c + E, H, W)
            batch = batch.reshape(-1, batch.shape[2], h, w).to(sw_device)  # (B * n, 1 + 2c + E, H, W)
            pred = self.slice_inferer(batch, network, *args, **kwargs)
            if pred.shape != (batch.shape[0], 1, h, w):
                raise ValueError(f"the network should map {tuple(batch.shape)} to {(batch.shape[0], 1, h, w)}, got {tuple(pred.shape)}")
            if out is None:
                out = torch.empty((b, d, h, w), dtype=pred.dtype, device=device)
            out[:, start : start + len(picks)] = pred.reshape(b, len(picks), h, w).to(device)
        return torch.movedim(out, 1, 1 + self.spatial_dim)[:, None]


class MeanOfInferers(Inferer):
    """The voxel-wise mean of several inferers' outputs for the same input and network, in float32.

    With slice inferers cut across axes 0, 1 and 2 of a volume ``(B, C, X, Y, Z)`` each voxel is
    denoised three times, in its sagittal, coronal and axial slice, and the three estimates averaged:
    their errors differ, so the mean is closer to the truth than each, at the cost of three passes.
    Meant for volumes with near-isotropic voxels, whose slices look alike in every plane. The outputs
    are summed as they come (two volumes in memory, not one per inferer).

    Args:
        inferers: at least one inferer; all must return the same shape.
    """

    def __init__(self, inferers: Sequence[Inferer]):
        super().__init__()
        if not inferers:
            raise ValueError("MeanOfInferers needs at least one inferer")
        self.inferers = list(inferers)

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs) -> torch.Tensor:
        total = self.inferers[0](inputs, network, *args, **kwargs).float()
        for inferer in self.inferers[1:]:
            total += inferer(inputs, network, *args, **kwargs).float()
        return total / len(self.inferers)


def volume_slice_inferer(
    context: int,
    spatial_dim: int = 2,
    sw_batch_size: int = 1,
    roi_size: Sequence[int] | None = None,
    overlap: float = 0.25,
    sw_device: torch.device | str | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Inferer:
    """The inferer that runs a slice-wise network over a volume ``(B, 1, X, Y, Z)`` cut across ``spatial_dim``:
    MONAI's ``SliceInferer`` for a 2D network (``context`` 0), ``NeighbourSliceInferer`` for a 2.5D one
    (``context`` slices on each side). ``roi_size`` ``(h, w)``: each slice in tiles of that size blended
    by a Gaussian sliding window with ``overlap``; ``None``: whole slices."""
    tiling = {"overlap": overlap, "mode": "gaussian"} if roi_size else {"overlap": 0.0}
    if context:
        tiles = SlidingWindowInferer(roi_size=roi_size, sw_batch_size=sw_batch_size, **tiling) if roi_size else None
        return NeighbourSliceInferer(context, spatial_dim, sw_batch_size, tiles, sw_device, device, progress)
    window = {"sw_device": sw_device, "device": device, "progress": progress}
    return SliceInferer(roi_size=roi_size or (-1, -1), spatial_dim=spatial_dim, sw_batch_size=sw_batch_size, **tiling, **window)
