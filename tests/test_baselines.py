"""The classical baselines on a real MR slice: each one denoises, keeps shape/dtype, and tuning picks its best."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from conftest import load_volume
from nad_monai.baselines import GRIDS, METHODS, baseline, heat_equation, rician_bias_correction, tune
from nad_monai.diffusion import max_step
from nad_monai.metrics import denoising_metrics

OPTIONAL = {"bm3d": "bm3d", "dipy_nlmeans": "dipy"}  # method -> the package it needs


def psnr(x: torch.Tensor, clean: torch.Tensor) -> float:
    return float(denoising_metrics()["psnr"](x.clamp(0, 1), clean).mean())


@pytest.fixture(scope="module")
def pair(colin_slice):
    clean = torch.as_tensor(colin_slice)[None]  # (1, 1, 181, 217)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(3))
    return noisy, clean


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_baseline_denoises_a_real_slice(pair, method):
    if method in OPTIONAL and importlib.util.find_spec(OPTIONAL[method]) is None:
        pytest.skip(f"{OPTIONAL[method]} is not installed")
    noisy, clean = pair
    grid = GRIDS[method]
    middle = {name: values[len(values) // 2] for name, values in grid.items()}
    out = METHODS[method](noisy, **middle)
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    gain = psnr(out, clean) - psnr(noisy, clean)
    assert gain > 3.0, f"{method} {middle}: {gain:.2f} dB over the noisy slice"


def test_heat_equation_is_a_gaussian_blur_of_its_time(colin_slice):
    image = torch.as_tensor(colin_slice)[None]
    out = heat_equation(image, time=1.3, neighbours=4)  # 11 steps of 1.3/11 <= half the bound 1/4
    expected = gaussian_filter(colin_slice[0].astype(np.float64), np.sqrt(2 * 1.3))
    inner = (slice(20, -20), slice(20, -20))
    assert np.abs(out[0, 0].numpy()[inner] - expected[inner]).max() < 0.02
    assert 1.3 / 11 <= max_step(4) / 2


def test_heat_equation_damps_the_pixel_checkerboard():
    """At the full step bound one explicit step maps a checkerboard to its negative; the baseline must damp it."""
    checkerboard = torch.ones(1, 1, 32, 32)
    checkerboard[..., ::2, 1::2] = checkerboard[..., 1::2, ::2] = -1
    out = heat_equation(0.5 + 0.1 * checkerboard, time=0.25, neighbours=4)
    assert (out - 0.5)[..., 4:-4, 4:-4].abs().max() < 0.02


def test_tuning_picks_the_best_of_the_grid_and_bias_correction_helps_rician(colin_slice):
    clean = torch.as_tensor(colin_slice)[None]
    g = torch.Generator().manual_seed(4)
    rician = torch.sqrt((clean + 0.1 * torch.randn(clean.shape, generator=g)) ** 2 + (0.1 * torch.randn(clean.shape, generator=g)) ** 2)
    grid = {"sigma": [0.3, 1.0, 3.0]}
    best, score = tune("gaussian", [rician], [clean], psnr, grid, correct=[0.1])
    each = {s: psnr(rician_bias_correction(METHODS["gaussian"](rician, sigma=s), 0.1), clean) for s in grid["sigma"]}
    assert best == {"sigma": max(each, key=each.get)} and score == pytest.approx(max(each.values()))
    _, uncorrected = tune("gaussian", [rician], [clean], psnr, grid)
    assert score > uncorrected + 1.0, "the Rician bias correction is worth more than 1 dB here"


def test_bm4d_denoises_a_real_volume_better_than_bm3d_slice_by_slice():
    if importlib.util.find_spec("bm4d") is None or importlib.util.find_spec("bm3d") is None:
        pytest.skip("bm4d and bm3d are not installed (bench extra)")
    clean = torch.as_tensor(load_volume("colin27_t1.nii.gz")[40:136, 60:156, 84:96]).permute(2, 0, 1)[:, None]  # (12, 1, 96, 96)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(5))
    out = baseline("bm4d")(noisy, **{k: v[1] for k, v in GRIDS["bm4d"].items()})
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    slice_by_slice = METHODS["bm3d"](noisy, sigma_scale=1.0)
    assert psnr(out, clean) > psnr(slice_by_slice, clean) + 0.5 > psnr(noisy, clean) + 3.5  # blocks matched in the neighbouring slices too
    with pytest.raises(ValueError, match="unknown baseline 'bm5d'"):
        baseline("bm5d")
