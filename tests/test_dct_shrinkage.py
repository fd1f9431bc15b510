"""Sliding-window DCT shrinkage: an orthonormal transform, real denoising on MR, fixed constants, learned thresholds."""

from __future__ import annotations

import pytest
import torch
from scipy.ndimage import gaussian_filter

from nad_monai.dct_shrinkage import DCTShrinkage, dct_basis, dct_shrinkage
from nad_monai.metrics import denoising_metrics
from nad_monai.networks import UnrolledPeronaMalik

PSNR = denoising_metrics()["psnr"]


def noisy(clean: torch.Tensor, s: float, seed: int = 0) -> torch.Tensor:
    return clean + s * torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("p", [4, 8])
def test_basis_is_orthonormal_with_the_mean_first(p):
    basis = dct_basis(p).view(p * p, p * p)
    torch.testing.assert_close(basis @ basis.T, torch.eye(p * p), atol=1e-6, rtol=0)
    torch.testing.assert_close(basis[0], torch.full((p * p,), 1.0 / p))


@pytest.mark.parametrize("s", [0.05, 0.1])
def test_denoises_a_real_slice_better_than_the_best_gaussian_blur(colin_slice, s):
    clean = torch.as_tensor(colin_slice)[None]
    x = noisy(clean, s)
    y = DCTShrinkage()(x, torch.tensor([s - 0.01]))  # sigma + floor = s: the classical hard threshold 2.7 s
    blurred = max(float(PSNR(torch.as_tensor(gaussian_filter(x[0, 0].numpy(), w))[None, None], clean)) for w in (0.5, 0.8, 1.2, 1.6))
    gain = float(PSNR(y, clean)) - float(PSNR(x, clean))
    assert gain > 7.0 and float(PSNR(y, clean)) > blurred + 1.0, (gain, blurred)


@pytest.mark.parametrize("size", [(9, 4), (5, 3), (40, 33)])
def test_constants_are_fixed_points_at_any_size(size):
    flat = torch.full((2, 1, *size), 0.3)
    out = dct_shrinkage(flat, torch.full((64,), 2.7), torch.tensor([0.1, 0.02]), dct_basis(8))
    torch.testing.assert_close(out, flat, atol=1e-6, rtol=0)


def test_thresholds_are_learned_and_higher_ones_smooth_more(colin_slice):
    module = DCTShrinkage()
    torch.testing.assert_close(module.thresholds(), torch.full((64,), 2.7))
    clean = torch.as_tensor(colin_slice)[None, :, 60:124, 60:124]
    x = noisy(clean, 0.1)
    torch.nn.functional.mse_loss(module(x, torch.tensor([0.1])), clean).backward()
    assert module.threshold_logits.grad is not None and module.threshold_logits.grad[1:].abs().sum() > 0
    basis = dct_basis(8)
    with torch.no_grad():
        low, high = (dct_shrinkage(x, torch.full((64,), t), torch.tensor([0.1]), basis) for t in (1.0, 4.0))
    assert high.diff(dim=-1).abs().mean() < low.diff(dim=-1).abs().mean()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="patch_size"):
        dct_basis(1)
    with pytest.raises(ValueError, match="threshold"):
        DCTShrinkage(threshold=0.0)
    with pytest.raises(ValueError, match="one pilot"):
        UnrolledPeronaMalik(nonlocal_pilot=True, dct_pilot=True)
