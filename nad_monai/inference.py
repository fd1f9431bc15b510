"""Denoise whole images and volumes with a trained network, in the input's own intensity units.

``Denoiser`` is the one inference path (bundle ``inference.json``, the ``nad-denoise`` CLI, the
Deploy app): normalise to the network's range with an invertible ``transforms.UnitRange``, run
MONAI's ``SliceInferer`` over a volume (whole slices, ``batch_size`` at a time, streamed to the
GPU when there is one; for a 2.5D network ``NeighbourSliceInferer``, each slice with its neighbours)
or the network directly on a 2D image, optionally tiled by a sliding window for images too large
for memory, then undo the normalisation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.inferers import Inferer, SimpleInferer, SlidingWindowInferer

from transforms import UnitRange

from . import image_io
from .bundle import bundle_root
from .errors import InputError
from .inferers import MeanOfInferers, volume_slice_inferer

logger = logging.getLogger(__name__)


def default_device() -> torch.device:
    """``cuda:0`` when a GPU is visible, else the CPU."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def _config_files(config_files: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[str]:
    """One or several bundle config files; none: ``configs/inference.json`` of the shipped bundle."""
    files = [config_files] if isinstance(config_files, (str, os.PathLike)) else list(config_files or [])
    return [str(f) for f in files] or [os.path.join(bundle_root([]), "configs", "inference.json")]


def _bundle_config(files: list[str]) -> ConfigParser:
    """``files`` merged in order (as ``monai.bundle run --config_file`` merges them), ``bundle_root`` the first one's bundle."""
    parser = ConfigParser()
    parser.read_config(files)
    parser["bundle_root"] = bundle_root(["--config_file", files[0]])
    return parser


def bundle_network(config_files: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> torch.nn.Module:
    """The ``network_def`` of bundle config(s) (``configs/inference.json`` unless others are given), untrained.

    Several files are merged in order, e.g. ``[inference.json, inference_2.5d.json]``.

    Raises:
        InputError: the configs cannot be read or do not build a network.
    """
    files = _config_files(config_files)
    try:
        return _bundle_config(files).get_parsed_content("network_def")
    except Exception as err:
        raise InputError(", ".join(files), f"cannot build network_def ({type(err).__name__}: {err})") from None


def bundle_weights(config_files: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> str:
    """The weights file that bundle config(s) name (their ``model_file``), or ``<bundle>/models/model.pt``
    when they name none; the bundle is the first config's.

    Raises:
        InputError: the configs cannot be read.
    """
    files = _config_files(config_files)
    try:
        parser = _bundle_config(files)
        if "model_file" in parser:
            return str(parser.get_parsed_content("model_file"))
        return os.path.join(parser.get_parsed_content("bundle_root"), "models", "model.pt")
    except Exception as err:
        raise InputError(", ".join(files), f"cannot read model_file ({type(err).__name__}: {err})") from None


def load_weights(network: torch.nn.Module, path: str | os.PathLike, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Load a state dict saved by the bundle (``models/model.pt``) strictly into ``network``.

    Raises:
        InputError: the file is missing, not a PyTorch checkpoint, or does not fit the network.
    """
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise InputError(path, "weights file not found") from None
    except Exception as err:
        raise InputError(path, f"not a readable PyTorch weights file ({type(err).__name__})") from None
    try:
        network.load_state_dict(state, strict=True)
    except (RuntimeError, AttributeError, TypeError) as err:
        first = str(err).strip().splitlines()[1:2] or [str(err)]
        raise InputError(path, f"weights do not fit the network ({first[0].strip()})") from None
    return network


ANISOTROPY_NOTE = 2.0
"""Longest over shortest voxel edge above which ``all_planes`` gets a note: slices across the long edge are thick."""
ALL_PLANES_SUFFIX = " all planes"
"""Ends the description of an output denoised across all three planes."""


def anisotropy_note(sizes: Sequence[float]) -> str | None:
    """The note for a volume denoised with ``all_planes`` whose voxel edges ``sizes`` (mm) differ by more
    than ``ANISOTROPY_NOTE`` times, else None."""
    if max(sizes) <= ANISOTROPY_NOTE * min(sizes):
        return None
    voxels = " x ".join(f"{v:.2g}" for v in sizes)
    return f"voxels of {voxels} mm: two of the three planes see thick slices; all planes is meant for near-isotropic voxels"


class Denoiser:
    """Denoise a channel-first image ``(1, H, W)`` or volume ``(1, X, Y, Z)`` of any intensity units.

    Args:
        network: maps ``(N, 1, h, w)`` in [0, 1] to the same shape (weights already loaded). A 2.5D
            network (``context_slices`` c > 0) maps ``(N, 1 + 2 c, h, w)``, a slice with c neighbouring
            slices on each side, to ``(N, 1, h, w)``; it denoises volumes only.
        device: where the network runs; ``None``: ``cuda:0`` when available, else CPU. Volumes stay
            in CPU memory; only the current batch of slices is moved to the device.
        amp: float16 autocast on a GPU (``None``: on when the device is a GPU; ignored on CPU,
            where it is slower).
        axis: spatial axis of a volume across which it is cut into 2D slices (0, 1 or 2).
        batch_size: slices (or tiles) per network call; on a 2-core CPU 1-2 is fastest.
        roi_size: ``None``: whole slices. ``(h, w)``: tiles of that size blended by a Gaussian
            sliding window, for slices too large for memory.
        overlap: tile overlap fraction for ``roi_size``.
        progress: show a progress bar over the batches of a volume.
        all_planes: denoise a volume across each of its three axes and average the three results
            (``MeanOfInferers``; ``axis`` is then unused): three times the time, for volumes with
            near-isotropic voxels.

    ``__call__`` returns float32 of the input's shape, on the CPU, in the input's units
    (normalisation min -> 0, 99.5th percentile -> 1 is inverted; no clipping).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        device: torch.device | str | None = None,
        amp: bool | None = None,
        axis: int = 2,
        batch_size: int = 2,
        roi_size: Sequence[int] | None = None,
        overlap: float = 0.25,
        progress: bool = False,
        all_planes: bool = False,
    ):
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
        if not isinstance(all_planes, bool):  # e.g. "false" from a bundle command line, which is true
            raise ValueError(f"all_planes must be True or False, got {all_planes!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else default_device()
        self.amp = (self.device.type == "cuda") if amp is None else bool(amp) and self.device.type == "cuda"
        self.network = network.to(self.device).eval()
        if self.device.type == "cpu":  # measured ~15% faster for these small convolutions on CPU
            self.network = self.network.to(memory_format=torch.channels_last)
        self.axis, self.batch_size, self.progress, self.all_planes = axis, batch_size, progress, all_planes
        self.roi_size = None if roi_size is None else tuple(int(s) for s in roi_size)
        self.overlap = overlap
        self.normalise = UnitRange()
        self.context = int(getattr(network, "context_slices", 0))

    def inferer(self, spatial_dims: int, axis: int) -> Inferer:
        """MONAI inferer for a batch ``(1, 1, *spatial)`` of ``spatial_dims`` = 2 or 3 dimensions (a volume:
        slices across ``axis``, or the mean over the three planes with ``all_planes``)."""
        cpu = torch.device("cpu")
        if spatial_dims == 3:
            options = {"sw_batch_size": self.batch_size, "roi_size": self.roi_size, "overlap": self.overlap}
            options.update(sw_device=self.device, device=cpu, progress=self.progress)
            if not self.all_planes:
                return volume_slice_inferer(self.context, axis, **options)
            return MeanOfInferers([volume_slice_inferer(self.context, a, **options) for a in (0, 1, 2)])
        if self.roi_size:
            tiles = {"overlap": self.overlap, "mode": "gaussian", "progress": self.progress}
            return SlidingWindowInferer(roi_size=self.roi_size, sw_batch_size=self.batch_size, sw_device=self.device, device=cpu, **tiles)
        return SimpleInferer()

    def refusal(self, image: torch.Tensor, axis: int | None = None) -> str | None:
        """Why this denoiser cannot take ``image`` ``(1, H, W)`` or ``(1, X, Y, Z)`` sliced across ``axis``, or None:
        a 2.5D network needs a volume of at least 2 slices across the slicing axis; ``all_planes``, a
        volume of at least 2 voxels along every axis (its slices in every plane at least 2 x 2)."""
        axis = self.axis if axis is None else axis
        if self.all_planes and image.dim() == 4 and min(image.shape[1:]) < 2:
            return f"a volume of shape {tuple(image.shape[1:])} is too thin to denoise in all three planes (at least 2 voxels along every axis)"
        if self.context and (image.dim() == 3 or image.shape[1 + axis] < 2):
            return f"a 2D image or a single slice; the network is 2.5D (context_slices={self.context}) and denoises volumes only"
        return None

    def __call__(self, image: torch.Tensor, axis: int | None = None) -> torch.Tensor:
        """Denoise ``image``; ``axis`` overrides the slicing axis of a volume (DICOM: its image planes)."""
        if image.dim() not in (3, 4) or image.shape[0] != 1:
            raise ValueError(f"expected a channel-first image (1, H, W) or volume (1, X, Y, Z), got {tuple(image.shape)}")
        if reason := self.refusal(image, axis):
            raise ValueError(reason)
        x = self.normalise(MetaTensor(image, dtype=torch.float32))  # records (low, high) for the inverse
        batch = x.as_tensor()[None]
        if image.dim() == 3 and not self.roi_size:
            batch = batch.to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.amp):
            y = self.inferer(image.dim() - 1, self.axis if axis is None else axis)(batch, self.network)
        y = MetaTensor(y[0].float().cpu(), applied_operations=x.applied_operations)
        return self.normalise.inverse(y).as_tensor()


def weights_id(path: str | os.PathLike) -> str:
    """Short identity of a weights file for provenance: ``<name>:<first 12 hex of its SHA-256>``."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return f"{Path(path).name}:{digest[:12]}"


@dataclass
class Result:
    """What happened to one input: the output written, or the one-line error."""

    input: str
    output: str | None = None
    slices: int = 0
    seconds: float = 0.0
    error: str | None = None
    note: str | None = None


def denoise_file(
    path: str | os.PathLike,
    output: str | os.PathLike,
    denoiser: Denoiser,
    description: str,
    series: str | None = None,
    overwrite: bool = False,
) -> Result:
    """Denoise one input file or DICOM folder into ``output`` (a folder, or a file name for one input).

    Raises ``InputError`` (one line, naming the file) for any problem with the input or output;
    nothing is written then. With the denoiser's ``all_planes`` a volume's ``description`` gets
    " all planes", its slice count is the slices of all three planes, and voxels more than
    ``ANISOTROPY_NOTE`` times longer along one axis than another get a note.
    """
    start = time.perf_counter()
    loaded = image_io.load(path, series=series)
    out = image_io.output_path(loaded, output)
    image_io.check_output(loaded, out, overwrite)  # before the work, so a bad output fails fast
    axis = denoiser.axis if loaded.slice_axis is None else loaded.slice_axis
    if reason := denoiser.refusal(loaded.image, axis):
        raise InputError(path, reason)
    spatial, notes = loaded.image.shape[1:], [loaded.note] if loaded.note else []
    planes = denoiser.all_planes and len(spatial) == 3
    sizes = image_io.voxel_sizes(loaded) if planes else None
    if sizes and (note := anisotropy_note(sizes)):
        notes.append(note)
    denoised = denoiser(loaded.image, axis)
    image_io.save(loaded, denoised, out, description + (ALL_PLANES_SUFFIX if planes else ""), overwrite)
    slices = 1 if len(spatial) == 2 else sum(spatial) if planes else spatial[axis]
    return Result(str(path), str(out), slices, time.perf_counter() - start, note="; ".join(notes) or None)


def denoise_files(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    denoiser: Denoiser,
    description: str,
    series: str | None = None,
    overwrite: bool = False,
    report: Callable[[Result], None] = lambda result: None,
) -> list[Result]:
    """Denoise every input; a bad one is recorded (``Result.error``) and skipped, the rest go on.

    ``report`` is called after each input, e.g. to print its line.
    """
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if len(inputs) > 1 and image_io.image_format_of_name(Path(output).name) not in (None, "dicom"):
        raise InputError(output, f"{len(inputs)} inputs need an output folder, not a file name")
    results = []
    for path in inputs:
        try:
            result = denoise_file(path, output, denoiser, description, series, overwrite)
        except InputError as err:
            result = Result(str(path), error=str(err))
        results.append(result)
        report(result)
    return results


def log_result(result: Result) -> None:
    """Log one input's outcome (the bundle's logging config prints it)."""
    if result.error:
        logger.error("FAILED %s", result.error)
    else:
        logger.info("%s -> %s (%d slices, %.1f s)%s", result.input, result.output, result.slices, result.seconds, f"; {result.note}" if result.note else "")


def check_results(results: list[Result]) -> list[Result]:
    """Raise after a batch in which some inputs failed (their errors were reported one by one)."""
    failed = [r.input for r in results if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(results)} inputs failed: {', '.join(failed)}")
    return results
