"""MONAI Deploy operators of the denoising app: checked DICOM loading and selection, the denoiser, the series writer.

The SDK's own operators do the DICOM work they are built for; these add what a denoiser needs:

* ``CheckedDICOMDataLoaderOperator``: the SDK loader, but a corrupt DICOM file (readable header,
  undecodable pixels, or a truncated file) or a folder without DICOM images stops the app with an
  ``InputError`` naming the file, instead of a traceback deep in a later operator;
* ``RequiredSeriesSelectorOperator``: the SDK selector, but no matching series is an error that
  lists what the input holds;
* ``DenoiseOperator``: the bundle's network through ``nad_monai.inference.Denoiser`` (float out, the
  input's units restored; the SDK's ``MonaiBundleInferenceOperator`` casts to uint8 for label maps);
* ``DICOMSeriesWriterOperator``: ``nad_monai.dicom.save_derived_series``, the writer ``nad-denoise``
  uses, so both give the same series.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.deploy.core import Fragment, Image, Operator, OperatorSpec
from monai.deploy.operators import DICOMDataLoaderOperator, DICOMSeriesSelectorOperator
from pydicom.errors import InvalidDicomError

from ..dicom import DicomSeries, save_derived_series
from ..errors import InputError
from ..inference import Denoiser, anisotropy_note

logger = logging.getLogger(__name__)


def _is_dicom_file(path: str) -> bool:
    """True when ``path`` carries the DICOM Part 10 marker (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


class CheckedDICOMDataLoaderOperator(DICOMDataLoaderOperator):
    """``DICOMDataLoaderOperator`` that fails clearly on corrupt DICOM files and on folders without images.

    Files that are not DICOM at all (no ``DICM`` marker and unreadable by pydicom, e.g. a README)
    are skipped with a warning, as the SDK does. Every image's pixel data is decoded here, so a
    broken file is named now; pydicom caches the decoded array for the volume operator.

    Output ``dicom_study_list``: list of the SDK's ``DICOMStudy``.
    """

    def load_data_to_studies(self, input_path: Path):
        input_path = Path(input_path)
        if not input_path.is_dir():
            raise InputError(input_path, "input is not a folder of DICOM files")
        files: list[str] = []
        self._list_files(input_path, files)
        for file in files:  # the SDK reads these too; a read error here names the file
            try:
                pydicom.dcmread(file, stop_before_pixels=True)
            except InvalidDicomError:
                if _is_dicom_file(file):
                    raise InputError(file, "corrupt DICOM file (cannot parse its header)") from None
            except Exception as err:
                raise InputError(file, f"corrupt DICOM file ({type(err).__name__}: {err})") from None
        studies = self._load_data(files)
        images = 0
        for study in studies:
            for series in study.get_all_series():
                for instance in series.get_sop_instances():
                    native = instance.get_native_sop_instance()
                    if "PixelData" not in native:
                        continue
                    try:
                        native.pixel_array
                    except Exception as err:
                        raise InputError(native.filename, f"cannot decode pixel data ({type(err).__name__}: {err})") from None
                    images += 1
        if not images:
            raise InputError(input_path, "no DICOM images found (folder is empty or holds no DICOM image files)")
        return studies


class RequiredSeriesSelectorOperator(DICOMSeriesSelectorOperator):
    """``DICOMSeriesSelectorOperator`` for which an empty selection is an error naming the input folder.

    Args:
        input_folder: named in the error message.
        rules: the SDK's selection rules (JSON string); see ``nad_monai.deploy.app.DEFAULT_RULES``.

    A selected series stored as multi-frame instances is refused too: the SDK's volume operator
    stacks one frame per file.
    """

    def __init__(self, fragment: Fragment, *args, input_folder: Path, rules: str, **kwargs):
        self.input_folder = Path(input_folder)
        super().__init__(fragment, *args, rules=rules, **kwargs)

    def filter(self, selection_rules, dicom_study_list, *args, **kwargs):
        selected = super().filter(selection_rules, dicom_study_list, *args, **kwargs)
        if not selected or not selected[0].selected_series:
            found = sorted(
                f"{series.Modality or '?'} series {series.SeriesNumber} '{series.SeriesDescription or ''}'"
                for study in dicom_study_list
                for series in study.get_all_series()
            )
            raise InputError(self.input_folder, f"no series matches the selection rules; found: {', '.join(found) or 'none'}")
        series = selected[0].selected_series[0].series
        if any(int(i.get_native_sop_instance().get("NumberOfFrames", 1) or 1) > 1 for i in series.get_sop_instances()):
            raise InputError(self.input_folder, "the selected series is multi-frame; the Deploy app reads one-frame-per-file series (use nad-denoise)")
        return selected


class DenoiseOperator(Operator):
    """Denoise the selected volume with the bundle's network, slice by slice across its image planes.

    Input ``image``: the SDK ``Image`` of ``DICOMSeriesToVolumeOperator``, array ``(slices, rows,
    cols)`` in real-world units (modality rescale applied). Output ``image``: an ``Image`` of
    float32 values of the same shape and units, with the input's metadata.

    Args:
        network: the network with its weights loaded.
        input_folder: named in the error message when the network cannot take the volume (a 2.5D
            network and a single image plane).
        device: where it runs (``None``: a GPU when present, else the CPU).
        batch_size: image planes per network call.
        all_planes: denoise across each of the volume's three axes and average the three results
            (with a warning when the series' voxels are more than twice as long along one axis).
    """

    def __init__(
        self,
        fragment: Fragment,
        *args,
        network: torch.nn.Module,
        input_folder: Path,
        device: str | None = None,
        batch_size: int = 2,
        all_planes: bool = False,
        **kwargs,
    ):
        self.denoiser = Denoiser(network, device=device, batch_size=batch_size, axis=0, all_planes=all_planes)
        self.input_folder = Path(input_folder)
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("image")
        spec.output("image")

    def compute(self, op_input, op_output, context):
        image = op_input.receive("image")
        volume = np.asarray(image.asnumpy(), dtype=np.float32)
        if volume.ndim != 3:
            raise ValueError(f"expected a volume (slices, rows, cols), got shape {volume.shape}")
        batch = torch.from_numpy(volume)[None]
        if reason := self.denoiser.refusal(batch, axis=0):
            raise InputError(self.input_folder, reason)
        planes = " in all three planes" if self.denoiser.all_planes else ""
        logger.info(f"denoising {volume.shape[0]} slices of {volume.shape[1]}x{volume.shape[2]}{planes} on {self.denoiser.device}")
        meta = dict(image.metadata())
        sizes = [meta.get(f"{axis}_pixel_spacing") for axis in ("depth", "row", "col")]  # mm, in the volume's axis order
        if self.denoiser.all_planes and all(sizes) and (note := anisotropy_note([float(v) for v in sizes])):
            logger.warning(f"{self.input_folder}: {note}")
        denoised = self.denoiser(batch, axis=0)[0].numpy()
        op_output.emit(Image(denoised, meta), "image")


class DICOMSeriesWriterOperator(Operator):
    """Write the denoised volume as a new DICOM series of the source study, one file per slice.

    Inputs ``image`` (denoised ``Image``, the volume operator's slice order) and
    ``study_selected_series_list`` (the selection the volume was made from). The series goes to
    ``output_folder/<source SeriesInstanceUID>_denoised/`` through a temporary folder renamed at
    the end, so a failed run leaves no partial series; an existing series folder is never replaced.

    Args:
        output_folder: the app's output folder (created if missing).
        description: SeriesDescription of the new series (which model made it).
    """

    def __init__(self, fragment: Fragment, *args, output_folder: Path, description: str, **kwargs):
        self.output_folder = Path(output_folder)
        self.series_description = description
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("image")
        spec.input("study_selected_series_list")

    def compute(self, op_input, op_output, context):
        image = op_input.receive("image")
        selection = op_input.receive("study_selected_series_list")
        series = selection[0].selected_series[0].series
        datasets = [instance.get_native_sop_instance() for instance in series.get_sop_instances()]
        volume = np.asarray(image.asnumpy())
        if volume.shape != (len(datasets), int(datasets[0].Rows), int(datasets[0].Columns)):
            raise ValueError(f"volume shape {volume.shape} does not match the series' {len(datasets)} slices")
        paths = [Path(ds.filename) for ds in datasets]
        source = DicomSeries(
            volume=volume,
            datasets=datasets,
            paths=paths,
            frames=(0,) * len(datasets),
            multiframe=False,
            source=Path(os.path.commonpath([p.parent for p in paths])),
        )
        self.output_folder.mkdir(parents=True, exist_ok=True)
        out = save_derived_series(source, volume, self.output_folder / f"{series.SeriesInstanceUID}_denoised", self.series_description)
        logger.info(f"wrote {len(datasets)} instances to {out}")


__all__ = [
    "CheckedDICOMDataLoaderOperator",
    "DICOMSeriesWriterOperator",
    "DenoiseOperator",
    "RequiredSeriesSelectorOperator",
]
