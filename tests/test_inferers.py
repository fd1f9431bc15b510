"""NeighbourSliceInferer: the stacks a 2.5D network gets over a real volume, in training's order, on every axis."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from conftest import load_volume
from nad_monai import UnrolledPeronaMalik
from nad_monai.datasets import neighbour_indices
from nad_monai.inferers import MeanOfInferers, NeighbourSliceInferer, volume_slice_inferer


@pytest.fixture(scope="module")
def volume() -> torch.Tensor:
    """A 40 x 48 x 7 block of Colin27 as a batch (1, 1, X, Y, Z) in [0, 1]."""
    return torch.from_numpy(load_volume("colin27_t1.nii.gz")[70:110, 80:128, 86:93].copy())[None, None]


class Channel(torch.nn.Module):
    """Returns channel ``j`` of its input ``(N, C, H, W)``: which slice of the stack sat there."""

    def __init__(self, j: int):
        super().__init__()
        self.j = j

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.j : self.j + 1]


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_every_slice_gets_its_neighbours_in_order_with_the_end_slices_repeated(volume, axis, batch_size):
    context, n = 2, volume.shape[2 + axis]
    for j in range(2 * context + 1):
        out = NeighbourSliceInferer(context, axis, batch_size)(volume, Channel(j))
        assert out.shape == volume.shape
        source = [neighbour_indices(k, n, context)[j] for k in range(n)]  # slice k - c + j, clamped
        assert torch.equal(out, volume.index_select(2 + axis, torch.tensor(source))), f"channel {j}"
    assert source[-1] == source[-2] == n - 1, "past the last slice the last slice is repeated"


@pytest.mark.parametrize("n", [1, 2, 3])
def test_volumes_thinner_than_a_stack_repeat_their_end_slices(volume, n):
    thin = volume[..., :n]
    stacks = torch.cat([NeighbourSliceInferer(2, 2, 2)(thin, Channel(j)) for j in range(5)], dim=1)  # (1, 5, X, Y, n)
    for k in range(n):
        expected = thin[0, 0, :, :, [min(max(j, 0), n - 1) for j in range(k - 2, k + 3)]].permute(2, 0, 1)
        assert torch.equal(stacks[0, :, :, :, k], expected), f"slice {k} of {n}"


def test_a_batch_of_volumes_keeps_each_volume_to_itself(volume):
    pair = torch.cat([volume, volume.flip(-1)])  # the second volume's neighbours are the first's reversed
    out = NeighbourSliceInferer(1, 2, 2)(pair, Channel(0))
    assert torch.equal(out[1:], NeighbourSliceInferer(1, 2, 2)(pair[1:], Channel(0)))
    assert torch.equal(out[:1], NeighbourSliceInferer(1, 2, 2)(pair[:1], Channel(0)))


def test_tiles_blend_into_nearly_the_whole_slice_result(volume):
    torch.manual_seed(0)
    net = UnrolledPeronaMalik(steps=2, context_slices=1).eval()
    noisy = (volume + 0.05 * torch.randn(volume.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    with torch.inference_mode():
        whole = NeighbourSliceInferer(1)(noisy, net)
        tiled = NeighbourSliceInferer(1, slice_inferer=SlidingWindowInferer((24, 24), overlap=0.5, mode="gaussian"))(noisy, net)
    assert (tiled - whole).abs().mean() < 0.01 * float(whole.max())
    assert not torch.equal(whole, noisy), "the network did run"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_further_channels_are_given_per_slice_after_the_stack(volume, axis):
    given = torch.cat([volume, 1 - volume, volume.flip(2 + axis)], dim=1)  # (1, 3, X, Y, Z): the volume, then two per-slice channels
    inferer = NeighbourSliceInferer(1, axis, 3)
    torch.testing.assert_close(inferer(given, Channel(1)), volume)  # the stack's middle: channel 0's own slice
    torch.testing.assert_close(inferer(given, Channel(3)), 1 - volume)  # after the stack of 3, each slice's own value of channel 1
    torch.testing.assert_close(inferer(given, Channel(4)), volume.flip(2 + axis))
    torch.testing.assert_close(inferer(given, Channel(0)), inferer(volume, Channel(0)))  # the stack is cut from channel 0 alone


def test_bad_arguments_and_shapes_are_refused(volume):
    with pytest.raises(ValueError, match="context must be >= 1"):
        NeighbourSliceInferer(0)
    with pytest.raises(ValueError, match="spatial_dim"):
        NeighbourSliceInferer(1, spatial_dim=3)
    with pytest.raises(ValueError, match="sw_batch_size"):
        NeighbourSliceInferer(1, sw_batch_size=0)
    with pytest.raises(ValueError, match="no slices"):
        NeighbourSliceInferer(1)(volume[..., :0], Channel(0))
    with pytest.raises(ValueError, match=r"\(B, 1, X, Y, Z\)"):
        NeighbourSliceInferer(1)(volume[..., 0], Channel(0))
    with pytest.raises(ValueError, match="should map"):
        NeighbourSliceInferer(1)(volume, lambda x: x)  # a network that does not reduce the stack to one slice


def test_the_mean_over_planes_averages_each_plane_s_result(volume):
    planes = [NeighbourSliceInferer(1, axis, 2) for axis in (0, 1, 2)]
    out = MeanOfInferers(planes)(volume, Channel(0))  # each voxel's neighbour before it, along each axis in turn
    expected = sum(plane(volume, Channel(0)) for plane in planes) / 3
    assert out.shape == volume.shape and torch.allclose(out, expected)
    assert not torch.allclose(out, planes[2](volume, Channel(0))), "the other planes count"
    with pytest.raises(ValueError, match="at least one inferer"):
        MeanOfInferers([])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_2d_network_gets_plain_slices_and_a_2_5d_one_stacks_across_the_axis(volume, axis):
    assert torch.equal(volume_slice_inferer(0, axis, 4)(volume, torch.nn.Identity()), volume)
    n = volume.shape[2 + axis]
    before = volume.index_select(2 + axis, torch.tensor([neighbour_indices(k, n, 1)[0] for k in range(n)]))
    assert torch.equal(volume_slice_inferer(1, axis, 4)(volume, Channel(0)), before), "channel 0: the slice before, across this axis"
    tiled = volume_slice_inferer(1, axis, 4, roi_size=(16, 16))(volume, Channel(0))
    assert torch.allclose(tiled, before, atol=1e-6), "tiles blend back into the slice"
