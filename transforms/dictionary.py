"""Dictionary wrappers of the noise-corruption transforms in ``transforms.array``.

They corrupt only the named keys (the noisy input) and leave every other key, the clean target
included, untouched: copy the clean image to the target key first (``CopyItemsd``). One noise
model and level are drawn per item and shared by all named keys; each key gets its own
independent noise field.

Deterministic mode (``seed_key``): the random state is re-seeded for every item from the value of
``data[seed_key]`` (an item id such as a file path and slice index) and ``seed``, so an evaluation
set is the same noisy set on every run, in any order and with any number of DataLoader workers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform

from .array import NOISE_MODELS, RandNoiseCorruption


def item_seed(item_id: str | int, seed: int = 0) -> int:
    """A 32-bit seed derived from an item id and a base seed, stable across processes and runs."""
    if not isinstance(item_id, (str, int, np.integer)):
        raise TypeError(f"seed_key must name a str or int item id, got {type(item_id).__name__}")
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class RandNoiseCorruptiond(RandomizableTransform, MapTransform):
    """Dictionary wrapper of ``RandNoiseCorruption``: corrupt ``keys`` with a drawn model and level.

    Args:
        keys: keys of the images to corrupt (channel-first, intensities in [0, 1]).
        models: noise model name or names to draw from; all three (mixed) by default.
        sigma: fixed level ``s`` or ``(low, high)`` range, relative to the [0, 1] intensity range.
        probs: probability of each entry of ``models``; uniform if None.
        prob: probability of corrupting the item at all.
        clip: clip the result to [0, 1].
        seed_key: key of an item id (str or int); when set, noise is a function of that id and
            ``seed`` only (deterministic mode). None draws from the transform's random state.
        seed: base seed of the deterministic mode.
        sigma_key: if set, store the drawn level there (float32; 0.0 when not corrupted).
        model_key: if set, store the drawn model name there (``"none"`` when not corrupted).
        allow_missing_keys: don't raise if a key is missing.
    """

    backend = RandNoiseCorruption.backend

    def __init__(
        self,
        keys: KeysCollection,
        models: str | Sequence[str] = NOISE_MODELS,
        sigma: float | Sequence[float] = (0.05, 0.20),
        probs: Sequence[float] | None = None,
        prob: float = 1.0,
        clip: bool = True,
        seed_key: str | None = None,
        seed: int = 0,
        sigma_key: str | None = None,
        model_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.corruption = RandNoiseCorruption(models=models, sigma=sigma, probs=probs, prob=1.0, clip=clip)
        self.seed_key = seed_key
        self.seed = seed
        self.sigma_key = sigma_key
        self.model_key = model_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.corruption.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if self.seed_key is not None:
            self.set_random_state(seed=item_seed(d[self.seed_key], self.seed))
        self.randomize(None)
        if self._do_transform:
            self.corruption.randomize_model()
            for key in self.key_iterator(d):
                self.corruption.randomize_noise(d[key].shape)
                d[key] = self.corruption(d[key], randomize=False)
        if self.sigma_key is not None:
            d[self.sigma_key] = np.float32(self.corruption.sigma if self._do_transform else 0.0)
        if self.model_key is not None:
            d[self.model_key] = self.corruption.model if self._do_transform else "none"
        return d


class RandGaussianCorruptiond(RandNoiseCorruptiond):
    """Additive Gaussian noise ``x + s*n`` on ``keys``; other arguments as ``RandNoiseCorruptiond``."""

    def __init__(self, keys: KeysCollection, sigma: float | Sequence[float] = (0.05, 0.20), **kwargs) -> None:
        super().__init__(keys, models="gaussian", sigma=sigma, **kwargs)


class RandRicianCorruptiond(RandNoiseCorruptiond):
    """Rician noise ``sqrt((x + s*n1)**2 + (s*n2)**2)`` on ``keys``; arguments as ``RandNoiseCorruptiond``."""

    def __init__(self, keys: KeysCollection, sigma: float | Sequence[float] = (0.05, 0.20), **kwargs) -> None:
        super().__init__(keys, models="rician", sigma=sigma, **kwargs)


class RandSpeckleCorruptiond(RandNoiseCorruptiond):
    """Speckle noise ``x + x*s*n`` on ``keys``; other arguments as ``RandNoiseCorruptiond``."""

    def __init__(self, keys: KeysCollection, sigma: float | Sequence[float] = (0.05, 0.20), **kwargs) -> None:
        super().__init__(keys, models="speckle", sigma=sigma, **kwargs)


class RandMixedCorruptiond(RandNoiseCorruptiond):
    """One of Gaussian, Rician or speckle per item on ``keys``; arguments as ``RandNoiseCorruptiond``."""

    def __init__(self, keys: KeysCollection, sigma: float | Sequence[float] = (0.05, 0.20), **kwargs) -> None:
        super().__init__(keys, models=NOISE_MODELS, sigma=sigma, **kwargs)


RandNoiseCorruptionD = RandNoiseCorruptionDict = RandNoiseCorruptiond
RandGaussianCorruptionD = RandGaussianCorruptionDict = RandGaussianCorruptiond
RandRicianCorruptionD = RandRicianCorruptionDict = RandRicianCorruptiond
RandSpeckleCorruptionD = RandSpeckleCorruptionDict = RandSpeckleCorruptiond
RandMixedCorruptionD = RandMixedCorruptionDict = RandMixedCorruptiond
