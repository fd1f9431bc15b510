"""The unrolled Perona-Malik network and the name registry used by the bundle and the CLI.

``UnrolledPeronaMalik`` runs K explicit diffusion steps (``nad_monai.diffusion.diffusion_step``)
whose gates a small CNN predicts from the neighbour differences, context features of a guidance
U-Net and the noise level::

    g      = GuidanceUNet([x, sigma])                          # once, trained end to end
    u_0    = x
    c_k    = sigmoid(ConductionNet_k([d(u_k), g, sigma]))      # (N, n, H, W), gates in [0, 1]
    u_k+1  = u_k + lam_k * sum_i w_i c_k,i d_i(u_k)            # lam_k = max_step(n) * sigmoid(a_k)
    y      = u_K + Refinement([u_K, x, g])                     # optional

Because every gate is in [0, 1] and ``lam_k <= max_step(n)`` by construction, the diffusion part
obeys the maximum principle for any weights; only the optional refinement can leave the input's
range.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .diffusion import OFFSETS, diffusion_step, max_step, neighbour_differences


def estimate_noise_sigma(x: torch.Tensor) -> torch.Tensor:
    """Robust noise level of each image from its finest diagonal Haar detail (Donoho's MAD rule).

    ``sigma = median(|HH|) / 0.6745`` with ``HH = (a - b - c + d) / 2`` over 2x2 blocks, which is
    standard normal times sigma for white Gaussian noise and nearly zero for smooth anatomy.

    Args:
        x: images ``(N, 1, H, W)``, H and W >= 2.

    Returns:
        ``(N,)`` noise standard deviations in intensity units.
    """
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if h == 0 or w == 0:
        raise ValueError(f"images must be at least 2x2 to estimate noise, got {tuple(x.shape[-2:])}")
    a, b = x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2]
    c, d = x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]
    hh = (a - b - c + d) / 2
    return hh.abs().flatten(1).median(dim=1).values / 0.6745


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, padding_mode="replicate")


class GuidanceUNet(nn.Module):
    """Two-level U-Net giving per-pixel context features in [0, 1] (the seed's "MiniUNet", trained end to end).

    Input ``(N, in_channels, H, W)`` of any H, W (padded to even inside, cropped back); output
    ``(N, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int = 2, out_channels: int = 8, features: tuple[int, int] = (16, 32)):
        super().__init__()
        f0, f1 = features
        self.encode = nn.Sequential(_conv(in_channels, f0), nn.LeakyReLU(0.1))
        self.bottom = nn.Sequential(_conv(f0, f1), nn.LeakyReLU(0.1))
        self.decode = nn.Sequential(_conv(f0 + f1, f0), nn.LeakyReLU(0.1))
        self.head = nn.Conv2d(f0, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
        skip = self.encode(x)
        deep = self.bottom(F.max_pool2d(skip, 2))
        up = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        out = torch.sigmoid(self.head(self.decode(torch.cat([skip, up], dim=1))))
        return out[..., :h, :w]


class ConductionNet(nn.Module):
    """Gates in [0, 1] per pixel and direction from ``[differences, guidance, noise level]``.

    Input ``(N, in_channels, H, W)``; output ``(N, neighbours, H, W)`` after a sigmoid.
    """

    def __init__(self, in_channels: int, neighbours: int, features: tuple[int, int] = (32, 16)):
        super().__init__()
        f0, f1 = features
        self.net = nn.Sequential(
            _conv(in_channels, f0), nn.LeakyReLU(0.1), _conv(f0, f1), nn.LeakyReLU(0.1), nn.Conv2d(f1, neighbours, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


class Refinement(nn.Module):
    """Residual correction after the PDE: ``(N, in_channels, H, W) -> (N, 1, H, W)`` to add to ``u_K``.

    It can remove what diffusion cannot, e.g. the upward bias of Rician magnitudes.
    """

    def __init__(self, in_channels: int, features: int = 16):
        super().__init__()
        self.net = nn.Sequential(_conv(in_channels, features), nn.LeakyReLU(0.1), _conv(features, 1))
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
        refinement: add the residual refinement after the PDE loop.
        noise_level_input: feed the noise level (given, or estimated by ``estimate_noise_sigma``)
            to the guidance and conduction nets as a constant channel.
        step_fraction: initial ``lam_k / max_step(neighbours)``, in (0, 1).

    Input ``(N, 1, H, W)`` of any H, W, intensities in [0, 1]; output the same shape. Without
    refinement the output stays within each image's [min, max].

    Example::

        >>> net = UnrolledPeronaMalik(steps=8, neighbours=8)
        >>> denoised = net(noisy)                       # (N, 1, H, W)
        >>> denoised, details = net(noisy, return_details=True)
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
        refinement: bool = True,
        noise_level_input: bool = True,
        step_fraction: float = 0.9,
    ):
        super().__init__()
        if neighbours not in OFFSETS:
            raise ValueError(f"neighbours must be 4 or 8, got {neighbours!r}")
        if steps < 1 or not 0 < step_fraction < 1:
            raise ValueError(f"need steps >= 1 and 0 < step_fraction < 1, got {steps}, {step_fraction}")
        self.steps, self.neighbours, self.shared = steps, neighbours, shared
        self.noise_level_input = noise_level_input
        level = int(noise_level_input)
        self.guidance = GuidanceUNet(1 + level, guidance_channels, guidance_features) if guidance_channels else None
        conduction_in = neighbours + guidance_channels + level
        self.conduction = nn.ModuleList(
            ConductionNet(conduction_in, neighbours, conduction_features) for _ in range(1 if shared else steps)
        )
        logit = torch.logit(torch.tensor(step_fraction))
        self.step_logits = nn.Parameter(torch.full((steps,), float(logit)))
        self.refinement = Refinement(2 + guidance_channels) if refinement else None

    def step_sizes(self) -> torch.Tensor:
        """``lam_k`` of every step, ``(K,)``, each in (0, max_step(neighbours))."""
        return max_step(self.neighbours) * torch.sigmoid(self.step_logits)

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | None = None, return_details: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor | list[torch.Tensor]]]:
        """Denoise ``x`` ``(N, 1, H, W)``.

        Args:
            x: noisy images in [0, 1].
            sigma: noise level per image ``(N,)`` (intensity units); estimated if None and used.
            return_details: also return ``{"gates": K x (N, n, H, W), "states": (K + 1) x
                (N, 1, H, W), "step_sizes": (K,), "guidance": (N, G, H, W) or None, "sigma": (N,)}``.
        """
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected images of shape (N, 1, H, W), got {tuple(x.shape)}")
        context = []
        if self.noise_level_input:
            if sigma is None:
                sigma = estimate_noise_sigma(x)
            context.append(sigma.to(x).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:]))
        if self.guidance is not None:
            guidance = self.guidance(torch.cat([x, *context], dim=1))
            context.insert(0, guidance)
        else:
            guidance = None
        lams = self.step_sizes()
        u, gates, states = x, [], [x]
        for k in range(self.steps):
            d = neighbour_differences(u, self.neighbours)
            c = self.conduction[0 if self.shared else k](torch.cat([d, *context], dim=1))
            u = diffusion_step(u, c, lams[k], d)
            if return_details:
                gates.append(c)
                states.append(u)
        if self.refinement is not None:
            u = u + self.refinement(torch.cat([u, x] + ([guidance] if guidance is not None else []), dim=1))
        if not return_details:
            return u
        return u, {"gates": gates, "states": states, "step_sizes": lams.detach(), "guidance": guidance, "sigma": sigma}


NETWORKS: dict[str, type[nn.Module]] = {"unrolled_pm": UnrolledPeronaMalik}
"""Networks by the name the bundle configs and the CLI use."""


def get_network(name: str, **kwargs) -> nn.Module:
    """Build a registered network by name, e.g. ``get_network("unrolled_pm", steps=16)``."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}, expected one of {sorted(NETWORKS)}")
    return NETWORKS[name](**kwargs)
