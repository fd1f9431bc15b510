"""Block-matched collaborative Wiener filtering of a whole volume, given a pilot estimate of it.

The second stage of BM4D (Maggioni et al., IEEE TIP 2013) with any pilot in place of BM4D's own first stage:
for every ``block``-cube of the volume whose corner lies on a grid of spacing ``step``, the ``group`` cubes of the
pilot most like it (least mean squared difference) within ``search`` voxels along each axis are stacked; the 4D
transform of each stack (the 3D DCT of every cube, then the DCT along the stack) of the noisy volume is scaled
by ``p^2 / (p^2 + sigma^2)``, ``p`` the pilot's coefficient there; the inverse transform of every stack is
averaged back into the volume weighted by the inverse of its summed squared gains, as BM3D and BM4D aggregate.
It is the whole-volume, classical counterpart of ``nad_monai.block_matching`` (2D patches, every pixel a reference,
a pilot inside the network): cubes in place of patches and a grid of reference cubes, to keep a volume affordable.

``block_matched_denoise_volume`` is our whole classical volume denoiser: overcomplete 3D DCT shrinkage
(``nad_monai.volume_dct``) as the first pilot, then passes of block-matched Wiener filtering, each with the last
pass's output as its pilot. It is BM4D's idea written in PyTorch under our licence, without BM4D's first
(hard-thresholding) block-matching stage, its Kaiser window or its Haar transform along the stack.

Cost: each pass compares ``(2 search + 1)^3`` candidate cubes with each grid cube and holds 4 bytes per comparison
(about 0.45 GB for a 181 x 217 x 181 volume at step 3). The 3D DCT and the three passes of ``PASSES`` took 0.55 s per
256 x 256 slice of the 181 x 217 x 181 benchmark test volume in float32 on 2 CPU cores, BM4D (``bm4d`` package) 2.41 s.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .dct_shrinkage import dct_matrix
from .volume_dct import dct_denoise_volume

PASSES = ((4, 3), (3, 2), (3, 2))
"""``(block, step)`` of each block-matched Wiener pass of ``block_matched_denoise_volume``: 4-cubes on a grid of 3,
then twice 3-cubes on a grid of 2."""


def _offsets(search: int) -> torch.Tensor:
    """Every displacement ``(O, 3)`` of the search window, ``O = (2 search + 1)^3``, the zero displacement included."""
    axis = torch.arange(-search, search + 1)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def _matches(pilot: torch.Tensor, offsets: torch.Tensor, block: int, step: int, search: int, group: int) -> tuple[torch.Tensor, torch.Size]:
    """The indices ``(R, group)`` into ``offsets`` of the ``group`` cubes of padded ``pilot`` nearest each grid cube
    (each cube itself first), and the grid's shape (``R`` its number of cubes). Grid cube corners are
    ``search + step x k`` along each axis."""
    span = tuple(n - 2 * search for n in pilot.shape)
    centre = pilot[tuple(slice(search, search + n) for n in span)]
    distances = None
    for o, (a, b, c) in enumerate(offsets.tolist()):
        moved = pilot[search + a : search + a + span[0], search + b : search + b + span[1], search + c : search + c + span[2]]
        d = F.avg_pool3d(((centre - moved) ** 2)[None, None], block, step)[0, 0]
        if distances is None:
            distances = torch.empty(d.numel(), len(offsets), dtype=d.dtype)
            grid = d.shape
        distances[:, o] = d.reshape(-1)
    distances[:, len(offsets) // 2] = -1.0  # each cube is its own first match
    return distances.topk(min(group, len(offsets)), dim=1, largest=False).indices, grid


def block_matched_wiener(
    noisy: torch.Tensor, pilot: torch.Tensor, sigma: float, block: int = 4, step: int = 3, search: int = 3, group: int = 16, chunk: int = 16384
) -> torch.Tensor:
    """One pass of block-matched collaborative Wiener filtering (module docstring).

    Args:
        noisy: ``(D, H, W)`` noisy volume, any range; floating point.
        pilot: ``(D, H, W)`` an estimate of the clean volume (same units): it picks the groups and the gains.
        sigma: the noise standard deviation in the volume's units (> 0); for Rician magnitudes the Gaussian
            ``sigma`` of the underlying channels, and the output keeps the Rician floor (bias-correct it after).
        block: edge of the cubes in voxels (>= 1).
        step: spacing of the grid of reference cubes in voxels, 1 to ``block``.
        search: the candidate cubes lie within ``search`` voxels of the reference along each axis (>= 0).
        group: how many cubes are stacked per reference (>= 1, at most ``(2 search + 1)^3``).
        chunk: reference cubes filtered at once (memory only; the output does not depend on it).

    Returns:
        ``(D, H, W)`` filtered volume, same dtype. The borders are replicate-padded by ``search + block``.
    """
    if noisy.dim() != 3 or not noisy.is_floating_point() or pilot.shape != noisy.shape:
        raise ValueError(f"noisy and pilot must be floating (D, H, W) tensors of one shape, got {tuple(noisy.shape)} {noisy.dtype} and {tuple(pilot.shape)}")
    if block < 1 or not 1 <= step <= block or search < 0 or group < 1 or chunk < 1:
        raise ValueError(
            f"need block >= 1, 1 <= step <= block, search >= 0, group >= 1, chunk >= 1, got block={block}, step={step}, search={search}, group={group}, chunk={chunk}"
        )
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    pad = search + block
    padded_noisy, padded_pilot = (F.pad(v[None, None], [pad] * 6, mode="replicate")[0, 0] for v in (noisy, pilot.to(noisy)))
    offsets = _offsets(search)
    best, grid = _matches(padded_pilot, offsets, block, step, search, group)
    strides = torch.tensor([padded_noisy.shape[1] * padded_noisy.shape[2], padded_noisy.shape[2], 1])
    corners = torch.stack(torch.meshgrid(*(search + step * torch.arange(g) for g in grid), indexing="ij"), -1).reshape(-1, 3) @ strides
    cube = torch.stack(torch.meshgrid(*(torch.arange(block),) * 3, indexing="ij"), -1).reshape(-1, 3) @ strides
    shifts = offsets @ strides
    c = dct_matrix(block).to(noisy)
    cube_dct = torch.kron(torch.kron(c, c), c)  # the 3D DCT of a flattened cube
    stack_dct = dct_matrix(best.shape[1]).to(noisy)
    flat_noisy, flat_pilot = padded_noisy.reshape(-1), padded_pilot.reshape(-1)
    total, weights = torch.zeros_like(flat_noisy), torch.zeros_like(flat_noisy)
    for start in range(0, len(corners), chunk):
        index = corners[start : start + chunk, None, None] + shifts[best[start : start + chunk]][..., None] + cube  # (n, group, block^3)
        p = torch.einsum("ij,njv,uv->niu", stack_dct, flat_pilot[index], cube_dct)
        y = torch.einsum("ij,njv,uv->niu", stack_dct, flat_noisy[index], cube_dct)
        gain = p**2 / (p**2 + sigma**2)
        weight = (1.0 / (gain**2).sum(dim=(1, 2)).clamp_min(1e-8))[:, None, None]
        estimate = torch.einsum("ij,niv,vu->nju", stack_dct, gain * y, cube_dct)
        total.index_add_(0, index.reshape(-1), (estimate * weight).reshape(-1))
        weights.index_add_(0, index.reshape(-1), weight.expand_as(estimate).reshape(-1))
    out = torch.where(weights > 0, total / weights.clamp_min(1e-12), flat_pilot).reshape(padded_noisy.shape)
    inner = (slice(pad, -pad),) * 3
    return out[inner].contiguous()


def block_matched_denoise_volume(volume: torch.Tensor, sigma: float, passes: Sequence[tuple[int, int]] = PASSES, search: int = 3, group: int = 16) -> torch.Tensor:
    """Denoise a volume: 3D DCT shrinkage, then one ``block_matched_wiener`` pass per ``(block, step)`` of ``passes``,
    each piloted by the one before (module docstring).

    Args:
        volume: ``(D, H, W)`` intensities, any range; floating point.
        sigma: the noise standard deviation in the volume's units (> 0); for Rician magnitudes the Gaussian
            ``sigma`` of the underlying channels, and the output keeps the Rician floor (bias-correct it after).
        passes: ``(block, step)`` of each block-matched pass, in order.
        search, group: as for ``block_matched_wiener``, in every pass.

    Returns:
        ``(D, H, W)`` denoised volume, same dtype.
    """
    estimate = dct_denoise_volume(volume, sigma)
    for block, step in passes:
        estimate = block_matched_wiener(volume, estimate, sigma, block=block, step=step, search=search, group=group)
    return estimate
