"""The shipped demo data: checksums, size, value range, provenance and person-disjoint splits."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from conftest import DATA, DATALIST

SPLITS = ("training", "validation", "test")
EXTRA = ("real_noise", "benchmark_training")
"""Lists outside the splits: a real-noise demo input, and volumes only benchmark rows train on."""


def datalist() -> dict:
    return json.loads(DATALIST.read_text())


def shipped_files() -> list[str]:
    return sorted(p.name for p in DATA.glob("*.nii.gz"))


def test_checksums_match_committed_files():
    lines = (DATA / "SHA256SUMS").read_text().split("\n")
    sums = dict(reversed(line.split()) for line in lines if line.strip())
    assert sorted(sums) == shipped_files()
    for name, digest in sums.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name


def test_total_size_within_budget():
    assert sum((DATA / n).stat().st_size for n in shipped_files()) <= 25 * 2**20


@pytest.mark.parametrize("name", shipped_files())
def test_every_file_is_3d_unit_range_with_a_real_affine(name):
    img = nib.load(DATA / name)
    data = img.get_fdata()
    assert data.ndim == 3 and min(data.shape) >= 10
    assert data.min() == 0.0 and data.max() == 1.0
    np.testing.assert_array_equal(data * 2**15, np.rint(data * 2**15)), "exact multiples of 1/32768"
    assert img.header.get_xyzt_units()[0] == "mm"
    assert abs(np.linalg.det(img.affine[:3, :3])) > 0.5  # voxel volume in mm^3, not a placeholder


@pytest.mark.parametrize("name", shipped_files())
def test_every_file_has_recorded_provenance(name):
    sources = (DATA / "SOURCES.md").read_text()
    assert f"`{name}`" in sources


def test_splits_are_disjoint_by_person():
    dl = datalist()
    subjects = {split: {e["subject"] for e in dl[split]} for split in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not subjects[a] & subjects[b], (a, b, subjects[a] & subjects[b])
    extra_training = {e["subject"] for e in dl["benchmark_training"]}
    assert not extra_training & (subjects["validation"] | subjects["test"])
    assert [e["image"] for e in dl["test"]] == ["colin27_t1.nii.gz"]


def test_datalist_lists_only_shipped_files_once():
    dl = datalist()
    listed = [e["image"] for key in (*SPLITS, *EXTRA) for e in dl[key]]
    assert sorted(listed) == shipped_files()
