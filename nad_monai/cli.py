"""``nad-denoise``: denoise NIfTI volumes, DICOM series and PNG/JPEG images with the bundle's model.

    nad-denoise scan.nii.gz dicom_series/ slice.png -o denoised/

The network is the bundle's ``configs/inference.json`` ``network_def`` with ``models/model.pt``
(or ``--weights``); ``--config`` takes other bundle configs, merged in order, e.g. the 2.5D model
that also reads each slice's neighbours:
``--config bundle/configs/inference.json bundle/configs/inference_2.5d.json``.

Each input gets one line; a bad input is reported and skipped, the rest are processed. Exit codes:
0 every input denoised; 1 at least one input failed (the others were written); 2 nothing was run
(bad command line, weights or device).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

import nad_monai

from .bundle import bundle_root
from .errors import InputError
from .inference import Denoiser, Result, bundle_network, bundle_weights, default_device, denoise_files, load_weights, weights_id

EXIT_OK, EXIT_SOME_FAILED, EXIT_NOT_RUN = 0, 1, 2


def _config_file(name: str) -> str:
    """A ``--config`` value: a bundle config file by its name (inputs given after ``--config`` end up here)."""
    if not name.lower().endswith((".json", ".yaml", ".yml")):
        raise argparse.ArgumentTypeError(f"{name} is not a bundle config (.json, .yaml); give the inputs before --config")
    return name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    root = Path(bundle_root([]))
    parser = argparse.ArgumentParser(
        prog="nad-denoise",
        description="Denoise MR images with learned anisotropic diffusion (nad-monai). "
        "Inputs: NIfTI (.nii, .nii.gz), DICOM series folders or files, PNG, JPEG. "
        "Outputs: the same format, named <input>_denoised, in the output folder.",
        epilog="Exit codes: 0 all inputs denoised; 1 some inputs failed (the rest were written); 2 nothing was run.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or DICOM series folders")
    parser.add_argument("-o", "--output", required=True, help="output folder (or output file name for a single input)")
    parser.add_argument("--axis", type=int, choices=(0, 1, 2), default=2, help="NIfTI volume axis to slice across (default 2); DICOM uses its image planes")
    parser.add_argument(
        "--all-planes",
        action="store_true",
        help="denoise a volume across each of its three axes (not only --axis) and average the three results (3x the time; near-isotropic voxels)",
    )
    parser.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=2, help="slices per network call (default 2, fastest on CPU)")
    parser.add_argument("--tile", type=int, nargs=2, metavar=("H", "W"), help="denoise in overlapping H x W tiles (large images)")
    parser.add_argument("--weights", help="state dict of the network (default: the configs' model_file, the bundle's models/model.pt)")
    parser.add_argument(
        "--config",
        nargs="+",
        type=_config_file,
        default=[str(root / "configs" / "inference.json")],
        help="bundle inference config(s) holding network_def, merged in order (2.5D: configs/inference.json configs/inference_2.5d.json)",
    )
    parser.add_argument("--series", help="SeriesInstanceUID to denoise from a DICOM folder holding several series")
    parser.add_argument("--no-amp", action="store_true", help="float32 on GPU instead of float16 autocast")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (never inputs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def _device(name: str) -> torch.device:
    if name == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(name, "not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(name, "CUDA device requested but no GPU is visible")
    return device


def build_denoiser(args: argparse.Namespace) -> Denoiser:
    """The configs' network with ``args.weights`` loaded (the configs' ``model_file`` when not given; it
    is recorded in ``args.weights``), wrapped for whole-image inference."""
    device = _device(args.device)
    args.weights = args.weights or bundle_weights(args.config)
    network = load_weights(bundle_network(args.config), args.weights, device)
    options = {"axis": args.axis, "batch_size": args.batch_size, "roi_size": args.tile, "progress": not args.quiet, "all_planes": args.all_planes}
    return Denoiser(network, device, amp=not args.no_amp, **options)


def _report(result: Result) -> None:
    if result.error:
        print(f"FAILED {result.error}", file=sys.stderr, flush=True)
        return
    if result.note:
        print(f"note   {result.input}: {result.note}", flush=True)
    print(f"ok     {result.input} -> {result.output} ({result.slices} slices, {result.seconds:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("monai").setLevel(logging.WARNING)
    try:
        denoiser = build_denoiser(args)
        description = f"denoised nad-monai {nad_monai.__version__} {weights_id(args.weights)}"
        start = time.perf_counter()
        results = denoise_files(args.inputs, args.output, denoiser, description, args.series, args.overwrite, _report)
    except InputError as err:
        print(f"nad-denoise: {err}", file=sys.stderr)
        return EXIT_NOT_RUN
    seconds = time.perf_counter() - start
    done = [r for r in results if not r.error]
    slices = sum(r.slices for r in done)
    failed = len(results) - len(done)
    print(
        f"denoised {len(done)} of {len(results)} inputs: {slices} slices in {seconds:.1f} s "
        f"({slices / max(seconds, 1e-9):.1f} slices/s) on {denoiser.device}" + (f"; {failed} failed" if failed else ""),
        flush=True,
    )
    return EXIT_SOME_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
