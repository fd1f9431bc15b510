"""Benchmark: trained rows against BM3D and BM4D on volumes other than the test volume.

The test volume (Colin27, an average of 27 T1 scans of one person) is unlike most training volumes (four
EPI scans and a T1 template averaged over 152 people). This scores the same rows on another split of the
datalist with the benchmark's protocol: ``validation`` (two b0 scans of other people, EPI contrast like most
training volumes) or ``benchmark_training`` (ITK's T1 scan of one person, 2 x 2 x 3 mm, which only the rows
"with a T1 scan of one person added" train on). The slices that are mostly head (``slice_items``' default),
noise seeded by slice id, 2.5D rows given their neighbouring slices from the whole noisy volume, BM3D per
slice and BM4D on each whole noisy volume at the parameters the benchmark tuned on the validation volumes
(``tuning.json``), and on Rician noise every classical output bias-corrected. Rows run on one plane, or with
``--all-planes`` over the three planes of each volume, averaged (for ITK's T1, whose slices are 3 mm apart; the
validation volumes' are 5 and 53 mm apart). Prints a Markdown table per volume and over all the split's slices (PSNR,
SSIM and Edge MSE, whole image and head):

    python benchmarks/other_volumes.py --split validation --rows context-slices-2-zero-air-rician-correction-k16 --out bench/validation.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from benchmark_report import write_text_atomic
from compare_methods import ROOT, VOLUMETRIC, classical_denoiser, label, network_outputs, settings, trained_rows, tuned, volume_pairs

from nad_monai.datasets import slice_items
from nad_monai.evaluation import noisy_pairs, score_images, volumes

BM3D = "BM3D (bm3d package)"
BM4D = next(iter(VOLUMETRIC))
METRICS = ("psnr", "ssim", "edge_mse", "head_psnr", "head_edge_mse")
"""The columns: the benchmark's metrics (``score_images``), whole image and inside the head mask."""


def scores_by_volume(outputs: list) -> dict[str, dict[str, float]]:
    """Mean of each of ``METRICS`` over the ``(denoised, clean, id)`` pairs of each volume (the id's file part)
    and over all of them (``"all"``)."""
    groups: dict[str, list] = {"all": list(outputs)}
    for pair in outputs:
        groups.setdefault(pair[2].split("#")[0], []).append(pair)
    result = {}
    for volume, pairs in groups.items():
        values = score_images(pairs, lambda y: y)
        result[volume] = {m: float(np.mean(values[m])) for m in METRICS} | {"slices": len(pairs)}
    return result


def markdown(volume: str, rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """A Markdown table of every row's scores on ``volume`` (a key of ``scores_by_volume``)."""
    slices = next(iter(rows.values()))[volume]["slices"]
    lines = [f"{volume} ({slices} slices)", "", "| method | PSNR (dB) | SSIM | Edge MSE | head PSNR (dB) | head Edge MSE |", "|---|---:|---:|---:|---:|---:|"]
    for name, by_volume in rows.items():
        s = by_volume[volume]
        lines.append(f"| {name} | {s['psnr']:.2f} | {s['ssim']:.3f} | {s['edge_mse']:.4f} | {s['head_psnr']:.2f} | {s['head_edge_mse']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", default=[], help="trained rows in RESULTS/training/")
    parser.add_argument("--split", default="validation", choices=("validation", "benchmark_training"), help="the datalist's split to score (default: validation)")
    parser.add_argument("--all-planes", action="store_true", help="run the rows over each volume's three planes and average (nad-denoise --all-planes)")
    parser.add_argument("--setting", default="rician:0.10", help="noise setting, MODEL:S (default: rician:0.10)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="the benchmark's output folder")
    parser.add_argument("--datalist", default=str(ROOT / "data" / "datalist.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="JSON file of every row's scores (written via a temporary file)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    nets = trained_rows(parser, args.results, args.rows)
    (model, sigma), = settings([args.setting], False)
    setting = label(model, sigma)
    tuning = tuned(args.results, setting)
    correct = sigma if model == "rician" else None
    pairs = noisy_pairs(slice_items("nifti", args.datalist, args.split), model, sigma)
    whole = volumes(noisy_pairs(slice_items("nifti", args.datalist, args.split, min_foreground=0), model, sigma))
    outputs = {"noisy input": pairs}
    bm3d = classical_denoiser("bm3d", tuning[BM3D]["best"], correct)
    outputs[BM3D] = [(bm3d(x), clean, key) for x, clean, key in pairs]
    outputs[BM4D] = volume_pairs(pairs, whole, classical_denoiser(VOLUMETRIC[BM4D][0], tuning[BM4D]["best"], correct))
    for row, net in nets.items():
        outputs[row] = network_outputs(net, pairs, whole, args.all_planes)
    report = {name: scores_by_volume(out) for name, out in outputs.items()}
    for volume in report["noisy input"] if len(report["noisy input"]) > 2 else ["all"]:  # one volume: "all" is it
        print(markdown(volume, report) + "\n", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"setting": setting, "split": args.split, "all_planes": args.all_planes, "tuned": {BM3D: tuning[BM3D]["best"], BM4D: tuning[BM4D]["best"]}, "scores": report}
        write_text_atomic(args.out, json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
