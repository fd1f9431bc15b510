"""Read one DICOM image series into a float volume and write a denoised copy as a new derived series.

Two layouts are read and written back the same way:

* classic: a folder of single-frame files, one per slice (e.g. MR Image Storage);
* multi-frame: one file holding every frame (e.g. Enhanced MR Image Storage, with per-frame and
  shared functional groups), given as the file or as a folder holding it.

``load_series`` returns a ``DicomSeries`` whose ``volume`` is float32 ``(n_slices, rows, cols)`` in
real-world units (stored value x RescaleSlope + RescaleIntercept, per frame for multi-frame files),
slices sorted along the slice normal. ``save_derived_series`` writes a volume of that shape, same
units, as a new series of the same study: new Series/SOP Instance UIDs, ImageType DERIVED, the
source instances referenced, geometry and patient/study attributes unchanged, pixels stored with
the source's rescale and bit depth in Explicit VR Little Endian.

Rules for a folder (``load_series``):

* Only the folder's own regular files are read: subfolders, hidden files (``.name``) and a file
  named ``DICOMDIR`` are ignored.
* Every other file must be DICOM: a file pydicom cannot read as DICOM (a README, a JPEG, a
  truncated or corrupt file) is an ``InputError`` naming it, as in ``nad_monai.datasets``. A valid
  DICOM object that is not an image (no Rows and no pixel data: a structured report, a
  presentation state, a key object) is skipped and counted in ``DicomSeries.note``; a folder of
  only such objects is an error naming one of them.
* Image files are grouped by SeriesInstanceUID. With several series, ``series_uid`` picks one; if
  it is not given, the series with the most images (frames) is taken, ties broken by the lowest
  SeriesNumber, then the lowest UID, and ``note`` says so.

Every problem with the input raises ``nad_monai.errors.InputError`` with a one-line message that
names the offending file or folder.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import iter_pixels
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .errors import InputError

SERIES_NUMBER_OFFSET = 1000
"""Added to the source SeriesNumber to number a derived series."""

_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_INT_TYPES = {8: "u1", 16: "u2", 32: "u4"}
_LO_MAX, _ST_MAX = 64, 1024  # value lengths of the LO (SeriesDescription) and ST (DerivationDescription) VRs
_DERIVATION_CODE = ("113087", "DCM", "Smoothing")  # CID 7203 Image Derivation: noise reduction smooths the image
_SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")  # CID 7202
_MR_PULSE_SEQUENCE = (  # Enhanced MR "MR Pulse Sequence" module, required only for ORIGINAL/MIXED images
    "PulseSequenceName", "MRAcquisitionType", "EchoPulseSequence", "MultipleSpinEcho", "MultiPlanarExcitation",
    "PhaseContrast", "VelocityEncodingAcquisitionSequence", "TimeOfFlightContrast", "ArterialSpinLabelingContrast",
    "SteadyStatePulseSequence", "EchoPlanarPulseSequence", "SaturationRecovery", "SpectrallySelectedSuppression",
    "OversamplingPhase", "GeometryOfKSpaceTraversal", "RectilinearPhaseEncodeReordering", "SegmentedKSpaceTraversal",
    "CoverageOfKSpace", "NumberOfKSpaceTrajectories",
)
_DROPPED = (  # attributes that would be wrong for the derived instance
    "IconImageSequence",  # a thumbnail of the noisy source pixels
    "DigitalSignaturesSequence",
    "MACParametersSequence",
    "DataSetTrailingPadding",
    "ConcatenationUID",
    "SOPInstanceUIDOfConcatenationSource",
    "InConcatenationNumber",
    "InConcatenationTotalNumber",
    "ConcatenationFrameOffsetNumber",
)


@dataclass
class DicomSeries:
    """One image series read by ``load_series``.

    Attributes:
        volume: float32 ``(n_slices, rows, cols)``, real-world values (modality rescale applied),
            slices in ascending order along the slice normal (ImageOrientationPatient row x column
            direction), or by InstanceNumber when positions are missing or repeat.
        datasets: classic: the header of each slice's file, in ``volume`` order; multi-frame: the
            one dataset. Pixel data is removed from them after decoding.
        paths: the source file of each dataset (same order as ``datasets``).
        frames: for each slice, its 0-based frame index within its dataset (always 0 for classic).
        multiframe: True when the series is one multi-frame file (enhanced or not).
        source: the path given to ``load_series``, made absolute.
        note: a one-line message for the user (which of several series was taken, skipped
            non-image objects), or None.
        series_found: SeriesInstanceUIDs of every image series found, in the order of the rule.
    """

    volume: np.ndarray
    datasets: list[Dataset]
    paths: list[Path]
    frames: tuple[int, ...]
    multiframe: bool
    source: Path
    note: str | None = None
    series_found: tuple[str, ...] = field(default_factory=tuple)

    @property
    def series_uid(self) -> str:
        """SeriesInstanceUID of the series read."""
        return str(self.datasets[0].SeriesInstanceUID)

    def slice_source(self, k: int) -> tuple[Dataset, int]:
        """``(dataset, frame index)`` holding slice ``k`` of ``volume``."""
        return self.datasets[0 if self.multiframe else k], self.frames[k]

    @property
    def affine(self) -> np.ndarray:
        """4x4 float64 matrix mapping a voxel index ``(slice, row, col, 1)`` of ``volume`` to patient
        LPS coordinates in mm (DICOM's patient system). Identity where the series has no
        ImagePositionPatient/ImageOrientationPatient."""
        first, last = self.slice_source(0), self.slice_source(len(self.frames) - 1)
        orientation = _frame_value(*first, "PlaneOrientationSequence", "ImageOrientationPatient")
        origin = _frame_value(*first, "PlanePositionSequence", "ImagePositionPatient")
        if not isinstance(orientation, list) or len(orientation) != 6 or not isinstance(origin, list) or len(origin) != 3:
            return np.eye(4)
        spacing = _frame_value(*first, "PixelMeasuresSequence", "PixelSpacing")
        row_spacing, col_spacing = spacing if isinstance(spacing, list) and len(spacing) == 2 else (1.0, 1.0)
        along_row, along_col = np.array(orientation[:3]), np.array(orientation[3:])
        n = len(self.frames)
        end = _frame_value(*last, "PlanePositionSequence", "ImagePositionPatient")
        if n > 1 and isinstance(end, list) and len(end) == 3 and not np.allclose(end, origin):
            step = (np.array(end) - np.array(origin)) / (n - 1)
        else:
            thickness = _frame_value(*first, "PixelMeasuresSequence", "SliceThickness")
            step = np.cross(along_row, along_col) * (thickness if isinstance(thickness, float) and thickness > 0 else 1.0)
        affine = np.eye(4)
        affine[:3, 0] = step
        affine[:3, 1] = along_col * row_spacing  # down a column: the next row
        affine[:3, 2] = along_row * col_spacing  # along a row: the next column
        affine[:3, 3] = origin
        return affine


# --- reading ----------------------------------------------------------------------------------


@dataclass
class _Entry:
    """A DICOM file's header from the first pass (pixel data deferred, never decoded)."""

    path: Path
    ds: Dataset
    frames: int


def _functional_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """First item of functional-group ``sequence`` for ``frame``: per-frame if there, else shared."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items is not None and index < len(items):
            macro = items[index].get(sequence)
            if macro is not None and len(macro):
                return macro[0]
    return None


def _frame_value(ds: Dataset, frame: int, sequence: str, keyword: str) -> float | list[float] | None:
    """``keyword`` for ``frame`` as float(s): from its functional group ``sequence``, else the top level; None if absent."""
    item = _functional_item(ds, frame, sequence)
    value = item.get(keyword) if item is not None and keyword in item else ds.get(keyword)
    if value is None or value == "":
        return None
    return [float(v) for v in value] if isinstance(value, (list, MultiValue)) else float(value)


def _rescale(ds: Dataset, frame: int) -> tuple[float, float]:
    """``(slope, intercept)`` of the modality rescale for ``frame`` (1, 0 when absent)."""
    slope = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    return (1.0 if slope is None else slope), (0.0 if intercept is None else intercept)


def _read(path: Path, **kwargs) -> Dataset:
    """``dcmread`` with every failure, and truncation pydicom only warns about, as one-line InputErrors."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, **kwargs)
    except InvalidDicomError:
        raise InputError(path, "not a readable DICOM file (no DICOM file meta header with the 'DICM' prefix)") from None
    except Exception as err:  # pydicom raises many types for damaged files
        raise InputError(path, f"corrupt DICOM file ({type(err).__name__}: {err})") from None
    for warning in caught:
        if "end of file" in str(warning.message).lower():
            raise InputError(path, f"truncated DICOM file ({warning.message})")
    if "SOPClassUID" not in ds:
        raise InputError(path, "corrupt or truncated DICOM file: no SOP Class UID in its data set")
    return ds


def _has_pixels(ds: Dataset) -> bool:
    return any(tag in ds for tag in _PIXEL_TAGS)


def _candidates(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(path, "no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file())
    if not files:
        raise InputError(path, "empty folder: no DICOM files")
    kept = [p for p in files if not p.name.startswith(".") and p.name.upper() != "DICOMDIR"]
    if not kept:
        what = "a DICOMDIR: point to the series folder it indexes" if any(p.name.upper() == "DICOMDIR" for p in files) else "only hidden files"
        raise InputError(path, f"no DICOM image files here, {what}")
    return kept


def _scan(path: Path) -> tuple[dict[str, list[_Entry]], list[_Entry]]:
    """Headers of every candidate file: image files grouped by series, and the non-image objects."""
    groups: dict[str, list[_Entry]] = {}
    others: list[_Entry] = []
    for file in _candidates(path):
        ds = _read(file, defer_size="4 KB")
        if not _has_pixels(ds):
            if "Rows" in ds or "Image Storage" in getattr(ds.SOPClassUID, "name", ""):  # cut off, or written incompletely
                raise InputError(file, "DICOM image without pixel data (truncated or incomplete file)")
            others.append(_Entry(file, ds, 0))
            continue
        frames = int(ds.get("NumberOfFrames") or 1)
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(_Entry(file, ds, frames))
    if not groups:
        sop = others[0].ds.SOPClassUID
        raise InputError(others[0].path, f"DICOM file without pixel data ({getattr(sop, 'name', sop)}): not an image")
    return groups, others


def _rule_key(uid: str, entries: list[_Entry]) -> tuple:
    number = entries[0].ds.get("SeriesNumber")
    return (-sum(e.frames for e in entries), int(number) if number not in (None, "") else float("inf"), uid)


def _choose(path: Path, groups: dict[str, list[_Entry]], series_uid: str | None) -> tuple[str, tuple[str, ...], str | None]:
    order = tuple(sorted(groups, key=lambda uid: _rule_key(uid, groups[uid])))
    if series_uid is not None:
        if series_uid not in groups:
            listed = ", ".join(f"{uid} ({sum(e.frames for e in groups[uid])} images)" for uid in order)
            raise InputError(path, f"no series {series_uid} here; available: {listed}")
        return series_uid, order, None
    chosen = order[0]
    if len(order) == 1:
        return chosen, order, None
    head = groups[chosen][0].ds
    count = sum(e.frames for e in groups[chosen])
    desc = f" '{head.SeriesDescription}'" if head.get("SeriesDescription") else ""
    note = (
        f"{len(order)} DICOM series here; took series {chosen} (number {head.get('SeriesNumber', '?')}{desc}, "
        f"{count} images, the most); --series UID picks another"
    )
    return chosen, order, note


def _slice_order(entries: list[_Entry]) -> tuple[list[tuple[int, int]], str | None]:
    """``(entry index, frame)`` of each slice in spatial order, and a note if positions could not be used.

    Order: by the projection of ImagePositionPatient on the slice normal (row x column direction of
    the first slice's ImageOrientationPatient); by InstanceNumber (then file name, frame number)
    when a position or the orientation is missing, or when positions repeat.
    """
    slices = [(i, f) for i, e in enumerate(entries) for f in range(e.frames)]
    by_number = [(float(entries[i].ds.get("InstanceNumber") or 0), i, f) for i, f in slices]
    orientation = _frame_value(entries[0].ds, 0, "PlaneOrientationSequence", "ImageOrientationPatient")
    positions = [_frame_value(entries[i].ds, f, "PlanePositionSequence", "ImagePositionPatient") for i, f in slices]
    usable = isinstance(orientation, list) and len(orientation) == 6
    if not usable or any(not isinstance(p, list) or len(p) != 3 for p in positions):
        return [(i, f) for _, i, f in sorted(by_number)], None
    normal = np.cross(orientation[:3], orientation[3:])
    distance = [float(np.dot(normal, p)) for p in positions]
    if len(set(np.round(distance, 3))) < len(distance):
        note = "slice positions repeat (several images per position), so slices are in InstanceNumber order"
        return [(i, f) for _, i, f in sorted(by_number)], note
    return [(i, f) for _, (_, i, f) in sorted(zip(distance, by_number))], None


def _check_pixel_module(path: Path, ds: Dataset) -> None:
    if int(ds.get("SamplesPerPixel") or 1) != 1:
        raise InputError(path, f"colour image ({ds.get('PhotometricInterpretation', '?')}): only greyscale images are supported")
    if "PixelData" not in ds:
        raise InputError(path, "float pixel data (e.g. a parametric map) is not supported: only integer images")
    if ds.get("ModalityLUTSequence"):
        raise InputError(path, "uses a Modality LUT Sequence: only RescaleSlope/RescaleIntercept are supported")
    if int(ds.get("BitsAllocated", 0)) not in _INT_TYPES:
        raise InputError(path, f"BitsAllocated {ds.get('BitsAllocated')} is not supported (8, 16 or 32)")


def _decode_into(volume: np.ndarray, targets: dict[int, int], path: Path, frames: int) -> Dataset:
    """Decode the file's frames, one at a time, into ``volume[targets[frame]]`` in real-world units;
    return its header without the pixel data."""
    ds = _read(path)
    _check_pixel_module(path, ds)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is not None and not syntax.is_encapsulated:
        need = (int(ds.Rows) * int(ds.Columns) * frames * int(ds.BitsAllocated) + 7) // 8
        if len(ds.PixelData) < need:
            raise InputError(path, f"truncated DICOM file: pixel data has {len(ds.PixelData)} of {need} bytes")
    try:
        rescale = [_rescale(ds, frame) for frame in range(frames)]
    except (TypeError, ValueError) as err:
        raise InputError(path, f"unreadable RescaleSlope/RescaleIntercept ({err})") from None
    if any(slope == 0 for slope, _ in rescale):
        raise InputError(path, "RescaleSlope is 0")
    try:
        for frame, pixels in enumerate(iter_pixels(ds)):
            slope, intercept = rescale[frame]
            volume[targets[frame]] = pixels.astype(np.float64) * slope + intercept
            if not np.isfinite(volume[targets[frame]]).all():
                raise InputError(path, "pixel values are NaN or Inf after rescale (check RescaleSlope/RescaleIntercept)")
    except InputError:
        raise
    except Exception as err:  # decoder plugins raise many types
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise InputError(path, f"pixel data cannot be decoded ({getattr(syntax, 'name', syntax)}: {reason})") from None
    del ds.PixelData
    return ds


def load_series(path: str | os.PathLike, series_uid: str | None = None) -> DicomSeries:
    """Read one image series from a folder of DICOM files, or from one DICOM file.

    Args:
        path: a folder holding a classic one-file-per-slice series or a multi-frame file (possibly
            with other series), or a single DICOM file (a multi-frame file, or one slice).
        series_uid: SeriesInstanceUID to take when the folder holds several series; if None, the
            series with the most images, then lowest SeriesNumber, then lowest UID is taken and
            ``note`` says so.

    Returns:
        a ``DicomSeries``; ``volume`` is float32 ``(n_slices, rows, cols)`` in real-world units.

    Raises:
        InputError: one line naming the file or folder: no DICOM files, a non-DICOM, corrupt or
            truncated file, a DICOM object without pixel data, pixel data that cannot be decoded,
            colour images, slices of different sizes, a series of several multi-frame files,
            NaN/Inf after rescale, an unknown ``series_uid``.
    """
    path = Path(path).absolute()
    groups, others = _scan(path)
    chosen, order, note = _choose(path, groups, series_uid)
    entries = sorted(groups[chosen], key=lambda e: e.path.name)
    multiframe = any(e.frames > 1 or "PerFrameFunctionalGroupsSequence" in e.ds for e in entries)
    if multiframe and len(entries) > 1:
        raise InputError(path, f"series {chosen} has {len(entries)} files and multi-frame images; pass one multi-frame file")
    rows, cols = int(entries[0].ds.Rows), int(entries[0].ds.Columns)
    for e in entries[1:]:
        if (int(e.ds.Rows), int(e.ds.Columns)) != (rows, cols):
            raise InputError(
                e.path, f"image size {e.ds.Rows}x{e.ds.Columns} differs from {rows}x{cols} of {entries[0].path.name}; a series must have one size"
            )
    try:
        order_slices, order_note = _slice_order(entries)
    except (TypeError, ValueError) as err:
        raise InputError(path, f"unreadable ImagePositionPatient/ImageOrientationPatient ({err})") from None
    skipped = f"skipped {len(others)} DICOM files without pixel data (e.g. {others[0].path.name})" if others else None
    note = "; ".join(n for n in (note, order_note, skipped) if n) or None

    volume = np.empty((len(order_slices), rows, cols), dtype=np.float32)
    targets: dict[int, dict[int, int]] = {}
    for k, (i, frame) in enumerate(order_slices):
        targets.setdefault(i, {})[frame] = k
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about odd but readable values
        headers = {i: _decode_into(volume, targets[i], entries[i].path, entries[i].frames) for i in targets}
    if multiframe:
        datasets, paths, frames = [headers[0]], [entries[0].path], tuple(f for _, f in order_slices)
    else:
        datasets = [headers[i] for i, _ in order_slices]
        paths = [entries[i].path for i, _ in order_slices]
        frames = (0,) * len(order_slices)
    return DicomSeries(volume, datasets, paths, frames, multiframe, path, note, order)


# --- writing ----------------------------------------------------------------------------------


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _reference(ds: Dataset, frame: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    if frame is not None:
        item.ReferencedFrameNumber = frame + 1
    item.PurposeOfReferenceCodeSequence = Sequence([_code_item(*_SOURCE_PURPOSE)])
    return item


def _storage(ds: Dataset) -> tuple[str, int, int]:
    """numpy dtype (little endian) and the ``[low, high]`` range of stored values from the Image Pixel module."""
    bits, signed = int(ds.BitsStored), int(ds.PixelRepresentation) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return "<" + _INT_TYPES[int(ds.BitsAllocated)].replace("u", "i" if signed else "u"), low, high


def _stored(values: np.ndarray, ds: Dataset, frame: int) -> np.ndarray:
    """Real-world ``values`` of one frame as the source's stored integers (its rescale, rounded, clipped to BitsStored)."""
    slope, intercept = _rescale(ds, frame)
    dtype, low, high = _storage(ds)
    return np.clip(np.rint((values.astype(np.float64) - intercept) / slope), low, high).astype(dtype)


def _little_endian(ds: Dataset) -> None:
    """Make a dataset read from big-endian data writable as little endian: swap the bytes of the
    binary word VRs, drop UN values (their structure is unknown)."""
    sizes = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}

    def swap(dataset: Dataset, elem) -> None:
        if elem.VR in sizes and isinstance(elem.value, bytes) and elem.value:
            elem.value = np.frombuffer(elem.value, f">u{sizes[elem.VR]}").astype(f"<u{sizes[elem.VR]}").tobytes()
        elif elem.VR == "UN":
            del dataset[elem.tag]

    ds.walk(swap)


def _derive(src: Dataset, series_uid: str, description: str, series_number: int, now: datetime) -> Dataset:
    """A copy of header ``src`` (no pixel data) made into an instance of the derived series."""
    ds = copy.deepcopy(src)
    for elem in ds.iterall():  # convert every raw element, so the encoding can change on writing
        pass
    if not src.original_encoding[1]:
        _little_endian(ds)
    for keyword in _DROPPED:
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description[:_LO_MAX]
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ContentDate, ds.ContentTime = date, time
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    source_desc = f" '{src.SeriesDescription}'" if src.get("SeriesDescription") else ""
    derivation = f"{description}, from series {src.get('SeriesNumber', '?')}{source_desc} ({src.SeriesInstanceUID})"
    ds.DerivationDescription = derivation[:_ST_MAX]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _set_pixels(ds: Dataset, stored: np.ndarray) -> None:
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OB" if stored.dtype.itemsize == 1 else "OW"
    for keyword, value in (("SmallestImagePixelValue", stored.min()), ("LargestImagePixelValue", stored.max())):
        if keyword in ds:
            setattr(ds, keyword, int(value))


def _classic_instance(series: DicomSeries, k: int, values: np.ndarray, common: dict) -> Dataset:
    src = series.datasets[k]
    ds = _derive(src, **common)
    ds.ImageType = ["DERIVED", "SECONDARY", *list(src.get("ImageType", []))[2:]]
    ds.DerivationCodeSequence = Sequence([_code_item(*_DERIVATION_CODE)])
    ds.SourceImageSequence = Sequence([_reference(src)])
    _set_pixels(ds, _stored(values, src, 0))
    return ds


def _multiframe_instance(series: DicomSeries, volume: np.ndarray, common: dict) -> Dataset:
    src = series.datasets[0]
    ds = _derive(src, **common)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    # enhanced IODs only allow Value 2 PRIMARY; Values 3 and 4 (flavour, derived pixel contrast) are kept
    ds.ImageType = ["DERIVED", "PRIMARY" if per_frame else "SECONDARY", *list(src.get("ImageType", []))[2:]]
    stored = np.empty((len(series.frames), *volume.shape[1:]), dtype=_storage(src)[0])
    for k, frame in enumerate(series.frames):
        stored[frame] = _stored(volume[k], src, frame)  # frames go back to their place in the file
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        shared[0].pop("DerivationImageSequence", None)  # replaced per frame below
    for groups in (shared or []), (per_frame or []):
        for item in groups:
            for elem in item:
                if elem.keyword.endswith("FrameTypeSequence") and elem.value and "FrameType" in elem.value[0]:
                    elem.value[0].FrameType = ["DERIVED", *list(elem.value[0].FrameType)[1:]]
    if per_frame:  # enhanced: the Derivation Image functional group of each frame names its source frame
        for frame, item in enumerate(per_frame):
            derivation = Dataset()
            derivation.DerivationDescription = ds.DerivationDescription
            derivation.DerivationCodeSequence = Sequence([_code_item(*_DERIVATION_CODE)])
            derivation.SourceImageSequence = Sequence([_reference(src, frame)])
            item.DerivationImageSequence = Sequence([derivation])
        del ds.DerivationDescription  # only in the functional group for enhanced IODs
        sop = Dataset()
        sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = src.SOPClassUID, src.SOPInstanceUID
        evidence = Dataset()  # Hierarchical SOP Instance Reference macro: every instance the frames derive from
        evidence.StudyInstanceUID = src.StudyInstanceUID
        evidence_series = Dataset()
        evidence_series.SeriesInstanceUID = src.SeriesInstanceUID
        evidence_series.ReferencedSOPSequence = Sequence([sop])
        evidence.ReferencedSeriesSequence = Sequence([evidence_series])
        ds.SourceImageEvidenceSequence = Sequence([evidence])
        referenced = Dataset()  # Common Instance Reference module: instances of this study referenced
        referenced.SeriesInstanceUID = src.SeriesInstanceUID
        referenced.ReferencedInstanceSequence = Sequence([copy.deepcopy(sop)])
        ds.ReferencedSeriesSequence = Sequence([referenced])
        # PS3.3 (2024) lets a DERIVED image keep the MR Pulse Sequence module, but dciodvfy
        # (dicom3tools 2022) rejects it there, so it is dropped; the source series keeps it.
        for keyword in _MR_PULSE_SEQUENCE:
            if keyword in ds:
                delattr(ds, keyword)
    else:
        ds.DerivationCodeSequence = Sequence([_code_item(*_DERIVATION_CODE)])
        ds.SourceImageSequence = Sequence([_reference(src)])
    _set_pixels(ds, stored)
    return ds


def _check_out_dir(series: DicomSeries, out_dir: Path) -> None:
    target = out_dir.resolve()
    source = series.source.resolve()
    for given in (source, *(p.resolve() for p in series.paths)):
        if target == given or target in given.parents:
            raise InputError(out_dir, f"output folder would be or contain the input {given}")
    if source.is_dir() and source in target.parents:
        raise InputError(out_dir, f"output folder is inside the input folder {source}")
    if out_dir.exists() or out_dir.is_symlink():
        raise InputError(out_dir, "output folder exists already; choose a new folder")
    parent = out_dir.parent
    if not parent.is_dir():
        raise InputError(parent, "the output folder's parent folder does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(parent, "folder is not writable")


def save_derived_series(
    series: DicomSeries,
    volume: np.ndarray,
    out_dir: str | os.PathLike,
    description: str,
    series_number_offset: int = SERIES_NUMBER_OFFSET,
) -> Path:
    """Write ``volume`` as a new derived DICOM series beside ``series`` (same study), in ``out_dir``.

    The layout follows the input: one file per slice (``<SOPInstanceUID>.dcm``) or one multi-frame
    file. Every source header is copied (patient, study, frame of reference, geometry, functional
    groups, InstanceNumber) with: a new SeriesInstanceUID for the series and SOPInstanceUID per
    file; SeriesNumber + ``series_number_offset``; ImageType DERIVED\\SECONDARY (classic) or
    DERIVED\\PRIMARY with FrameType Value 1 DERIVED (enhanced); SeriesDescription ``description``
    (cut to 64 characters) and DerivationDescription; SourceImageSequence / per-frame
    DerivationImageSequence referencing the source instances (and frames); new ContentDate/Time and
    InstanceCreationDate/Time. Pixels are stored with the source's RescaleSlope/Intercept and bit
    depth (rounded, clipped to BitsStored), Smallest/LargestImagePixelValue updated, window kept,
    transfer syntax Explicit VR Little Endian. Input files are never modified.

    Everything is written into a hidden temporary folder beside ``out_dir`` that is renamed to
    ``out_dir`` at the end; on any failure it is removed, so no partial output is left.

    Args:
        series: what ``load_series`` returned.
        volume: float ``(n_slices, rows, cols)`` like ``series.volume``, real-world units, finite.
        out_dir: the new folder; must not exist; its parent must exist and be writable.
        description: SeriesDescription, e.g. ``"denoised nad-monai 0.1.0 unrolled_pm"``.
        series_number_offset: added to the source SeriesNumber.

    Returns:
        ``out_dir``.

    Raises:
        ValueError: ``volume`` has the wrong shape or non-finite values.
        InputError: ``out_dir`` exists, is or contains the input, is inside the input folder, its
            parent is missing or not writable, or writing failed.
    """
    volume = np.asarray(volume)
    if volume.shape != series.volume.shape:
        raise ValueError(f"volume has shape {volume.shape}, expected {series.volume.shape} like series.volume")
    if not np.isfinite(volume).all():
        raise ValueError("volume has NaN or Inf values")
    out_dir = Path(out_dir).absolute()
    _check_out_dir(series, out_dir)
    src = series.datasets[0]
    number = int(src.get("SeriesNumber") or 0) + int(series_number_offset)
    common = {
        "series_uid": generate_uid(),
        "description": description,
        "series_number": max(-(2**31), min(2**31 - 1, number)),
        "now": datetime.now(),
    }
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    except OSError as err:
        raise InputError(out_dir.parent, f"cannot create a folder here ({err.strerror or err})") from None
    try:
        if series.multiframe:
            instances = [_multiframe_instance(series, volume, common)]
        else:
            instances = (_classic_instance(series, k, volume[k], common) for k in range(len(series.datasets)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about odd but valid source values
            for ds in instances:
                pydicom.dcmwrite(tmp / f"{ds.SOPInstanceUID}.dcm", ds, enforce_file_format=True)
        os.rename(tmp, out_dir)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise InputError(out_dir, f"cannot write the series ({err.strerror or err})") from None
        raise
    return out_dir


__all__ = ["SERIES_NUMBER_OFFSET", "DicomSeries", "load_series", "save_derived_series"]
