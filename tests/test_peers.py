"""The benchmark's learned peers: DnCNN, the residual U-Net, and the seed variant's detached guidance."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import BasicUNet

from nad_monai import DenoisingLoss, UnrolledPeronaMalik
from nad_monai.peers import DnCNN, ResidualDenoiser


def residual_unet() -> ResidualDenoiser:
    return ResidualDenoiser(BasicUNet(spatial_dims=2, in_channels=1, out_channels=1))


@pytest.mark.parametrize("make", [DnCNN, residual_unet])
@pytest.mark.parametrize("size", [(64, 64), (67, 45), (181, 217)])
def test_untrained_peers_are_the_identity_at_any_size(make, size):
    net = make().eval()
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        assert torch.equal(net(x), x)


@pytest.mark.parametrize("size", [(64, 64), (181, 217)])
def test_the_2_5d_residual_unet_adds_its_correction_to_the_middle_slice(size):
    stacks = torch.rand(2, 5, *size)
    net = ResidualDenoiser(BasicUNet(spatial_dims=2, in_channels=5, out_channels=1), context_slices=2).eval()
    with torch.no_grad():
        assert torch.equal(net(stacks), stacks[:, 2:3])  # untrained: the identity on the slice to denoise
        net.net.final_conv.bias.fill_(0.25)
        assert torch.allclose(net(stacks), stacks[:, 2:3] + 0.25)
    with pytest.raises(ValueError, match="expected 5 input channels"):
        net(stacks[:, :1])


def test_the_2_5d_residual_unet_runs_over_a_volume_with_the_neighbour_inferer():
    """The benchmark's volume inferers stack the neighbours in the order the network's skip connection expects."""
    from nad_monai.inferers import NeighbourSliceInferer

    volume = torch.rand(1, 1, 32, 33, 34)  # BasicUNet halves each side four times and normalises what is left
    net = ResidualDenoiser(BasicUNet(spatial_dims=2, in_channels=5, out_channels=1), context_slices=2).eval()
    with torch.no_grad():
        for axis in (0, 1, 2):
            assert torch.equal(NeighbourSliceInferer(context=net.context_slices, spatial_dim=axis, sw_batch_size=4)(volume, net), volume)


def test_dncnn_has_the_papers_size_and_every_layer_learns(colin_slice):
    net = DnCNN()
    assert sum(p.numel() for p in net.parameters()) == 556_097
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 17
    clean = torch.as_tensor(colin_slice)[None, :, :64, :64]
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(2):  # the zero-initialised last layer moves first, then the rest get gradients
        opt.zero_grad()
        DenoisingLoss()(net(noisy), clean).backward()
        opt.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_dncnn_refuses_fewer_than_three_layers():
    with pytest.raises(ValueError, match="depth >= 3"):
        DnCNN(depth=2)


@pytest.mark.parametrize("detach", [False, True])
def test_detached_guidance_never_trains(detach):
    net = UnrolledPeronaMalik(steps=2, shared=True, noise_level_input=False, detach_guidance=detach)
    x = torch.rand(2, 1, 32, 32)
    DenoisingLoss()(net(x), x.roll(1, dims=2)).backward()
    guidance_grads = [p.grad for p in net.guidance.parameters()]
    if detach:
        assert all(g is None for g in guidance_grads)
    else:
        assert all(g is not None and g.abs().sum() > 0 for g in guidance_grads)
    assert all(p.grad is not None for p in net.conduction.parameters())


def test_the_seed_variant_is_about_the_seed_projects_size():
    net = UnrolledPeronaMalik(steps=16, neighbours=8, shared=True, noise_level_input=False, detach_guidance=True, step_fraction=0.4)
    assert 22_000 < sum(p.numel() for p in net.parameters()) < 24_000  # the seed reports 23.6k
    assert torch.allclose(net.step_sizes(), torch.full((16,), 0.05))
