"""Shared fixtures: real MR slices and volumes from data/."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
DATALIST = DATA / "datalist.json"

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def load_volume(name: str) -> np.ndarray:
    """A shipped volume as float32 (X, Y, Z) in [0, 1]."""
    return np.asarray(nib.load(DATA / name).get_fdata(), dtype=np.float32)


@pytest.fixture(scope="session")
def colin_slice() -> np.ndarray:
    """Axial slice 90 of Colin27, channel-first (1, 181, 217), float32 in [0, 1]."""
    return load_volume("colin27_t1.nii.gz")[None, :, :, 90].copy()


@pytest.fixture(scope="session")
def mni_slice() -> np.ndarray:
    """Axial slice 95 of the MNI152 template (true-zero background), (1, 197, 233)."""
    return load_volume("mni152_2009a_t1.nii.gz")[None, :, :, 95].copy()


@pytest.fixture(scope="session")
def dipy_volume() -> np.ndarray:
    """The dipy b0 volume, channel-first (1, 128, 128, 10)."""
    return load_volume("dipy_s0.nii.gz")[None].copy()
