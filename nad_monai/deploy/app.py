"""The MONAI Deploy application: a DICOM folder in, the selected series denoised as a new DICOM series out.

    python -m nad_monai.deploy -i dicom_in -o dicom_out [-m model.pt | bundle_dir] [--rules rules.json] [--all-planes]

Pipeline (MONAI Deploy App SDK operators, on Holoscan)::

    CheckedDICOMDataLoaderOperator -> RequiredSeriesSelectorOperator (MR by default)
        -> DICOMSeriesToVolumeOperator -> DenoiseOperator -> DICOMSeriesWriterOperator

``-i``, ``-o``, ``-m``, ``-w`` and ``-l`` are the SDK's options (also ``HOLOSCAN_INPUT_PATH``,
``HOLOSCAN_OUTPUT_PATH``, ``HOLOSCAN_MODEL_PATH``). ``-m`` takes a weights file, a bundle folder
(``configs/inference.json`` and ``models/model.pt``) or a model variant's folder (``-m
bundle/models/2.5d``: the 2.5D model, each slice with its neighbours); without it the shipped
bundle is used.
``--rules`` takes a JSON file of the SDK's selection rules instead of ``DEFAULT_RULES``.
``--all-planes`` denoises the series across each of its three axes and averages the three results
(``nad-denoise --all-planes``; for series of near-isotropic voxels).

Exit status 0 when the series was written; 1 with a one-line ``error:`` message when the input
was bad (no DICOM, no matching series, corrupt file) or the output exists, and then no series
folder is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from holoscan.conditions import CountCondition
from monai.deploy.core import AppContext, Application, parse_args
from monai.deploy.operators import DICOMSeriesToVolumeOperator

import nad_monai

from ..bundle import bundle_root
from ..errors import InputError
from ..inference import ALL_PLANES_SUFFIX, bundle_network, load_weights, weights_id
from .operators import CheckedDICOMDataLoaderOperator, DenoiseOperator, DICOMSeriesWriterOperator, RequiredSeriesSelectorOperator

DEFAULT_RULES = json.dumps({"selections": [{"name": "MR series", "conditions": {"Modality": "(?i)MR"}}]})
"""Selection rules of the SDK's series selector: the first MR series of the study."""


def _variant_configs(folder: Path) -> list[Path] | None:
    """``[configs/inference.json, configs/inference_<name>.json]`` of the bundle when ``folder`` is its
    ``models/<name>`` and both configs exist, else None."""
    folder = folder.resolve()
    configs = folder.parent.parent / "configs"
    found = [configs / "inference.json", configs / f"inference_{folder.name}.json"]
    return found if folder.parent.name == "models" and all(f.is_file() for f in found) else None


def model_files(model_path: str | Path | None) -> tuple[list[Path], Path]:
    """``(inference configs, weights)`` for the SDK's ``-m``: a weights file, a bundle folder, a model
    variant's folder, or the shipped bundle.

    A folder is a bundle (``configs/inference.json``, ``models/model.pt``), a variant of one
    (``<bundle>/models/<name>/model.pt``, run with ``configs/inference.json`` and
    ``configs/inference_<name>.json`` merged: ``-m bundle/models/2.5d`` is the 2.5D model), or a
    folder holding ``model.pt`` (the shipped config is used then). A missing path (the SDK's default
    ``models``) means the shipped bundle.
    """
    shipped = Path(bundle_root([]))
    config, weights = shipped / "configs" / "inference.json", shipped / "models" / "model.pt"
    path = Path(model_path) if model_path else None
    if path is None or not path.exists():
        return [config], weights
    if path.is_file():
        return _variant_configs(path.parent) or [config], path
    if (path / "models" / "model.pt").is_file():
        own = path / "configs" / "inference.json"
        return [own if own.is_file() else config], path / "models" / "model.pt"
    if (path / "model.pt").is_file():
        return _variant_configs(path) or [config], path / "model.pt"
    raise InputError(path, "no model.pt here (expected a weights file, a bundle folder or a folder holding model.pt)")


class DenoiseApp(Application):
    """Denoise the selected DICOM series of the input folder into a new series in the output folder.

    Args:
        rules: selection rules (JSON string of the SDK's format); default ``DEFAULT_RULES``.
        device: where the network runs (``None``: a GPU when present, else the CPU).
        all_planes: denoise across each of the volume's three axes and average (``Denoiser``'s ``all_planes``).
    """

    name = "nad-monai denoiser"
    description = "Neural anisotropic diffusion denoising of a DICOM image series"
    version = nad_monai.__version__

    def __init__(self, *args, rules: str = DEFAULT_RULES, device: str | None = None, all_planes: bool = False, **kwargs):
        self.rules, self.device, self.all_planes = rules, device, all_planes
        super().__init__(*args, **kwargs)

    def compose(self):
        context: AppContext = Application.init_app_context(self.argv)
        input_folder, output_folder = Path(context.input_path), Path(context.output_path)
        configs, weights = model_files(context.model_path)
        network = load_weights(bundle_network(configs), weights)
        description = f"denoised nad-monai {nad_monai.__version__} {weights_id(weights)}" + (ALL_PLANES_SUFFIX if self.all_planes else "")

        loader = CheckedDICOMDataLoaderOperator(self, CountCondition(self, 1), input_folder=input_folder, name="dicom_loader")
        selector = RequiredSeriesSelectorOperator(self, input_folder=input_folder, rules=self.rules, name="series_selector")
        to_volume = DICOMSeriesToVolumeOperator(self, name="series_to_volume")
        options = {"device": self.device, "all_planes": self.all_planes}
        denoise = DenoiseOperator(self, network=network, input_folder=input_folder, **options, name="denoiser")
        writer = DICOMSeriesWriterOperator(self, output_folder=output_folder, description=description, name="series_writer")

        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, to_volume, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(to_volume, denoise, {("image", "image")})
        self.add_flow(denoise, writer, {("image", "image")})
        self.add_flow(selector, writer, {("study_selected_series_list", "study_selected_series_list")})


def main(argv: list[str] | None = None) -> int:
    """Run the app on ``argv`` (default ``sys.argv``); returns the exit status."""
    argv = list(sys.argv if argv is None else argv)
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--rules", type=Path, help="JSON file of series selection rules (default: the first MR series)")
    own.add_argument("--device", help="cpu, cuda or cuda:N (default: a GPU when present)")
    own.add_argument("--all-planes", action="store_true", help="denoise across each of the three axes and average the three results")
    options, rest = own.parse_known_args(argv[1:])
    if "-h" in rest or "--help" in rest:
        print(__doc__)
    output = Path(os.environ.get("HOLOSCAN_OUTPUT_PATH", "output"))
    output_given = argparse.ArgumentParser(add_help=False)
    output_given.add_argument("-o", "--output", type=Path)
    output = output_given.parse_known_args(rest)[0].output or output
    created = not output.exists()
    parse_args(argv[:1] + rest)  # the SDK's options: a bad one exits with status 2 and its usage, before any work
    try:
        rules = DEFAULT_RULES
        if options.rules is not None:
            try:
                rules = options.rules.read_text()
                json.loads(rules)["selections"]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise InputError(options.rules, f"not a JSON file of selection rules ({type(err).__name__}: {err})") from None
        # Holoscan takes argv[0] to be the interpreter and passes the rest on as the app's argv
        DenoiseApp([sys.executable, *argv[:1], *rest], rules=rules, device=options.device, all_planes=options.all_planes).run()
    except InputError as err:
        if created and output.is_dir() and not any(output.iterdir()):
            output.rmdir()  # the SDK made it while parsing -o; a failed run leaves nothing behind
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


__all__ = ["DEFAULT_RULES", "DenoiseApp", "main", "model_files"]
