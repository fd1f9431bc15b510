"""Benchmark: tuned classical denoisers and learned peers trained on the same budget, scored on the demo test split.

One command trains every learned row that has no weights yet, tunes every classical row, scores all
of them and writes the tables and figures:

    python benchmarks/compare_methods.py --test-every 2 --ablation-settings rician:0.10 --out benchmarks/results   # the committed run (hours on 2 CPU cores)
    python benchmarks/compare_methods.py --quick --out /tmp/bench          # reduced run (CI): a few slices and iterations
    python benchmarks/compare_methods.py --settings rician:0.10 --rows ours dncnn --out bench   # part of it

Protocol (``nad_monai.evaluation``): for Gaussian, Rician and speckle noise at s = 0.05, 0.10, 0.15,
0.20 and mixed noise, the test slices are corrupted deterministically (seeded by slice id).

- Classical rows: parameters grid-searched per setting on the validation slices (mean PSNR; every
  grid and score in ``tuning.json``). On Rician settings every output is bias-corrected with
  ``sqrt(max(y^2 - 2 s^2, 0))`` (dipy's Rician NLM corrects itself; on mixed settings nothing is,
  as a blind denoiser would not know the model).
- Learned rows (``LEARNED``): each is trained from scratch by the bundle's own training workflow
  (``bundle/configs/train.json`` with only ``network_def`` replaced): the same training slices,
  crops, noise, loss, optimiser, schedule, seed and number of epochs, but where a row's own
  ``training`` settings say otherwise (the seed repeats, Rician-only noise, gamma augmentation, the
  T1 template alone or left out, photographs added, no SSIM term in the loss or a squared error,
  a heavier gradient term, larger crops, twice the budget, and the "longer" rows: the main learned rows trained again for
  ``GPU_EPOCHS`` on a GPU).
  Weights, logs and the override config land in ``OUT/training/<row>/``; a run that was stopped resumes from its last
  checkpoint, a finished one is reused.
- 2.5D rows: the learned "context-slices" rows take each test slice with one or two neighbouring
  noisy slices on each side (``nad_monai.evaluation.with_neighbours``: the same noise every row sees,
  seeded by slice id), and the classical ``VOLUMETRIC`` rows (BM4D, 3D DCT shrinkage, block-matched Wiener) denoise the whole noisy test
  volume built from those slices; all are "tried" rows, to be read against each other rather than
  against the 2D rows (and not on mixed noise, where each slice has its own model and level).
- Mean rows (``ENSEMBLES``): the mean of the outputs of a few trained learned rows (the three seed
  runs of ours), scored when all of them are in the run.
- All-planes rows (``ALL_PLANES``): a trained row (2D or 2.5D) run over the whole noisy test volume across
  each of its three axes, the three results averaged (``nad_monai.inferers.MeanOfInferers``, what
  ``nad-denoise --all-planes`` does); seconds per slice are three times the row's, as measured in the same run.
- The shipped bundle weights are scored too, as a row of their own (trained longer, see
  ``bundle/docs/README.md``).

Scores are cached per setting and row in ``OUT/scores/`` (a rerun only computes what changed; the
outputs then cover the settings and rows of that run only). Outputs, written by
``benchmark_report.py``: ``results.md`` (goal check, PSNR by setting, then the main, ablation,
"tried" and "longer" tables per setting), ``results.csv``, ``tuning.json``, ``psnr_vs_sigma.png`` and
``crops_<setting>.png`` (zoomed crops of one test slice for each noise model at s = 0.10 and mixed).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from benchmark_report import VOLUME_GOAL, drawn, example_path, own_member, render_readme, save_example, slug, sync_readme, write_outputs, write_text_atomic
from nad_monai.baselines import GRIDS, baseline, rician_bias_correction, tune
from nad_monai.datasets import MIN_FOREGROUND, foreground_fraction, slice_items
from nad_monai.evaluation import MODELS, SIGMAS, noisy_pairs, score_images, volumes, with_neighbours
from nad_monai.inferers import MeanOfInferers, volume_slice_inferer
from nad_monai.metrics import denoising_metrics

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = ROOT / "bundle" / "configs" / "train.json"
TRAIN_DEFAULTS = ConfigParser.load_config_file(TRAIN_CONFIG)
PM_K = {"k": [0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2]}
CLASSICAL: dict[str, tuple[str, dict, dict]] = {
    "Gaussian smoothing": ("gaussian", {}, GRIDS["gaussian"]),
    "heat equation": ("heat", {}, GRIDS["heat"]),
    "Perona-Malik exponential, 4 nb, 16 it": ("perona_malik", {"kind": "exponential", "neighbours": 4, "steps": 16}, PM_K),
    "Perona-Malik rational, 4 nb, 16 it": ("perona_malik", {"kind": "rational", "neighbours": 4, "steps": 16}, PM_K),
    "Perona-Malik exponential, 8 nb, 16 it": ("perona_malik", {"kind": "exponential", "neighbours": 8, "steps": 16}, PM_K),
    "Perona-Malik rational, 8 nb, 16 it": ("perona_malik", {"kind": "rational", "neighbours": 8, "steps": 16}, PM_K),
    "TV (scikit-image Chambolle)": ("tv", {}, GRIDS["tv"]),
    "NLM (scikit-image, sigma estimated)": ("nlm", {}, GRIDS["nlm"]),
    "BM3D (bm3d package)": ("bm3d", {}, GRIDS["bm3d"]),
    "dipy NLM (Rician)": ("dipy_nlmeans", {}, GRIDS["dipy_nlmeans"]),
}
"""Classical rows: name -> (``nad_monai.baselines.METHODS`` key, fixed parameters, tuning grid)."""
SELF_CORRECTING = {"dipy_nlmeans"}
VOLUMETRIC: dict[str, tuple[str, dict]] = {
    "BM4D (bm4d package, whole volume)": ("bm4d", GRIDS["bm4d"]),
    "3D DCT shrinkage (overcomplete, two stages, whole volume)": ("dct3d", GRIDS["dct3d"]),
    "block-matched Wiener after the 3D DCT (whole volume)": ("bm_wiener3d", GRIDS["bm_wiener3d"]),
}
"""Classical rows that denoise whole volumes (``nad_monai.baselines.VOLUME_METHODS`` key, tuning grid): BM4D,
our overcomplete 3D DCT shrinkage (``nad_monai.volume_dct``) and our block-matched Wiener passes after it
(``nad_monai.volume_block_matching``), rows of the "tried" table, the counterparts of the
2.5D learned rows, for they see the neighbouring slices too. Each
volume is built from the noisy slices every other row sees (noise seeded by slice id), tuned on the head slices
of the validation volumes, and timed by its run on the test volume, per slice and scaled to 256 x 256 pixels;
unlike the other rows' timing, that one is kept with the scores and not measured again on a rerun (it takes minutes)."""
BENCH_PACKAGES = {"bm3d": "bm3d", "bm4d": "bm4d", "dipy_nlmeans": "dipy"}
"""Baselines that need a package of the ``bench`` extra: checked before any work starts."""

OURS = {"_target_": "nad_monai.UnrolledPeronaMalik"}
"""Our network for the benchmark: the class defaults (8 steps, 8 neighbours, per-step conduction nets,
guidance, refinement, noise-level input; 91,121 parameters)."""


BASIC_UNET = {
    "_target_": "nad_monai.peers.ResidualDenoiser",
    "net": {"_target_": "monai.networks.nets.BasicUNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 1},
}
"""The U-Net peer: MONAI's ``BasicUNet`` with a global residual (``nad_monai.peers.ResidualDenoiser``), 1,978,433 parameters."""


def _ablation(**changes) -> dict:
    return {**OURS, **changes}


def _beside_copy(transforms: list[dict], transform: dict, after: bool = False) -> list[dict]:
    """``transforms`` (a list of train.json) with ``transform`` inserted just before (or ``after``) the
    one that copies the clean image to the label."""
    copy = next(i for i, t in enumerate(transforms) if t["_target_"] == "CopyItemsd") + int(after)
    return transforms[:copy] + [transform] + transforms[copy:]


def _before_noise(transform: dict) -> list[dict]:
    """train.json's random training transforms with ``transform`` inserted before the clean label is
    copied, so that it changes the clean image and the noise is added afterwards."""
    return _beside_copy(TRAIN_DEFAULTS["train"]["random_transforms"], transform)


def _training_volumes(datalist: str, epochs: int) -> dict:
    """Overrides of train.json that train on the volumes listed in ``benchmarks/datalists/<datalist>``
    for ``epochs`` (batches of 8 slices x 2 crops as usual), validated on the usual validation split."""
    return {
        "dataset_dir": f"$os.path.join(os.path.dirname(@bundle_root), 'benchmarks', 'datalists', '{datalist}')",
        "val_dataset_dir": "$os.path.join(os.path.dirname(@bundle_root), 'data')",
        "epochs": epochs,
    }


T1_TEMPLATE_ONLY = _training_volumes("t1_template_training.json", 81)
"""Training on the MNI152 T1 template alone (the test volume is T1-weighted; the other training volumes
are EPI): its 113 axial slices for 81 epochs make 18,306 training crops in 1,215 iterations, the
default's 307 slices for 30 epochs 18,420 crops in 1,170 iterations (the same budget, the cosine
schedule spread over the 81 epochs)."""
WITHOUT_TEMPLATE = _training_volumes("without_template_training.json", 47)
"""Training on the four EPI volumes of single people, without the MNI152 template (an average of 152
people, smoother than any one scan): 194 axial slices x 2 crops x 47 epochs = 18,236 training crops
in 1,175 iterations, the default's budget."""
WITH_ITK_T1 = _training_volumes("with_itk_t1_training.json", 24)
"""The default training volumes plus ITK's example T1 scan of one person (``data/itk_kmeans_t1.nii.gz``,
75 axial slices): 382 slices x 2 crops x 24 epochs = 18,336 training crops in 1,152 iterations,
the default's budget."""

PHOTO_REPEATS = 4
WITH_PHOTOS = {
    "train#mr_dataset": TRAIN_DEFAULTS["train"]["dataset"],
    "train#photo_dataset": {
        **TRAIN_DEFAULTS["train"]["dataset"],
        "source": "folder",
        "path": "$os.path.join(os.path.dirname(__import__('skimage').__file__), 'data')",
        "split": None,
    },
    "train#dataset": {"_target_": "torch.utils.data.ConcatDataset", "datasets": f"$[@train#mr_dataset] + [@train#photo_dataset] * {PHOTO_REPEATS}"},
    "epochs": 22,
}
"""Training on the default volumes plus every PNG/JPEG sample image that ships with scikit-image
(26 images, photographs and a few drawings, converted to grey), each listed ``PHOTO_REPEATS`` times
so that a quarter of the crops come from them: (307 + 104) items x 2 crops x 22 epochs = 18,084
training crops in 1,144 iterations, the default's budget. Edges and texture of every scale, which
the five training volumes (a template and EPI scans) lack and the T1 test volume has."""

NO_SSIM_LOSS = {"loss#ssim_weight": 0.0}
"""train.json's loss without its SSIM term: L1 + 0.1 x gradient MSE."""
MSE_LOSS = {"loss#ssim_weight": 0.0, "loss#l1_weight": 0.0, "loss#mse_weight": 1.0}
"""train.json's loss with the squared error, the error PSNR measures, in place of SSIM and L1: MSE + 0.1 x gradient MSE."""
EDGE_WEIGHTED_LOSS = {"loss#gradient_weight": 1.0}
"""Ten times train.json's weight on the gradient term, aimed at the Edge MSE (blurred or left-over noise edges cost more)."""

MULTIPLANAR = {"train#dataset#axis": [0, 1, 2], "epochs": 7}
"""Training on sagittal, coronal and axial slices of the default training volumes (validation stays
axial, as the test): 1,241 slices x 2 crops x 7 epochs = 17,374 training crops in 1,092 iterations,
the nearest the default's budget comes without exceeding it. Four times as many distinct slices,
cut across the volumes' other planes, for a network that only ever sees 2D slices."""

def _with_context(context: int) -> dict:
    """Overrides of train.json for 2.5D training: every training and validation item is a stack of
    ``context`` neighbouring slices on each side of the slice (``nad_monai.datasets.volume_slices``),
    cropped, flipped and corrupted together (independent noise in every slice, one model and level),
    with the clean middle slice as the label. The same slices, crops and budget as the default."""
    middle = {"_target_": "Lambdad", "keys": "label", "func": f"$lambda x: x[{context}:{context + 1}]"}
    return {
        "train#dataset#context": context,
        "validate#dataset#context": context,
        "train#random_transforms": _beside_copy(TRAIN_DEFAULTS["train"]["random_transforms"], middle, after=True),
        "validate#preprocessing#transforms": _beside_copy(TRAIN_DEFAULTS["validate"]["preprocessing"]["transforms"], middle, after=True),
    }


ZERO_AIR = {"_target_": "transforms.ZeroBackgroundd", "keys": "image"}
"""Sets the air around the head of every clean training and validation slice to zero before the noise is
added (``transforms.ZeroBackground``): the two ``heudiconv`` b0 training volumes carry the scanner's
noise floor there (mean 0.008), which a network learns to reproduce."""


def _zero_air(training: dict) -> dict:
    """``training`` overrides of a row with ``ZERO_AIR`` last of the deterministic training transforms (on
    whole slices, before the crops) and first of the validation transforms."""
    validation = training.get("validate#preprocessing#transforms", TRAIN_DEFAULTS["validate"]["preprocessing"]["transforms"])
    return {
        **training,
        "train#deterministic_transforms": TRAIN_DEFAULTS["train"]["deterministic_transforms"] + [ZERO_AIR],
        "validate#preprocessing#transforms": [ZERO_AIR] + validation,
    }


TWO_SLICES_TWICE_THE_BUDGET = {**_with_context(2), "epochs": 2 * TRAIN_DEFAULTS["epochs"]}
"""train.json overrides of the 60-epoch two-slice rows with the bundle's loss; the others add ``MSE_LOSS``."""


SHIPPED_2_5D = "context-slices-2-bundle-loss-zero-air"
"""The row whose weights ``bundle/models/2.5d/model.pt`` are: ``bundle/configs/train_2.5d.json`` trains it."""


ZERO_AIR_ROW = {
    "name": f"ours, 2.5D with two neighbouring slices on each side (MSE + 0.1 gradient), {2 * TRAIN_DEFAULTS['epochs']} epochs, the air of the training references set to zero",
    "groups": ("tried",),
    "network_def": _ablation(context_slices=2),
    "training": _zero_air({**TWO_SLICES_TWICE_THE_BUDGET, **MSE_LOSS}),
}
"""The 60-epoch squared-error two-slice row trained on references whose air is zero; also tried with K = 16."""

ZERO_AIR_RICIAN_ROW = {
    **ZERO_AIR_ROW,
    "name": f"{ZERO_AIR_ROW['name']}, trained on Rician noise only",
    "training": {**ZERO_AIR_ROW["training"], "noise": ["rician"]},
}
"""The zero-air row trained on Rician noise alone."""
RICIAN_CORRECTION_ROW = {
    **ZERO_AIR_RICIAN_ROW,
    "name": f"{ZERO_AIR_ROW['name']}, learned Rician bias correction, trained on Rician noise only",
    "network_def": _ablation(context_slices=2, rician_correction=True),
}
"""``ZERO_AIR_RICIAN_ROW`` with the learned Rician bias correction."""
RICIAN_CORRECTION_K16_ROW = {**RICIAN_CORRECTION_ROW, "name": f"{RICIAN_CORRECTION_ROW['name']}, K = 16", "network_def": {**RICIAN_CORRECTION_ROW["network_def"], "steps": 16}}
"""``RICIAN_CORRECTION_ROW`` with K = 16 diffusion steps; trained with two seeds."""


COMBINED = {
    "name": "ours + multiscale gates + DCT pilot blend + learned Rician bias correction, trained on Rician noise only",
    "groups": ("tried",),
    "network_def": _ablation(coarse_scales=2, dct_pilot=True, pilot_blend=True, rician_correction=True),
    "training": {"noise": ["rician"]},
}
"""The "tried" row with every option that helped; also trained with more data and for longer."""


LEARNED: dict[str, dict] = {
    "ours": {"name": "unrolled Perona-Malik (ours)", "groups": ("main", "ablation"), "network_def": OURS},
    "basic-unet": {
        "name": "U-Net (MONAI BasicUNet, residual)",
        "groups": ("main",),
        "network_def": BASIC_UNET,
    },
    "dncnn": {"name": "DnCNN (17 layers)", "groups": ("main",), "network_def": {"_target_": "nad_monai.peers.DnCNN", "depth": 17}},
    "seed-variant": {
        "name": "seed variant (guidance detached, shared gates, 16 steps)",
        "groups": ("main", "ablation"),
        "network_def": _ablation(steps=16, shared=True, noise_level_input=False, detach_guidance=True, step_fraction=0.4),
    },
    "4-neighbours": {"name": "ours, 4 neighbours", "groups": ("ablation",), "network_def": _ablation(neighbours=4)},
    "no-guidance": {"name": "ours, no guidance", "groups": ("ablation",), "network_def": _ablation(guidance_channels=0)},
    "no-refinement": {"name": "ours, no refinement", "groups": ("ablation",), "network_def": _ablation(refinement=False)},
    "k4": {"name": "ours, K = 4", "groups": ("ablation",), "network_def": _ablation(steps=4)},
    "k16": {"name": "ours, K = 16", "groups": ("ablation",), "network_def": _ablation(steps=16)},
    "shared": {"name": "ours, shared weights", "groups": ("ablation",), "network_def": _ablation(shared=True)},
    **{f"seed-{seed}": {"name": f"ours, seed {seed}", "groups": ("ablation",), "network_def": OURS, "training": {"seed": seed}} for seed in (1, 2)},
    "rician-correction": {"name": "ours + learned Rician bias correction", "groups": ("tried",), "network_def": _ablation(rician_correction=True)},
    "rician-trained": {
        "name": "ours + learned Rician bias correction, trained on Rician noise only",
        "groups": ("tried",),
        "network_def": _ablation(rician_correction=True),
        "training": {"noise": ["rician"]},
    },
    "wide-guidance": {
        "name": "ours, guidance U-Net twice as wide (32, 64)",
        "groups": ("tried",),
        "network_def": _ablation(guidance_features=[32, 64]),
    },
    "nonlocal-pilot": {
        "name": "ours + non-local means pilot for the gates",
        "groups": ("tried",),
        "network_def": _ablation(nonlocal_pilot=True),
    },
    "nonlocal-rician-trained": {
        "name": "ours + non-local pilot + learned Rician bias correction, trained on Rician noise only",
        "groups": ("tried",),
        "network_def": _ablation(nonlocal_pilot=True, rician_correction=True),
        "training": {"noise": ["rician"]},
    },
    "dct-pilot": {
        "name": "ours + sliding-window DCT shrinkage pilot (transform domain)",
        "groups": ("tried",),
        "network_def": _ablation(dct_pilot=True),
    },
    "dct-pilot-blend": {
        "name": "ours + DCT shrinkage pilot blended into the output (learned weight, starting at 1/2)",
        "groups": ("tried",),
        "network_def": _ablation(dct_pilot=True, pilot_blend=True),
    },
    "coarse-scales": {
        "name": "ours + gates that also see 2x2 and 4x4 block-mean differences (multiscale)",
        "groups": ("tried",),
        "network_def": _ablation(coarse_scales=2),
    },
    "combined-rician-trained": COMBINED,
    "gamma-augmentation": {
        "name": "ours, trained with random gamma (contrast) augmentation",
        "groups": ("tried",),
        "network_def": OURS,
        "training": {"train#random_transforms": _before_noise({"_target_": "RandAdjustContrastd", "keys": "image", "prob": 0.5, "gamma": [0.7, 1.5]})},
    },
    "t1-template-only": {
        "name": "ours, trained on the T1 template only",
        "groups": ("tried",),
        "network_def": OURS,
        "training": T1_TEMPLATE_ONLY,
    },
    "t1-template-rician-trained": {
        "name": "ours + learned Rician bias correction, trained on Rician noise and the T1 template only",
        "groups": ("tried",),
        "network_def": _ablation(rician_correction=True),
        "training": {**T1_TEMPLATE_ONLY, "noise": ["rician"]},
    },
    "without-template": {
        "name": "ours, trained without the MNI152 template (EPI volumes of single people)",
        "groups": ("tried",),
        "network_def": OURS,
        "training": WITHOUT_TEMPLATE,
    },
    "with-itk-t1": {
        "name": "ours, trained with a T1 scan of one person added (ITK's example data)",
        "groups": ("tried",),
        "network_def": OURS,
        "training": WITH_ITK_T1,
    },
    "combined-with-itk-t1": {
        **COMBINED,
        "name": f"{COMBINED['name']}, with a T1 scan of one person added",
        "training": {**WITH_ITK_T1, **COMBINED["training"]},
    },
    "combined-block-matching": {
        **COMBINED,
        "name": COMBINED["name"].replace("DCT pilot blend", "block-matching pilot blend (BM3D's Wiener stage)"),
        "network_def": {**COMBINED["network_def"], "dct_pilot": False, "block_matching_pilot": True},
    },
    "no-ssim-loss": {
        "name": "ours, trained without the SSIM term of the loss (L1 + 0.1 gradient)",
        "groups": ("tried",),
        "network_def": OURS,
        "training": NO_SSIM_LOSS,
    },
    "mse-loss": {
        "name": "ours, trained with the squared error instead of SSIM and L1 (MSE + 0.1 gradient)",
        "groups": ("tried",),
        "network_def": OURS,
        "training": MSE_LOSS,
    },
    "dct-pilot-blend-mse-loss": {
        "name": "ours + DCT shrinkage pilot blend, trained with the squared error (MSE + 0.1 gradient)",
        "groups": ("tried",),
        "network_def": _ablation(dct_pilot=True, pilot_blend=True),
        "training": MSE_LOSS,
    },
    "no-ssim-loss-seed-1": {
        "name": "ours, trained without the SSIM term of the loss, seed 1",
        "groups": ("tried",),
        "network_def": OURS,
        "training": {**NO_SSIM_LOSS, "seed": 1},
    },
    "combined-no-ssim-loss": {
        **COMBINED,
        "name": f"{COMBINED['name']}, without the SSIM term of the loss",
        "training": {**COMBINED["training"], **NO_SSIM_LOSS},
    },
    "large-crops": {
        "name": "ours, trained on 128x128 crops (one per slice, 15 epochs: the same pixels)",
        "groups": ("tried",),
        "network_def": OURS,
        "training": {"patch_size": [128, 128], "crops_per_slice": 1, "epochs": 15},
    },
    "with-photos": {
        "name": "ours, trained with scikit-image's sample photographs added",
        "groups": ("tried",),
        "network_def": OURS,
        "training": WITH_PHOTOS,
    },
    "multiplanar": {
        "name": "ours, trained on sagittal, coronal and axial slices",
        "groups": ("tried",),
        "network_def": OURS,
        "training": MULTIPLANAR,
    },
    "combined-multiplanar": {
        **COMBINED,
        "name": f"{COMBINED['name']}, on sagittal, coronal and axial slices",
        "training": {**MULTIPLANAR, **COMBINED["training"]},
    },
    "context-slices": {
        "name": "ours, 2.5D: the slice and its two neighbouring slices in, through-plane flux (MSE + 0.1 gradient)",
        "groups": ("tried",),
        "network_def": _ablation(context_slices=1),
        "training": {**_with_context(1), **MSE_LOSS},
    },
    "context-slices-2": {
        "name": "ours, 2.5D with two neighbouring slices on each side (MSE + 0.1 gradient)",
        "groups": ("tried",),
        "network_def": _ablation(context_slices=2),
        "training": {**_with_context(2), **MSE_LOSS},
    },
    "context-slices-2-bundle-loss": {
        "name": "ours, 2.5D with two neighbouring slices on each side, the bundle's loss: the 2.5D weights of bundles 0.4.0 and 0.5.0",
        "groups": ("tried",),
        "network_def": _ablation(context_slices=2),
        "training": _with_context(2),
    },
    "context-slices-2-twice-the-budget": {
        "name": f"ours, 2.5D with two neighbouring slices on each side (MSE + 0.1 gradient), twice the budget ({2 * TRAIN_DEFAULTS['epochs']} epochs)",
        "groups": ("tried",),
        "network_def": _ablation(context_slices=2),
        "training": {**TWO_SLICES_TWICE_THE_BUDGET, **MSE_LOSS},
    },
    "context-slices-2-zero-air": ZERO_AIR_ROW,
    "context-slices-2-zero-air-k16": {**ZERO_AIR_ROW, "name": f"{ZERO_AIR_ROW['name']}, K = 16", "network_def": _ablation(context_slices=2, steps=16)},
    "context-slices-4-zero-air": {  # neighbours up to 4 mm away on the 1 mm test volume, 6 mm on the 1.5 mm training volumes
        **ZERO_AIR_ROW,
        "name": ZERO_AIR_ROW["name"].replace("two neighbouring slices", "four neighbouring slices"),
        "network_def": _ablation(context_slices=4),
        "training": _zero_air({**_with_context(4), "epochs": 2 * TRAIN_DEFAULTS["epochs"], **MSE_LOSS}),
    },
    SHIPPED_2_5D: {
        **ZERO_AIR_ROW,
        "name": ZERO_AIR_ROW["name"].replace("(MSE + 0.1 gradient)", "(the bundle's loss)") + ": the shipped 2.5D weights (bundle/models/2.5d)",
        "groups": ("tried", "figures"),
        "training": _zero_air(TWO_SLICES_TWICE_THE_BUDGET),
    },
    "zero-air": {
        "name": "ours, the air of the training references set to zero",
        "groups": ("tried",),
        "network_def": OURS,
        "training": _zero_air({}),
    },
    "context-slices-2-rician-trained": {
        "name": f"ours, 2.5D with two neighbouring slices on each side (MSE + 0.1 gradient), trained on Rician noise only, {2 * TRAIN_DEFAULTS['epochs']} epochs",
        "groups": ("tried",),
        "network_def": _ablation(context_slices=2),
        "training": {**TWO_SLICES_TWICE_THE_BUDGET, **MSE_LOSS, "noise": ["rician"]},
    },
    "context-slices-2-zero-air-rician-trained": ZERO_AIR_RICIAN_ROW,
    "context-slices-2-zero-air-rician-correction": RICIAN_CORRECTION_ROW,
    "context-slices-2-zero-air-rician-correction-with-itk-t1": {  # the one T1 scan of a single person, after the T1 volumes showed the gap
        **RICIAN_CORRECTION_ROW,
        "name": f"{RICIAN_CORRECTION_ROW['name']}, with a T1 scan of one person added",
        "training": {**RICIAN_CORRECTION_ROW["training"], **_training_volumes("with_itk_t1_training.json", 2 * WITH_ITK_T1["epochs"])},
    },
    "context-slices-2-zero-air-rician-correction-k16": RICIAN_CORRECTION_K16_ROW,
    "context-slices-2-zero-air-rician-correction-k16-seed-1": {
        **RICIAN_CORRECTION_K16_ROW,
        "name": f"{RICIAN_CORRECTION_K16_ROW['name']}, seed 1",
        "training": {**RICIAN_CORRECTION_K16_ROW["training"], "seed": 1},
    },
    "context-slices-2-zero-air-rician-correction-k16-gradient-1": {
        **RICIAN_CORRECTION_K16_ROW,
        "name": f"{RICIAN_CORRECTION_K16_ROW['name']}, gradient weight 1 instead of 0.1",
        "training": {**RICIAN_CORRECTION_K16_ROW["training"], **EDGE_WEIGHTED_LOSS},
    },
    "context-slices-2-zero-air-rician-trained-basic-unet": {
        **ZERO_AIR_RICIAN_ROW,
        "name": ZERO_AIR_RICIAN_ROW["name"].replace("ours, ", "U-Net (MONAI BasicUNet, residual), ", 1),
        "network_def": {**BASIC_UNET, "context_slices": 2, "net": {**BASIC_UNET["net"], "in_channels": 1 + 2 * 2}},
    },
    "context-slices-2-multiplanar": {
        "name": "ours, 2.5D with two neighbouring slices on each side (MSE + 0.1 gradient), trained on sagittal, coronal and axial stacks, twice the budget",
        "groups": ("tried",),
        "network_def": _ablation(context_slices=2),
        "training": {**_with_context(2), **MSE_LOSS, **MULTIPLANAR, "epochs": 2 * MULTIPLANAR["epochs"]},
    },
    "twice-the-budget": {
        "name": f"ours, twice the budget ({2 * TRAIN_DEFAULTS['epochs']} epochs)",
        "groups": ("tried",),
        "network_def": OURS,
        "training": {"epochs": 2 * TRAIN_DEFAULTS["epochs"]},
    },
}
"""Learned rows, by folder name: display name, table groups ("figures": also drawn in the crop figures
beside the main table's rows), the ``network_def`` given to train.json
and, for a few, other ``training`` overrides of train.json. The seed variant follows the seed project
(16 shared steps of lam = 0.05, guidance that never trains, no noise-level input); the ablations
change one thing of ours each, and "seed 1" and "seed 2" are ours with other random seeds (initial
weights, crops and noise), the spread to read the ablations against; the "tried" rows are attempts
to improve ours on the same budget, but for "twice the budget", which measures what training longer
gives. The command line's training settings (``--epochs``, ``--quick``) win over a row's."""
ENSEMBLES: dict[str, dict] = {
    "seed-mean": {"name": "ours, mean of the outputs of the three seed runs", "groups": ("tried",), "members": ("ours", "seed-1", "seed-2")},
}
"""Rows that average the outputs of trained learned rows (``members``, by folder name); built when
every member is among the rows of the run. Not a candidate model (it costs the members' parameters
and time together): it measures how much of the gap to BM3D is run-to-run variance, which averaging
removes, rather than a bias shared by every run."""

VOLUME_GOAL_ROWS = (
    "context-slices-2-zero-air-rician-correction-k16",
    "context-slices-2-zero-air-rician-correction-k16-seed-1",
    "context-slices-2-zero-air-rician-trained-basic-unet",
    SHIPPED_2_5D,
)
"""Learned rows whose all-planes rows the README's second goal check reads (``VOLUME_GOAL``), with BM4D: the best
row of ours that sees the volume in both of its training runs, the U-Net trained as it is, and the shipped 2.5D model."""
ALL_PLANES: dict[str, dict] = {
    f"{key}-all-planes": {"name": f"{LEARNED[key]['name']}; mean over the three planes", "groups": ("tried", VOLUME_GOAL) if key in VOLUME_GOAL_ROWS else ("tried",), "member": key}
    for key in (
        "ours",
        "zero-air",
        "context-slices-2-twice-the-budget",
        "context-slices-2-zero-air",
        "context-slices-2-zero-air-k16",
        "context-slices-4-zero-air",
        "context-slices-2-zero-air-rician-trained",
        "context-slices-2-zero-air-rician-correction",
        "context-slices-2-zero-air-rician-correction-with-itk-t1",
        "context-slices-2-zero-air-rician-correction-k16",
        "context-slices-2-zero-air-rician-correction-k16-seed-1",
        "context-slices-2-zero-air-rician-correction-k16-gradient-1",
        "context-slices-2-zero-air-rician-trained-basic-unet",
        "context-slices-2-bundle-loss",
        SHIPPED_2_5D,
    )
}
"""Rows that run a trained row (``member``, 2D or 2.5D) over each noisy test volume slice by slice across
each of its three axes and average the three results (``nad-denoise --all-planes``); built when the
member is among the rows of the run. Scored on the test slices of the volume, like the ``VOLUMETRIC`` rows."""


class MeanOfNetworks(torch.nn.Module):
    """The mean of the outputs of ``networks`` for the same input ``(N, C, H, W)``."""

    def __init__(self, networks: list[torch.nn.Module]):
        super().__init__()
        self.networks = torch.nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(x) for net in self.networks]).mean(dim=0)


GPU_TRAINING = {"num_workers": 3, "amp": False}
"""train.json overrides of the rows trained longer on a GPU: three data-loading workers (the GPU
outruns one; other workers draw other random crops and noise), and float32 as on the CPU."""
GPU_EPOCHS = 70
"""Epochs of the "longer" rows, 2.3 times the default budget: what five runs side by side reached in
one 8-minute call on a lent H200, whose one visible CPU core, loading the data, set the pace."""
# The "longer" rows: the main table's learned rows and the "tried" row with every option that
# helped, trained again on that budget. ``--rows <key>-long`` finds the committed runs; without
# them, the same configs train on whatever device train.json finds (on 2 CPU cores, about 2.3
# times as long as the default rows).
LEARNED.update(
    {
        f"{key}-long": {
            "name": f"{LEARNED[key]['name']}, {GPU_EPOCHS} epochs on a GPU",
            "groups": ("longer",),
            "network_def": LEARNED[key]["network_def"],
            "training": {**LEARNED[key].get("training", {}), "epochs": GPU_EPOCHS, **GPU_TRAINING},
        }
        for key in ("ours", "basic-unet", "dncnn", "seed-variant", "combined-rician-trained")
    }
)
MAIN_ROWS = ("ours", "basic-unet", "dncnn", "seed-variant")
QUICK_TRAINING = {"epochs": 4, "batch_size": 4, "patch_size": [32, 32], "crops_per_slice": 1}
"""Reduced training for ``--quick``: a few iterations on the smallest training volume, validated on the smallest validation volume."""


def settings(chosen: list[str] | None, quick: bool) -> list[tuple[str, float | None]]:
    """``(noise model, s)`` pairs from ``MODEL:S`` or ``mixed`` strings; ``("mixed", None)`` for mixed noise.

    Default: every model at every level and mixed (``--quick``: Gaussian and Rician at 0.10).
    """
    if chosen:
        return [("mixed", None) if c == "mixed" else (c.split(":")[0], float(c.split(":")[1])) for c in chosen]
    if quick:
        return [("gaussian", 0.10), ("rician", 0.10)]
    return [(m, s) for m in MODELS for s in SIGMAS] + [("mixed", None)]


def label(model: str, sigma: float | None) -> str:
    return "mixed, s 0.05-0.20" if sigma is None else f"{model} {sigma:.2f}"


def epoch_times(log: Path) -> dict[int, float]:
    """Seconds of every completed training epoch (training and its end-of-epoch validation and checkpoint),
    the last record of each across resumed runs, from a bundle training log."""
    times: dict[int, float] = {}
    if log.is_file():
        pattern = r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete\. Time taken: (\d+):(\d+):([\d.]+)"
        for epoch, h, m, s in re.findall(pattern, log.read_text(errors="replace")):
            times[int(epoch)] = int(h) * 3600 + int(m) * 60 + float(s)
    return times


def checkpoint_epochs(models: Path) -> list[int]:
    """Epochs of the resumable ``checkpoint_epoch=N.pt`` files in ``models``."""
    return [int(m.group(1)) for p in models.glob("checkpoint_epoch=*.pt") if (m := re.fullmatch(r"checkpoint_epoch=(\d+)\.pt", p.name))]


def training_config(key: str, overrides: dict) -> dict:
    """The overrides of train.json that train learned row ``key``: its ``network_def``, the resolved
    ``epochs``, the row's own ``training`` settings and ``overrides`` from the command line (which
    win), with the end-of-run comparison with PM and TV switched off (this benchmark makes a fuller
    one) and the SHA-256 of train.json."""
    handlers = TRAIN_DEFAULTS["train"]["rank0_handlers"]
    comparison = next(i for i, h in enumerate(handlers) if h.get("_target_", "").endswith("BaselineComparison"))
    config = {"network_def": LEARNED[key]["network_def"], "epochs": TRAIN_DEFAULTS["epochs"], f"train#rank0_handlers#{comparison}#_disabled_": True}
    return {**config, **LEARNED[key].get("training", {}), **overrides, "train_config_sha256": hashlib.sha256(TRAIN_CONFIG.read_bytes()).hexdigest()}


BUNDLE_ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH")]))}
"""Environment of a training run: quiet, and with ``benchmarks/`` importable (a row's dataset may come from a benchmark module)."""


def train_learned(key: str, out: Path, overrides: dict) -> dict:
    """Train learned row ``key`` with the bundle's workflow unless done.

    ``OUT/training/<key>/config.json`` holds ``training_config(key, overrides)``. The run is
    ``python -m monai.bundle run training --config_file "['bundle/configs/train.json', '<that file>']"
    --ckpt_dir <folder>/models --output_dir <folder>/runs``, resumed from its newest checkpoint if it
    stopped; a folder trained with other settings (or another train.json) is refused rather than reused.

    Returns ``{"epochs", "seconds", "epoch_median", "weights", "config"}``: epochs trained, seconds
    summed over the logged epochs (each with its validation), the median seconds of an epoch, the
    best weights and the override config.
    """
    folder, config = out / "training" / key, training_config(key, overrides)
    config_file, log, models = folder / "config.json", folder / "train.log", folder / "models"
    if config_file.is_file() and json.loads(config_file.read_text()) != config:
        raise SystemExit(f"{config_file}: trained with other settings than these; delete {folder} to retrain")
    epochs = config["epochs"]

    def done() -> int:
        return max([*epoch_times(log), *checkpoint_epochs(models), 0])

    if done() < epochs:
        folder.mkdir(parents=True, exist_ok=True)
        config_file.write_text(json.dumps(config, indent=1))
        resume = bool(checkpoint_epochs(models))
        command = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", repr([str(TRAIN_CONFIG), str(config_file)])]
        command += ["--ckpt_dir", str(models), "--output_dir", str(folder / "runs")] + (["--resume", "True"] if resume else [])
        print(f"  training {LEARNED[key]['name']} ({f'resuming after epoch {done()}' if resume else 'from scratch'}, {epochs} epochs); log: {log}", flush=True)
        with open(log, "a") as f:
            result = subprocess.run(command, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=BUNDLE_ENV, check=False)
        if result.returncode != 0 or done() < epochs:
            raise SystemExit(f"{log}: training {key} failed (exit {result.returncode}, {done()} of {epochs} epochs); see the log")
    times = list(epoch_times(log).values())
    return {"epochs": done(), "seconds": sum(times), "epoch_median": statistics.median(times), "weights": models / "model.pt", "config": config_file}


def classical_denoiser(method: str, params: dict, correct: float | None):
    """Baseline ``method`` with ``params``, its output Rician-bias-corrected for noise level ``correct`` unless None."""

    def denoise(x: torch.Tensor) -> torch.Tensor:
        out = baseline(method)(x, **params)
        return out if correct is None else rician_bias_correction(out, correct)

    return denoise


def load_network(config_files: list[Path], weights: Path) -> tuple[torch.nn.Module, dict]:
    """The ``network_def`` of the bundle config(s) in eval mode with the state dict at ``weights``, and that ``network_def``."""
    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])
    net = parser.get_parsed_content("network_def").eval()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return net, parser.get("network_def")


def trained_rows(parser: argparse.ArgumentParser, results: Path, rows: list[str]) -> dict[str, torch.nn.Module]:
    """The networks of trained rows of a benchmark run, by row (``results/training/<row>``: its config over
    train.json and its weights); ``parser.error`` naming the folder of the first row with no trained weights."""
    nets = {}
    for row in rows:
        folder = results / "training" / row
        if not (folder / "models" / "model.pt").is_file():
            parser.error(f"{folder}: no trained weights (models/model.pt); train the row with compare_methods.py first")
        nets[row] = load_network([TRAIN_CONFIG, folder / "config.json"], folder / "models" / "model.pt")[0]
    return nets


def tuned(results: Path, setting: str) -> dict:
    """The classical methods' grid searches for ``setting`` (``tuning.json`` of the benchmark run in ``results``), by row name."""
    return json.loads((results / "tuning.json").read_text())[setting]


def seconds_per_slice(denoise, repeats: int, channels: int = 1) -> float:
    """Median seconds to denoise one 256x256 image (noisy mid-grey; ``channels`` slices of it for a 2.5D
    denoiser), after one warm-up call."""
    x = (torch.rand(1, channels, 256, 256, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.3).clamp(0, 1)
    with torch.inference_mode():
        denoise(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            denoise(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class ScoreCache:
    """Per-image scores of one row on one setting, in ``OUT/scores/<setting>/<row>.json``, keyed by what produced them."""

    def __init__(self, out: Path):
        self.out = out / "scores"

    def path(self, setting: str, name: str) -> Path:
        return self.out / slug(setting) / f"{slug(name)}.json"

    def get(self, setting: str, name: str, key: dict) -> dict | None:
        path = self.path(setting, name)
        if path.is_file():
            record = json.loads(path.read_text())
            if record["key"] == key:
                return record
        return None

    def put(self, setting: str, name: str, key: dict, record: dict) -> dict:
        path = self.path(setting, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps({"key": key, **record}))
        return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the tables, figures, training runs and score cache")
    parser.add_argument("--rows", nargs="*", help=f"learned rows to train and score (default: all; --quick: {' '.join(MAIN_ROWS)}); from {list(LEARNED)}")
    parser.add_argument("--learned", action="append", default=[], help="extra row NAME=CONFIG:WEIGHTS of a bundle network (repeatable)")
    parser.add_argument("--no-shipped", action="store_true", help="do not score the shipped bundle weights")
    parser.add_argument("--methods", nargs="*", help=f"classical rows (default: all; --quick: Gaussian smoothing and TV); from {list(CLASSICAL) + list(VOLUMETRIC)}")
    parser.add_argument("--settings", nargs="+", help="noise settings as MODEL:S (e.g. rician:0.10) or mixed (default: all)")
    parser.add_argument("--ablation-settings", nargs="+", help="the only settings on which the ablation rows and the longer-trained rows are scored (default: every setting)")
    parser.add_argument("--epochs", type=int, help="training epochs of every learned row (default: train.json's)")
    parser.add_argument("--datalist", default=str(ROOT / "data" / "datalist.json"))
    parser.add_argument("--val-every", type=int, default=2, help="tune on every n-th validation slice")
    parser.add_argument("--test-every", type=int, default=1, help="score every n-th test slice")
    parser.add_argument("--quick", action="store_true", help="2 settings, 2 classical rows, 3 validation and 4 test slices, learned rows trained a few iterations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--readme", type=Path, help="also rewrite the benchmark blocks (<!-- benchmark:NAME -->) of this Markdown file, e.g. README.md")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()  # training runs in the repository root
    torch.set_num_threads(args.threads)
    bad = [c for c in (args.settings or []) + (args.ablation_settings or []) if c != "mixed" and not re.fullmatch(rf"({'|'.join(MODELS)}):(0?\.\d+)", c)]
    if bad:
        parser.error(f"settings must be MODEL:S with MODEL in {MODELS}, or mixed; got {bad}")
    names = args.methods if args.methods is not None else (["Gaussian smoothing", "TV (scikit-image Chambolle)"] if args.quick else [*CLASSICAL, *VOLUMETRIC])
    keys = args.rows if args.rows is not None else list(MAIN_ROWS if args.quick else LEARNED)
    unknown = sorted(set(names) - set(CLASSICAL) - set(VOLUMETRIC)) + sorted(set(keys) - set(LEARNED))
    if unknown:
        parser.error(f"unknown rows {unknown}; classical: {sorted(CLASSICAL) + sorted(VOLUMETRIC)}; learned: {sorted(LEARNED)}")
    needs = {name: BENCH_PACKAGES.get((CLASSICAL.get(name) or VOLUMETRIC[name])[0]) for name in names}
    missing = {name: package for name, package in needs.items() if package and importlib.util.find_spec(package) is None}
    if missing:  # checked now, not after hours of training
        parser.error(f"rows {sorted(missing)} need {sorted(set(missing.values()))}: pip install -e \".[bench]\", or leave them out with --methods")
    if args.readme:  # checked now, not after hours of work
        if not args.readme.is_file():
            parser.error(f"--readme {args.readme}: no such file")
        try:
            render_readme(args.readme.read_text(), [], str(args.readme))
        except ValueError as error:
            parser.error(str(error))
    args.out.mkdir(parents=True, exist_ok=True)

    overrides = {"epochs": args.epochs} if args.epochs else {}
    if args.quick:
        overrides = {**QUICK_TRAINING, **overrides, "dataset_dir": str(quick_datalist(args.out, args.datalist))}
    nets, info = {}, {}
    for key in keys:
        run = train_learned(key, args.out, overrides)
        name = LEARNED[key]["name"]
        nets[name], network_def = load_network([TRAIN_CONFIG, run["config"]], run["weights"])
        info[name] = {"groups": LEARNED[key]["groups"], "weights_digest": file_digest(run["weights"]), "network_def": network_def, "epochs": run["epochs"]}
        info[name].update(training_seconds=round(run["seconds"]), epoch_seconds_median=round(run["epoch_median"], 1))
    for spec in ENSEMBLES.values():
        if set(spec["members"]) <= set(keys):
            members = [LEARNED[key]["name"] for key in spec["members"]]
            nets[spec["name"]] = MeanOfNetworks([nets[m] for m in members])
            info[spec["name"]] = {"groups": spec["groups"], "weights_digest": [info[m]["weights_digest"] for m in members], "network_def": [info[m]["network_def"] for m in members]}
    for key, spec in ALL_PLANES.items():
        if spec["member"] in keys:
            member = LEARNED[spec["member"]]["name"]
            nets[spec["name"]] = nets[member]
            info[spec["name"]] = {**{k: info[member][k] for k in ("weights_digest", "network_def")}, "groups": spec["groups"], "all_planes_of": member}
    extra = [(*spec.split("=", 1), ("main",)) for spec in args.learned]
    if not args.no_shipped:  # trained longer than the budget: also a row of the "tried" table
        version = json.loads((ROOT / "bundle/configs/metadata.json").read_text())["version"]
        shipped = f"{ROOT / 'bundle/configs/inference.json'}:{ROOT / 'bundle/models/model.pt'}"
        extra.append((f"ours, shipped bundle weights ({version})", shipped, ("main", "tried")))
    for name, files, groups in extra:
        config, weights = files.rsplit(":", 1)
        nets[name], network_def = load_network([Path(config)], Path(weights))
        info[name] = {"groups": groups, "weights_digest": file_digest(Path(weights)), "network_def": network_def}

    info.update({name: {"groups": ("tried", "figures", VOLUME_GOAL)} for name in names if name in VOLUMETRIC})
    val = slice_items("nifti", args.datalist, "validation")[:: args.val_every]
    test = slice_items("nifti", args.datalist, "test")[:: args.test_every]
    # every slice of the volumes, for the volumetric rows and the neighbours of 2.5D networks
    needs_volumes = any(n in VOLUMETRIC for n in names) or any(getattr(net, "context_slices", 0) or "all_planes_of" in info[n] for n, net in nets.items())
    every = {split: slice_items("nifti", args.datalist, split, min_foreground=0) for split in ("validation", "test")} if needs_volumes else None
    if args.quick:
        val, test = val[:3], test[:: max(1, len(test) // 4)][:4]
    example = test[len(test) // 2]["id"]
    rows, tuning = [], {}
    ablation_only = {n for n, i in info.items() if own_member(i["groups"], "ablation") or own_member(i["groups"], "longer")}
    ablation_settings = settings(args.ablation_settings, False) if args.ablation_settings else None
    for model, sigma in settings(args.settings, args.quick):
        skip = ablation_only if ablation_settings is not None and (model, sigma) not in ablation_settings else set()
        here = {n: net for n, net in nets.items() if n not in skip}
        setting_rows, tuning[label(model, sigma)] = score_setting(args.out, model, sigma, names, here, info, val, test, example, args.quick, every)
        rows += setting_rows
    epochs = {n: i["epochs"] for n, i in info.items() if "epochs" in i}
    write_outputs(args.out, rows, tuning, {"validation": len(val), "test": len(test), "example": example, "epochs": epochs})
    if args.readme:
        print(f"{args.readme}: {'updated' if sync_readme(args.readme, rows) else 'already matches'}")


def score_setting(
    out: Path,
    model: str,
    sigma: float | None,
    names: list[str],
    nets: dict,
    info: dict,
    val: list[dict],
    test: list[dict],
    example: str,
    quick: bool,
    every: dict[str, list[dict]] | None = None,
) -> tuple[list[dict], dict]:
    """Tune the classical rows ``names`` (of ``CLASSICAL`` and ``VOLUMETRIC``) on ``val`` and score them and ``nets``
    on ``test`` for one noise setting.

    ``every`` holds the items of every slice of the validation and test volumes (``"validation"``, ``"test"``):
    the volumes of the ``VOLUMETRIC`` rows and the neighbouring slices of 2.5D networks (``context_slices``).
    Scores come from the cache when what produced them is unchanged; the denoised ``example`` slice
    of every row drawn in the crop figures (``benchmark_report.drawn``) is saved for them. Returns the table
    rows and the tuning record.
    """
    setting = label(model, sigma)
    print(f"{setting}: {len(names)} classical rows tuned on {len(val)} validation slices, {len(nets)} learned rows; {len(test)} test slices", flush=True)
    val_pairs, test_pairs = noisy_pairs(val, model, sigma), noisy_pairs(test, model, sigma)
    every_volumes = {split: volumes(noisy_pairs(items, model, sigma)) for split, items in (every or {}).items()}
    test_ids = [item["id"] for item in test]
    cache, psnr = ScoreCache(out), denoising_metrics()["psnr"]
    results, tuning = {}, {}

    clean_example = next(p[1] for p in test_pairs if p[2] == example)
    save_example(out, setting, "clean", clean_example[0, 0].numpy())

    def missing_example(name: str) -> bool:
        """Whether row ``name`` is drawn in this setting's crop figure and its denoised example slice is not kept yet."""
        return drawn(setting, info.get(name, {}).get("groups", ("main",))) and not example_path(out, setting, name).is_file()

    def scored(name: str, key: dict, denoise, extra: dict | None = None, timed: bool = True, pairs: list | None = None, channels: int = 1) -> None:
        """Score ``denoise`` on the test ``pairs`` (default: the noisy test slices) unless cached, and time it
        (never cached: a rerun on a quiet machine gives comparable times); keep its denoised example slice
        if the crop figures draw it."""
        pairs = test_pairs if pairs is None else pairs
        record = cache.get(setting, name, key)
        if missing_example(name):
            with torch.inference_mode():
                save_example(out, setting, name, denoise(next(p[0] for p in pairs if p[2] == example)).clamp(0, 1)[0, 0].numpy())
        if record is None:
            start = time.perf_counter()
            values = score_images(pairs, denoise)
            record = {"metrics": {m: v.tolist() for m, v in values.items()}, "scoring_seconds": time.perf_counter() - start, **(extra or {})}
            record = cache.put(setting, name, key, record)
        results[name] = {**record, "seconds_per_256x256": seconds_per_slice(denoise, 1 if quick else 3, channels) if timed else None}

    scored("noisy input", {"ids": test_ids}, lambda x: x, timed=False)
    for name in (n for n in names if n in CLASSICAL):
        method, fixed, grid_ = CLASSICAL[name]
        correct = sigma if model == "rician" and method not in SELF_CORRECTING else None
        params = {**{k: [v] for k, v in fixed.items()}, **grid_}
        key = {"ids": test_ids, "val_ids": [i["id"] for i in val], "grid": params, "correct": correct}
        record = cache.get(setting, name, key)
        if record is None:
            best, best_score = tune(
                method,
                [p[0] for p in val_pairs],
                [p[1] for p in val_pairs],
                lambda y, c: float(psnr(y.clamp(0, 1), c).mean()),
                params,
                correct=[correct] * len(val_pairs),
            )
            record = {"best": best, "validation_psnr": best_score}
        scored(name, key, classical_denoiser(method, record["best"], correct), {"best": record["best"], "validation_psnr": record["validation_psnr"]})
        tuning[name] = {"best": record["best"], "validation_psnr": record["validation_psnr"], "grid": {k: list(v) for k, v in grid_.items()}}
    for name in (n for n in names if n in VOLUMETRIC):
        method, grid_ = VOLUMETRIC[name]
        correct = sigma if model == "rician" else None
        key = {"ids": test_ids, "volumes": sorted(every_volumes["test"]), "val_volumes": sorted(every_volumes["validation"]), "grid": grid_, "correct": correct}
        record, pairs = cache.get(setting, name, key), test_pairs
        if record is None or missing_example(name):
            if record is None:
                val_volumes = list(every_volumes["validation"].values())
                best, best_score = tune(method, [v[0] for v in val_volumes], [v[1] for v in val_volumes], head_slices_psnr, grid_, [correct] * len(val_volumes))
            else:
                best, best_score = record["best"], record["validation_psnr"]
            start, pixels = time.perf_counter(), sum(v[0].numel() for v in every_volumes["test"].values())
            pairs = volume_pairs(test_pairs, every_volumes["test"], classical_denoiser(method, best, correct))
            seconds = (time.perf_counter() - start) * 256 * 256 / pixels
            record = {"best": best, "validation_psnr": best_score, "volume_seconds_per_256x256": seconds}
        scored(name, key, lambda x: x, {k: record[k] for k in ("best", "validation_psnr", "volume_seconds_per_256x256")}, timed=False, pairs=pairs)
        results[name]["seconds_per_256x256"] = results[name]["volume_seconds_per_256x256"]
        tuning[name] = {"best": results[name]["best"], "validation_psnr": results[name]["validation_psnr"], "grid": {k: list(v) for k, v in grid_.items()}}
    for name, net in nets.items():
        key = {"ids": test_ids, "weights": info[name]["weights_digest"], "network_def": info[name]["network_def"]}
        context = getattr(net, "context_slices", 0)
        if "all_planes_of" in info[name]:  # after its member, whose timing it takes three times
            key["all_planes"] = True
            done = cache.get(setting, name, key) and not missing_example(name)
            pairs = test_pairs if done else volume_pairs(test_pairs, every_volumes["test"], all_planes(net))
            scored(name, key, lambda x: x, timed=False, pairs=pairs)
            results[name]["seconds_per_256x256"] = 3 * results[info[name]["all_planes_of"]]["seconds_per_256x256"]
            continue
        pairs = with_neighbours(test_pairs, every_volumes["test"], context) if context else None
        scored(name, key, net, pairs=pairs, channels=1 + 2 * context)

    rows = []
    for name, record in results.items():
        row = {
            "setting": setting,
            "method": name,
            "groups": " ".join(info.get(name, {}).get("groups", ("main",))),
            "parameters": sum(p.numel() for p in nets[name].parameters()) if name in nets else "",
            "seconds_per_256x256": record["seconds_per_256x256"] if record["seconds_per_256x256"] is not None else "",
        }
        row.update({k: info.get(name, {}).get(k, "") for k in ("training_seconds", "epoch_seconds_median")})
        for metric, values in record["metrics"].items():
            row[f"{metric}_mean"], row[f"{metric}_std"] = float(np.mean(values)), float(np.std(values))
        rows.append(row)
    print(f"  {setting}: " + ", ".join(f"{r['method']} {r['psnr_mean']:.2f}" for r in rows), flush=True)
    return rows, tuning


def volume_pairs(test_pairs: list, stacks: dict, denoise_volume) -> list:
    """``test_pairs`` with each noisy slice replaced by its slice of ``denoise_volume(noisy)``, ``noisy`` the
    slices ``(Z, 1, H, W)`` of its whole volume in ``stacks`` (``nad_monai.evaluation.volumes``)."""
    denoised = {}
    for noisy, _, ids in stacks.values():
        y = denoise_volume(noisy)
        denoised.update({slice_id: y[k : k + 1] for k, slice_id in enumerate(ids)})
    return [(denoised[slice_id], clean, slice_id) for _, clean, slice_id in test_pairs]


def all_planes(net: torch.nn.Module, axes: tuple[int, ...] = (0, 1, 2)):
    """A volume denoiser for ``volume_pairs``: the slices ``(Z, C, H, W)`` of a volume run through ``net`` across
    each of ``axes`` (of ``H, W, Z``; 2 is the slices as given), the results averaged (``nad-denoise
    --all-planes``). Channel 0 is the volume; further channels go to ``net`` per slice (``NeighbourSliceInferer``)."""
    planes = MeanOfInferers([volume_slice_inferer(getattr(net, "context_slices", 0), axis, sw_batch_size=8) for axis in axes])

    def denoise(noisy: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return planes(noisy.permute(1, 2, 3, 0)[None], net)[0, 0].permute(2, 0, 1)[:, None]

    return denoise


def network_outputs(net: torch.nn.Module, test_pairs: list, stacks: dict, planes: bool = False, denoise=None) -> list:
    """``test_pairs`` with each noisy slice replaced by trained row ``net``'s output, as the benchmark scores it: on
    the slice (with its neighbouring slices from ``stacks``, the ``volumes`` of every test slice, for a 2.5D
    ``net``), or, with ``planes``, the mean over the volume's three planes (``all_planes``). ``denoise`` runs in
    place of ``net`` on the slices or stacks (e.g. a self-ensemble of it); not with ``planes``."""
    if planes:
        return volume_pairs(test_pairs, stacks, all_planes(net))
    context = getattr(net, "context_slices", 0)
    with torch.inference_mode():
        return [(denoise(x) if denoise else net(x), clean, key) for x, clean, key in (with_neighbours(test_pairs, stacks, context) if context else test_pairs)]


def head_slices_psnr(denoised: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean PSNR of the slices of a volume ``(Z, 1, H, W)`` that are mostly head (``foreground_fraction``
    of the clean slice >= ``MIN_FOREGROUND``, ``slice_items``' default: the slices the 2D rows are tuned on every
    ``--val-every``-th of)."""
    head = [k for k in range(len(clean)) if foreground_fraction(clean[k]) >= MIN_FOREGROUND]
    return float(denoising_metrics()["psnr"](denoised[head].clamp(0, 1), clean[head]).mean())


def quick_datalist(out: Path, datalist: str) -> Path:
    """A datalist of the smallest training and the smallest validation volume of ``datalist`` (for ``--quick``)."""
    full = json.loads(Path(datalist).read_text())
    base = Path(datalist).resolve().parent

    def smallest(split: str) -> dict:
        items = [{**i, "image": str(base / i["image"])} for i in full[split]]
        return min(items, key=lambda i: Path(i["image"]).stat().st_size)

    path = out / "quick_datalist.json"
    path.write_text(json.dumps({"training": [smallest("training")], "validation": [smallest("validation")]}, indent=1))
    return path


if __name__ == "__main__":
    main()
