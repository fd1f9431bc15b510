"""Custom MONAI transforms of nad-monai: exact noise corruption, invertible intensity normalisation and
clean references with the air around the head set to zero.

Importable from the repository root and installed with the project, so bundle configs can use
``"$import transforms"`` and ``"_target_": "transforms.RandRicianCorruptiond"``.
"""

from .array import (
    NOISE_MODELS,
    RandGaussianCorruption,
    RandMixedCorruption,
    RandNoiseCorruption,
    RandRicianCorruption,
    RandSpeckleCorruption,
    corrupt,
)
from .background import ZeroBackground, ZeroBackgroundd, ZeroBackgroundD, ZeroBackgroundDict
from .dictionary import (
    RandGaussianCorruptionD,
    RandGaussianCorruptiond,
    RandGaussianCorruptionDict,
    RandMixedCorruptionD,
    RandMixedCorruptiond,
    RandMixedCorruptionDict,
    RandNoiseCorruptionD,
    RandNoiseCorruptiond,
    RandNoiseCorruptionDict,
    RandRicianCorruptionD,
    RandRicianCorruptiond,
    RandRicianCorruptionDict,
    RandSpeckleCorruptionD,
    RandSpeckleCorruptiond,
    RandSpeckleCorruptionDict,
    item_seed,
)
from .intensity import UnitRange, UnitRanged, UnitRangeD, UnitRangeDict

__all__ = [
    "NOISE_MODELS",
    "RandGaussianCorruption",
    "RandGaussianCorruptionD",
    "RandGaussianCorruptiond",
    "RandGaussianCorruptionDict",
    "RandMixedCorruption",
    "RandMixedCorruptionD",
    "RandMixedCorruptiond",
    "RandMixedCorruptionDict",
    "RandNoiseCorruption",
    "RandNoiseCorruptionD",
    "RandNoiseCorruptiond",
    "RandNoiseCorruptionDict",
    "RandRicianCorruption",
    "RandRicianCorruptionD",
    "RandRicianCorruptiond",
    "RandRicianCorruptionDict",
    "RandSpeckleCorruption",
    "RandSpeckleCorruptionD",
    "RandSpeckleCorruptiond",
    "RandSpeckleCorruptionDict",
    "UnitRange",
    "UnitRangeD",
    "UnitRangeDict",
    "UnitRanged",
    "ZeroBackground",
    "ZeroBackgroundD",
    "ZeroBackgroundDict",
    "ZeroBackgroundd",
    "corrupt",
    "item_seed",
]
