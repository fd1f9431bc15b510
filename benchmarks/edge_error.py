"""Benchmark: where each row's Edge MSE comes from, by how strong the reference's edges are.

Edge MSE (``nad_monai.metrics``) is the mean of ``(|Sobel(clean)| - |Sobel(denoised)|)**2`` over every pixel. This
splits that mean into bands of ``|Sobel(clean)|`` (a unit step gives 4): flat regions, faint edges, strong edges.
For each band it gives the share of the pixels, the band's contribution to the Edge MSE (the contributions sum
to it) and the mean of ``|Sobel(denoised)| - |Sobel(clean)|`` there: positive where noise is left (flat regions
gain edges), negative where edges are blurred. The rows are trained rows of the benchmark
(``RESULTS/training/<row>``), run on the test slices or over the three planes of the test volume
(``--all-planes``), and BM4D at the parameters tuned by the benchmark (``tuning.json``), bias-corrected on Rician
noise as there. Same test slices and noise as the benchmark (every ``--test-every``-th slice, noise seeded by
slice id); prints a Markdown table per row:

    python benchmarks/edge_error.py --rows context-slices-2-zero-air-rician-correction-k16 --all-planes --bm4d --out bench/edge_error.json
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from benchmark_report import write_text_atomic
from compare_methods import ROOT, VOLUMETRIC, classical_denoiser, label, network_outputs, settings, trained_rows, tuned, volume_pairs

from nad_monai.datasets import slice_items
from nad_monai.evaluation import noisy_pairs, volumes
from nad_monai.metrics import sobel_magnitude

BANDS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, math.inf)
"""Band edges of ``|Sobel(clean)|``: flat (below 0.05), faint edges, up to strong edges (1 and above)."""

BM4D = next(iter(VOLUMETRIC))


def edge_error_by_band(denoised: torch.Tensor, clean: torch.Tensor, bands: Sequence[float] = BANDS) -> list[dict]:
    """Edge MSE of ``denoised`` against ``clean`` (both ``(N, 1, H, W)`` in [0, 1], images of one size) split by
    band ``[low, high)`` of ``|Sobel(clean)|``: per band ``pixels`` (its share of all pixels), ``edge_mse`` (its
    contribution: the sum over bands is the mean Edge MSE of the images) and ``strength_error``, the mean of
    ``|Sobel(denoised)| - |Sobel(clean)|`` over its pixels (NaN for an empty band)."""
    reference = sobel_magnitude(clean)
    error = sobel_magnitude(denoised) - reference
    rows = []
    for low, high in zip(bands[:-1], bands[1:]):
        band = (reference >= low) & (reference < high)
        count = int(band.sum())
        rows.append(
            {
                "low": low,
                "high": high,
                "pixels": count / band.numel(),
                "edge_mse": float((error[band] ** 2).sum()) / band.numel(),
                "strength_error": float(error[band].mean()) if count else math.nan,
            }
        )
    return rows


def finite_bands(rows: list[dict]) -> list[dict]:
    """``edge_error_by_band``'s ``rows`` for JSON, which has no infinity or NaN: those values as ``None``."""
    return [{k: v if math.isfinite(v) else None for k, v in r.items()} for r in rows]


def markdown(name: str, rows: list[dict]) -> str:
    """A Markdown table of ``edge_error_by_band``'s ``rows`` under the heading ``name``."""
    lines = [f"{name}: Edge MSE {sum(r['edge_mse'] for r in rows):.4f}", "", "| \\|Sobel(clean)\\| | pixels | Edge MSE | mean \\|Sobel\\| error |", "|---|---:|---:|---:|"]
    lines += [f"| {r['low']:g} - {r['high']:g} | {r['pixels']:.3f} | {r['edge_mse']:.5f} | {r['strength_error']:+.4f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", default=[], help="trained rows in RESULTS/training/")
    parser.add_argument("--bm4d", action="store_true", help="also BM4D on the whole noisy test volume, at its tuned parameters")
    parser.add_argument("--all-planes", action="store_true", help="run the rows over the test volume's three planes and average (nad-denoise --all-planes)")
    parser.add_argument("--setting", default="rician:0.10", help="noise setting, MODEL:S (default: rician:0.10)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="the benchmark's output folder")
    parser.add_argument("--datalist", default=str(ROOT / "data" / "datalist.json"))
    parser.add_argument("--test-every", type=int, default=2, help="score every n-th test slice (the committed run's protocol: 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="JSON file for the bands of every row (written via a temporary file)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.rows and not args.bm4d:
        parser.error("nothing to measure: give --rows, --bm4d or both")
    nets = trained_rows(parser, args.results, args.rows)
    (model, sigma), = settings([args.setting], False)
    setting = label(model, sigma)
    pairs = noisy_pairs(slice_items("nifti", args.datalist, "test")[:: args.test_every], model, sigma)
    whole = volumes(noisy_pairs(slice_items("nifti", args.datalist, "test", min_foreground=0), model, sigma))
    clean = torch.cat([c for _, c, _ in pairs])
    outputs = {}
    for row, net in nets.items():
        outputs[row] = network_outputs(net, pairs, whole, args.all_planes)
    if args.bm4d:
        best = tuned(args.results, setting)[BM4D]["best"]
        method = VOLUMETRIC[BM4D][0]
        outputs[BM4D] = volume_pairs(pairs, whole, classical_denoiser(method, best, sigma if model == "rician" else None))
    report = {}
    for name, denoised in outputs.items():
        report[name] = edge_error_by_band(torch.cat([y for y, _, _ in denoised]).clamp(0, 1), clean)
        print(markdown(f"{setting}, {name}{' (all planes)' if args.all_planes and name != BM4D else ''}", report[name]) + "\n", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"setting": setting, "test_slices": len(pairs), "all_planes": args.all_planes, "bands": {name: finite_bands(rows) for name, rows in report.items()}}
        write_text_atomic(args.out, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
