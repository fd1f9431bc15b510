"""UnrolledPeronaMalik: shapes, stability by construction, gradients everywhere, size, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import DEVICES, ROOT, load_volume
from nad_monai.diffusion import max_step
from nad_monai.losses import DenoisingLoss
from nad_monai.metrics import denoising_metrics
from nad_monai.baselines import rician_bias_correction
from nad_monai.networks import NETWORKS, UnrolledPeronaMalik, estimate_noise_sigma, get_network
from transforms import RandRicianCorruption

CONFIGS = [
    {},
    {"neighbours": 4, "steps": 4},
    {"shared": True},
    {"guidance_channels": 0},
    {"refinement": False},
    {"noise_level_input": False},
    {"conduction_features": (16, 16), "conduction_kernel_sizes": (3, 1), "conduction_padding": "zeros"},
    {"steps": 4, "conduction_padding": "zeros"},
    {"rician_correction": True},
    {"nonlocal_pilot": True, "steps": 4},
    {"coarse_scales": 2, "steps": 4},
    {"dct_pilot": True, "steps": 4},
    {"block_matching_pilot": True, "steps": 2},
]


def perturbed(net: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Random weights far from the initialisation, to test guarantees that must hold for any weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("kwargs", CONFIGS)
@pytest.mark.parametrize("size", [(64, 64), (67, 45), (5, 3)])
def test_any_size_in_gives_the_same_size_out(kwargs, size):
    net = UnrolledPeronaMalik(**kwargs).eval()
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        y, details = net.inspect(x)
    assert y.shape == x.shape
    assert len(details["gates"]) == net.steps and len(details["states"]) == net.steps + 1
    for gates in details["gates"]:
        assert gates.shape == (2, net.neighbours, *size) and gates.min() >= 0 and gates.max() <= 1
    assert torch.all(details["step_sizes"] > 0) and torch.all(details["step_sizes"] < max_step(net.neighbours))


@pytest.mark.parametrize("neighbours", [4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fast", [{}, {"conduction_kernel_sizes": (3, 1), "conduction_padding": "zeros"}])
@pytest.mark.parametrize("extra", [{}, {"nonlocal_pilot": True}, {"dct_pilot": True}, {"block_matching_pilot": True}, {"coarse_scales": 2}])
def test_pure_diffusion_obeys_the_maximum_principle_for_any_weights(colin_slice, neighbours, seed, fast, extra):
    net = perturbed(UnrolledPeronaMalik(neighbours=neighbours, refinement=False, **extra, **fast), seed, scale=2.0).eval()
    with torch.no_grad():
        net.step_logits.fill_(20.0)  # lam_k at its bound
    x = (torch.as_tensor(colin_slice)[None] + 0.2 * torch.randn(1, 1, *colin_slice.shape[1:])).clamp(0, 1)
    with torch.no_grad():
        y = net(x)
    assert y.min() >= x.min() - 1e-5 and y.max() <= x.max() + 1e-5


@pytest.mark.parametrize("extra", [{}, {"nonlocal_pilot": True}, {"dct_pilot": True}, {"block_matching_pilot": True}, {"coarse_scales": 2}])
def test_constant_image_is_a_fixed_point_of_the_pure_network(extra):
    net = perturbed(UnrolledPeronaMalik(refinement=False, **extra)).eval()
    x = torch.full((1, 1, 40, 30), 0.42)
    with torch.no_grad():
        torch.testing.assert_close(net(x), x, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"shared": True}, {"neighbours": 4}, {"nonlocal_pilot": True, "steps": 4}, {"coarse_scales": 2, "steps": 4}, {"dct_pilot": True, "pilot_blend": True, "steps": 4},
     {"block_matching_pilot": True, "pilot_blend": True, "steps": 2}],
)
def test_gradients_reach_every_parameter_including_guidance(kwargs, colin_slice):
    net = UnrolledPeronaMalik(**kwargs)
    clean = torch.as_tensor(colin_slice)[None, :, 40:104, 40:104]
    x = clean + 0.1 * torch.randn_like(clean)
    DenoisingLoss()(net(x), clean).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert any(name.startswith("guidance.") for name, _ in net.named_parameters())


def test_fast_options_shrink_the_conduction_nets_and_script():
    net = UnrolledPeronaMalik(steps=4, conduction_features=(16, 16), conduction_kernel_sizes=(3, 1), conduction_padding="zeros")
    first, second = net.conduction[0].net[0], net.conduction[0].net[2]
    assert first.kernel_size == (3, 3) and first.padding_mode == "zeros" and second.kernel_size == (1, 1)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in UnrolledPeronaMalik().parameters()) / 3
    x = torch.rand(2, 1, 37, 41)
    scripted = torch.jit.script(net.eval())
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))


def test_learned_rician_correction_is_the_classical_one_at_r_1_and_scripts(colin_slice):
    net = perturbed(UnrolledPeronaMalik(steps=3, rician_correction=True), seed=1, scale=0.1).eval()
    plain = UnrolledPeronaMalik(steps=3).eval()
    assert set(plain.load_state_dict(net.state_dict(), strict=False).unexpected_keys) == {"bias_gate.weight", "bias_gate.bias"}
    with torch.no_grad():
        net.bias_gate.weight.zero_()
        net.bias_gate.bias.zero_()  # r = 2 sigmoid(0) = 1 everywhere
    noise = RandRicianCorruption(sigma=0.1)
    noise.set_random_state(seed=0)
    x = torch.as_tensor(noise(colin_slice))[None]
    sigma = torch.tensor([0.1])
    with torch.no_grad():
        expected = rician_bias_correction(plain(x, sigma).clamp(min=0), 0.1)
        torch.testing.assert_close(net(x, sigma), expected.clamp(min=1e-3), atol=1e-5, rtol=1e-5)
        background = x[0, 0] < 0.05
        assert net(x, sigma)[0, 0][background].mean() < x[0, 0][background].mean() / 2  # Rayleigh mean s sqrt(pi / 2) removed
        torch.testing.assert_close(torch.jit.script(net)(x, sigma), net(x, sigma))
    with pytest.raises(ValueError, match="needs noise_level_input"):
        UnrolledPeronaMalik(rician_correction=True, noise_level_input=False)


@pytest.mark.parametrize("pilot", ["nonlocal_pilot", "dct_pilot", "block_matching_pilot"])
def test_each_pilot_scripts_is_returned_by_inspect_and_needs_the_noise_level(pilot):
    net = UnrolledPeronaMalik(steps=3, **{pilot: True}).eval()
    x = torch.rand(2, 1, 33, 29)
    with torch.no_grad():
        y, details = net.inspect(x)
        torch.testing.assert_close(torch.jit.script(net)(x), y)
    assert details["pilot"].shape == x.shape
    with pytest.raises(ValueError, match="needs noise_level_input"):
        UnrolledPeronaMalik(noise_level_input=False, **{pilot: True})


@pytest.mark.parametrize("pilot", ["nonlocal_pilot", "dct_pilot", "block_matching_pilot"])
def test_pilot_blend_starts_at_the_mean_of_the_pde_and_the_pilot_and_scripts(colin_slice, pilot):
    net = UnrolledPeronaMalik(steps=3, refinement=False, pilot_blend=True, **{pilot: True}).eval()
    x = torch.as_tensor(colin_slice)[None, :, :48, :40] + 0.1 * torch.randn(1, 1, 48, 40)
    with torch.no_grad():
        y, details = net.inspect(x)
        torch.testing.assert_close(y, (details["states"][-1] + details["pilot"]) / 2)
        torch.testing.assert_close(torch.jit.script(net)(x), y)
    with pytest.raises(ValueError, match="needs a pilot"):
        UnrolledPeronaMalik(pilot_blend=True)


def test_a_given_pilot_is_the_last_channel_blended_in_and_scripts():
    clean = torch.as_tensor(load_volume("colin27_t1.nii.gz")[40:104, 40:104, 88:93]).permute(2, 0, 1)[None]  # (1, 5, 64, 64): neighbouring real slices
    x = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(5))).clamp(0, 1)
    pilot = clean[:, 2:3]  # the best estimate there is: the clean middle slice
    net = UnrolledPeronaMalik(steps=3, context_slices=2, refinement=False, volume_pilot=True, pilot_blend=True).eval()
    with torch.no_grad():
        y, details = net.inspect(torch.cat([x, pilot], dim=1))
        torch.testing.assert_close(details["pilot"], pilot)
        torch.testing.assert_close(y, (details["states"][-1] + pilot) / 2)  # m = 1/2 before training
        torch.testing.assert_close(torch.jit.script(net)(torch.cat([x, pilot], dim=1)), y)
        torch.testing.assert_close(details["states"][0], x[:, 2:3])  # the diffusion starts from the noisy slice, not the pilot
    with pytest.raises(ValueError, match=r"\(N, 6, H, W\).*then the pilot"):
        net(x)
    with pytest.raises(ValueError, match="choose one pilot"):
        UnrolledPeronaMalik(volume_pilot=True, dct_pilot=True)
    with pytest.raises(ValueError, match="needs noise_level_input"):
        UnrolledPeronaMalik(volume_pilot=True, noise_level_input=False)


def test_a_pde_started_from_the_pilot_keeps_the_range_of_the_pilot_and_stack_and_scripts():
    clean = torch.as_tensor(load_volume("colin27_t1.nii.gz")[40:104, 40:104, 88:93]).permute(2, 0, 1)[None]  # (1, 5, 64, 64)
    noise = torch.Generator().manual_seed(6)
    x = (clean + 0.1 * torch.randn(clean.shape, generator=noise)).clamp(0, 1)
    pilot = (clean[:, 2:3] + 0.02 * torch.randn(clean[:, 2:3].shape, generator=noise)).clamp(0, 1)
    stack = torch.cat([x, pilot], dim=1)
    net = UnrolledPeronaMalik(steps=3, context_slices=2, refinement=False, volume_pilot=True, pilot_start=True).eval()
    with torch.no_grad():
        net.step_logits.fill_(20.0)  # lam_k at its bound: the strongest smoothing the steps allow
        y, details = net.inspect(stack)
        torch.testing.assert_close(details["states"][0], pilot)  # the diffusion starts from the pilot, not the noisy slice
        torch.testing.assert_close(torch.jit.script(net)(stack), y)
    assert stack.min() - 1e-6 <= y.min() and y.max() <= stack.max() + 1e-6
    with pytest.raises(ValueError, match="pilot_start needs a pilot"):
        UnrolledPeronaMalik(pilot_start=True)


def test_multiscale_gates_see_each_coarse_scale_and_script(colin_slice):
    net = perturbed(UnrolledPeronaMalik(steps=3, coarse_scales=2), seed=2, scale=0.1).eval()
    assert net.conduction[0].net[0].in_channels == 3 * 8 + 8 + 1  # fine + 2 coarse scales, guidance, noise level
    x = torch.as_tensor(colin_slice)[None, :, :75, :61] + 0.1 * torch.randn(1, 1, 75, 61)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(net)(x), net(x))


def test_a_2_5d_network_keeps_the_maximum_principle_over_its_stack_trains_and_scripts():
    clean = torch.as_tensor(load_volume("colin27_t1.nii.gz")[:, :, 89:92]).permute(2, 0, 1)[None]  # (1, 3, 181, 217): neighbouring real slices
    x = (clean + 0.2 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(4))).clamp(0, 1)
    net = perturbed(UnrolledPeronaMalik(steps=3, context_slices=1, refinement=False), seed=1, scale=2.0).eval()
    with torch.no_grad():
        net.step_logits.fill_(20.0)  # lam_k at its bound, so the through-plane flux is at its largest too
        y, details = net.inspect(x)
        torch.testing.assert_close(torch.jit.script(net)(x), y)
        torch.testing.assert_close(net(torch.full((1, 3, 40, 30), 0.42)), torch.full((1, 1, 40, 30), 0.42), rtol=0, atol=1e-6)
    assert y.shape == (1, 1, 181, 217) and y.min() >= x.min() - 1e-5 and y.max() <= x.max() + 1e-5
    assert all(g.shape == (1, 8 + 2, 181, 217) for g in details["gates"])  # in-plane gates, then one per neighbouring slice
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(x[:, 1:2])
    trained = UnrolledPeronaMalik(steps=2, context_slices=1)
    DenoisingLoss()(trained(x[..., 40:104, 40:104]), clean[:, 1:2, 40:104, 40:104]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters())
    weights = torch.load(ROOT / "benchmarks/results/training/ours/models/model.pt", map_location="cpu", weights_only=True)
    UnrolledPeronaMalik().load_state_dict(weights, strict=True)  # the 2D default still loads weights trained before 2.5D existed


@pytest.mark.parametrize(
    "kwargs",
    [{"conduction_padding": "reflect"}, {"conduction_kernel_sizes": (3, 2)}, {"conduction_kernel_sizes": (0, 1)}, {"coarse_scales": -1},
     {"context_slices": -1}],
)
def test_invalid_fast_options_raise(kwargs):
    with pytest.raises(ValueError):
        UnrolledPeronaMalik(**kwargs)


def test_default_network_is_small():
    params = sum(p.numel() for p in UnrolledPeronaMalik().parameters())
    assert params <= 100_000, params


def test_registry_builds_by_name():
    assert set(NETWORKS) == {"unrolled_pm"}
    net = get_network("unrolled_pm", steps=3, neighbours=4)
    assert isinstance(net, UnrolledPeronaMalik) and net.steps == 3
    with pytest.raises(ValueError, match="unknown network"):
        get_network("dncnn")


@pytest.mark.parametrize("s", [0.05, 0.1, 0.2])
def test_noise_level_estimate_on_real_slices(colin_slice, s):
    clean = torch.as_tensor(colin_slice)[None]
    x = clean + s * torch.randn_like(clean)
    assert abs(estimate_noise_sigma(x).item() - s) < 0.15 * s


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_each_device(device):
    net = UnrolledPeronaMalik().to(device).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 1, 33, 35, device=device)).device.type == device


def test_short_training_on_real_noisy_slices_lowers_loss_and_beats_the_noisy_input():
    torch.manual_seed(0)
    mni = torch.as_tensor(load_volume("mni152_2009a_t1.nii.gz"))  # a training person: 64x64 crops
    train = torch.stack(
        [mni[None, 40 + dx : 104 + dx, 50 + dy : 114 + dy, k] for k in range(60, 130, 5) for dx in (0, 64) for dy in (0, 64)]
    )
    colin = torch.as_tensor(load_volume("colin27_t1.nii.gz"))  # the test person
    test_clean = torch.stack([colin[None, 25:153, 40:168, k] for k in (70, 90, 110)])
    noise = RandRicianCorruption(sigma=0.1)
    noise.set_random_state(seed=0)
    test_noisy = torch.stack([noise(img) for img in test_clean])

    net = UnrolledPeronaMalik(steps=4)
    loss_fn, opt = DenoisingLoss(), torch.optim.Adam(net.parameters(), lr=5e-3)
    with torch.no_grad():
        test_loss_before = loss_fn(net(test_noisy), test_clean).item()
    losses = []
    for _ in range(30):
        batch = train[torch.randint(len(train), (8,))]
        loss = loss_fn(net(torch.stack([noise(img) for img in batch])), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-6:]) < 0.85 * np.mean(losses[:6])
    psnr = denoising_metrics()["psnr"]
    with torch.no_grad():
        denoised = net(test_noisy)
        assert loss_fn(denoised, test_clean).item() < test_loss_before
        gain = (psnr(denoised, test_clean) - psnr(test_noisy, test_clean)).mean().item()
    assert gain > 2.0, f"PSNR gain {gain:.2f} dB"
