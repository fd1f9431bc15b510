"""Read the images nad-denoise accepts and write the denoised result in the same format.

Formats, chosen from the path: NIfTI (``.nii``, ``.nii.gz``; 2D or 3D, nibabel), DICOM (a series
folder, one file per slice or one enhanced multi-frame file; ``nad_monai.dicom``), PNG and JPEG
(greyscale, 8 or 16 bit; Pillow). Every problem with an input is an ``InputError`` naming the
file. Outputs are written to a temporary name beside the destination and renamed into place, so
no half-written output is ever left, and an input is never overwritten.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from . import dicom
from .errors import InputError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
PIL_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
PIL_MODES = {"L": np.uint8, "I;16": np.uint16, "I": np.int32, "F": np.float32}
"""Greyscale Pillow modes read and written back unchanged, with their numpy dtypes."""


@dataclass
class LoadedImage:
    """An input image: ``image`` ``(1, *spatial)`` float32 in the file's own units, and what is needed to write it back.

    ``source`` is the nibabel image, the ``dicom.DicomSeries`` or the Pillow mode (``"L"``, ``"I;16"``, ...).
    ``slice_axis`` is the spatial axis of the acquired 2D images for DICOM (``0``), else ``None``;
    ``note`` a line for the user (e.g. which of several DICOM series was chosen).
    """

    path: Path
    format: str
    image: torch.Tensor
    source: object
    slice_axis: int | None = None
    note: str | None = None


def voxel_sizes(loaded: LoadedImage) -> tuple[float, ...] | None:
    """Voxel edge lengths (mm) along the spatial axes of ``loaded.image`` for a volume, from the NIfTI
    header or the DICOM geometry; None for 2D images."""
    if loaded.image.dim() != 4:
        return None
    if loaded.format == "nifti":
        return tuple(float(z) for z in loaded.source.header.get_zooms()[:3])
    return tuple(float(v) for v in np.linalg.norm(loaded.source.affine[:3, :3], axis=0))


def image_format(path: str | os.PathLike) -> str:
    """``"nifti"``, ``"dicom"``, ``"png"`` or ``"jpeg"`` from the path; ``InputError`` for anything else."""
    path = Path(path)
    name = path.name.lower()
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_dir():
        return "dicom"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if path.suffix.lower() in PIL_FORMATS:
        return PIL_FORMATS[path.suffix.lower()].lower()
    if name.endswith(".dcm") or _has_dicom_preamble(path):
        return "dicom"
    raise InputError(path, "not a NIfTI (.nii, .nii.gz), DICOM, PNG or JPEG file")


def _has_dicom_preamble(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def load(path: str | os.PathLike, series: str | None = None) -> LoadedImage:
    """Read an image or volume (``series``: the SeriesInstanceUID to take from a DICOM folder)."""
    path = Path(path)
    fmt = image_format(path)
    if fmt == "nifti":
        loaded = _load_nifti(path)
    elif fmt == "dicom":
        found = dicom.load_series(path, series_uid=series)
        volume = torch.from_numpy(found.volume)[None]
        loaded = LoadedImage(path, fmt, volume, found, slice_axis=0, note=found.note)
    else:
        loaded = _load_pil(path, fmt)
    _check_values(path, loaded.image)
    return loaded


def _check_values(path: Path, image: torch.Tensor) -> None:
    bad = int((~torch.isfinite(image)).sum())
    if bad:
        raise InputError(path, f"{bad} of {image.numel()} voxels are NaN or Inf")
    if image.numel() == 0 or float(image.min()) == float(image.max()):
        raise InputError(path, "the image is constant: nothing to denoise")


def _load_nifti(path: Path) -> LoadedImage:
    try:
        img = nib.load(path)
        shape = img.shape
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if len(shape) > 3:
            raise InputError(path, f"{len(shape)}-D image of shape {img.shape}: only 2-D and 3-D images are denoised; split the volumes first")
        if len(shape) < 2:
            raise InputError(path, f"{len(shape)}-D image of shape {img.shape}: expected a 2-D image or 3-D volume")
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except InputError:
        raise
    except Exception as err:  # nibabel raises many types for truncated or non-NIfTI content
        raise InputError(path, f"not a readable NIfTI file ({type(err).__name__}: {err})") from None
    if len(shape) == 3 and 1 in shape:  # a single slice stored as a volume: denoise it as a 2-D image
        data = data.squeeze()
    return LoadedImage(path, "nifti", torch.from_numpy(data)[None], img)


def _load_pil(path: Path, fmt: str) -> LoadedImage:
    try:
        with Image.open(path) as img:
            img.load()
    except Exception as err:
        raise InputError(path, f"not a readable {fmt.upper()} image ({type(err).__name__}: {err})") from None
    mode = img.mode
    if mode in ("RGB", "RGBA", "LA", "P"):
        rgb = np.asarray(img.convert("RGB"))
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            raise InputError(path, f"colour image ({mode}): only greyscale images are denoised")
        data = rgb[..., 0]
    elif mode in PIL_MODES:
        data = np.asarray(img)
    else:
        raise InputError(path, f"unsupported image mode {mode}")
    return LoadedImage(path, fmt, torch.from_numpy(data.astype(np.float32))[None], mode)


def output_path(loaded: LoadedImage, output: str | os.PathLike) -> Path:
    """Where the denoised image of ``loaded`` goes: ``output`` itself if it names a file of the same
    format, else ``output/<input name>_denoised<suffix>`` (a folder for DICOM)."""
    output, path = Path(output), loaded.path
    if loaded.format == "dicom":
        return output / f"{path.name.removesuffix('.dcm')}_denoised"
    if output.suffix and not output.is_dir():
        if image_format_of_name(output.name) != loaded.format:
            raise InputError(output, f"output name does not match the input's {loaded.format.upper()} format")
        return output
    name = path.name
    suffix = next((s for s in NIFTI_SUFFIXES if name.lower().endswith(s)), path.suffix)
    return output / f"{name[: len(name) - len(suffix)]}_denoised{suffix}"


def image_format_of_name(name: str) -> str | None:
    """Format implied by a file name's suffix, or ``None``."""
    lower = name.lower()
    if lower.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if lower.endswith(".dcm"):
        return "dicom"
    suffix = os.path.splitext(lower)[1]
    return PIL_FORMATS[suffix].lower() if suffix in PIL_FORMATS else None


def check_output(loaded: LoadedImage, out: Path, overwrite: bool = False) -> None:
    """Refuse an output that is the input (or inside an input folder), exists, or cannot be written."""
    source, target = loaded.path.resolve(), out.resolve()
    if target == source or (loaded.path.is_dir() and source in target.parents):
        raise InputError(out, "output path is the input; choose another output")
    if out.exists() and not overwrite:
        raise InputError(out, "output exists; pass --overwrite to replace it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(out.parent, f"cannot create the output folder ({err.strerror})") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise InputError(out.parent, "output folder is not writable")


def save(loaded: LoadedImage, denoised: torch.Tensor, out: str | os.PathLike, description: str, overwrite: bool = False) -> Path:
    """Write ``denoised`` (the shape of ``loaded.image``, same units) to ``out`` in the input's format and dtype.

    Integer outputs are rounded and clipped to the input's type. ``description`` (which model made
    it) goes to the NIfTI ``descrip`` field and the DICOM SeriesDescription.
    """
    out = Path(out)
    check_output(loaded, out, overwrite)
    values = denoised.reshape(loaded.image.shape[1:]).numpy()
    if loaded.format == "dicom":
        _replace_atomically(out, lambda tmp: dicom.save_derived_series(loaded.source, values, tmp, description))
    elif loaded.format == "nifti":
        _replace_atomically(out, lambda tmp: nib.save(_nifti_like(loaded.source, values, description), tmp))
    else:
        mode = loaded.source  # the Pillow mode
        array = _to_dtype(values, PIL_MODES.get(mode, np.uint8))
        image = Image.fromarray(array)  # uint8 -> L, uint16 -> I;16, int32 -> I, float32 -> F
        if mode in ("RGB", "RGBA", "LA", "P"):
            image = image.convert(mode if mode != "P" else "RGB")
        options = {"quality": 95} if loaded.format == "jpeg" else {}
        _replace_atomically(out, lambda tmp: image.save(tmp, format=loaded.format.upper(), **options))
    return out


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip to an integer dtype's range; float dtypes are cast."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _nifti_like(source: nib.Nifti1Image, values: np.ndarray, description: str) -> nib.Nifti1Image:
    """A NIfTI image with ``source``'s shape, affine, header and on-disk dtype holding ``values``.

    Unscaled integer inputs get rounded integers back; scaled (``scl_slope``) or float inputs get
    the float values, which nibabel stores in the same dtype with a new slope if needed.
    """
    dtype = source.get_data_dtype()
    scaled = getattr(source.dataobj, "slope", 1.0) != 1.0 or getattr(source.dataobj, "inter", 0.0) != 0.0
    data = values.reshape(source.shape)
    data = data if scaled or not np.issubdtype(dtype, np.integer) else _to_dtype(data, dtype)
    out = type(source)(data, source.affine, source.header.copy())
    out.set_data_dtype(dtype)
    out.header["descrip"] = description[:79].encode()
    return out


def _replace_atomically(out: Path, write: Callable[[Path], object]) -> None:
    """Run ``write(tmp)`` on a temporary name beside ``out`` (same suffix), then rename it to ``out``."""
    tmp = out.with_name(f".{uuid.uuid4().hex[:8]}.partial.{out.name}")
    try:
        write(tmp)
        if out.is_dir():  # a previous DICOM output being replaced (--overwrite)
            old = out.with_name(f".{uuid.uuid4().hex[:8]}.old.{out.name}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException as err:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        if isinstance(err, OSError) and not isinstance(err, InputError):
            raise InputError(out, f"cannot write the output ({err.strerror or err})") from None
        raise
