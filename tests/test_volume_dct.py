"""nad_monai.volume_dct: overcomplete 3D DCT shrinkage of a real MR volume, and its blind baseline."""

from __future__ import annotations

import pytest
import torch

from conftest import load_volume
from nad_monai.baselines import GRIDS, METHODS, baseline
from nad_monai.metrics import denoising_metrics
from nad_monai.volume_dct import dct_denoise_volume


def psnr(x: torch.Tensor, clean: torch.Tensor) -> float:
    return float(denoising_metrics()["psnr"](x.clamp(0, 1), clean).mean())


@pytest.fixture(scope="module")
def volume():
    """Twelve Colin27 slices ``(12, 1, 96, 96)`` and the same with Gaussian noise, s = 0.1."""
    clean = torch.as_tensor(load_volume("colin27_t1.nii.gz")[40:136, 60:156, 84:96]).permute(2, 0, 1)[:, None]
    return clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(5)), clean


def test_it_denoises_a_real_volume_using_the_neighbouring_slices(volume):
    noisy, clean = volume
    out = dct_denoise_volume(noisy[:, 0], 0.1)[:, None]
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    order = torch.randperm(len(noisy), generator=torch.Generator().manual_seed(0))
    shuffled = dct_denoise_volume(noisy[order, 0], 0.1)[:, None]  # the same slices, neighbours unrelated
    tv = max(psnr(METHODS["tv"](noisy, weight=w), clean) for w in GRIDS["tv"]["weight"])
    assert psnr(out, clean) > psnr(noisy, clean) + 9  # measured: 30.3 against 20.0 dB
    assert psnr(out, clean) > psnr(shuffled, clean[order]) + 0.8  # measured: 1.3 dB from the slices around
    assert psnr(out, clean) > tv + 0.8  # measured: 1.2 dB above the best TV, slice by slice


def test_the_blind_baseline_estimates_its_noise_level(volume):
    noisy, clean = volume
    known = psnr(dct_denoise_volume(noisy[:, 0], 0.1)[:, None], clean)
    blind = baseline("dct3d")(noisy, sigma_scale=1.0)
    assert blind.shape == noisy.shape and blind.dtype == noisy.dtype
    assert abs(psnr(blind, clean) - known) < 0.5  # the slices' median MAD estimate is close to the true s


def test_a_noise_free_constant_volume_is_left_as_it_is():
    constant = torch.full((10, 20, 24), 0.3)
    assert torch.allclose(dct_denoise_volume(constant, 0.1), constant, atol=1e-4)  # the DC is always kept


@pytest.mark.parametrize(
    "volume, kwargs, message",
    [
        (torch.zeros(8, 8), {}, "floating \\(D, H, W\\)"),
        (torch.zeros(8, 8, 8, dtype=torch.int64), {}, "floating \\(D, H, W\\)"),
        (torch.zeros(8, 8, 8), {"step": 3}, "divisor"),
        (torch.zeros(8, 8, 8), {"sigma": 0.0}, "sigma must be > 0"),
    ],
)
def test_bad_arguments_are_named(volume, kwargs, message):
    with pytest.raises(ValueError, match=message):
        dct_denoise_volume(volume, **{"sigma": 0.1, **kwargs})
