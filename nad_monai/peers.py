"""Learned peers for the benchmark: DnCNN, and a residual wrapper that turns any image-to-image net into a denoiser.

Both map noisy images ``(N, 1, H, W)`` in [0, 1] (the residual wrapper also 2.5D stacks ``(N, 1 + 2 c, H, W)``
with c neighbouring slices on each side) to denoised images ``(N, 1, H, W)`` and are
trained by the bundle's workflow exactly like ``UnrolledPeronaMalik`` (same data, loss, optimiser
and budget), e.g. with ``--network_def "{'_target_': 'nad_monai.peers.DnCNN'}"``. Their outputs are
not bounded; evaluation clips them to [0, 1] like every other row.
"""

from __future__ import annotations

import torch
from torch import nn


class DnCNN(nn.Module):
    """DnCNN (Zhang et al., IEEE TIP 26(7), 2017): ``depth`` 3x3 convolutions that predict the noise, ``y = x - f(x)``.

    Layer 1 is conv + ReLU, layers 2 to ``depth - 1`` conv + batch norm + ReLU (``features`` channels),
    the last a conv to one channel; 17 layers of 64 channels (556,097 parameters) is the paper's
    blind Gaussian model. The last convolution starts at zero, so the untrained network is the
    identity and training only has to learn the noise.

    Input ``(N, 1, H, W)`` of any H, W (zero padding keeps the size); output the same shape.
    """

    def __init__(self, depth: int = 17, features: int = 64):
        super().__init__()
        if depth < 3:
            raise ValueError(f"DnCNN needs depth >= 3, got {depth}")
        layers: list[nn.Module] = [nn.Conv2d(1, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1, bias=False), nn.BatchNorm2d(features), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.net(x)


class ResidualDenoiser(nn.Module):
    """``y = x + net(x)``: a global skip connection around an image-to-image network (e.g. MONAI ``BasicUNet``).

    Residual learning is how U-Nets are usually trained for denoising; it makes the peer stronger,
    not weaker. The wrapped network's last layer is found and zero-initialised when it is a
    convolution, so the untrained denoiser is the identity.

    Args:
        net: a module mapping ``(N, 1 + 2 c, H, W)`` to ``(N, 1, H, W)``.
        context_slices: 2.5D input (c): the slice to denoise comes with c neighbouring slices on each
            side, stacked as channels ``[c before, the slice, c after]`` as for
            ``UnrolledPeronaMalik(context_slices=c)``; the skip connection adds the middle channel.
    """

    def __init__(self, net: nn.Module, context_slices: int = 0):
        super().__init__()
        if context_slices < 0:
            raise ValueError(f"need context_slices >= 0, got {context_slices}")
        self.net, self.context_slices = net, context_slices
        last = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1:]
        for conv in last:
            nn.init.zeros_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.context_slices
        if x.shape[1] != 1 + 2 * c:
            raise ValueError(f"expected {1 + 2 * c} input channels (context_slices={c}), got {x.shape[1]}")
        return x[:, c : c + 1] + self.net(x)
