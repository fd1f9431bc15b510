"""Block-matching Wiener filtering: groups of true look-alikes, real denoising on MR beyond a single
patch's transform, fixed constants, gradients, and its place as the network's pilot."""

from __future__ import annotations

import pytest
import torch

from nad_monai.block_matching import BlockMatchingWiener, block_matching_wiener, match_patches
from nad_monai.dct_shrinkage import dct_basis, dct_matrix, dct_shrinkage
from nad_monai.metrics import denoising_metrics
from nad_monai.networks import UnrolledPeronaMalik

PSNR = denoising_metrics()["psnr"]


def test_groups_lead_with_the_reference_and_collect_exact_repeats():
    tile = torch.rand(4, 3, generator=torch.Generator().manual_seed(0))
    image = tile.repeat(10, 12)[None, None]  # (1, 1, 40, 36), period 4 rows x 3 columns
    indices = match_patches(image, patch_size=4, window=11, group_size=6)
    assert indices.shape == (1, 6, 40 * 36)
    torch.testing.assert_close(indices[0, 0], torch.arange(40 * 36))
    y, x = divmod(20 * 36 + 18, 36)  # an interior pixel: its nearest repeats lie 3 or 4 pixels away
    members = indices[0, :, y * 36 + x]
    dy, dx = members // 36 - y, members % 36 - x
    assert torch.all(dy % 4 == 0) and torch.all(dx % 3 == 0), (dy, dx)
    assert torch.all(dy.abs() <= 5) and torch.all(dx.abs() <= 5)


@pytest.mark.parametrize("s", [0.05, 0.1])
def test_denoises_a_real_slice_better_than_one_patch_transform(colin_slice, s):
    clean = torch.as_tensor(colin_slice)[None, :, 40:136, 50:146]
    x = clean + s * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([s])
    with torch.no_grad():
        sliding = dct_shrinkage(x, torch.full((64,), 2.7), sigma, dct_basis(8))
        y = BlockMatchingWiener(floor=0.0)(x, sigma)
    gain_over_dct = float(PSNR(y, clean)) - float(PSNR(sliding, clean))
    assert float(PSNR(y, clean)) - float(PSNR(x, clean)) > 7.0 and gain_over_dct > 0.3, gain_over_dct


@pytest.mark.parametrize("size", [(9, 4), (2, 2), (40, 33)])
def test_constants_keep_their_value_but_for_the_wiener_gain_of_the_mean(size):
    flat = torch.full((2, 1, *size), 0.3)
    sigma = torch.tensor([0.1, 0.02])
    power = (0.3 * 8 * 8**0.5) ** 2  # the squared 3D DC of a group of 8 constant 8x8 patches
    gain = power / (power + (sigma + 0.01) ** 2)  # BM3D's Wiener weight on it, sigma + floor
    torch.testing.assert_close(BlockMatchingWiener()(flat, sigma), flat * gain.view(2, 1, 1, 1), atol=1e-6, rtol=0)


def test_the_filtering_is_differentiable_and_scripts(colin_slice):
    module = BlockMatchingWiener()
    assert not list(module.parameters())
    x = (torch.as_tensor(colin_slice)[None, :, 60:100, 60:100] + 0.1 * torch.randn(1, 1, 40, 40)).requires_grad_()
    module(x, torch.tensor([0.1])).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(module)(x, torch.tensor([0.1])), module(x, torch.tensor([0.1])))


def test_bad_arguments_raise():
    image = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="odd window"):
        match_patches(image, 8, 10, 4)
    with pytest.raises(ValueError, match="group_size"):
        match_patches(image, 8, 3, 10)
    with pytest.raises(ValueError, match="same shape"):
        block_matching_wiener(image, image[:, :, :8], torch.tensor([0.1]), dct_basis(8), dct_matrix(4).float())
    with pytest.raises(ValueError, match="threshold"):
        BlockMatchingWiener(threshold=0.0)
    with pytest.raises(ValueError, match="one pilot"):
        UnrolledPeronaMalik(dct_pilot=True, block_matching_pilot=True)
