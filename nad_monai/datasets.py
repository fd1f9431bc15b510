"""2D training/evaluation slices from NIfTI datalists, Br35H-style image folders and DICOM series.

NIfTI and PNG/JPEG go through MONAI's ``LoadImage`` readers (NibabelReader, PILReader), DICOM
through ``nad_monai.dicom.load_series`` (the one DICOM reader of the package, also used for
inference); every image is normalised by ``nad_monai.intensity.unit_range`` and becomes a list of items

    {"image": tensor (1, H, W) float32 in [0, 1] (plain, no metadata), "id": "<file>#axis<a>:<k>", "subject": str}

(``(1 + 2 c, H, W)`` with ``context`` c: the slice between its c neighbouring slices on each side, for a
2.5D network; volumes only)

that a MONAI ``CacheDataset`` turns into a dataset (``slice_dataset``). ``id`` is unique and stable,
so the deterministic noise mode (``seed_key="id"``) gives the same noisy set on every run.
Volumes are reoriented to RAS first, so ``axis`` 0, 1, 2 mean sagittal, coronal, axial.
Unusable input raises ``InputError`` with a one-line message naming the file.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, MetaTensor, NibabelReader, PILReader, load_decathlon_datalist
from monai.transforms import LoadImage, Orientation, Transform

from transforms.background import HEAD_THRESHOLD

from .dicom import load_series
from .errors import InputError
from .intensity import unit_range

SOURCES = ("nifti", "folder", "dicom")
"""Values of ``source`` accepted by ``slice_items`` and ``slice_dataset``."""

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MIN_FOREGROUND = 0.15
"""Default least foreground fraction of a slice that is kept: slices of mostly air are skipped."""

_READERS = {"nifti": (NibabelReader, "NIfTI"), "folder": (PILReader, "PNG/JPEG")}
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights, as PIL's "L" conversion
FOLDER_SPLITS = {"training": (0, 80), "validation": (80, 90), "test": (90, 100)}
"""Split of an image folder by a hash of each file's relative path: percent buckets [low, high)."""


def load_image(path: str | os.PathLike, source: str) -> MetaTensor:
    """Load a NIfTI or PNG/JPEG file channel-first with MONAI's reader for ``source``.

    Args:
        path: NIfTI file or PNG/JPEG file (DICOM: ``nad_monai.dicom.load_series``).
        source: ``"nifti"`` or ``"folder"``; picks the reader.

    Returns:
        MetaTensor ``(C, *spatial)`` in the file's own intensity units, affine in RAS.

    Raises:
        InputError: the path does not exist or cannot be read as that format.
    """
    if source not in _READERS:
        raise ValueError(f"load_image reads {sorted(_READERS)}, not {source!r}; DICOM is read by nad_monai.dicom.load_series")
    reader, kind = _READERS[source]
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    try:
        with warnings.catch_warnings():  # readers warn about optional GPU decoders and odd headers
            warnings.simplefilter("ignore")
            # a reader given at call time is the only one tried (no fallback chain of other readers)
            return LoadImage(image_only=True, ensure_channel_first=True)(str(path), reader=reader())
    except Exception as err:  # every reader failure becomes one line naming the file
        raise InputError(path, f"not a readable {kind} image ({type(err).__name__}: {err})") from None


def _normalised(img: torch.Tensor, path: Path) -> torch.Tensor:
    try:
        return unit_range(img)
    except ValueError as err:
        raise InputError(path, str(err)) from None


def _plain(img: torch.Tensor) -> torch.Tensor:
    """A slice as a plain float32 tensor: the volume's metadata (3D shape, affine, the normalisation
    record) does not describe one slice, and slices of any source must batch together."""
    img = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
    return img.float().contiguous()


def foreground_fraction(img: torch.Tensor, threshold: float = HEAD_THRESHOLD) -> float:
    """Fraction of pixels of a [0, 1] image brighter than ``threshold`` (default: what the head mask
    of ``transforms.background`` counts as head)."""
    return float((img > threshold).float().mean())


def neighbour_indices(k: int, n: int, context: int) -> list[int]:
    """Indices of slices ``k - context, ..., k + context`` of ``n``, the first or last repeated past the ends:
    the stack a 2.5D network gets for slice ``k``, in training (``volume_slices``) and in the benchmark."""
    return [min(max(j, 0), n - 1) for j in range(k - context, k + context + 1)]


def volume_slices(
    volume: torch.Tensor, name: str, subject: str, axis: int | Sequence[int] = 2, min_foreground: float = MIN_FOREGROUND, context: int = 0
) -> list[dict]:
    """Cut a normalised volume ``(1, X, Y, Z)`` into 2D slice items along spatial ``axis``.

    ``axis`` is one RAS axis or several (``(0, 1, 2)``: sagittal, coronal and axial slices of the
    same volume, a multi-planar training set). Slices whose ``foreground_fraction`` is below
    ``min_foreground`` (mostly background) are skipped. A 2D input ``(1, H, W)`` is one slice.
    With ``context`` c > 0 each item's image is ``(1 + 2 c, H, W)``: slices k - c, ..., k + c along
    the axis, the first or last slice repeated past the volume's ends (a 2D input has no neighbours:
    ValueError).
    """
    if context < 0 or (context and volume.ndim == 3):
        raise ValueError(f"context must be >= 0, and 0 for a 2D image; got {context} for shape {tuple(volume.shape)}")
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    ras = all(isinstance(a, numbers.Integral) and not isinstance(a, bool) and a in (0, 1, 2) for a in axes)
    if not axes or not ras or len(set(axes)) < len(axes):
        raise ValueError(f"axis must be 0, 1, 2 or distinct ones of them, got {axis!r}")
    if volume.ndim == 3:
        cuts = [(axes[0], 0, [volume])]
    else:
        cuts = []
        for a in axes:
            planes = torch.unbind(volume, dim=a + 1)
            cuts += [(a, k, [planes[j] for j in neighbour_indices(k, len(planes), context)]) for k in range(len(planes))]
    return [
        {"image": _plain(torch.cat(stack)), "id": f"{name}#axis{a}:{k:04d}", "subject": subject}
        for a, k, stack in cuts
        if foreground_fraction(stack[context]) >= min_foreground
    ]


def _load_volume(path: Path, source: str) -> torch.Tensor:
    img = load_image(path, source)
    if img.ndim == 4:
        img = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(img)
    elif img.ndim != 3:
        raise InputError(path, f"expected a 2D or 3D image, got shape {tuple(img.shape[1:])}")
    return _normalised(img, path)


def nifti_slices(
    datalist: str | os.PathLike, split: str = "training", axis: int | Sequence[int] = 2, min_foreground: float = MIN_FOREGROUND, context: int = 0
) -> list[dict]:
    """Slices of every volume in one split of a MONAI decathlon-format datalist of NIfTI files.

    Args:
        datalist: JSON file with ``training``/``validation``/``test`` lists of ``{"image": path}``
            (paths relative to the JSON's folder), or a folder holding ``datalist.json``; an
            optional ``subject`` names the person.
        split: which list to read.
        axis: RAS axis to slice along (0 sagittal, 1 coronal, 2 axial), or several of them.
        min_foreground: skip slices with a smaller fraction of foreground pixels.
        context: neighbouring slices on each side to stack with each slice (``volume_slices``).
    """
    datalist = Path(datalist)
    if datalist.is_dir():
        datalist = datalist / "datalist.json"
    if not datalist.is_file():
        raise InputError(datalist, "no such datalist file")
    try:
        entries = load_decathlon_datalist(datalist, is_segmentation=False, data_list_key=split)
    except (ValueError, KeyError, OSError) as err:
        raise InputError(datalist, f"not a decathlon datalist with a '{split}' list ({err})") from None
    items = []
    for entry in entries:
        path = Path(entry["image"])
        if not path.name.endswith(NIFTI_SUFFIXES):
            raise InputError(path, f"expected a NIfTI file ({', '.join(NIFTI_SUFFIXES)})")
        volume = _load_volume(path, "nifti")
        try:
            items += volume_slices(volume, path.name, entry.get("subject", path.name), axis, min_foreground, context)
        except ValueError as err:
            raise InputError(path, str(err)) from None
    return items


def _folder_bucket(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little") % 100


def image_folder_slices(folder: str | os.PathLike, split: str | None = None) -> list[dict]:
    """Grey [0, 1] slices from a folder of PNG/JPEG images, flat or in subfolders (Br35H: ``yes/``, ``no/``).

    Colour images are converted to grey with ITU-R BT.601 luma weights (alpha dropped), then
    normalised like every other source. Each image counts as its own subject.

    Args:
        folder: the image folder.
        split: None for every image, or ``"training"``/``"validation"``/``"test"`` for a fixed
            80/10/10 split by a hash of each file's relative path (the same on every run).
    """
    if split is not None and split not in FOLDER_SPLITS:
        raise ValueError(f"split must be one of {sorted(FOLDER_SPLITS)} or None, got {split!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(folder, f"no images found (expected {', '.join(IMAGE_SUFFIXES)} files, flat or in subfolders)")
    if split is not None:
        low, high = FOLDER_SPLITS[split]
        files = [p for p in files if low <= _folder_bucket(p.relative_to(folder).as_posix()) < high]
        if not files:
            raise InputError(folder, f"no images fall in the '{split}' split (80/10/10 by file name); add images")
    items = []
    for path in files:
        img = load_image(path, "folder")
        if img.shape[0] >= 3:
            img = sum(w * img[c : c + 1] for c, w in enumerate(_LUMA))
        name = path.relative_to(folder).as_posix()
        items.append({"image": _plain(_normalised(torch.as_tensor(img), path)), "id": name, "subject": name})
    return items


def dicom_series_slices(folder: str | os.PathLike, axis: int | Sequence[int] = 2, min_foreground: float = MIN_FOREGROUND, context: int = 0) -> list[dict]:
    """Slices of one DICOM series, read by ``nad_monai.dicom.load_series`` (its rules for folders apply).

    ``folder`` is a series folder (one file per slice, or one multi-frame file) or one DICOM file.
    The volume is reoriented to RAS from its DICOM geometry and cut along ``axis``; a single image
    is one slice. Training needs an unambiguous input, so a folder holding several image series is
    an ``InputError`` here (``load_series`` would pick one).
    """
    folder = Path(folder)
    series = load_series(folder)
    if len(series.series_found) > 1:
        raise InputError(folder, f"holds {len(series.series_found)} DICOM series; point to a folder with one series")
    if series.volume.shape[0] == 1:
        image = torch.from_numpy(series.volume)  # (1, rows, cols): one 2D slice
    else:
        ras_from_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
        image = MetaTensor(torch.from_numpy(series.volume)[None], affine=torch.as_tensor(ras_from_lps @ series.affine))
        image = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(image).as_tensor()
    volume = _normalised(image, folder)
    try:
        return volume_slices(volume, folder.name, folder.name, axis, min_foreground, context)
    except ValueError as err:
        raise InputError(folder, str(err)) from None


def slice_items(
    source: str, path: str | os.PathLike, split: str = "training", axis: int | Sequence[int] = 2, min_foreground: float = MIN_FOREGROUND, context: int = 0
) -> list[dict]:
    """Slice items from any source: ``"nifti"`` (datalist JSON or its folder), ``"folder"`` (PNG/JPEG) or ``"dicom"`` (series).

    ``split`` picks a datalist list, or an image folder's hash split (``FOLDER_SPLITS``); a DICOM
    series is one person, so it is used whole (give validation its own series). ``axis``,
    ``min_foreground`` and ``context`` (neighbouring slices stacked on each side, ``volume_slices``)
    apply to volumes only.
    """
    if context < 0:
        raise ValueError(f"context must be >= 0 neighbouring slices on each side, got {context}")
    if source == "nifti":
        return nifti_slices(path, split, axis, min_foreground, context)
    if source == "folder":
        if context:
            raise ValueError("an image folder holds single 2D images: they have no neighbouring slices for context")
        return image_folder_slices(path, split)
    if source == "dicom":
        return dicom_series_slices(path, axis, min_foreground, context)
    raise ValueError(f"unknown data source {source!r}, expected one of {SOURCES}")


def slice_dataset(
    source: str,
    path: str | os.PathLike,
    transform: Transform | None = None,
    split: str = "training",
    axis: int | Sequence[int] = 2,
    min_foreground: float = MIN_FOREGROUND,
    num_workers: int | None = 1,
    context: int = 0,
) -> CacheDataset:
    """A MONAI ``CacheDataset`` of ``slice_items``: deterministic transforms cached, random ones per epoch."""
    items = slice_items(source, path, split, axis, min_foreground, context)
    return CacheDataset(items, transform=transform, cache_rate=1.0, num_workers=num_workers, progress=False)


__all__ = [
    "FOLDER_SPLITS",
    "SOURCES",
    "dicom_series_slices",
    "foreground_fraction",
    "image_folder_slices",
    "load_image",
    "neighbour_indices",
    "nifti_slices",
    "slice_dataset",
    "slice_items",
    "volume_slices",
]
