"""Explicit anisotropic diffusion on a pixel grid: the kernel shared by the network and the baselines.

One explicit step of ``du/dt = div(c grad u)`` over the neighbour differences ``d_i = u(p + e_i) - u(p)``::

    u <- u + lam * sum_i w_i * c_i * d_i

with gates ``c_i`` in [0, 1] and direction weights ``w_i`` (1 for the 4 axial neighbours, 1/2 =
1/distance**2 for the 4 diagonals). The new value is a convex combination of the pixel and its
neighbours whenever ``lam * sum_i w_i c_i <= 1``, so the scheme obeys the maximum principle (never
leaves the [min, max] of its input) for every ``lam <= max_step(neighbours)``: 1/4 for 4
neighbours, 1/8 for 8. Borders are replicate-padded (no flux across the image edge).

With ``c = 1`` this is the heat equation ``du/dt = Laplacian(u)``: the 4-neighbour stencil is the
5-point Laplacian, and the 8-neighbour one (diagonals weighted 1/2) sums to twice the Laplacian, so
after ``steps`` steps of size ``lam`` the time is ``t = lam * steps`` (4) or ``2 * lam * steps`` (8),
and the result approximates a Gaussian blur of sigma ``sqrt(2 t)`` pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

OFFSETS = {
    4: ((-1, 0), (1, 0), (0, 1), (0, -1)),  # N, S, E, W as (row, column) steps
    8: ((-1, 0), (1, 0), (0, 1), (0, -1), (-1, 1), (-1, -1), (1, 1), (1, -1)),  # + NE, NW, SE, SW
}
CONDUCTANCES = ("exponential", "rational", "constant")


def _check_neighbours(neighbours: int) -> None:
    if neighbours not in OFFSETS:
        raise ValueError(f"neighbours must be 4 or 8, got {neighbours!r}")


def direction_weights(neighbours: int) -> torch.Tensor:
    """Weights ``w_i`` of each direction: 1 / squared distance, shape ``(neighbours,)``."""
    _check_neighbours(neighbours)
    return torch.tensor([1.0 / (dy * dy + dx * dx) for dy, dx in OFFSETS[neighbours]])


def max_step(neighbours: int) -> float:
    """Largest ``lam`` the explicit scheme allows for any gates in [0, 1]: 1/4 (4 nbrs), 1/8 (8 nbrs)."""
    _check_neighbours(neighbours)
    return 1.0 / neighbours


def neighbour_differences(u: torch.Tensor, neighbours: int = 4) -> torch.Tensor:
    """Differences to each neighbour in ``OFFSETS`` order, ``d_i = u(p + e_i) - u(p)``, replicate padding.

    Args:
        u: images ``(N, 1, H, W)``.
        neighbours: 4 (N, S, E, W) or 8 (plus NE, NW, SE, SW).

    Returns:
        ``(N, neighbours, H, W)``, same dtype and device. TorchScript-compatible.
    """
    if neighbours != 4 and neighbours != 8:  # not _check_neighbours: TorchScript cannot read the OFFSETS dict
        raise ValueError("neighbours must be 4 or 8")
    if u.dim() != 4 or u.size(1) != 1:
        raise ValueError("expected images of shape (N, 1, H, W)")
    h, w = u.size(2), u.size(3)
    p = F.pad(u, [1, 1, 1, 1], mode="replicate")  # p[1 + i, 1 + j] = u[i, j]
    shifted = [p[:, :, 0:h, 1 : w + 1], p[:, :, 2 : h + 2, 1 : w + 1], p[:, :, 1 : h + 1, 2 : w + 2], p[:, :, 1 : h + 1, 0:w]]
    if neighbours == 8:
        shifted += [p[:, :, 0:h, 2 : w + 2], p[:, :, 0:h, 0:w], p[:, :, 2 : h + 2, 2 : w + 2], p[:, :, 2 : h + 2, 0:w]]
    return torch.cat(shifted, dim=1) - u


def coarse_neighbour_differences(u: torch.Tensor, neighbours: int, levels: int) -> torch.Tensor:
    """Neighbour differences of ``u`` at ``levels`` coarser scales, each brought back to full size.

    Level ``l`` (1 to ``levels``) averages ``2**l x 2**l`` blocks (a 2x2 mean per level, borders
    replicate-padded to even sizes), so white noise of std ``s`` falls to ``s / 2**l``; its
    ``neighbour_differences`` (steps of ``2**l`` pixels) are upsampled bilinearly, each block's value
    centred on its block. Edges that survive averaging are real, whereas noise fakes fine-scale ones.

    Args:
        u: images ``(N, 1, H, W)``.
        neighbours: 4 or 8.
        levels: number of coarser scales, >= 0.

    Returns:
        ``(N, levels * neighbours, H, W)``, the finest of the coarse levels first. TorchScript-compatible.
    """
    h, w = u.size(2), u.size(3)
    coarse = u
    out: list[torch.Tensor] = []
    factor = 1
    for _ in range(levels):
        coarse = F.avg_pool2d(F.pad(coarse, [0, coarse.size(3) % 2, 0, coarse.size(2) % 2], mode="replicate"), 2)
        factor *= 2
        d = neighbour_differences(coarse, neighbours)
        size = [d.size(2) * factor, d.size(3) * factor]
        out.append(F.interpolate(d, size=size, mode="bilinear", align_corners=False)[:, :, :h, :w])
    if not out:
        return u.new_zeros([u.size(0), 0, h, w])
    return torch.cat(out, dim=1)


def gradient_magnitudes(differences: torch.Tensor) -> torch.Tensor:
    """``|d_i| / distance_i``: directional gradient magnitudes, same shape as ``differences``."""
    weights = direction_weights(differences.shape[1]).to(differences)
    return differences.abs() * weights.sqrt().view(1, -1, 1, 1)


def conductance(gradient: torch.Tensor, kind: str = "exponential", k: float = 0.1) -> torch.Tensor:
    """Perona-Malik edge-stopping function of a gradient magnitude, in [0, 1].

    Args:
        gradient: gradient magnitudes ``s >= 0``, any shape (intensity units per pixel).
        kind: ``"exponential"`` ``exp(-(s/k)**2)`` (favours wide regions), ``"rational"``
            ``1/(1 + (s/k)**2)`` (favours high-contrast edges), or ``"constant"`` 1 (heat equation).
        k: edge threshold in the same units as ``gradient``: larger diffuses across stronger edges.
    """
    if kind == "exponential":
        return torch.exp(-((gradient / k) ** 2))
    if kind == "rational":
        return 1.0 / (1.0 + (gradient / k) ** 2)
    if kind == "constant":
        return torch.ones_like(gradient)
    raise ValueError(f"unknown conductance {kind!r}, expected one of {CONDUCTANCES}")


def diffusion_step(u: torch.Tensor, gates: torch.Tensor, lam: float | torch.Tensor, differences: torch.Tensor | None = None) -> torch.Tensor:
    """One explicit step ``u + lam * sum_i w_i c_i d_i``.

    Args:
        u: images ``(N, 1, H, W)``.
        gates: conductances ``c_i`` in [0, 1], ``(N, n, H, W)`` with n = 4 or 8.
        lam: step size; the maximum principle holds for ``0 <= lam <= max_step(n)``.
        differences: ``neighbour_differences(u, n)`` if already computed.

    Returns:
        The updated images, ``(N, 1, H, W)``.
    """
    if differences is None:
        differences = neighbour_differences(u, gates.shape[1])
    lam = torch.as_tensor(lam, dtype=u.dtype, device=u.device)
    return weighted_step(u, gates * differences, direction_weights(gates.shape[1]).to(u), lam)


def weighted_step(u: torch.Tensor, fluxes: torch.Tensor, weights: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``u + lam * sum_i w_i * flux_i`` for fluxes ``c_i d_i`` ``(N, n, H, W)`` and weights ``(n,)``; TorchScript-compatible."""
    return u + lam * (weights.view(1, -1, 1, 1) * fluxes).sum(dim=1, keepdim=True)


class ClassicalDiffusion(nn.Module):
    """Classical diffusion with a fixed conductance: heat equation or Perona-Malik (1990).

    ``forward`` runs ``steps`` explicit steps of ``diffusion_step`` with gates
    ``conductance(|d_i| / distance_i, kind, k)``. Nothing is learned; it is a batched torch module
    so it runs on GPU and shares the kernel with ``UnrolledPeronaMalik``.

    Args:
        kind: ``"exponential"``, ``"rational"`` (Perona-Malik) or ``"constant"`` (heat equation).
        k: edge threshold, intensity units per pixel (images in [0, 1]): larger smooths more edges.
        lam: step size, at most ``max_step(neighbours)``; ``lam * steps`` is the diffusion time.
        steps: number of explicit steps.
        neighbours: 4 or 8.

    Example::

        >>> pm = ClassicalDiffusion("exponential", k=0.05, lam=0.1, steps=16)
        >>> smoothed = pm(noisy)  # (N, 1, H, W) -> (N, 1, H, W)
    """

    def __init__(self, kind: str = "exponential", k: float = 0.1, lam: float = 0.2, steps: int = 16, neighbours: int = 4):
        super().__init__()
        if kind not in CONDUCTANCES:
            raise ValueError(f"unknown conductance {kind!r}, expected one of {CONDUCTANCES}")
        if not 0 < lam <= max_step(neighbours) + 1e-12:
            raise ValueError(f"lam must be in (0, {max_step(neighbours):g}] for {neighbours} neighbours, got {lam}")
        if k <= 0 or steps < 0:
            raise ValueError(f"k must be > 0 and steps >= 0, got k={k}, steps={steps}")
        self.kind, self.k, self.lam, self.steps, self.neighbours = kind, k, lam, steps, neighbours

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Diffuse images ``(N, 1, H, W)``; returns the same shape."""
        for _ in range(self.steps):
            d = neighbour_differences(u, self.neighbours)
            gates = conductance(gradient_magnitudes(d), self.kind, self.k)
            u = diffusion_step(u, gates, self.lam, d)
        return u

    def extra_repr(self) -> str:
        return f"kind={self.kind}, k={self.k}, lam={self.lam}, steps={self.steps}, neighbours={self.neighbours}"


def heat_equation_sigma(lam: float, steps: int, neighbours: int = 4) -> float:
    """Gaussian sigma (pixels) equivalent to ``steps`` heat-equation steps of size ``lam``: ``sqrt(2 t)``.

    ``t = lam * steps`` for 4 neighbours and ``2 * lam * steps`` for 8 (see the module docstring).
    """
    _check_neighbours(neighbours)
    return math.sqrt(2.0 * lam * steps * (1 if neighbours == 4 else 2))
