"""Non-local means in torch: it denoises real MR as well as scikit-image's, stays a convex combination, and learns its strength."""

from __future__ import annotations

import pytest
import torch
from skimage.restoration import denoise_nl_means

from nad_monai.metrics import denoising_metrics
from nad_monai.nonlocal_means import NonLocalMeans, nonlocal_means

PSNR = denoising_metrics()["psnr"]


def noisy(clean: torch.Tensor, s: float, seed: int = 0) -> torch.Tensor:
    return clean + s * torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("s", [0.05, 0.1])
def test_matches_scikit_image_on_a_real_slice(colin_slice, s):
    clean = torch.as_tensor(colin_slice)[None]
    x = noisy(clean, s)
    ours = nonlocal_means(x, torch.tensor([0.8 * s]), torch.tensor([s]), patch_size=5, window=11)
    reference = denoise_nl_means(x[0, 0].numpy(), h=0.8 * s, sigma=s, patch_size=5, patch_distance=5, fast_mode=True)
    gain = float(PSNR(ours.clamp(0, 1), clean)) - float(PSNR(x.clamp(0, 1), clean))
    assert gain > 6.0, gain
    assert abs(float(PSNR(ours.clamp(0, 1), clean)) - float(PSNR(torch.as_tensor(reference)[None, None].clamp(0, 1), clean))) < 0.5


def test_output_is_a_convex_combination_and_constants_are_fixed(colin_slice):
    x = noisy(torch.as_tensor(colin_slice)[None], 0.2)
    y = nonlocal_means(x, torch.tensor([0.5]), torch.tensor([0.2]))
    assert y.min() >= x.min() - 1e-6 and y.max() <= x.max() + 1e-6
    flat = torch.full((2, 1, 9, 4), 0.3)
    torch.testing.assert_close(nonlocal_means(flat, torch.tensor([0.1, 0.01]), torch.tensor([0.0, 0.0])), flat)


def test_strength_is_learned_and_scales_with_the_noise(colin_slice):
    module = NonLocalMeans(window=5)
    torch.testing.assert_close(module.strength(), torch.tensor(0.8))
    clean = torch.as_tensor(colin_slice)[None, :, 60:124, 60:124]
    x = noisy(clean, 0.1)
    torch.nn.functional.mse_loss(module(x, torch.tensor([0.1])), clean).backward()
    assert module.strength_logit.grad is not None and module.strength_logit.grad != 0
    with torch.no_grad():  # a stronger filter at a higher noise level smooths more
        weak, strong = module(x, torch.tensor([0.02])), module(x, torch.tensor([0.2]))
    assert strong.diff(dim=-1).abs().mean() < weak.diff(dim=-1).abs().mean()


@pytest.mark.parametrize("kwargs", [{"patch_size": 4}, {"window": 0}])
def test_bad_sizes_raise(kwargs):
    with pytest.raises(ValueError, match="odd"):
        nonlocal_means(torch.rand(1, 1, 8, 8), torch.tensor([0.1]), torch.tensor([0.1]), **kwargs)

