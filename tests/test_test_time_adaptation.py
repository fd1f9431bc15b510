"""benchmarks/test_time_adaptation.py: Recorrupted-to-Recorrupted pairs, random crops and self-supervised adaptation on a real slice."""

from __future__ import annotations

import sys

import pytest
import torch

from conftest import ROOT
from nad_monai import UnrolledPeronaMalik
from nad_monai.evaluation import with_neighbours
from nad_monai.inferers import NeighbourSliceInferer
from nad_monai.metrics import denoising_metrics

sys.path.insert(0, str(ROOT / "benchmarks"))
from test_time_adaptation import BM3DPilot, adapt, dihedral_mean, plane_stacks, random_crops, recorrupted_pair  # noqa: E402


def test_recorrupted_pair_noises_are_uncorrelated_with_the_expected_variances():
    sigma, alpha = 0.1, 0.5
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(1, 1, 500, 500, generator=generator)
    noise = torch.randn(clean.shape, generator=generator) * sigma
    y1, y2 = recorrupted_pair(clean + noise, sigma, alpha, generator)
    n1, n2 = (y1 - clean).flatten(), (y2 - clean).flatten()
    assert abs(torch.corrcoef(torch.stack([n1, n2]))[0, 1]) < 0.01  # so E|net(y1) - y2|^2 = E|net(y1) - clean|^2 + const
    assert abs(n1.var() / (sigma**2 * (1 + alpha**2)) - 1) < 0.02
    assert abs(n2.var() / (sigma**2 * (1 + 1 / alpha**2)) - 1) < 0.02


def test_random_crops_are_windows_of_the_images():
    images = torch.arange(3 * 20 * 30, dtype=torch.float32).reshape(3, 1, 20, 30)
    crops = random_crops(images, 8, 16, torch.Generator().manual_seed(1))
    assert crops.shape == (16, 1, 8, 8)
    for crop in crops:
        n, top, left = torch.nonzero(images == crop[0, 0, 0])[0, [0, 2, 3]].tolist()
        assert torch.equal(crop, images[n, :, top : top + 8, left : left + 8])


def test_adaptation_on_noisy_images_alone_raises_psnr_and_leaves_the_network_untouched(colin_slice):
    sigma = 0.1
    clean = torch.as_tensor(colin_slice)[None]
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(2)) * sigma
    net = UnrolledPeronaMalik(steps=4).eval()  # untrained: gates ~0.12, a gentle blur
    before = {k: v.clone() for k, v in net.state_dict().items()}
    adapted = adapt(net, noisy, sigma, iterations=40, lr=1e-3, crop=48)
    psnr = denoising_metrics()["psnr"]
    with torch.inference_mode():
        gain = float(psnr(adapted(noisy).clamp(0, 1), clean) - psnr(net(noisy).clamp(0, 1), clean))
    assert gain > 1.0
    assert not adapted.training and all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


def test_plane_stacks_are_the_stacks_a_2_5d_network_gets_in_each_plane(dipy_volume):
    volume = torch.as_tensor(dipy_volume[0])  # (X, Y, Z) = (128, 128, 10)
    slices = volume.permute(2, 0, 1)[:, None]  # (Z, 1, X, Y), as nad_monai.evaluation.volumes holds it
    sagittal, coronal, axial = plane_stacks(slices, 1, (0, 1, 2))
    assert sagittal.shape == (128, 3, 128, 10) and coronal.shape == (128, 3, 128, 10) and axial.shape == (10, 3, 128, 128)
    assert torch.equal(sagittal[5, 1], volume[5]) and torch.equal(coronal[7, 0], volume[:, 6]) and torch.equal(axial[9, 2], volume[..., 9])
    ids = [f"dipy#axis2:{k}" for k in range(10)]
    pairs = [(slices[k : k + 1], slices[k : k + 1], i) for k, i in enumerate(ids)]
    assert torch.equal(torch.cat([x for x, _, _ in with_neighbours(pairs, {"dipy#axis2": (slices, slices, ids)}, 1)]), axial)
    handed = []  # the stacks the inferer hands a network, sagittal
    NeighbourSliceInferer(1, spatial_dim=0, sw_batch_size=32)(volume[None, None], lambda x: handed.append(x) or x[:, 1:2])
    assert torch.equal(torch.cat(handed), sagittal) and torch.equal(plane_stacks(slices, 0, (2,))[0], slices)


def test_adapting_a_2_5d_network_on_stacks_learns_their_middle_slice(dipy_volume):
    sigma = 0.1
    clean = torch.as_tensor(dipy_volume[0]).permute(2, 0, 1)[:, None]
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(5)) * sigma
    stacks = plane_stacks(noisy, 1, (2,))[0]
    net = UnrolledPeronaMalik(steps=4, context_slices=1).eval()
    adapted = adapt(net, [stacks, stacks.flip(-1)], sigma, iterations=40, lr=1e-3, crop=48)
    psnr = denoising_metrics()["psnr"]
    with torch.inference_mode():
        gain = float((psnr(adapted(stacks).clamp(0, 1), clean) - psnr(net(stacks).clamp(0, 1), clean)).mean())
    assert gain > 1.0


def test_dihedral_mean_turns_every_output_back():
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(dihedral_mean(torch.nn.Identity(), x), x)  # an equivariant net is its own ensemble
    ramp = torch.linspace(0, 1, 12).expand(12, 12)
    biased = dihedral_mean(lambda u: u + ramp, x)  # a bias tied to the image axes: its 8 orientations average out
    symmetric = sum(torch.rot90(r, k) for r in (ramp, ramp.flip(-1)) for k in range(4)) / 8
    assert torch.allclose(biased, x + symmetric, atol=1e-6)
    assert float(symmetric.std()) < 0.5 * float(ramp.std())


def test_bm3d_pilot_denoises_each_image_at_its_own_noise_level(colin_slice):
    bm3d = pytest.importorskip("bm3d")  # the bench extra
    clean = torch.as_tensor(colin_slice)[None, :, 40:104, 60:124].expand(2, 1, 64, 64)
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(4)) * torch.tensor([0.05, 0.15]).view(2, 1, 1, 1)
    sigma = torch.tensor([0.05, 0.15], requires_grad=True)
    pilot = BM3DPilot()(noisy, sigma)
    assert pilot.shape == noisy.shape and not pilot.requires_grad
    for i, s in enumerate((0.05, 0.15)):
        assert torch.allclose(pilot[i, 0], torch.as_tensor(bm3d.bm3d(noisy[i, 0].numpy(), sigma_psd=s), dtype=torch.float32))
        assert float(((pilot[i] - clean[i]) ** 2).mean()) < 0.5 * float(((noisy[i] - clean[i]) ** 2).mean())
