"""Benchmark: our 2.5D network given BM4D's estimate of the whole volume as its pilot (a hybrid row).

BM4D matches blocks across the whole volume; our rows see five slices of one plane. This gives the
network BM4D's blind estimate (``nad_monai.baselines.bm4d_denoise`` at its tuned noise scale, no known
noise level and no bias correction) as the last input channel, its pilot
(``UnrolledPeronaMalik(volume_pilot=True)``): the guidance, conduction and refinement nets see it and the
output blends it in per pixel. BM4D cannot run on a training crop, so the noise is drawn once per volume
and level (Rician, seeded by slice id and level, on references whose air is zero, as the zero-air rows)
and BM4D run on each noisy volume. ``prepare`` caches those triples; ``train`` trains the row on them with
the bundle's workflow (``compare_methods.train_learned``); ``score`` runs BM4D on the noisy test volume
(the benchmark's noise, seeded by slice id) and the row on that, on its axial slices and over its three
planes, and prints the whole-image and head PSNR and the Edge MSE of BM4D (bias-corrected, as its
benchmark row), of the row, and of rows without a pilot (``--mean-with``) alone and averaged with BM4D:

    python benchmarks/volume_pilot.py prepare            # BM4D on every training and validation volume, about 15 min a level
    python benchmarks/volume_pilot.py train
    python benchmarks/volume_pilot.py score --row context-slices-2-zero-air-rician-correction-bm4d-pilot
        --mean-with context-slices-2-zero-air-rician-correction-k16 --out benchmarks/results/volume_pilot_rician-0.10.json

(the score command is one line).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from benchmark_report import write_text_atomic
from compare_methods import EDGE_WEIGHTED_LOSS, LEARNED, RICIAN_CORRECTION_ROW, ROOT, VOLUMETRIC, all_planes, label, network_outputs, train_learned, trained_rows, tuned
from monai.data import CacheDataset

from nad_monai.baselines import bm4d_denoise, rician_bias_correction
from nad_monai.datasets import MIN_FOREGROUND, foreground_fraction, neighbour_indices, slice_items
from nad_monai.evaluation import noisy_pairs, score_images, volumes
from transforms import ZeroBackground

LEVELS = (0.10, 0.15, 0.05, 0.20)
"""Rician noise levels drawn once per training and validation volume (the bundle's training range, 0.05-0.2)."""
CACHE = "$os.path.join(os.path.dirname(@bundle_root), 'benchmarks', 'cache', 'volume_pilot')"
"""Where a training run finds ``prepare``'s files: ``benchmarks/cache/volume_pilot`` (``--cache``' default)."""
BOTH = ["image", "label"]
BM4D = next(iter(VOLUMETRIC))
KEY = "context-slices-2-zero-air-rician-correction-bm4d-pilot"
ROWS = {KEY: ("MSE + 0.1 gradient", {}), f"{KEY}-gradient-1": ("MSE + 1 gradient, ten times the gradient weight", EDGE_WEIGHTED_LOSS)}
"""The hybrid rows by key, each with its loss as its name gives it and its overrides of ``row``'s training: the row,
and the row with ten times the gradient weight of the loss (aimed at the Edge MSE, where BM4D keeps the lead)."""


def row(levels: int, change: tuple[str, dict] = ROWS[KEY]) -> dict:
    """The hybrid row: ``RICIAN_CORRECTION_ROW`` (2.5D, references with zero air, Rician noise, learned bias
    correction, MSE + 0.1 gradient) with BM4D's estimate as a given pilot, blended in per pixel. It trains on
    ``prepare``'s noisy volumes at ``levels`` levels for ``60 / levels`` epochs: the same crops and iterations
    as the 60 epochs of the row it extends, each slice seen at ``levels`` fixed noise draws instead of fresh ones;
    ``change`` (a value of ``ROWS``) names its loss and overrides its training."""
    dataset = {"_target_": "volume_pilot.pilot_dataset", "cache": CACHE, "context": 2}
    training = {k: v for k, v in RICIAN_CORRECTION_ROW["training"].items() if not k.startswith(("train#", "validate#"))}
    return {
        "name": (
            f"ours, 2.5D with two neighbouring slices on each side ({change[0]}), the air of the training references set to zero, "
            f"learned Rician bias correction, BM4D's estimate of the volume as its pilot, trained on {levels} Rician noise draws per slice"
        ),
        "groups": ("tried",),
        "network_def": {**RICIAN_CORRECTION_ROW["network_def"], "volume_pilot": True, "pilot_blend": True},
        "training": {
            **training,
            "epochs": RICIAN_CORRECTION_ROW["training"]["epochs"] // levels,
            "train#deterministic_transforms": [{"_target_": "SpatialPadd", "keys": BOTH, "spatial_size": "@patch_size"}],
            "train#random_transforms": [
                {"_target_": "RandSpatialCropSamplesd", "keys": BOTH, "roi_size": "@patch_size", "num_samples": "@crops_per_slice", "random_size": False},
                {"_target_": "RandFlipd", "keys": BOTH, "prob": 0.5, "spatial_axis": 0},
                {"_target_": "RandRotate90d", "keys": BOTH, "prob": 0.5},
            ],
            "train#dataset": {**dataset, "split": "training", "transform": "@train#preprocessing"},
            "validate#preprocessing#transforms": [],
            "validate#dataset": {**dataset, "split": "validation", "transform": "@validate#preprocessing"},
            **change[1],
        },
    }


def prepare(datalist: str, split: str, levels: Sequence[float], cache: Path, results: Path) -> list[Path]:
    """For every volume of ``split`` and level: the axial slices ``(Z, 1, H, W)`` of the reference with its
    air set to zero, of that reference with Rician noise (seeded by slice id and level), and of BM4D's blind
    estimate of the noisy volume; saved as ``cache/<split>/<volume>_rician-<s>.pt`` unless there.
    Returns the files, in order."""
    items = slice_items("nifti", datalist, split, min_foreground=0)
    zero = ZeroBackground()
    files = []
    for s in levels:
        scale = tuned(results, label("rician", s))[BM4D]["best"]["sigma_scale"]
        tagged = [{**i, "image": zero(i["image"]), "id": i["id"].replace("#", f"@rician-{s:.2f}#", 1)} for i in items]
        for volume, (noisy, clean, ids) in volumes(noisy_pairs(tagged, "rician", s)).items():
            path = cache / split / f"{Path(volume.split('@')[0]).name.split('.')[0]}_rician-{s:.2f}.pt"
            files.append(path)
            if path.is_file():
                continue
            print(f"  BM4D of {path.stem} ({tuple(noisy.shape)})", flush=True)
            pilot = bm4d_denoise(noisy, scale)
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_suffix(".part")
            torch.save({"noisy": noisy, "clean": clean, "pilot": pilot, "ids": ids, "sigma": s}, part)
            part.replace(path)
    return files


def pilot_items(files: Sequence[str | Path], context: int, min_foreground: float = MIN_FOREGROUND) -> list[dict]:
    """Training items from ``prepare``'s files: per slice of a volume whose reference is mostly head,
    ``{"image": (1 + 2 context + 1, H, W)`` the noisy slice between its ``context`` neighbours and BM4D's
    estimate of it last, ``"label": (1, H, W)`` the reference, ``"id"}``."""
    items = []
    for f in files:
        d = torch.load(f, weights_only=True)
        noisy, clean, pilot = d["noisy"][:, 0], d["clean"], d["pilot"]
        for k, slice_id in enumerate(d["ids"]):
            if foreground_fraction(clean[k]) >= min_foreground:
                stack = noisy[neighbour_indices(k, len(noisy), context)]
                items.append({"image": torch.cat([stack, pilot[k]]), "label": clean[k], "id": slice_id})
    return items


def pilot_dataset(cache: str, split: str, context: int, transform=None) -> CacheDataset:
    """``pilot_items`` of every file ``prepare`` wrote for ``split`` under ``cache``, as a MONAI dataset."""
    files = sorted((Path(cache) / split).glob("*.pt"))
    if not files:
        raise FileNotFoundError(f"{Path(cache) / split}: no BM4D pilot volumes; run benchmarks/volume_pilot.py prepare first")
    return CacheDataset(pilot_items(files, context), transform=transform, progress=False)


def prepared_levels(parser: argparse.ArgumentParser, cache: Path, datalist: str) -> list[str]:
    """The levels ``prepare`` wrote for every training and validation volume under ``cache``; ``parser.error`` if
    there are none or a level lacks a volume of either split (a training run takes every file there)."""
    found: dict[str, set[str]] = {}
    for path in cache.glob("*/*_rician-*.pt"):
        found.setdefault(path.stem.rpartition("_rician-")[2], set()).add(f"{path.parent.name}/{path.stem.rpartition('_rician-')[0]}")
    listed = json.loads(Path(datalist).read_text())
    wanted = {f"{split}/{Path(i['image']).name.split('.')[0]}" for split in ("training", "validation") for i in listed[split]}
    if not found:
        parser.error(f"{cache}: no BM4D pilot volumes; run benchmarks/volume_pilot.py prepare first")
    for level, have in sorted(found.items()):
        if have != wanted:
            parser.error(f"{cache}: level {level} lacks {', '.join(sorted(wanted - have))}; finish prepare or delete that level's files")
    return sorted(found)


def score(nets: dict[str, torch.nn.Module], hybrid: str, sigma: float, datalist: str, test_every: int, weights: Sequence[float], results: Path) -> dict:
    """Mean whole-image PSNR, head PSNR and Edge MSE on the test slices at Rician ``sigma`` (the benchmark's noise
    and slices) of bias-corrected BM4D; of the ``hybrid`` row of ``nets`` given BM4D's estimate, on the axial
    slices and over the three planes (``all_planes``, the estimate a second channel); and of each other row of
    ``nets`` (no pilot) alike, with the plain mean of its output and BM4D's at each of ``weights``."""
    pairs = noisy_pairs(slice_items("nifti", datalist, "test")[::test_every], "rician", sigma)
    whole = volumes(noisy_pairs(slice_items("nifti", datalist, "test", min_foreground=0), "rician", sigma))
    scale = tuned(results, label("rician", sigma))[BM4D]["best"]["sigma_scale"]
    runs = {"bm4d": None, "one plane": all_planes(nets[hybrid], (2,)), "all planes": all_planes(nets[hybrid])}
    given: dict[str, dict[str, torch.Tensor]] = {name: {} for name in runs}
    for noisy, _, ids in whole.values():
        pilot = bm4d_denoise(noisy, scale)
        for name, run in runs.items():
            y = pilot if run is None else run(torch.cat([noisy, pilot], dim=1))
            given[name].update({i: y[k : k + 1] for k, i in enumerate(ids)})
    found = {"BM4D (bias-corrected)": [(rician_bias_correction(given["bm4d"][i], sigma), clean, i) for _, clean, i in pairs]}
    found.update({f"{hybrid}, {name}": [(given[name][i], clean, i) for _, clean, i in pairs] for name in ("one plane", "all planes")})
    for name, net in nets.items():
        for planes in (False, True) if name != hybrid else ():
            alone = network_outputs(net, pairs, whole, planes)
            tag = f"{name}, {'all planes' if planes else 'one plane'}"
            found[tag] = alone
            for w in weights:
                found[f"{w:g} BM4D + {1 - w:g} {tag}"] = [(w * b + (1 - w) * y, clean, i) for (b, _, _), (y, clean, i) in zip(found["BM4D (bias-corrected)"], alone)]
    return {"setting": label("rician", sigma), "test_slices": len(pairs), "scores": {name: means(outputs) for name, outputs in found.items()}}


def means(outputs: list) -> dict[str, float]:
    """Mean whole-image PSNR, head PSNR and Edge MSE (``score_images``) of ``(denoised, clean, id)`` pairs."""
    values = score_images(outputs, lambda y: y)
    return {metric: float(values[metric].mean()) for metric in ("psnr", "head_psnr", "edge_mse")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("prepare", "train", "score"))
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "cache" / "volume_pilot", help="folder of the noisy volumes and their BM4D estimates")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="the benchmark's output folder (tuning.json, training/)")
    parser.add_argument("--datalist", default=str(ROOT / "data" / "datalist.json"))
    parser.add_argument("--levels", type=float, nargs="+", default=list(LEVELS), help="Rician levels drawn per volume (prepare)")
    parser.add_argument("--row", help=f"the hybrid row to train (default {KEY}) or score")
    parser.add_argument("--setting", default="rician:0.10", help="noise setting of the test, rician:S (score)")
    parser.add_argument("--test-every", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mean-with", nargs="*", default=[], help="trained rows without a pilot whose output is also averaged with BM4D's (score)")
    parser.add_argument("--weights", type=float, nargs="*", default=[0.5, 0.7], help="BM4D's weights in those means (score)")
    parser.add_argument("--out", type=Path, help="JSON file for the scores (score)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.command == "prepare":
        for s in args.levels:  # level by level: the first levels are usable while the rest run
            for split in ("validation", "training"):
                prepare(args.datalist, split, [s], args.cache, args.results)
        return
    if args.command == "train":
        key = args.row or KEY
        if key not in ROWS:
            parser.error(f"--row {key}: train knows {', '.join(ROWS)}")
        LEARNED[key] = row(len(prepared_levels(parser, args.cache, args.datalist)), ROWS[key])
        print(train_learned(key, args.results, {}))
        return
    if not args.row:
        parser.error("score needs --row")
    model, _, level = args.setting.partition(":")
    if model != "rician":
        parser.error(f"--setting {args.setting}: only rician:S")
    nets = trained_rows(parser, args.results, [args.row, *args.mean_with])
    report = score(nets, args.row, float(level), args.datalist, args.test_every, args.weights, args.results)
    for name, r in report["scores"].items():
        print(f"{name}: {r['psnr']:.2f} dB, head {r['head_psnr']:.2f} dB, Edge MSE {r['edge_mse']:.4f}")
    if args.out:
        write_text_atomic(args.out, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
