"""nad_monai.volume_block_matching: block-matched Wiener filtering of a real MR volume, and its blind baseline."""

from __future__ import annotations

import pytest
import torch

from conftest import load_volume
from nad_monai.baselines import baseline
from nad_monai.metrics import denoising_metrics
from nad_monai.volume_block_matching import block_matched_denoise_volume, block_matched_wiener
from nad_monai.volume_dct import dct_denoise_volume


def psnr(x: torch.Tensor, clean: torch.Tensor) -> float:
    return float(denoising_metrics()["psnr"](x.clamp(0, 1)[:, None], clean[:, None]).mean())


@pytest.fixture(scope="module")
def volume():
    """32 slices ``(32, 96, 96)`` of ITK's T1 scan, the same with Gaussian noise s = 0.1, and its 3D DCT estimate."""
    clean = torch.as_tensor(load_volume("itk_kmeans_t1.nii.gz")[16:112, 16:112, 15:47]).permute(2, 0, 1).contiguous()
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(5))
    return noisy, clean, dct_denoise_volume(noisy, 0.1)


def test_block_matching_improves_on_its_pilot(volume):
    noisy, clean, pilot = volume
    out = block_matched_wiener(noisy, pilot, 0.1)
    assert out.shape == noisy.shape and out.dtype == noisy.dtype
    assert psnr(out, clean) > psnr(pilot, clean) + 0.4  # measured: 26.87 against 26.32 dB
    unmatched = block_matched_wiener(noisy, pilot, 0.1, search=0, group=1)  # each cube alone: 3D DCT Wiener
    assert psnr(out, clean) > psnr(unmatched, clean) + 0.25  # measured: 0.39 dB from grouping similar cubes


def test_the_passes_and_the_blind_baseline(volume):
    noisy, clean, pilot = volume
    out = block_matched_denoise_volume(noisy, 0.1)
    assert psnr(out, clean) > psnr(block_matched_wiener(noisy, pilot, 0.1), clean) + 0.25  # measured: 27.29 against 26.87 dB
    blind = baseline("bm_wiener3d")(noisy[:, None], sigma_scale=1.0)[:, 0]
    assert blind.shape == noisy.shape and abs(psnr(blind, clean) - psnr(out, clean)) < 0.5  # measured: 0.17 dB apart, the MAD estimate is close to s


def test_the_output_does_not_depend_on_the_chunk(volume):
    noisy, _, pilot = volume
    assert torch.allclose(block_matched_wiener(noisy, pilot, 0.1, chunk=100), block_matched_wiener(noisy, pilot, 0.1), atol=1e-5)


def test_a_noise_free_constant_volume_is_left_as_it_is():
    constant = torch.full((10, 20, 24), 0.3)
    assert torch.allclose(block_matched_denoise_volume(constant, 0.1), constant, atol=1e-4)  # a stack's DC (0.3 x 32) is far above sigma: Wiener gain 0.9999


@pytest.mark.parametrize(
    "noisy, pilot, kwargs, message",
    [
        (torch.zeros(8, 8), torch.zeros(8, 8), {}, "floating \\(D, H, W\\)"),
        (torch.zeros(8, 8, 8), torch.zeros(8, 8, 9), {}, "one shape"),
        (torch.zeros(8, 8, 8), torch.zeros(8, 8, 8), {"step": 5}, "step <= block"),
        (torch.zeros(8, 8, 8), torch.zeros(8, 8, 8), {"group": 0}, "group >= 1"),
        (torch.zeros(8, 8, 8), torch.zeros(8, 8, 8), {"sigma": 0.0}, "sigma must be > 0"),
    ],
)
def test_bad_arguments_are_named(noisy, pilot, kwargs, message):
    with pytest.raises(ValueError, match=message):
        block_matched_wiener(noisy, pilot, **{"sigma": 0.1, **kwargs})
