"""The unrolled Perona-Malik network and the name registry used by the bundle and the CLI.

``UnrolledPeronaMalik`` runs K explicit diffusion steps (``nad_monai.diffusion.weighted_step``,
the same update as the classical baselines' ``diffusion_step``) whose gates a small CNN predicts from the neighbour differences, context features of a guidance
U-Net and the noise level::

    p      = NonLocalMeans, DCTShrinkage or BlockMatchingWiener(x, sigma)  # optional pilot estimate, once,
             or an estimate given as the input's last channel (e.g. BM4D of the whole volume)
    g      = GuidanceUNet([x, p, sigma])                       # once, trained end to end
    u_0    = x
    c_k    = sigmoid(ConductionNet_k([d(u_k) / sigma, D(u_k) / sigma, d(p) / sigma, g, sigma]))  # (N, n, H, W), gates in [0, 1]
    u_k+1  = u_k + lam_k * sum_i w_i c_k,i d_i(u_k)            # lam_k = max_step(n) * sigmoid(a_k)
    m      = sigmoid(conv1x1([u_K, x, p, g]))                  # optional blend of the pilot, per pixel
    y      = u_K + m (p - u_K) + Refinement([u_K, x, p, g])    # refinement optional

``d`` are the neighbour differences, ``D`` the optional ones at coarser scales (2x2, 4x4, ... block
means) and ``p`` the optional pilot.

Because every gate is in [0, 1] and ``lam_k <= max_step(n)`` by construction, the diffusion part
obeys the maximum principle for any weights; only the optional refinement can leave the input's
range.

The conduction net sees the neighbour differences in units of the noise level (``d / sigma``,
like the classical threshold ``K`` proportional to the noise), so one set of weights serves every
noise level: small relative differences are noise to smooth, large ones are edges to keep.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .diffusion import coarse_neighbour_differences, direction_weights, max_step, neighbour_differences, weighted_step
from .block_matching import BlockMatchingWiener
from .dct_shrinkage import DCTShrinkage
from .nonlocal_means import NonLocalMeans

NOISE_FLOOR = 0.01
"""Added to the noise level before dividing differences by it (intensity units), so clean images stay finite."""


def estimate_noise_sigma(x: torch.Tensor) -> torch.Tensor:
    """Robust noise level of each image from its finest diagonal Haar detail (Donoho's MAD rule).

    ``sigma = median(|HH|) / 0.6745`` with ``HH = (a - b - c + d) / 2`` over 2x2 blocks, which is
    standard normal times sigma for white Gaussian noise and nearly zero for smooth anatomy.

    Args:
        x: images ``(N, 1, H, W)``, H and W >= 2.

    Returns:
        ``(N,)`` noise standard deviations in intensity units.
    """
    h, w = x.size(-2) // 2 * 2, x.size(-1) // 2 * 2
    if h == 0 or w == 0:
        raise ValueError("images must be at least 2x2 to estimate noise")
    a, b = x[:, :, 0:h:2, 0:w:2], x[:, :, 0:h:2, 1:w:2]
    c, d = x[:, :, 1:h:2, 0:w:2], x[:, :, 1:h:2, 1:w:2]
    hh = (a - b - c + d) / 2
    return hh.abs().flatten(1).median(dim=1).values / 0.6745


PADDING_MODES = ("replicate", "zeros")
"""Border handling of the conduction convolutions: ``"replicate"`` (no edge at the image border) or ``"zeros"`` (cheaper on the CPU)."""


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, padding_mode: str = "replicate") -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, padding_mode=padding_mode)


class GuidanceUNet(nn.Module):
    """Two-level U-Net giving per-pixel context features in [0, 1] (the seed's "MiniUNet", trained end to end).

    Input ``(N, in_channels, H, W)`` of any H, W (padded to even inside, cropped back); output
    ``(N, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int = 2, out_channels: int = 8, features: tuple[int, int] = (16, 32)):
        super().__init__()
        f0, f1 = features
        self.encode = nn.Sequential(_conv(in_channels, f0), nn.LeakyReLU(0.1, inplace=True))
        self.bottom = nn.Sequential(_conv(f0, f1), nn.LeakyReLU(0.1, inplace=True))
        self.decode = nn.Sequential(_conv(f0 + f1, f0), nn.LeakyReLU(0.1, inplace=True))
        self.head = nn.Conv2d(f0, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.size(2), x.size(3)
        x = F.pad(x, [0, w % 2, 0, h % 2], mode="replicate")
        skip = self.encode(x)
        deep = self.bottom(F.max_pool2d(skip, 2))
        up = F.interpolate(deep, size=[skip.size(2), skip.size(3)], mode="bilinear", align_corners=False)
        out = torch.sigmoid(self.head(self.decode(torch.cat([skip, up], dim=1))))
        return out[:, :, :h, :w]


class ConductionNet(nn.Module):
    """Gates in [0, 1] per pixel and direction from ``[differences / sigma, guidance, noise level]``.

    Input ``(N, in_channels, H, W)``; output ``(N, neighbours, H, W)`` after a sigmoid: two hidden
    convolutions of widths ``features``, odd kernel sizes ``kernel_sizes`` (e.g. ``(3, 1)`` makes
    the second a cheap per-pixel mixing) and borders padded by ``padding_mode`` (one of
    ``PADDING_MODES``), then a 1x1 head. The last bias starts at ``initial_logit`` (gates ~0.12
    for -2), so an untrained network diffuses gently and training opens the gates where smoothing pays.
    """

    def __init__(
        self,
        in_channels: int,
        neighbours: int,
        features: tuple[int, int] = (32, 16),
        initial_logit: float = -2.0,
        kernel_sizes: tuple[int, int] = (3, 3),
        padding_mode: str = "replicate",
    ):
        super().__init__()
        if padding_mode not in PADDING_MODES or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"need odd kernel sizes and padding_mode in {PADDING_MODES}, got {kernel_sizes}, {padding_mode!r}")
        (f0, f1), (k0, k1) = features, kernel_sizes
        self.net = nn.Sequential(
            _conv(in_channels, f0, k0, padding_mode),
            nn.LeakyReLU(0.1, inplace=True),
            _conv(f0, f1, k1, padding_mode),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(f1, neighbours, 1),
        )
        nn.init.constant_(self.net[-1].bias, initial_logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


class Refinement(nn.Module):
    """Residual correction after the PDE: ``(N, in_channels, H, W) -> (N, 1, H, W)`` to add to ``u_K``.

    It can remove what diffusion cannot, e.g. the upward bias of Rician magnitudes.
    """

    def __init__(self, in_channels: int, features: int = 16):
        super().__init__()
        self.net = nn.Sequential(_conv(in_channels, features), nn.LeakyReLU(0.1, inplace=True), _conv(features, 1))
        nn.init.normal_(self.net[-1].weight, std=1e-3)  # starts close to the identity on u_K, yet every
        nn.init.zeros_(self.net[-1].bias)  # layer gets a gradient from the first step (zeros would stall the first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UnrolledPeronaMalik(nn.Module):
    """Learned anisotropic diffusion: K explicit Perona-Malik steps with CNN-predicted gates.

    Args:
        steps: number K of unrolled diffusion steps.
        neighbours: 4 or 8 diffusion directions.
        shared: one conduction net for every step (True) or one per step (False).
        guidance_channels: context features from the guidance U-Net (0 disables guidance).
        guidance_features: widths of the guidance U-Net's two levels.
        conduction_features: widths of the conduction net's two hidden layers.
        conduction_kernel_sizes: kernel sizes of those layers; ``(3, 1)`` is cheaper than ``(3, 3)``.
        conduction_padding: border padding of those layers, ``"replicate"`` or ``"zeros"`` (faster).
        refinement: add the residual refinement after the PDE loop.
        noise_level_input: feed the noise level (given, or estimated by ``estimate_noise_sigma``)
            to the guidance and conduction nets, and scale the differences by it.
        step_fraction: initial ``lam_k / max_step(neighbours)``, in (0, 1).
        detach_guidance: stop gradients into the guidance U-Net, so it never trains. This is the
            seed project's defect, kept only to reproduce its variant in the benchmark's ablations.
        rician_correction: end with a learned, blind Rician bias correction
            ``y <- sqrt(max(y**2 - 2 r sigma**2, 0))``, ``r = 2 sigmoid(conv1x1([u_K, x, g]))`` in
            [0, 2] per pixel (the classical correction is ``r = 1`` with the noise model known;
            r up to 2 absorbs the noise estimate's shortfall in Rayleigh background). Needs
            ``noise_level_input``.
        nonlocal_pilot: compute a non-local means estimate of the input once (``NonLocalMeans``, its
            strength learned) and give it, and its neighbour differences, to the guidance,
            conduction and refinement nets: patch similarity from the whole search window, which
            local diffusion steps cannot see. Needs ``noise_level_input``.
        dct_pilot: the same with a sliding-window DCT shrinkage pilot instead (``DCTShrinkage``,
            8x8 patches, thresholds per frequency learned): a sparse transform-domain estimate,
            which keeps the thin edges and texture that local averaging blurs. Needs
            ``noise_level_input``.
        block_matching_pilot: the same with BM3D's Wiener stage as the pilot instead
            (``BlockMatchingWiener``: groups of 8 alike 8x8 patches from an 11x11 window, guided by
            a fixed DCT hard-thresholding; no parameters of its own): it collects the repeats of a
            structure across the window, which neither diffusion nor a single patch's transform
            sees. Needs ``noise_level_input``; it costs several times the default network's time
            and several hundred MB per 256 x 256 slice.
        volume_pilot: the pilot is not computed but given, as the input's last channel: an estimate of
            the slice from outside the network, e.g. BM4D of the whole volume, which matches blocks
            across slices no slice-wise net sees. Needs ``noise_level_input``. The four pilots
            exclude each other.
        pilot_blend: also blend the pilot into the PDE's result, ``u_K + m (p - u_K)`` with a
            per-pixel weight ``m = sigmoid(conv1x1([u_K, x, p, g]))`` that starts at 1/2 everywhere
            (the two estimates err differently, so their mean beats either); needs a pilot.
        pilot_start: start the PDE from the pilot instead of the noisy slice: the steps diffuse what
            the pilot leaves (its residual noise in flat regions), with gates that see the noisy
            stack, instead of denoising the slice afresh; needs a pilot.
        coarse_scales: give the conduction nets the neighbour differences of ``u_k`` at this many
            coarser scales as well (``coarse_neighbour_differences``: 2x2, 4x4, ... block means,
            with noise s/2, s/4, ...), so a gate can tell an edge that persists across scales from
            noise; 0 (default) sees the finest scale only. The diffusion itself stays on the pixel grid.
        context_slices: 2.5D input: also take this many neighbouring slices on each side of the slice to
            denoise, ``(N, 1 + 2 c, H, W)`` with the slice in the middle channel. They go to the guidance,
            conduction and refinement nets, and each step ends with a through-plane flux towards them,
            ``u <- u + t_k / 2c * sum_j e_kj (s_j - u)``, ``t_k = lam_k / max_step`` in (0, 1) and
            through-plane gates ``e_kj`` in [0, 1] from the same conduction net: a convex combination,
            so the maximum principle holds over the stack. 0 (default) is the 2D network.

    ``forward`` maps ``(N, 1, H, W)`` (``(N, 1 + 2 c, H, W)`` with ``context_slices``; one channel more,
    the pilot last, with ``volume_pilot``) of any H, W, intensities in [0, 1], to ``(N, 1, H, W)``;
    ``inspect`` also returns the gates and intermediate states. Without refinement the output
    stays within each image's [min, max] (with ``context_slices``, its stack's; with ``pilot_start``, the pilot's too). The module can be scripted with TorchScript.

    Example::

        >>> net = UnrolledPeronaMalik(steps=8, neighbours=8)
        >>> denoised = net(noisy)                       # (N, 1, H, W)
        >>> denoised, details = net.inspect(noisy)
        >>> details["gates"][0].shape                   # (N, 8, H, W) gates of step 0
    """

    def __init__(
        self,
        steps: int = 8,
        neighbours: int = 8,
        shared: bool = False,
        guidance_channels: int = 8,
        guidance_features: tuple[int, int] = (16, 32),
        conduction_features: tuple[int, int] = (32, 16),
        conduction_kernel_sizes: tuple[int, int] = (3, 3),
        conduction_padding: str = "replicate",
        refinement: bool = True,
        noise_level_input: bool = True,
        step_fraction: float = 0.9,
        detach_guidance: bool = False,
        rician_correction: bool = False,
        nonlocal_pilot: bool = False,
        dct_pilot: bool = False,
        block_matching_pilot: bool = False,
        pilot_blend: bool = False,
        pilot_start: bool = False,
        volume_pilot: bool = False,
        coarse_scales: int = 0,
        context_slices: int = 0,
    ):
        super().__init__()
        self.max_step = max_step(neighbours)  # raises for anything but 4 or 8 neighbours
        if steps < 1 or not 0 < step_fraction < 1:
            raise ValueError(f"need steps >= 1 and 0 < step_fraction < 1, got {steps}, {step_fraction}")
        if coarse_scales < 0 or context_slices < 0:
            raise ValueError(f"need coarse_scales >= 0 and context_slices >= 0, got {coarse_scales}, {context_slices}")
        if rician_correction and not noise_level_input:
            raise ValueError("rician_correction needs noise_level_input: the correction scales with the noise level")
        pilots = int(nonlocal_pilot) + int(dct_pilot) + int(block_matching_pilot) + int(volume_pilot)
        if pilots and not noise_level_input:
            raise ValueError("a pilot (nonlocal_pilot, dct_pilot, block_matching_pilot, volume_pilot) needs noise_level_input: its differences are scaled by the noise level")
        if pilots > 1:
            raise ValueError("choose one pilot: nonlocal_pilot, dct_pilot, block_matching_pilot or volume_pilot")
        if pilot_blend and not pilots:
            raise ValueError("pilot_blend needs a pilot: nonlocal_pilot, dct_pilot, block_matching_pilot or volume_pilot")
        if pilot_start and not pilots:
            raise ValueError("pilot_start needs a pilot: nonlocal_pilot, dct_pilot, block_matching_pilot or volume_pilot")
        self.steps, self.neighbours, self.shared = steps, neighbours, shared
        self.noise_level_input, self.detach_guidance = noise_level_input, detach_guidance
        self.noise_floor, self.coarse_scales, self.context_slices = NOISE_FLOOR, coarse_scales, context_slices
        self.volume_pilot, self.pilot_start = volume_pilot, pilot_start
        level, pilot, others = int(noise_level_input), pilots, 2 * context_slices
        self.pilot: nn.Module | None = None
        if nonlocal_pilot:
            self.pilot = NonLocalMeans(floor=NOISE_FLOOR)
        elif dct_pilot:
            self.pilot = DCTShrinkage(floor=NOISE_FLOOR)
        elif block_matching_pilot:
            self.pilot = BlockMatchingWiener(floor=NOISE_FLOOR)
        self.guidance = GuidanceUNet(1 + others + pilot + level, guidance_channels, guidance_features) if guidance_channels else None
        conduction_in = (1 + coarse_scales + pilot) * neighbours + others + guidance_channels + level

        def conduction_net() -> ConductionNet:
            return ConductionNet(
                conduction_in, neighbours + others, conduction_features, kernel_sizes=conduction_kernel_sizes, padding_mode=conduction_padding
            )

        if shared:  # the same module at every step: its parameters are counted and trained once
            self.conduction = nn.ModuleList([conduction_net()] * steps)
        else:
            self.conduction = nn.ModuleList(conduction_net() for _ in range(steps))
        logit = torch.logit(torch.tensor(step_fraction))
        self.step_logits = nn.Parameter(torch.full((steps,), float(logit)))
        features = 2 + others + pilot + guidance_channels
        self.refinement = Refinement(features) if refinement else None
        self.blend_gate = nn.Conv2d(features, 1, 1) if pilot_blend else None
        if self.blend_gate is not None:
            nn.init.zeros_(self.blend_gate.weight)
            nn.init.zeros_(self.blend_gate.bias)  # m = 1/2: the mean of the PDE's result and the pilot
        self.bias_gate = nn.Conv2d(features, 1, 1) if rician_correction else None
        if self.bias_gate is not None:
            nn.init.zeros_(self.bias_gate.weight)
            nn.init.constant_(self.bias_gate.bias, -3.0)  # r ~ 0.1: almost no correction before training
        self.register_buffer("weights", direction_weights(neighbours), persistent=False)

    def step_sizes(self) -> torch.Tensor:
        """``lam_k`` of every step, ``(K,)``, each in (0, max_step(neighbours))."""
        return self.max_step * torch.sigmoid(self.step_logits)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """Denoise ``x`` ``(N, 1, H, W)`` in [0, 1] (``(N, 1 + 2 c, H, W)``, the slice in the middle, with
        ``context_slices`` c, then the pilot with ``volume_pilot``); ``sigma`` ``(N,)`` is the noise level, estimated
        (from the slice) if None."""
        return self._diffuse(x, sigma, False)[0]

    @torch.jit.unused
    def inspect(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """Denoise and return ``(y, details)`` with ``details`` = ``{"gates": K x (N, n (+ 2 c through-plane), H, W),
        "states": (K + 1) x (N, 1, H, W), "step_sizes": (K,), "guidance": (N, G, H, W) or None,
        "sigma": (N,) or None, "pilot": (N, 1, H, W) or None}``."""
        y, gates, states, guidance, sigma, pilot = self._diffuse(x, sigma, True)
        step_sizes = self.step_sizes().detach()
        return y, {"gates": gates, "states": states, "step_sizes": step_sizes, "guidance": guidance, "sigma": sigma, "pilot": pilot}

    def _diffuse(
        self, x: torch.Tensor, sigma: torch.Tensor | None, keep: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        c = self.context_slices
        given = int(self.volume_pilot)
        if x.dim() != 4 or x.size(1) != 1 + 2 * c + given:
            if c == 0 and not given:
                raise ValueError("expected images of shape (N, 1, H, W)")
            raise ValueError(
                f"expected images of shape (N, {1 + 2 * c + given}, H, W): the slice between {c} neighbouring slices on each side"
                + (", then the pilot estimate" if given else "")
            )
        pilot: torch.Tensor | None = None
        if given:
            pilot, x = x[:, -1:], x[:, :-1]
        slices: list[torch.Tensor] = []  # [] or the neighbouring slices (N, 2c, H, W), for every net and the through-plane flux
        if c > 0:
            slices.append(torch.cat([x[:, :c], x[:, c + 1 :]], dim=1))
            x = x[:, c : c + 1]
        context: list[torch.Tensor] = []
        scale = torch.ones_like(x[:, :, :1, :1])
        if self.noise_level_input:
            if sigma is None:
                sigma = estimate_noise_sigma(x)
            level = sigma.to(x).view(-1, 1, 1, 1)
            scale = 1.0 / (level + self.noise_floor)
            context.append(level.expand(-1, 1, x.size(2), x.size(3)))
        pilots: list[torch.Tensor] = []  # the pilot, for the guidance and refinement inputs
        pilot_context: list[torch.Tensor] = []  # its neighbour differences, for the conduction nets
        if self.pilot is not None:
            assert sigma is not None  # a pilot implies noise_level_input
            pilot = self.pilot(x, sigma.to(x).view(-1))
        if pilot is not None:
            pilots.append(pilot)
            pilot_context.append(neighbour_differences(pilot, self.neighbours) * scale)
        guidance: torch.Tensor | None = None
        if self.guidance is not None:
            guidance = self.guidance(torch.cat([x] + slices + pilots + context, dim=1))
            if self.detach_guidance:
                guidance = guidance.detach()
            context.insert(0, guidance)
        lams = self.step_sizes()
        u = x
        if self.pilot_start:
            assert pilot is not None  # pilot_start implies a pilot
            u = pilot
        gates: list[torch.Tensor] = []
        states: list[torch.Tensor] = [u]
        for k, conduction in enumerate(self.conduction):
            d = neighbour_differences(u, self.neighbours)
            differences = [d * scale]
            if self.coarse_scales > 0:  # the default network skips this
                differences.append(coarse_neighbour_differences(u, self.neighbours, self.coarse_scales) * scale)
            through = [(s - u) * scale for s in slices]  # differences to the neighbouring slices, in noise units
            g = conduction(torch.cat(differences + through + pilot_context + context, dim=1))
            u = weighted_step(u, g[:, : self.neighbours] * d, self.weights, lams[k])
            if c > 0:  # through-plane flux: the in-plane step's fraction of its largest step, spread over the 2c slices
                u = u + (lams[k] / self.max_step / (2 * c)) * (g[:, self.neighbours :] * (slices[0] - u)).sum(dim=1, keepdim=True)
            if keep:
                gates.append(g)
                states.append(u)
        features = torch.cat([u, x] + slices + pilots + ([] if guidance is None else [guidance]), dim=1)
        if self.blend_gate is not None:
            assert pilot is not None  # pilot_blend implies a pilot
            u = u + torch.sigmoid(self.blend_gate(features)) * (pilot - u)
        if self.refinement is not None:
            u = u + self.refinement(features)
        if self.bias_gate is not None:
            assert sigma is not None  # rician_correction implies noise_level_input
            r = 2.0 * torch.sigmoid(self.bias_gate(features))
            u = torch.sqrt(torch.clamp(u.clamp(min=0) ** 2 - 2.0 * r * sigma.to(x).view(-1, 1, 1, 1) ** 2, min=1e-6))
        return u, gates, states, guidance, None if sigma is None else sigma.view(-1), pilot


NETWORKS: dict[str, type[nn.Module]] = {"unrolled_pm": UnrolledPeronaMalik}
"""Networks by the name the bundle configs and the CLI use."""


def get_network(name: str, **kwargs) -> nn.Module:
    """Build a registered network by name, e.g. ``get_network("unrolled_pm", steps=16)``."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}, expected one of {sorted(NETWORKS)}")
    return NETWORKS[name](**kwargs)
