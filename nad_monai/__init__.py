"""nad-monai: neural anisotropic diffusion (an unrolled Perona-Malik PDE) for medical image denoising."""

from .errors import InputError
from .intensity import UPPER_PERCENTILE, unit_range

__version__ = "0.1.0"

__all__ = ["InputError", "UPPER_PERCENTILE", "unit_range", "__version__"]
