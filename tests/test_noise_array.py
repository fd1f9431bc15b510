"""Noise-corruption array transforms: exact statistics on real MR slices, types, devices, 2D/3D."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from conftest import DEVICES
from transforms import (
    NOISE_MODELS,
    RandGaussianCorruption,
    RandMixedCorruption,
    RandNoiseCorruption,
    RandRicianCorruption,
    RandSpeckleCorruption,
)

Z = 5.0  # tolerance in standard errors for statistical checks


def corrupted(transform, img, seed=0):
    transform.set_random_state(seed=seed)
    return transform(img)


@pytest.mark.parametrize("s", [0.05, 0.2])
def test_gaussian_residual_mean_and_variance(colin_slice, s):
    residual = corrupted(RandGaussianCorruption(sigma=s, clip=False), colin_slice) - colin_slice
    n = residual.size
    assert abs(residual.mean()) < Z * s / np.sqrt(n)
    assert abs(residual.var() - s**2) < Z * s**2 * np.sqrt(2 / n)


@pytest.mark.parametrize("s", [0.05, 0.2])
def test_speckle_residual_is_proportional_to_signal(colin_slice, s):
    noisy = corrupted(RandSpeckleCorruption(sigma=s, clip=False), colin_slice)
    residual = noisy - colin_slice
    assert np.all(residual[colin_slice == 0] == 0), "speckle must leave zero signal at zero"
    mask = colin_slice > 0.05
    z = residual[mask] / (s * colin_slice[mask])  # standard normal if x + x*s*n
    n = z.size
    assert abs(z.mean()) < Z / np.sqrt(n)
    assert abs(z.var() - 1) < Z * np.sqrt(2 / n)


@pytest.mark.parametrize("s", [0.05, 0.1, 0.2])
def test_rician_background_is_rayleigh(mni_slice, s):
    noisy = corrupted(RandRicianCorruption(sigma=s, clip=False), mni_slice)
    background = noisy[mni_slice == 0]
    assert background.size > 10_000
    rayleigh_std = s * np.sqrt((4 - np.pi) / 2)
    assert abs(background.mean() - s * np.sqrt(np.pi / 2)) < Z * rayleigh_std / np.sqrt(background.size)
    assert background.min() >= 0


def test_rician_second_moment_everywhere(colin_slice):
    """E[M^2] = x^2 + 2 s^2 holds exactly for Rician magnitudes at every signal level."""
    s = 0.1
    noisy = corrupted(RandRicianCorruption(sigma=s, clip=False), colin_slice).astype(np.float64)
    excess = noisy**2 - colin_slice.astype(np.float64) ** 2
    # Var(M^2 - x^2) = 4 s^2 x^2 + 4 s^4 per pixel
    se = np.sqrt(np.mean(4 * s**2 * colin_slice.astype(np.float64) ** 2 + 4 * s**4) / excess.size)
    assert abs(excess.mean() - 2 * s**2) < Z * se


def test_sigma_range_is_uniform_and_bounded(colin_slice):
    t = RandGaussianCorruption(sigma=(0.05, 0.2))
    t.set_random_state(seed=1)
    draws = []
    for _ in range(400):
        t.randomize_model()
        draws.append(t.sigma)
    draws = np.array(draws)
    assert draws.min() >= 0.05 and draws.max() <= 0.2
    assert abs(draws.mean() - 0.125) < Z * (0.15 / np.sqrt(12)) / np.sqrt(draws.size)


def test_mixed_draws_every_model_with_given_probabilities():
    t = RandMixedCorruption(probs=(0.5, 0.3, 0.2))
    t.set_random_state(seed=2)
    models = []
    for _ in range(2000):
        t.randomize_model()
        models.append(t.model)
    freq = {m: models.count(m) / len(models) for m in NOISE_MODELS}
    for m, p in zip(NOISE_MODELS, (0.5, 0.3, 0.2)):
        assert abs(freq[m] - p) < Z * np.sqrt(p * (1 - p) / len(models))


def test_clip_keeps_unit_range(colin_slice):
    noisy = corrupted(RandMixedCorruption(sigma=0.2, clip=True), colin_slice)
    assert noisy.min() >= 0 and noisy.max() <= 1
    unclipped = corrupted(RandGaussianCorruption(sigma=0.2, clip=False), colin_slice)
    assert unclipped.min() < 0 and unclipped.max() > 1


def test_prob_zero_returns_input_unchanged(colin_slice):
    out = corrupted(RandRicianCorruption(prob=0.0), colin_slice)
    np.testing.assert_array_equal(out, colin_slice)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["numpy", "torch", "metatensor"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_type_dtype_device_and_shape_preserved_and_same_noise(colin_slice, kind, device, dtype):
    reference = corrupted(RandMixedCorruption(sigma=0.1), colin_slice)  # numpy float32
    x = colin_slice.astype(dtype)
    if kind == "numpy":
        if device != "cpu":
            pytest.skip("numpy arrays live on the CPU")
        img = x
    else:
        img = torch.as_tensor(x, device=device)
        if kind == "metatensor":
            img = MetaTensor(img, meta={"filename_or_obj": "colin27_t1.nii.gz"})
    out = corrupted(RandMixedCorruption(sigma=0.1), img)
    assert type(out) is type(img)
    assert tuple(out.shape) == colin_slice.shape
    if kind == "numpy":
        assert out.dtype == dtype
    else:
        assert out.dtype == torch.as_tensor(x).dtype and out.device.type == device
    if kind == "metatensor":
        assert out.meta["filename_or_obj"] == "colin27_t1.nii.gz"
    out_np = out if kind == "numpy" else out.detach().cpu().numpy()
    np.testing.assert_allclose(out_np, reference, atol=1e-6)


def test_integer_input_becomes_float32(colin_slice):
    out = corrupted(RandGaussianCorruption(sigma=0.1), (colin_slice * 255).astype(np.uint8))
    assert out.dtype == np.float32


@pytest.mark.parametrize("model", NOISE_MODELS)
def test_3d_volume_and_2d_slices_share_the_formula(dipy_volume, model):
    s = 0.1
    t = RandNoiseCorruption(models=model, sigma=s, clip=False)
    noisy = corrupted(t, dipy_volume)
    assert noisy.shape == dipy_volume.shape
    if model == "gaussian":
        residual = noisy - dipy_volume
        assert abs(residual.var() - s**2) < Z * s**2 * np.sqrt(2 / residual.size)


def test_reuse_last_draw_with_randomize_false(colin_slice):
    t = RandRicianCorruption(sigma=0.1)
    t.set_random_state(seed=3)
    first = t(colin_slice)
    np.testing.assert_array_equal(t(colin_slice, randomize=False), first)
    with pytest.raises(ValueError, match="no noise drawn"):
        t(colin_slice[:, :10, :10], randomize=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"models": "poisson"}, "noise models"),
        ({"models": ()}, "noise models"),
        ({"sigma": (0.2, 0.1)}, "sigma"),
        ({"sigma": -0.1}, "sigma"),
        ({"probs": (0.5, 0.5)}, "probs"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandNoiseCorruption(**kwargs)
