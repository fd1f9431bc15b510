"""The shared diffusion kernel and the classical baselines: maximum principle, fixed points, heat = Gaussian."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from conftest import DEVICES
from nad_monai.diffusion import (
    OFFSETS,
    ClassicalDiffusion,
    coarse_neighbour_differences,
    conductance,
    diffusion_step,
    direction_weights,
    heat_equation_sigma,
    max_step,
    neighbour_differences,
)
from nad_monai.metrics import denoising_metrics


def as_batch(img: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(img)[None]  # (1, 1, H, W)


def noisy(clean: torch.Tensor, s: float = 0.1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return clean + s * torch.randn(clean.shape, generator=g)


@pytest.mark.parametrize("neighbours", [4, 8])
def test_differences_point_to_each_neighbour_with_zero_flux_borders(neighbours):
    u = torch.arange(20.0).reshape(1, 1, 4, 5)
    d = neighbour_differences(u, neighbours)
    assert d.shape == (1, neighbours, 4, 5)
    np.testing.assert_array_equal(d[0, 0, 1:, :], -5.0)  # north neighbour is one row up
    np.testing.assert_array_equal(d[0, 0, 0, :], 0.0)  # replicate border: no flux out of the image
    np.testing.assert_array_equal(d[0, 2, :, :-1], 1.0)  # east
    if neighbours == 8:
        np.testing.assert_array_equal(d[0, 4, 1:, :-1], -4.0)  # north-east
    assert direction_weights(neighbours).sum() == (4 if neighbours == 4 else 6)


@pytest.mark.parametrize("neighbours", [4, 8])
def test_each_difference_channel_follows_the_offsets_table(colin_slice, neighbours):
    u = torch.as_tensor(colin_slice)[None]
    d = neighbour_differences(u, neighbours)
    for i, (dy, dx) in enumerate(OFFSETS[neighbours]):
        neighbour = torch.roll(u, shifts=(-dy, -dx), dims=(-2, -1))  # neighbour(p) = u(p + e_i)
        torch.testing.assert_close(d[0, i, 1:-1, 1:-1], (neighbour - u)[0, 0, 1:-1, 1:-1], rtol=0, atol=1e-7)
    assert direction_weights(neighbours).tolist() == [1.0 / (dy * dy + dx * dx) for dy, dx in OFFSETS[neighbours]]


@pytest.mark.parametrize("neighbours", [4, 8])
@pytest.mark.parametrize("size", [(32, 48), (37, 29), (5, 3)])
def test_coarse_differences_step_2_to_the_l_pixels_and_keep_the_image_size(neighbours, size):
    h, w = size
    ramp = torch.arange(float(w)).expand(1, 1, h, w).contiguous()  # +1 per pixel eastwards
    d = coarse_neighbour_differences(ramp, neighbours, 2)
    assert d.shape == (1, 2 * neighbours, h, w)
    east = [i for i, offset in enumerate(OFFSETS[neighbours]) if offset == (0, 1)][0]
    if w >= 32:  # away from the borders a block mean of the ramp steps by the block size
        np.testing.assert_allclose(d[0, east, h // 2, 8 : w - 8], 2.0, atol=1e-5)
        np.testing.assert_allclose(d[0, neighbours + east, h // 2, 12 : w - 12], 4.0, atol=1e-5)
        np.testing.assert_allclose(d[0, 0, 4 : h - 4, 4 : w - 4], 0.0, atol=1e-5)  # nothing changes north
    assert coarse_neighbour_differences(ramp, neighbours, 0).shape == (1, 0, h, w)


def test_coarse_differences_shrink_noise_but_keep_real_edges(colin_slice):
    clean = as_batch(colin_slice)
    noise = noisy(torch.zeros_like(clean), 0.1)
    fine = neighbour_differences(noise, 4).std()
    coarse = coarse_neighbour_differences(noise, 4, 2)
    level1, level2 = coarse[:, :4].std(), coarse[:, 4:].std()
    assert level1 < 0.5 * fine and level2 < 0.6 * level1
    # on the anatomy the coarse differences still carry the edges: strong where the fine ones are
    edges = neighbour_differences(clean, 4).abs().mean(1)
    strong = edges > torch.quantile(edges, 0.95)
    coarse_clean = coarse_neighbour_differences(clean, 4, 1).abs().mean(1)
    assert coarse_clean[strong].mean() > 3 * coarse_clean[~strong].mean()


@pytest.mark.parametrize("neighbours", [4, 8])
@pytest.mark.parametrize("device", DEVICES)
def test_maximum_principle_for_random_gates_at_the_step_bound(colin_slice, neighbours, device):
    u = noisy(as_batch(colin_slice), 0.2).to(device)
    lo, hi = u.min(), u.max()
    g = torch.Generator(device=device).manual_seed(1)
    for _ in range(50):
        gates = torch.rand((1, neighbours, *u.shape[-2:]), generator=g, device=device)
        u = diffusion_step(u, gates, max_step(neighbours))
        assert u.min() >= lo - 1e-6 and u.max() <= hi + 1e-6


def test_step_beyond_the_bound_can_overshoot():
    """The bound is tight: a checkerboard with lam above 1/4 leaves its range (so the check can fail)."""
    u = (torch.arange(64).reshape(8, 8) % 2 + torch.arange(64).reshape(8, 8) // 8 % 2).remainder(2).float()[None, None]
    over = diffusion_step(u, torch.ones(1, 4, 8, 8), 0.4)
    assert over.min() < 0 or over.max() > 1
    within = diffusion_step(u, torch.ones(1, 4, 8, 8), max_step(4))
    assert within.min() >= 0 and within.max() <= 1


@pytest.mark.parametrize("kind", ["exponential", "rational", "constant"])
@pytest.mark.parametrize("neighbours", [4, 8])
def test_constant_image_is_a_fixed_point(kind, neighbours):
    u = torch.full((2, 1, 31, 17), 0.37)
    out = ClassicalDiffusion(kind, k=0.05, lam=max_step(neighbours), steps=20, neighbours=neighbours)(u)
    torch.testing.assert_close(out, u, rtol=0, atol=1e-7)


@pytest.mark.parametrize("neighbours, lam, steps", [(4, 0.25, 8), (4, 0.1, 32), (8, 0.125, 8), (8, 0.1, 20)])
def test_heat_equation_matches_gaussian_blur_away_from_borders(colin_slice, neighbours, lam, steps):
    """Heat equation for time t = Gaussian blur of sigma sqrt(2t): max error < 0.01 (images in [0, 1])."""
    heat = ClassicalDiffusion("constant", lam=lam, steps=steps, neighbours=neighbours)(as_batch(colin_slice).double())
    sigma = heat_equation_sigma(lam, steps, neighbours)
    blur = gaussian_filter(colin_slice[0].astype(np.float64), sigma, mode="nearest", truncate=6)
    margin = 20
    error = np.abs(heat[0, 0].numpy() - blur)[margin:-margin, margin:-margin]
    assert error.max() < 0.01 and error.mean() < 1e-3


def test_conductances_are_edge_stopping_gates():
    s = torch.linspace(0, 1, 101)
    for kind in ("exponential", "rational"):
        c = conductance(s, kind, k=0.1)
        assert c[0] == 1 and torch.all(c[1:] < c[:-1]) and c.min() > 0
        assert conductance(torch.tensor(0.1), kind, 0.1).item() == pytest.approx(np.exp(-1) if kind == "exponential" else 0.5)
    assert torch.all(conductance(s, "constant") == 1)
    with pytest.raises(ValueError, match="unknown conductance"):
        conductance(s, "linear")


@pytest.mark.parametrize("kind", ["exponential", "rational"])
def test_perona_malik_denoises_and_keeps_edges_better_than_heat(colin_slice, kind):
    clean = as_batch(colin_slice)
    x = noisy(clean, 0.1)
    psnr, edge = denoising_metrics()["psnr"], denoising_metrics()["edge_mse"]
    pm = ClassicalDiffusion(kind, k=0.1, lam=0.2, steps=16)(x)
    heat = ClassicalDiffusion("constant", lam=0.2, steps=16)(x)
    assert psnr(pm, clean).item() > psnr(x, clean).item() + 3
    assert edge(pm, clean).item() < edge(heat, clean).item()


def test_invalid_classical_parameters():
    with pytest.raises(ValueError, match="lam must be"):
        ClassicalDiffusion(lam=0.2, neighbours=8)
    with pytest.raises(ValueError, match="neighbours must be 4 or 8"):
        neighbour_differences(torch.zeros(1, 1, 4, 4), 6)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        neighbour_differences(torch.zeros(1, 4, 4), 4)
