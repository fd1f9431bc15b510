"""Loss and metrics: each value checked against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import from_engine
from scipy.ndimage import sobel
from skimage.metrics import structural_similarity

from nad_monai.losses import DenoisingLoss, edge_magnitude_mse, gradient_mse
from nad_monai.metrics import EdgeMSEMetric, denoising_metrics, metric_handlers, sobel_magnitude


@pytest.fixture(scope="module")
def pair(colin_slice):
    clean = torch.as_tensor(colin_slice)[None]
    g = torch.Generator().manual_seed(0)
    noisy = (clean + 0.08 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    return torch.cat([noisy, clean * 0.9]), torch.cat([clean, clean])


def test_psnr_matches_its_definition(pair):
    pred, ref = pair
    expected = [10 * np.log10(1.0 / np.mean((p.numpy() - r.numpy()) ** 2)) for p, r in zip(pred, ref)]
    np.testing.assert_allclose(denoising_metrics()["psnr"](pred, ref).flatten().numpy(), expected, rtol=1e-5)


def test_ssim_matches_scikit_image_gaussian_ssim(pair):
    pred, ref = pair
    ours = denoising_metrics()["ssim"](pred, ref).flatten().numpy()
    skimage = [
        structural_similarity(r[0].numpy(), p[0].numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for p, r in zip(pred, ref)
    ]
    np.testing.assert_allclose(ours, skimage, atol=1e-4)


def test_edge_mse_matches_scipy_sobel(pair):
    pred, ref = pair

    def magnitude(img):
        return np.hypot(sobel(img, axis=0, mode="nearest"), sobel(img, axis=1, mode="nearest"))

    expected = [np.mean((magnitude(r[0].numpy().astype(np.float64)) - magnitude(p[0].numpy().astype(np.float64))) ** 2) for p, r in zip(pred, ref)]
    np.testing.assert_allclose(EdgeMSEMetric()(pred, ref).flatten().numpy(), expected, rtol=1e-4)
    assert torch.all(sobel_magnitude(ref) >= 0)


def test_loss_is_zero_only_for_a_perfect_prediction_and_weights_matter(pair):
    pred, ref = pair
    assert DenoisingLoss()(ref, ref).item() == pytest.approx(0.0, abs=1e-6)
    full = DenoisingLoss()(pred, ref).item()
    assert full > 0
    parts = DenoisingLoss(1, 0, 0)(pred, ref).item() + DenoisingLoss(0, 1, 0)(pred, ref).item() + 0.1 * gradient_mse(pred, ref).item()
    assert full == pytest.approx(parts, rel=1e-5)
    assert DenoisingLoss(gradient_weight=0.0)(pred, ref).item() < full
    mse = DenoisingLoss(0, 0, 0, mse_weight=2.0)(pred, ref).item()
    assert mse == pytest.approx(2.0 * torch.mean((pred - ref) ** 2).item(), rel=1e-5)
    assert DenoisingLoss(mse_weight=2.0)(pred, ref).item() == pytest.approx(full + mse, rel=1e-5)


def test_edge_term_is_the_edge_mse_metric_and_has_a_gradient_on_flat_images(pair):
    pred, ref = pair
    assert edge_magnitude_mse(pred, ref).item() == pytest.approx(EdgeMSEMetric()(pred, ref).mean().item(), rel=1e-3)
    full = DenoisingLoss()(pred, ref).item()
    assert DenoisingLoss(edge_weight=0.5)(pred, ref).item() == pytest.approx(full + 0.5 * edge_magnitude_mse(pred, ref).item(), rel=1e-5)
    flat = torch.zeros(1, 1, 16, 16, requires_grad=True)  # hypot's gradient is NaN here
    edge_magnitude_mse(flat, torch.zeros(1, 1, 16, 16)).backward()
    assert torch.equal(flat.grad, torch.zeros_like(flat))


def test_edge_term_prefers_either_reference_where_the_gradient_term_prefers_their_blurred_mean(colin_slice):
    """Two references that differ in the sign of their texture (``clean +- t``): the gradient term is least for
    their mean, which has lost the texture's edges; the edge term, the tables' Edge MSE, prefers either one."""
    clean = torch.as_tensor(colin_slice)[None]
    texture = 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    references, textured = [clean + texture, clean - texture], clean + texture
    assert sum(gradient_mse(clean, r) for r in references) < sum(gradient_mse(textured, r) for r in references)
    assert sum(edge_magnitude_mse(textured, r) for r in references) < sum(edge_magnitude_mse(clean, r) for r in references)


def test_loss_falls_as_noise_falls(colin_slice):
    clean = torch.as_tensor(colin_slice)[None]
    noise = torch.randn_like(clean)
    losses = [DenoisingLoss()(clean + s * noise, clean).item() for s in (0.2, 0.1, 0.05, 0.01)]
    assert losses == sorted(losses, reverse=True)


def test_ignite_handlers_report_the_same_values(pair):
    pred, ref = pair
    engine = Engine(lambda e, batch: {"pred": batch[0], "label": batch[1]})
    for name, handler in metric_handlers(from_engine(["pred", "label"])).items():
        handler.attach(engine, name)
    engine.run([(pred[:1], ref[:1]), (pred[1:], ref[1:])], max_epochs=1)
    direct = {name: metric(pred, ref).mean().item() for name, metric in denoising_metrics().items()}
    for name, value in direct.items():
        assert engine.state.metrics[f"val_{name}"] == pytest.approx(value, rel=1e-5)
    assert len(engine.state.metric_details["val_psnr"]) == 2
