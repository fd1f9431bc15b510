"""Readers and slice datasets: real NIfTI, Br35H-style PNG/JPEG folders, DICOM series; bad input."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.data import DataLoader
from monai.transforms import CenterSpatialCropd
from PIL import Image
from pydicom.data import get_testdata_file
from torch.utils.data import ConcatDataset

from conftest import DATA, DATALIST, load_volume
from dicom_fixtures import real_values, write_classic, write_enhanced
from nad_monai import InputError, unit_range
from nad_monai.datasets import (
    dicom_series_slices,
    foreground_fraction,
    image_folder_slices,
    nifti_slices,
    slice_dataset,
    slice_items,
    volume_slices,
)
from transforms import RandMixedCorruptiond

CT_SERIES = Path(get_testdata_file("dicomdirtests/77654033/CT2/17136")).parent  # 4 real CT slices
MR_SINGLE = Path(get_testdata_file("MR_small.dcm"))


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path, problem: str) -> None:
    message = str(err.value)
    assert "\n" not in message and len(message) < 300, message
    assert str(path) in message and problem in message


def assert_unit_slices(items: list[dict]) -> None:
    for item in items:
        img = item["image"]
        assert isinstance(img, torch.Tensor) and img.dtype == torch.float32 and img.ndim == 3 and img.shape[0] == 1
        assert img.min() >= 0 and img.max() <= 1
    assert len({item["id"] for item in items}) == len(items), "ids must be unique"


# --- NIfTI datalist ---------------------------------------------------------------------------


def test_nifti_test_split_gives_colin27_axial_slices_without_background_slices():
    items = nifti_slices(DATALIST, "test", axis=2, min_foreground=0.15)
    assert_unit_slices(items)
    assert {i["subject"] for i in items} == {"colin27"}
    assert 100 < len(items) < 181, "mostly-background slices at the top and bottom are skipped"
    assert all(foreground_fraction(i["image"]) >= 0.15 for i in items)
    volume = load_volume("colin27_t1.nii.gz")  # already RAS, so axial slice k is volume[..., k]
    k = int(items[50]["id"].rsplit(":", 1)[1])
    np.testing.assert_allclose(items[50]["image"][0].numpy(), volume[:, :, k], atol=1e-6)


@pytest.mark.parametrize("axis, shape", [(0, (217, 181)), (1, (181, 181)), (2, (181, 217))])
def test_nifti_axis_selects_the_ras_plane(axis, shape):
    items = nifti_slices(DATALIST, "test", axis=axis)
    assert tuple(items[0]["image"].shape[1:]) == shape
    assert items[0]["id"].startswith(f"colin27_t1.nii.gz#axis{axis}:")


def test_nifti_several_axes_give_the_slices_of_each_plane_with_distinct_ids():
    together = nifti_slices(DATALIST, "test", axis=(0, 2))
    apart = nifti_slices(DATALIST, "test", axis=0) + nifti_slices(DATALIST, "test", axis=2)
    assert [i["id"] for i in together] == [i["id"] for i in apart]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(together, apart))
    assert_unit_slices(together)


def test_volume_slices_takes_numpy_integer_axes_as_before():
    volume = torch.rand(1, 4, 5, 6)
    assert [i["id"] for i in volume_slices(volume, "v", "s", axis=np.int64(1), min_foreground=0)] == [f"v#axis1:{k:04d}" for k in range(5)]


def test_context_stacks_each_slice_between_its_neighbours_and_repeats_the_ends():
    volume = torch.as_tensor(load_volume("dipy_s0.nii.gz"))[None]  # (1, 128, 128, 10), real b0 slices
    flat = volume_slices(volume, "v", "s", axis=2, min_foreground=0.15)
    stacked = volume_slices(volume, "v", "s", axis=2, min_foreground=0.15, context=2)
    assert [i["id"] for i in stacked] == [i["id"] for i in flat]  # the same slices pass the foreground test: the middle one's
    last = volume.shape[3] - 1
    for item, plain in zip(stacked, flat):
        k = int(item["id"].rsplit(":", 1)[1])
        assert item["image"].shape == (5, 128, 128) and torch.equal(item["image"][2:3], plain["image"])
        for c, j in enumerate(range(k - 2, k + 3)):
            assert torch.equal(item["image"][c], volume[0, :, :, min(max(j, 0), last)].float())
    assert any(int(i["id"].rsplit(":", 1)[1]) in (0, last) for i in stacked)  # an end slice was stacked
    with pytest.raises(ValueError, match="0 for a 2D image"):
        volume_slices(volume[..., 0], "v", "s", context=1)
    with pytest.raises(ValueError, match="no neighbouring slices"):
        slice_items("folder", DATA, context=1)


@pytest.mark.parametrize("axis", [3, -1, (), (2, 2), (0, 1.0), True])
def test_volume_slices_rejects_an_axis_that_is_not_a_ras_axis(axis):
    with pytest.raises(ValueError, match="axis must be 0, 1, 2"):
        volume_slices(torch.zeros(1, 4, 5, 6), "v", "s", axis=axis)


def test_training_split_covers_every_training_volume():
    items = nifti_slices(DATALIST, "training")
    assert_unit_slices(items)
    assert {i["id"].split("#")[0] for i in items} == {
        "mni152_2009a_t1.nii.gz",
        "heudiconv_b0_run1.nii.gz",
        "heudiconv_b0_run2.nii.gz",
        "nibabel_epi_vol0.nii.gz",
        "nibabel_epi_vol1.nii.gz",
    }


def test_slice_dataset_applies_cached_and_random_transforms():
    noise = RandMixedCorruptiond(keys="image", seed_key="id", sigma=0.1)
    ds = slice_dataset("nifti", DATALIST, transform=noise, split="validation", num_workers=0)
    clean = nifti_slices(DATALIST, "validation")
    assert len(ds) == len(clean) > 20
    assert not torch.equal(ds[0]["image"], clean[0]["image"])
    torch.testing.assert_close(ds[0]["image"], ds[0]["image"], rtol=0, atol=0)  # deterministic noise


# --- Br35H-style PNG/JPEG folders -------------------------------------------------------------


def write_br35h_folder(root: Path, volume: np.ndarray) -> dict[str, np.ndarray]:
    """yes/ and no/ subfolders of 8-bit slices from a real volume, grey and RGB, PNG and JPEG."""
    written = {}
    for sub, k, mode, suffix in [("yes", 80, "L", ".png"), ("yes", 90, "RGB", ".png"), ("no", 100, "L", ".jpg")]:
        grey = (volume[:, :, k].T * 255).round().astype(np.uint8)  # rows = y, as an image viewer shows it
        (root / sub).mkdir(parents=True, exist_ok=True)
        path = root / sub / f"slice{k}{suffix}"
        Image.fromarray(grey).convert(mode).save(path)
        written[path.relative_to(root).as_posix()] = grey
    return written


@pytest.mark.parametrize("layout", ["br35h", "flat"])
def test_image_folder_reads_grey_and_colour_slices(tmp_path, layout):
    volume = load_volume("colin27_t1.nii.gz")
    written = write_br35h_folder(tmp_path, volume)
    if layout == "flat":
        for name in list(written):
            shutil.move(tmp_path / name, tmp_path / Path(name).name)
            written[Path(name).name] = written.pop(name)
    items = image_folder_slices(tmp_path)
    assert_unit_slices(items)
    assert sorted(i["id"] for i in items) == sorted(written)
    for item in items:
        expected = unit_range(written[item["id"]].T.astype(np.float32))  # MONAI's PILReader gives (W, H)
        atol = 0.05 if item["id"].endswith(".jpg") else 1e-5  # JPEG is lossy
        assert np.abs(item["image"][0].numpy() - expected).mean() < atol


def test_slices_of_a_volume_and_of_an_image_folder_batch_together(tmp_path):
    """One training set may mix sources (benchmark: MR volumes plus photographs): the items carry no
    per-source metadata that the collate would have to reconcile."""
    write_br35h_folder(tmp_path, load_volume("colin27_t1.nii.gz"))
    crop = CenterSpatialCropd(keys="image", roi_size=(32, 32))
    mixed = ConcatDataset([slice_dataset("nifti", DATALIST, crop, "validation", num_workers=0), slice_dataset("folder", tmp_path, crop, None, num_workers=0)])
    batch = next(iter(DataLoader(mixed, batch_size=len(mixed))))
    assert batch["image"].shape == (len(mixed), 1, 32, 32)
    assert {i["id"] for i in image_folder_slices(tmp_path)} < set(batch["subject"])


# --- DICOM series -----------------------------------------------------------------------------


def test_dicom_series_slices_follow_slice_positions(tmp_path):
    items = dicom_series_slices(CT_SERIES, axis=2, min_foreground=0.0)
    assert_unit_slices(items)
    assert len(items) == 4 and tuple(items[0]["image"].shape) == (1, 16, 16)
    # independent decode with pydicom, ordered along patient z (the same in LPS and RAS)
    datasets = sorted((pydicom.dcmread(p) for p in CT_SERIES.iterdir()), key=lambda d: float(d.ImagePositionPatient[2]))
    stack = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in datasets])
    expected = unit_range(stack.astype(np.float32))
    for item, ref in zip(items, expected):  # in-plane flips do not change the sorted values
        np.testing.assert_allclose(np.sort(item["image"].numpy().ravel()), np.sort(ref.ravel()), atol=1e-5)


@pytest.mark.parametrize("layout", ["classic", "enhanced"])
def test_dicom_coronal_series_is_resliced_in_ras(tmp_path, layout):
    """12 coronal slices (real Colin27 data, shuffled files/frames) give 80 axial RAS slices."""
    if layout == "classic":
        write_classic(tmp_path / "series")
    else:
        write_enhanced(tmp_path / "series" / "mr.dcm")
    items = dicom_series_slices(tmp_path / "series", axis=2, min_foreground=0.0)
    assert_unit_slices(items)
    # DICOM voxel (slice k, row r, col c) lies at LPS (-40 + 1.1 c, -15 + 2.5 k, 60 - 0.9 r), so
    # RAS axes run along -c, -k, -r
    ras = unit_range(real_values()[::-1, ::-1, ::-1].transpose(2, 0, 1).astype(np.float32).copy())
    assert len(items) == 80 and tuple(items[0]["image"].shape) == (1, 90, 12)
    for item in items:
        z = int(item["id"].rsplit(":", 1)[1])
        np.testing.assert_allclose(item["image"][0].numpy(), ras[:, :, z], atol=1e-6)


def test_dicom_single_file_folder_is_one_slice(tmp_path):
    shutil.copy(MR_SINGLE, tmp_path / "mr.dcm")
    items = slice_items("dicom", tmp_path, min_foreground=0.0)
    assert len(items) == 1 and tuple(items[0]["image"].shape) == (1, 64, 64)


# --- bad input: one line naming the file ------------------------------------------------------


def datalist_with(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "datalist.json"
    path.write_text(f'{{"training": [{{"image": "{name}"}}]}}')
    return path


def test_truncated_nifti(tmp_path):
    data = (DATA / "dipy_s0.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        nifti_slices(datalist_with(tmp_path, "cut.nii.gz"))
    assert_one_line_naming(err, tmp_path / "cut.nii.gz", "not a readable NIfTI image")


def test_non_image_file_in_datalist(tmp_path):
    (tmp_path / "notes.nii.gz").write_text("these are notes, not voxels")
    with pytest.raises(InputError) as err:
        nifti_slices(datalist_with(tmp_path, "notes.nii.gz"))
    assert_one_line_naming(err, tmp_path / "notes.nii.gz", "not a readable NIfTI image")


def test_datalist_entry_that_is_not_nifti(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError) as err:
        nifti_slices(datalist_with(tmp_path, "notes.txt"))
    assert_one_line_naming(err, tmp_path / "notes.txt", "expected a NIfTI file")


def test_missing_split_and_missing_datalist(tmp_path):
    with pytest.raises(InputError) as err:
        nifti_slices(datalist_with(tmp_path, "x.nii.gz"), split="validation")
    assert_one_line_naming(err, tmp_path / "datalist.json", "'validation'")
    with pytest.raises(InputError) as err:
        nifti_slices(tmp_path / "nope.json")
    assert_one_line_naming(err, tmp_path / "nope.json", "no such datalist")


def test_nan_voxels(tmp_path):
    data = load_volume("dipy_aniso_vox.nii.gz")
    data[10, 10, 10] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(InputError) as err:
        nifti_slices(datalist_with(tmp_path, "nan.nii.gz"))
    assert_one_line_naming(err, tmp_path / "nan.nii.gz", "NaN")


def test_non_image_file_in_image_folder(tmp_path):
    (tmp_path / "yes").mkdir()
    (tmp_path / "yes" / "scan.png").write_text("not a png")
    with pytest.raises(InputError) as err:
        image_folder_slices(tmp_path)
    assert_one_line_naming(err, tmp_path / "yes" / "scan.png", "not a readable PNG/JPEG image")


def test_non_dicom_file_in_series_folder(tmp_path):
    shutil.copytree(CT_SERIES, tmp_path / "series")
    (tmp_path / "series" / "README").write_text("not dicom")
    with pytest.raises(InputError) as err:
        dicom_series_slices(tmp_path / "series")
    assert_one_line_naming(err, tmp_path / "series" / "README", "not a readable DICOM file")


def test_folder_with_several_series(tmp_path):
    shutil.copytree(CT_SERIES, tmp_path / "mixed")
    shutil.copy(MR_SINGLE, tmp_path / "mixed" / "mr.dcm")
    with pytest.raises(InputError) as err:
        dicom_series_slices(tmp_path / "mixed")
    assert_one_line_naming(err, tmp_path / "mixed", "holds 2 DICOM series")


@pytest.mark.parametrize("source, problem", [("folder", "no images found"), ("dicom", "empty folder")])
def test_empty_folder(tmp_path, source, problem):
    with pytest.raises(InputError) as err:
        slice_items(source, tmp_path)
    assert_one_line_naming(err, tmp_path, problem)


def test_unknown_source():
    with pytest.raises(ValueError, match="unknown data source"):
        slice_items("hdf5", DATA)


def test_gzip_of_garbage_is_rejected(tmp_path):
    with gzip.open(tmp_path / "garbage.nii.gz", "wb") as f:
        f.write(b"\x00" * 400)
    with pytest.raises(InputError) as err:
        nifti_slices(datalist_with(tmp_path, "garbage.nii.gz"))
    assert_one_line_naming(err, tmp_path / "garbage.nii.gz", "not a readable NIfTI image")
