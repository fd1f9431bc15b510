"""Benchmark: our 2.5D network given an estimate of the whole volume as its pilot (hybrid and second-pass rows).

BM4D matches blocks across the whole volume; our rows see five slices of one plane. This gives the
network an estimate of the whole volume as the last input channel, its pilot
(``UnrolledPeronaMalik(volume_pilot=True)``): the guidance, conduction and refinement nets see it and the
output blends it in per pixel. The estimate is a classical one of the whole volume, blind (its tuned noise
scale, no known noise level and no bias correction): BM4D's (``nad_monai.baselines.bm4d_denoise``) or our
overcomplete 3D DCT shrinkage (``nad_monai.baselines.dct3d_denoise``) or its block-matched Wiener refinement
(``nad_monai.baselines.block_matched_denoise``); or, for a second pass of ours alone, a
trained row of ours run over the volume's three planes (``compare_methods.all_planes``). Neither can run
on a training crop, so the noise is drawn once per volume and level (Rician, seeded by slice id and level,
on references whose air is zero, as the zero-air rows) and the estimate computed for each noisy volume.
``prepare`` caches those triples per pilot; ``train`` trains a row on them with the bundle's workflow
(``compare_methods.train_learned``); ``score`` runs BM4D and the row's pilot on the noisy test volume (the
benchmark's noise, seeded by slice id) and the row on that, on its axial slices and over its three planes,
and prints the whole-image and head PSNR and the Edge MSE of BM4D and a classical pilot (bias-corrected, as
their benchmark rows), of a row pilot, of the row, and of rows without a pilot (``--mean-with``) alone and averaged with BM4D:

    python benchmarks/volume_pilot.py prepare [--row KEY]     # the row's pilot on every training and validation volume
    python benchmarks/volume_pilot.py train [--row KEY]
    python benchmarks/volume_pilot.py score --row context-slices-2-zero-air-rician-correction-bm4d-pilot
        --mean-with context-slices-2-zero-air-rician-correction-k16 --out benchmarks/results/volume_pilot_rician-0.10.json

(the score command is one line; ``--row`` defaults to the BM4D row, whose ``prepare`` takes about 15 min a level).
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from benchmark_report import write_text_atomic
from compare_methods import EDGE_WEIGHTED_LOSS, LEARNED, RICIAN_CORRECTION_ROW, ROOT, VOLUMETRIC, all_planes, label, network_outputs, train_learned, trained_rows, tuned
from edge_error import edge_error_by_band, finite_bands
from monai.data import CacheDataset

from nad_monai.baselines import baseline, rician_bias_correction
from nad_monai.datasets import MIN_FOREGROUND, foreground_fraction, neighbour_indices, slice_items
from nad_monai.evaluation import noisy_pairs, score_images, volumes
from transforms import ZeroBackground

LEVELS = (0.10, 0.15, 0.05, 0.20)
"""Rician noise levels drawn once per training and validation volume (the bundle's training range, 0.05-0.2)."""
BOTH = ["image", "label"]
BM4D_PILOT = "bm4d"
DCT3D_PILOT = "dct3d"
BM_WIENER_PILOT = "bm_wiener3d"
CLASSICAL_PILOTS = {VOLUMETRIC[name][0]: name for name in VOLUMETRIC}
"""The classical pilots by ``nad_monai.baselines.VOLUME_METHODS`` key (``BM4D_PILOT``, ``DCT3D_PILOT``, ``BM_WIENER_PILOT``):
their benchmark row."""
SECOND_PASS_PILOT = "context-slices-2-zero-air-rician-correction"
"""The row of ours whose estimate over the three planes is the second pass's pilot: the K = 8 correction row
(102,048 parameters; with the K = 4 second pass, 169,981 in all, under a tenth of the 2.5D U-Net's)."""


class PilotRow(NamedTuple):
    """A row given a volume estimate as its pilot: its loss as its name gives it, its overrides of ``row``'s
    training and network, and its pilot, a key of ``CLASSICAL_PILOTS`` or a trained row of ours, as the name gives it."""

    loss: str
    training: dict
    pilot: str = BM4D_PILOT
    pilot_name: str = "BM4D's estimate of the volume"
    network: dict = {}
    training_volumes: str = ""
    """A datalist in ``benchmarks/datalists`` whose training volumes replace the usual ones (its own cache,
    ``cache_name``; validation stays ``--datalist``'s); "" for the usual ones."""


EDGE_MSE_LOSS = {"loss#edge_weight": 0.05}
"""The tables' Edge MSE added to the loss (``nad_monai.losses.edge_magnitude_mse``), aimed at the one goal BM4D
keeps: the gradient term, even at ten times its weight, is least for blurred edges. At 0.05 it weighs about as
much as the squared error: the trained K = 8 block-matched pilot row ends with validation PSNR 27.48 dB (squared
error 0.0018) and Edge MSE 0.0398."""
DCT3D_NAME = "our overcomplete 3D DCT shrinkage of the volume"
BM_WIENER_NAME = "our block-matched Wiener estimate of the volume (after the 3D DCT)"
"""How the rows name our own pilots (``PilotRow.pilot_name``), after what sets a run apart where something does (K, seed)."""
KEY = "context-slices-2-zero-air-rician-correction-bm4d-pilot"
ROWS = {
    KEY: PilotRow("MSE + 0.1 gradient", {}),
    f"{KEY}-gradient-1": PilotRow("MSE + 1 gradient, ten times the gradient weight", EDGE_WEIGHTED_LOSS),
    "context-slices-2-zero-air-rician-correction-k4-second-pass": PilotRow(
        "MSE + 0.1 gradient", {}, SECOND_PASS_PILOT, "K = 4, the K = 8 correction row's estimate over the three planes", {"steps": 4}
    ),
    "context-slices-2-zero-air-rician-correction-dct3d-pilot": PilotRow("MSE + 0.1 gradient", {}, DCT3D_PILOT, DCT3D_NAME),
    "context-slices-2-zero-air-rician-correction-dct3d-pilot-k12": PilotRow(
        "MSE + 0.1 gradient", {}, DCT3D_PILOT, f"K = 12, {DCT3D_NAME}", {"steps": 12}
    ),
    "context-slices-2-zero-air-rician-correction-dct3d-pilot-seed-1": PilotRow(
        "MSE + 0.1 gradient", {"seed": 1}, DCT3D_PILOT, f"seed 1, {DCT3D_NAME}"
    ),
    "context-slices-2-zero-air-rician-correction-bm-wiener-pilot": PilotRow(
        "MSE + 0.1 gradient", {}, BM_WIENER_PILOT, BM_WIENER_NAME
    ),
    "context-slices-2-zero-air-rician-correction-bm-wiener-pilot-seed-1": PilotRow(
        "MSE + 0.1 gradient", {"seed": 1}, BM_WIENER_PILOT, f"seed 1, {BM_WIENER_NAME}"
    ),
    "context-slices-2-zero-air-rician-correction-bm-wiener-pilot-edge-mse": PilotRow(
        "MSE + 0.1 gradient + 0.05 Edge MSE", EDGE_MSE_LOSS, BM_WIENER_PILOT, BM_WIENER_NAME
    ),
    "context-slices-2-zero-air-rician-correction-bm-wiener-pilot-edge-mse-seed-1": PilotRow(
        "MSE + 0.1 gradient + 0.05 Edge MSE", {**EDGE_MSE_LOSS, "seed": 1}, BM_WIENER_PILOT, f"seed 1, {BM_WIENER_NAME}"
    ),
    "context-slices-2-zero-air-rician-correction-bm-wiener-pilot-start": PilotRow(
        "MSE + 0.1 gradient", {}, BM_WIENER_PILOT, f"the PDE run from, not blended with, {BM_WIENER_NAME}", {"pilot_start": True, "pilot_blend": False}
    ),
    "context-slices-2-zero-air-rician-correction-bm-wiener-pilot-with-itk-t1": PilotRow(
        "MSE + 0.1 gradient",
        {"epochs": 12},
        BM_WIENER_PILOT,
        f"a T1 scan of one person added to the training volumes, {BM_WIENER_NAME}",
        training_volumes="with_itk_t1_training.json",
    ),
}
"""The rows by key: BM4D's estimate as the pilot; the same with ten times the gradient weight of the loss (aimed at
the Edge MSE, where BM4D keeps the lead); a second pass of ours alone, a K = 4 network given the K = 8
correction row's estimate over the three planes (the view of the volume that row has, without BM4D); and the
network given our own classical estimate of the whole volume, overcomplete 3D DCT shrinkage, in BM4D's place,
with K = 8 (and again with seed 1) and with K = 12 steps (the most under a tenth of the 2.5D U-Net's parameters:
173,637; K = 16 has 226,489); and the K = 8 network given our block-matched Wiener estimate, the 3D DCT's refined
by grouping similar cubes as BM4D does (``nad_monai.volume_block_matching``), and again with seed 1 and with the
Edge MSE in its loss (``EDGE_MSE_LOSS``), twice, and with the PDE run from that estimate instead of the noisy
slice, not blended with it (``pilot_start``): a diagnostic on the test volume (axial slices) found the learned
blend pulling the plain row below the same network with its blend fixed on the pilot (32.19 against 32.68 dB),
though the blend wins on the validation volumes, where the pilot is weaker; and trained with ITK's T1 scan of one
person added to its volumes (``training_volumes``, 12 epochs to keep the budget), the only scan of one person with
T1 contrast and close slices (2 x 2 x 3 mm) that we can train on, since the diagnostics put the blurred edges on
what the EPI training volumes teach."""


def cache_expression(change: PilotRow) -> str:
    """Where a training run of ``change`` (a value of ``ROWS``) finds ``prepare``'s files, as a bundle expression:
    ``benchmarks/cache/<cache_name(change)>`` (``--cache``' default)."""
    return f"$os.path.join(os.path.dirname(@bundle_root), 'benchmarks', 'cache', '{cache_name(change)}')"


def cache_name(change: PilotRow) -> str:
    """The cache folder of the volumes ``change`` (a value of ``ROWS``) trains on: ``volume_pilot`` for BM4D's
    pilot, ``volume_pilot_<pilot>`` for another's, with ``_<datalist>`` after it for other training volumes."""
    name = "volume_pilot" if change.pilot == BM4D_PILOT else f"volume_pilot_{change.pilot}"
    return f"{name}_{Path(change.training_volumes).stem}" if change.training_volumes else name


def split_datalists(change: PilotRow, datalist: str) -> dict[str, str]:
    """The datalist of each split (``"training"``, ``"validation"``) that ``change`` (a value of ``ROWS``) prepares
    and trains on: ``datalist``, or for training its ``training_volumes`` where it has them."""
    training = str(ROOT / "benchmarks" / "datalists" / change.training_volumes) if change.training_volumes else datalist
    return {"training": training, "validation": datalist}


def row(levels: int, change: PilotRow = ROWS[KEY], cache: Path | None = None) -> dict:
    """A row given a volume estimate: ``RICIAN_CORRECTION_ROW`` (2.5D, references with zero air, Rician noise,
    learned bias correction, MSE + 0.1 gradient) with ``change.pilot``'s estimate as a given pilot, blended in
    per pixel. It trains on ``prepare``'s noisy volumes at ``levels`` levels for ``60 / levels`` epochs: the same
    crops and iterations as the 60 epochs of the row it extends, each slice seen at ``levels`` fixed noise draws
    instead of fresh ones; ``change`` (a value of ``ROWS``) names its loss and pilot and overrides its training
    and network. It reads ``prepare``'s files from ``cache`` (``None``: ``cache_expression``, the default)."""
    dataset = {"_target_": "volume_pilot.pilot_dataset", "cache": cache_expression(change) if cache is None else str(cache.resolve()), "context": 2}
    training = {k: v for k, v in RICIAN_CORRECTION_ROW["training"].items() if not k.startswith(("train#", "validate#"))}
    return {
        "name": (
            f"ours, 2.5D with two neighbouring slices on each side ({change.loss}), the air of the training references set to zero, "
            f"learned Rician bias correction, {change.pilot_name} as its pilot, trained on {levels} Rician noise draws per slice"
        ),
        "groups": ("tried",),
        "network_def": {**RICIAN_CORRECTION_ROW["network_def"], "volume_pilot": True, "pilot_blend": True, **change.network},
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
            **change.training,
        },
    }


Estimator = Callable[[torch.Tensor, float], torch.Tensor]
"""A volume estimate: ``(noisy (Z, 1, H, W), Rician level) -> (Z, 1, H, W)``."""


def estimator(pilot: str, results: Path, parser: argparse.ArgumentParser | None) -> Estimator:
    """``pilot``'s estimate ``(Z, 1, H, W)`` of a noisy volume's slices ``(Z, 1, H, W)`` at Rician level ``sigma``:
    a classical pilot's blind one (its parameters tuned at that level, ``tuning.json`` in ``results``, no bias
    correction) or trained row ``pilot``'s over the three planes (``parser.error`` if it has no weights; a
    classical pilot needs no ``parser``)."""
    if pilot in CLASSICAL_PILOTS:
        return lambda noisy, sigma: baseline(pilot)(noisy, **tuned(results, label("rician", sigma))[CLASSICAL_PILOTS[pilot]]["best"])
    planes = all_planes(trained_rows(parser, results, [pilot])[pilot])
    return lambda noisy, sigma: planes(noisy)


def prepare(datalist: str, split: str, levels: Sequence[float], cache: Path, estimate: Estimator) -> list[Path]:
    """For every volume of ``split`` and level: the axial slices ``(Z, 1, H, W)`` of the reference with its
    air set to zero, of that reference with Rician noise (seeded by slice id and level), and ``estimate`` (an
    ``estimator``) of the noisy volume; saved as ``cache/<split>/<volume>_rician-<s>.pt`` unless there.
    Returns the files, in order."""
    items = slice_items("nifti", datalist, split, min_foreground=0)
    zero = ZeroBackground()
    files = []
    for s in levels:
        tagged = [{**i, "image": zero(i["image"]), "id": i["id"].replace("#", f"@rician-{s:.2f}#", 1)} for i in items]
        for volume, (noisy, clean, ids) in volumes(noisy_pairs(tagged, "rician", s)).items():
            path = cache / split / f"{Path(volume.split('@')[0]).name.split('.')[0]}_rician-{s:.2f}.pt"
            files.append(path)
            if path.is_file():
                continue
            print(f"  pilot of {path.stem} ({tuple(noisy.shape)})", flush=True)
            pilot = estimate(noisy, s)
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_suffix(".part")
            torch.save({"noisy": noisy, "clean": clean, "pilot": pilot, "ids": ids, "sigma": s}, part)
            part.replace(path)
    return files


def pilot_items(files: Sequence[str | Path], context: int, min_foreground: float = MIN_FOREGROUND) -> list[dict]:
    """Training items from ``prepare``'s files: per slice of a volume whose reference is mostly head,
    ``{"image": (1 + 2 context + 1, H, W)`` the noisy slice between its ``context`` neighbours and the pilot's
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
        raise FileNotFoundError(f"{Path(cache) / split}: no pilot volumes; run benchmarks/volume_pilot.py prepare first")
    return CacheDataset(pilot_items(files, context), transform=transform, progress=False)


def prepared_levels(parser: argparse.ArgumentParser, cache: Path, datalists: dict[str, str]) -> list[str]:
    """The levels ``prepare`` wrote for every training and validation volume under ``cache`` (each split's as listed
    in its datalist of ``datalists``, ``split_datalists``); ``parser.error`` if there are none or a level lacks a
    volume of either split (a training run takes every file there)."""
    found: dict[str, set[str]] = {}
    for path in cache.glob("*/*_rician-*.pt"):
        found.setdefault(path.stem.rpartition("_rician-")[2], set()).add(f"{path.parent.name}/{path.stem.rpartition('_rician-')[0]}")
    listed = {split: json.loads(Path(datalist).read_text())[split] for split, datalist in datalists.items()}
    wanted = {f"{split}/{Path(i['image']).name.split('.')[0]}" for split, items in listed.items() for i in items}
    if not found:
        parser.error(f"{cache}: no pilot volumes; run benchmarks/volume_pilot.py prepare first")
    for level, have in sorted(found.items()):
        if have != wanted:
            parser.error(f"{cache}: level {level} lacks {', '.join(sorted(wanted - have))}; finish prepare or delete that level's files")
    return sorted(found)


class PilotGate(torch.nn.Module):
    """A blend gate that takes the pilot: logit 30 everywhere, so ``m = sigmoid(30)``, 1 within 1e-13."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.full_like(features[:, :1], 30.0)


def blend_on_the_pilot(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` (``pilot_blend=True``) with its blend gate fixed on the pilot: the PDE's result reaches
    the output only through the refinement and bias correction's inputs. A diagnostic, not a trained row."""
    fixed = copy.deepcopy(net)
    fixed.blend_gate = PilotGate()
    return fixed


def score(nets: dict[str, torch.nn.Module], key: str, estimate: Estimator, sigma: float, datalist: str, test_every: int, weights: Sequence[float], results: Path) -> dict:
    """Mean whole-image PSNR, head PSNR and Edge MSE on the test slices at Rician ``sigma`` (the benchmark's noise
    and slices) of bias-corrected BM4D; of row ``key``'s pilot, ``estimate`` (its ``estimator``), where that is not
    BM4D, bias-corrected if it is classical; of row ``key`` of ``nets`` given that estimate, on the axial slices and over the three
    planes (``all_planes``, the estimate a second channel), and where it blends the pilot in, of it with that blend
    fixed on the pilot (``blend_on_the_pilot``); and of each other row of ``nets`` (no pilot) alike,
    with the plain mean of its output and BM4D's at each of ``weights``."""
    pairs = noisy_pairs(slice_items("nifti", datalist, "test")[::test_every], "rician", sigma)
    whole = volumes(noisy_pairs(slice_items("nifti", datalist, "test", min_foreground=0), "rician", sigma))
    bm4d, pilot = estimator(BM4D_PILOT, results, None), ROWS[key].pilot
    runs = {"one plane": all_planes(nets[key], (2,)), "all planes": all_planes(nets[key])}
    if getattr(nets[key], "blend_gate", None) is not None:
        fixed = blend_on_the_pilot(nets[key])
        runs.update({"one plane, blend fixed on the pilot": all_planes(fixed, (2,)), "all planes, blend fixed on the pilot": all_planes(fixed)})
    given: dict[str, dict[str, torch.Tensor]] = {name: {} for name in ("bm4d", "pilot", *runs)}
    for noisy, _, ids in whole.values():
        outputs = {"bm4d": bm4d(noisy, sigma)}
        outputs["pilot"] = outputs["bm4d"] if pilot == BM4D_PILOT else estimate(noisy, sigma)
        outputs.update({name: run(torch.cat([noisy, outputs["pilot"]], dim=1)) for name, run in runs.items()})
        for name, y in outputs.items():
            given[name].update({i: y[k : k + 1] for k, i in enumerate(ids)})
    found = {"BM4D (bias-corrected)": [(rician_bias_correction(given["bm4d"][i], sigma), clean, i) for _, clean, i in pairs]}
    if pilot in CLASSICAL_PILOTS and pilot != BM4D_PILOT:
        found[f"{CLASSICAL_PILOTS[pilot]} (bias-corrected, the pilot)"] = [(rician_bias_correction(given["pilot"][i], sigma), clean, i) for _, clean, i in pairs]
    elif pilot != BM4D_PILOT:
        found[f"{pilot}, all planes (the pilot)"] = [(given["pilot"][i], clean, i) for _, clean, i in pairs]
    found.update({f"{key}, {name}": [(given[name][i], clean, i) for _, clean, i in pairs] for name in runs})
    for name, net in nets.items():
        for planes in (False, True) if name != key else ():
            alone = network_outputs(net, pairs, whole, planes)
            tag = f"{name}, {'all planes' if planes else 'one plane'}"
            found[tag] = alone
            for w in weights:
                found[f"{w:g} BM4D + {1 - w:g} {tag}"] = [(w * b + (1 - w) * y, clean, i) for (b, _, _), (y, clean, i) in zip(found["BM4D (bias-corrected)"], alone)]
    return {"setting": label("rician", sigma), "test_slices": len(pairs), "scores": {name: means(outputs) for name, outputs in found.items()}}


def means(outputs: list) -> dict:
    """Mean whole-image PSNR, head PSNR and Edge MSE (``score_images``) of ``(denoised, clean, id)`` pairs, and
    that Edge MSE split by how strong the reference's edges are (``edge_error.edge_error_by_band``)."""
    values = score_images(outputs, lambda y: y)
    bands = edge_error_by_band(torch.cat([y for y, _, _ in outputs]).clamp(0, 1), torch.cat([clean for _, clean, _ in outputs]))
    return {**{metric: float(values[metric].mean()) for metric in ("psnr", "head_psnr", "edge_mse")}, "edge_mse_by_band": finite_bands(bands)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("prepare", "train", "score"))
    parser.add_argument("--cache", type=Path, help="folder of the noisy volumes and their pilots (default benchmarks/cache/volume_pilot for BM4D's, volume_pilot_<pilot> for another's)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results", help="the benchmark's output folder (tuning.json, training/)")
    parser.add_argument("--datalist", default=str(ROOT / "data" / "datalist.json"))
    parser.add_argument("--levels", type=float, nargs="+", default=list(LEVELS), help="Rician levels drawn per volume (prepare)")
    parser.add_argument("--row", default=KEY, help=f"the row to prepare the pilot of, train or score (default {KEY})")
    parser.add_argument("--setting", default="rician:0.10", help="noise setting of the test, rician:S (score)")
    parser.add_argument("--test-every", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mean-with", nargs="*", default=[], help="trained rows without a pilot whose output is also averaged with BM4D's (score)")
    parser.add_argument("--weights", type=float, nargs="*", default=[0.5, 0.7], help="BM4D's weights in those means (score)")
    parser.add_argument("--out", type=Path, help="JSON file for the scores (score)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.row not in ROWS:
        parser.error(f"--row {args.row}: this benchmark knows {', '.join(ROWS)}")
    change = ROWS[args.row]
    cache = args.cache or ROOT / "benchmarks" / "cache" / cache_name(change)
    datalists = split_datalists(change, args.datalist)
    if args.command == "prepare":
        estimate = estimator(change.pilot, args.results, parser)
        for s in args.levels:  # level by level: the first levels are usable while the rest run
            for split in ("validation", "training"):
                prepare(datalists[split], split, [s], cache, estimate)
        return
    if args.command == "train":
        LEARNED[args.row] = row(len(prepared_levels(parser, cache, datalists)), change, args.cache)
        print(train_learned(args.row, args.results, {}))
        return
    model, _, level = args.setting.partition(":")
    if model != "rician":
        parser.error(f"--setting {args.setting}: only rician:S")
    nets = trained_rows(parser, args.results, [args.row, *args.mean_with])
    estimate = estimator(change.pilot, args.results, parser)
    report = score(nets, args.row, estimate, float(level), args.datalist, args.test_every, args.weights, args.results)
    for name, r in report["scores"].items():
        print(f"{name}: {r['psnr']:.2f} dB, head {r['head_psnr']:.2f} dB, Edge MSE {r['edge_mse']:.4f}")
    if args.out:
        write_text_atomic(args.out, json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
