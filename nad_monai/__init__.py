"""nad-monai: neural anisotropic diffusion (an unrolled Perona-Malik PDE) for medical image denoising."""

from .diffusion import ClassicalDiffusion
from .errors import InputError
from .intensity import UPPER_PERCENTILE, unit_range, unit_range_bounds
from .losses import DenoisingLoss
from .metrics import EdgeMSEMetric, denoising_metrics, metric_handlers
from .networks import NETWORKS, UnrolledPeronaMalik, get_network

__version__ = "0.1.0"

__all__ = [
    "NETWORKS",
    "UPPER_PERCENTILE",
    "ClassicalDiffusion",
    "DenoisingLoss",
    "EdgeMSEMetric",
    "InputError",
    "UnrolledPeronaMalik",
    "__version__",
    "denoising_metrics",
    "get_network",
    "metric_handlers",
    "unit_range",
    "unit_range_bounds",
]
