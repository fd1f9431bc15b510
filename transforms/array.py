"""Noise-corruption array transforms for images with intensities in [0, 1].

Every transform here draws a noise model and a level ``s`` (relative to the [0, 1] intensity
range, not to the image's own statistics) and corrupts a channel-first image ``x`` of any spatial
size (2D or 3D) with standard normal fields ``n``, ``n1``, ``n2`` drawn independently per voxel:

==========  ==========================================  ==========================================
model       corrupted image                             residual statistics
==========  ==========================================  ==========================================
gaussian    ``x + s*n``                                 mean 0, variance ``s**2``
rician      ``sqrt((x + s*n1)**2 + (s*n2)**2)``         at x = 0: Rayleigh, mean ``s*sqrt(pi/2)``
speckle     ``x + x*s*n``                               mean 0, variance ``(s*x)**2``
==========  ==========================================  ==========================================

How this differs from MONAI's ``RandGaussianNoise`` / ``RandRicianNoise``:

- ``s`` is an absolute standard deviation in units of the [0, 1] intensity range. MONAI's
  ``relative=True`` scales by the image's standard deviation instead, and MONAI samples the std in
  ``[0, std]`` unless ``sample_std=False``; here ``s`` is drawn uniformly from ``[low, high]``
  (default ``[0.05, 0.20]``, the seed project's range) or fixed.
- Optional clipping of the result to [0, 1] (on by default, as in the seed project).
- Speckle (multiplicative) noise, which MONAI does not have, and a mixed model that draws one of
  the three per sample.
- The output keeps the input's array type and device; floating inputs keep their dtype, integer
  inputs become float32.
- Noise fields come from ``self.R`` (numpy) and are then moved to the image's device, so the same
  seed gives the same noisy image on CPU and GPU, from numpy and from torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

NOISE_MODELS = ("gaussian", "rician", "speckle")
"""Names of the supported noise models, in the order ``RandNoiseCorruption`` draws them from."""

_FIELDS = {"gaussian": 1, "rician": 2, "speckle": 1}


def corrupt(x: torch.Tensor, model: str, s: float, noise: torch.Tensor) -> torch.Tensor:
    """Apply one noise model with level ``s`` using pre-drawn standard normal ``noise``.

    Args:
        x: clean image, any shape, floating point, intensities in [0, 1].
        model: one of ``NOISE_MODELS``.
        s: noise level, standard deviation relative to the [0, 1] range.
        noise: standard normal fields of shape ``(k, *x.shape)``; k = 2 for rician, else 1.

    Returns:
        The corrupted image, same shape and dtype as ``x`` (not clipped).
    """
    if model == "gaussian":
        return x + s * noise[0]
    if model == "rician":
        return torch.sqrt((x + s * noise[0]) ** 2 + (s * noise[1]) ** 2)
    if model == "speckle":
        return x + x * s * noise[0]
    raise ValueError(f"unknown noise model {model!r}, expected one of {NOISE_MODELS}")


class RandNoiseCorruption(RandomizableTransform):
    """Corrupt an image in [0, 1] with a noise model drawn from ``models`` at a level drawn from ``sigma``.

    With its default ``models`` (all three) this is the mixed corruption; the named subclasses fix
    a single model. See the module docstring for the exact formulas.

    Args:
        models: noise model name or names to draw from (``"gaussian"``, ``"rician"``, ``"speckle"``).
        sigma: fixed level ``s``, or ``(low, high)`` to draw ``s ~ U[low, high]`` per call;
            relative to the [0, 1] intensity range. Larger means noisier.
        probs: probability of each entry of ``models``; uniform if None.
        prob: probability of corrupting at all; the input is returned unchanged otherwise.
        clip: clip the result to [0, 1]. Turn off to keep the exact noise statistics.

    Example::

        >>> t = RandRicianCorruption(sigma=0.1, clip=False)
        >>> t.set_random_state(seed=0)
        >>> noisy = t(np.zeros((1, 64, 64), np.float32))  # Rayleigh background, mean ~0.125
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        models: str | Sequence[str] = NOISE_MODELS,
        sigma: float | Sequence[float] = (0.05, 0.20),
        probs: Sequence[float] | None = None,
        prob: float = 1.0,
        clip: bool = True,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.models = (models,) if isinstance(models, str) else tuple(models)
        unknown = [m for m in self.models if m not in NOISE_MODELS]
        if not self.models or unknown:
            raise ValueError(f"noise models must be among {NOISE_MODELS}, got {models!r}")
        if probs is not None and (len(probs) != len(self.models) or not np.isclose(sum(probs), 1.0)):
            raise ValueError(f"probs must have one entry per model and sum to 1, got {probs!r}")
        self.probs = None if probs is None else tuple(float(p) for p in probs)
        low, high = (sigma, sigma) if np.isscalar(sigma) else tuple(sigma)
        if not 0.0 <= low <= high:
            raise ValueError(f"sigma must be a level >= 0 or a range (low, high) with 0 <= low <= high, got {sigma!r}")
        self.sigma_range = (float(low), float(high))
        self.clip = clip
        self.model: str = self.models[0]
        self.sigma: float = 0.0
        self._noise: np.ndarray | None = None

    def randomize_model(self) -> None:
        """Draw whether to corrupt, then the noise model and the level ``s`` (in that order)."""
        super().randomize(None)
        if not self._do_transform:
            self.sigma = 0.0
            return
        index = 0 if len(self.models) == 1 else self.R.choice(len(self.models), p=self.probs)
        self.model = self.models[index]
        low, high = self.sigma_range
        self.sigma = float(self.R.uniform(low, high)) if high > low else low

    def randomize_noise(self, shape: Sequence[int]) -> None:
        """Draw fresh standard normal fields for an image of ``shape`` under the current model."""
        self._noise = self.R.standard_normal((_FIELDS[self.model], *shape)).astype(np.float32)

    def randomize(self, data: Sequence[int]) -> None:
        """Draw model, level and noise fields for an image of shape ``data``."""
        self.randomize_model()
        if self._do_transform:
            self.randomize_noise(data)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Corrupt ``img`` (channel-first, intensities in [0, 1], any spatial size).

        Args:
            img: numpy array, torch tensor or MetaTensor, shape ``(C, *spatial)``.
            randomize: draw a new model, level and noise; False reuses the last draw (same shape).

        Returns:
            The corrupted image, same type, device and shape; float dtype.
        """
        if randomize:
            self.randomize(img.shape)
        if not self._do_transform:
            return img
        if self._noise is None or self._noise.shape[1:] != tuple(img.shape):
            raise ValueError(f"no noise drawn for an image of shape {tuple(img.shape)}; call with randomize=True")
        x = convert_to_tensor(img, track_meta=get_track_meta())
        if not x.is_floating_point():
            x = x.float()
        noise = torch.as_tensor(self._noise, device=x.device, dtype=x.dtype)
        out = corrupt(x, self.model, self.sigma, noise)
        if self.clip:
            out = out.clamp(0.0, 1.0)
        return convert_to_dst_type(out, img, dtype=out.dtype)[0]


class RandGaussianCorruption(RandNoiseCorruption):
    """Additive Gaussian noise ``x + s*n``; ``s`` fixed or drawn from ``sigma``. See ``RandNoiseCorruption``."""

    def __init__(self, sigma: float | Sequence[float] = (0.05, 0.20), prob: float = 1.0, clip: bool = True) -> None:
        super().__init__(models="gaussian", sigma=sigma, prob=prob, clip=clip)


class RandRicianCorruption(RandNoiseCorruption):
    """Rician (magnitude MR) noise ``sqrt((x + s*n1)**2 + (s*n2)**2)``. See ``RandNoiseCorruption``.

    Reference: Gudbjartsson & Patz, "The Rician distribution of noisy MRI data", MRM 34 (1995).
    """

    def __init__(self, sigma: float | Sequence[float] = (0.05, 0.20), prob: float = 1.0, clip: bool = True) -> None:
        super().__init__(models="rician", sigma=sigma, prob=prob, clip=clip)


class RandSpeckleCorruption(RandNoiseCorruption):
    """Multiplicative speckle noise ``x + x*s*n`` (zero stays zero). See ``RandNoiseCorruption``."""

    def __init__(self, sigma: float | Sequence[float] = (0.05, 0.20), prob: float = 1.0, clip: bool = True) -> None:
        super().__init__(models="speckle", sigma=sigma, prob=prob, clip=clip)


class RandMixedCorruption(RandNoiseCorruption):
    """One of Gaussian, Rician or speckle per call (the seed project's mixed corruption).

    Args:
        sigma: fixed level or ``(low, high)`` range, as in ``RandNoiseCorruption``.
        probs: probabilities of ``("gaussian", "rician", "speckle")``; uniform if None.
        prob: probability of corrupting at all.
        clip: clip the result to [0, 1].
    """

    def __init__(
        self,
        sigma: float | Sequence[float] = (0.05, 0.20),
        probs: Sequence[float] | None = None,
        prob: float = 1.0,
        clip: bool = True,
    ) -> None:
        super().__init__(models=NOISE_MODELS, sigma=sigma, probs=probs, prob=prob, clip=clip)
