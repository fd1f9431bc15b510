"""nad_monai.dicom on real MR data: classic and enhanced series read, written as derived series, read back.

The series are built at test time from Colin27 (``tests/dicom_fixtures.py``); pydicom's test files
add a real 4-slice CT series and MR_small in RLE, big-endian, implicit-VR and JPEG-LS encodings.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from monai.data import PydicomReader
from monai.transforms import LoadImage
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid

import nad_monai.dicom as dicom_module
from dicom_fixtures import (
    DCIODVFY,
    INTERCEPT,
    SHUFFLE,
    SLOPE,
    affine_lps,
    dciodvfy_errors,
    real_values,
    sitk_image,
    write_classic,
    write_enhanced,
)
from nad_monai import InputError
from nad_monai.dicom import DicomSeries, load_series, save_derived_series

CT_SERIES = Path(get_testdata_file("dicomdirtests/77654033/CT2/17136")).parent  # 4 real CT slices
MR_SMALL = {name: Path(get_testdata_file(f"MR_small{name}.dcm")) for name in ("", "_RLE", "_bigendian", "_implicit", "_jpeg_ls_lossless")}
DESCRIPTION = "denoised nad-monai 0.1.0 unrolled_pm"
LAYOUTS = ["classic", "enhanced"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The two fixture series (read-only: tests that change files work on copies)."""
    root = tmp_path_factory.mktemp("series")
    write_classic(root / "classic")
    write_enhanced(root / "enhanced" / "mr.dcm")
    return {"classic": root / "classic", "enhanced": root / "enhanced"}


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def read_all(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir())]


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path, problem: str) -> None:
    message = str(err.value)
    assert "\n" not in message and len(message) < 400, message
    assert str(path) in message and problem in message, message


# --- reading ----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reads_real_world_values_in_spatial_order(built, layout):
    series = load_series(built[layout])
    assert isinstance(series, DicomSeries) and series.volume.dtype == np.float32
    np.testing.assert_array_equal(series.volume, real_values())  # rescaled, files/frames sorted by position
    np.testing.assert_allclose(series.affine, affine_lps())
    assert series.note is None and series.series_found == (series.series_uid,)
    assert series.multiframe == (layout == "enhanced")
    assert all("PixelData" not in ds for ds in series.datasets), "pixels are dropped from the kept headers"
    if layout == "classic":
        assert [int(ds.InstanceNumber) for ds in series.datasets] == list(range(1, 13))
        assert [p.name for p in series.paths] == [f"IM{(SHUFFLE * k) % 12:04d}" for k in range(12)]
    else:
        assert series.frames == tuple(sorted(range(12), key=lambda f: (SHUFFLE * f) % 12))


def test_reads_the_real_ct_series_and_mr_small_encodings():
    ct = load_series(CT_SERIES)
    assert ct.volume.shape == (4, 16, 16) and [int(d.InstanceNumber) for d in ct.datasets] == [18, 180, 181, 182]
    ref = pydicom.dcmread(CT_SERIES / "17106")
    np.testing.assert_array_equal(ct.volume[0], ref.pixel_array * float(ref.RescaleSlope) + float(ref.RescaleIntercept))
    plain = load_series(MR_SMALL[""]).volume
    for name in ("_RLE", "_bigendian", "_implicit"):
        np.testing.assert_array_equal(load_series(MR_SMALL[name]).volume, plain)


def test_several_series_take_the_largest_and_say_so(tmp_path, built):
    folder = tmp_path / "study"
    shutil.copytree(built["classic"], folder)
    shutil.copy(MR_SMALL[""], folder / "mr_small.dcm")
    series = load_series(folder)
    classic_uid = pydicom.dcmread(next(built["classic"].iterdir())).SeriesInstanceUID
    assert series.series_uid == classic_uid and series.volume.shape == (12, 80, 90)
    assert "\n" not in series.note and "2 DICOM series" in series.note and classic_uid in series.note
    assert "--series UID" in series.note
    other = pydicom.dcmread(MR_SMALL[""]).SeriesInstanceUID
    assert series.series_found == (classic_uid, other)
    picked = load_series(folder, series_uid=other)
    assert picked.series_uid == other and picked.volume.shape == (1, 64, 64) and picked.note is None
    with pytest.raises(InputError) as err:
        load_series(folder, series_uid="1.2.3.4")
    assert_one_line_naming(err, folder, "no series 1.2.3.4 here; available: ")
    assert classic_uid in str(err.value) and other in str(err.value)


def test_tied_series_go_by_series_number_then_uid(tmp_path):
    uids = sorted(generate_uid() for _ in range(3))
    for name, uid, number in [("a.dcm", uids[2], 7), ("b.dcm", uids[1], 5), ("c.dcm", uids[0], 9)]:
        ds = pydicom.dcmread(MR_SMALL[""])
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SOPInstanceUID = uid, number, generate_uid()
        ds.save_as(tmp_path / name)
    assert load_series(tmp_path).series_uid == uids[1]  # one image each: lowest SeriesNumber
    ds = pydicom.dcmread(tmp_path / "c.dcm")
    ds.SeriesNumber = 5
    ds.save_as(tmp_path / "c.dcm")
    assert load_series(tmp_path).series_uid == uids[0]  # and SeriesNumber tied too: lowest UID


def write_sr(path: Path) -> Path:
    """A minimal Basic Text SR: a valid DICOM object without pixel data."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = BasicTextSRStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "SR"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_hidden_files_dicomdir_subfolders_and_reports_are_skipped(tmp_path, built):
    folder = tmp_path / "series"
    shutil.copytree(built["classic"], folder)
    (folder / ".DS_Store").write_bytes(b"\0\1junk")
    shutil.copy(get_testdata_file("DICOMDIR"), folder / "DICOMDIR")
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("not read")
    write_sr(folder / "report.dcm")
    series = load_series(folder)
    np.testing.assert_array_equal(series.volume, real_values())
    assert series.note == "skipped 1 DICOM files without pixel data (e.g. report.dcm)"


# --- bad input: one line naming the file --------------------------------------------------------


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_empty_folder_and_folder_without_dicom_files(tmp_path):
    with pytest.raises(InputError) as err:
        load_series(tmp_path)
    assert_one_line_naming(err, tmp_path, "empty folder: no DICOM files")
    shutil.copy(get_testdata_file("DICOMDIR"), tmp_path / "DICOMDIR")
    with pytest.raises(InputError) as err:
        load_series(tmp_path)
    assert_one_line_naming(err, tmp_path, "a DICOMDIR: point to the series folder")
    with pytest.raises(InputError) as err:
        load_series(tmp_path / "nope")
    assert_one_line_naming(err, tmp_path / "nope", "no such file or folder")


def test_non_dicom_file_in_a_series_folder_is_an_error(tmp_path, built):
    folder = copy_of(built["classic"], tmp_path / "series")
    (folder / "README").write_text("these are the scans")
    with pytest.raises(InputError) as err:
        load_series(folder)
    assert_one_line_naming(err, folder / "README", "not a readable DICOM file")


@pytest.mark.parametrize(
    "source, cut, problem",
    [
        ("", 1600, "truncated DICOM file: pixel data has 100 of 8192 bytes"),  # cut inside native pixel data
        ("", 1200, "DICOM image without pixel data (truncated or incomplete file)"),  # cut before the pixel data
        ("_RLE", 4790, "truncated DICOM file"),  # cut inside encapsulated fragments
        ("", 400, "corrupt or truncated DICOM file"),  # cut inside the first elements
    ],
)
def test_truncated_files(tmp_path, source, cut, problem):
    path = tmp_path / "cut.dcm"
    path.write_bytes(MR_SMALL[source].read_bytes()[:cut])
    with pytest.raises(InputError) as err:
        load_series(tmp_path)
    assert_one_line_naming(err, path, problem)


def test_corrupt_file_after_a_valid_preamble(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(0).bytes(2000))
    with pytest.raises(InputError) as err:
        load_series(path)
    assert_one_line_naming(err, path, "corrupt")


def test_dicom_without_pixel_data(tmp_path):
    sr = write_sr(tmp_path / "report.dcm")
    with pytest.raises(InputError) as err:
        load_series(tmp_path)
    assert_one_line_naming(err, sr, "DICOM file without pixel data (Basic Text SR Storage): not an image")
    image = pydicom.dcmread(MR_SMALL[""])
    del image.PixelData
    image.save_as(tmp_path / "mr.dcm")
    with pytest.raises(InputError) as err:
        load_series(tmp_path)
    assert_one_line_naming(err, tmp_path / "mr.dcm", "DICOM image without pixel data")


def test_pixel_data_that_cannot_be_decoded(tmp_path):
    data = bytearray(MR_SMALL["_RLE"].read_bytes())
    fragment = data.find(b"\xfe\xff\x00\xe0", data.find(b"\xfe\xff\x00\xe0", data.find(b"\xe0\x7f\x10\x00")) + 8)
    data[fragment + 8 : fragment + 12] = (200).to_bytes(4, "little")  # RLE header: 200 segments
    path = tmp_path / "bad_rle.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        load_series(path)
    assert_one_line_naming(err, path, "pixel data cannot be decoded (RLE Lossless")


def test_jpeg_ls_decodes_when_a_decoder_is_installed_and_is_named_when_not():
    """pyjpegls comes with the deploy extra; without it, JPEG-LS pixel data is a one-line error."""
    if pydicom.pixels.decoders.JPEGLSLosslessDecoder.is_available:
        np.testing.assert_array_equal(load_series(MR_SMALL["_jpeg_ls_lossless"]).volume, load_series(MR_SMALL[""]).volume)
        return
    with pytest.raises(InputError) as err:
        load_series(MR_SMALL["_jpeg_ls_lossless"])
    assert_one_line_naming(err, MR_SMALL["_jpeg_ls_lossless"], "pixel data cannot be decoded (JPEG-LS Lossless")


def test_slices_of_different_sizes(tmp_path, built):
    folder = copy_of(built["classic"], tmp_path / "series")
    odd = pydicom.dcmread(MR_SMALL[""])
    odd.SeriesInstanceUID = pydicom.dcmread(folder / "IM0000").SeriesInstanceUID
    odd.save_as(folder / "IM9999")
    with pytest.raises(InputError) as err:
        load_series(folder)
    assert_one_line_naming(err, folder / "IM9999", "image size 64x64 differs from 80x90")


@pytest.mark.parametrize("slope, intercept", [("1e308", "0"), ("1", "NaN")])
def test_nan_or_inf_after_rescale(tmp_path, built, slope, intercept):
    folder = copy_of(built["classic"], tmp_path / "series")
    ds = pydicom.dcmread(folder / "IM0005")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that NaN is not a valid DS
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.save_as(folder / "IM0005")
    with pytest.raises(InputError) as err:
        load_series(folder)
    assert_one_line_naming(err, folder / "IM0005", "NaN or Inf after rescale")


def test_colour_images_are_refused(tmp_path):
    ds = pydicom.dcmread(MR_SMALL[""])
    rgb = np.repeat(ds.pixel_array.astype(np.uint8)[..., None], 3, axis=-1)
    ds.set_pixel_data(rgb, "RGB", 8)
    ds.save_as(tmp_path / "rgb.dcm")
    with pytest.raises(InputError) as err:
        load_series(tmp_path)
    assert_one_line_naming(err, tmp_path / "rgb.dcm", "colour image (RGB)")


def test_a_series_of_several_multiframe_files_is_refused(tmp_path, built):
    folder = copy_of(built["enhanced"], tmp_path / "series")
    ds = pydicom.dcmread(folder / "mr.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(folder / "mr2.dcm")
    with pytest.raises(InputError) as err:
        load_series(folder)
    assert_one_line_naming(err, folder, "pass one multi-frame file")
    assert load_series(folder / "mr2.dcm").volume.shape == (12, 80, 90)  # the file itself is fine


# --- writing ----------------------------------------------------------------------------------


def ripple(volume: np.ndarray) -> np.ndarray:
    """A 'denoised' volume: the input plus a smooth, non-integer change, so rounding matters."""
    k, r, c = np.meshgrid(*(np.arange(n) for n in volume.shape), indexing="ij")
    return (volume + 7.3 * np.sin(r / 5.0) * np.cos(c / 7.0) + 0.1 * k).astype(np.float32)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip_keeps_values_within_half_a_rescale_step(tmp_path, built, layout):
    before = digest(built[layout])
    series = load_series(built[layout])
    wanted = ripple(series.volume)
    wanted[3, :2, :2] = 1e6  # beyond the 12-bit range: clipped to the largest stored value
    out = save_derived_series(series, wanted, tmp_path / "out", DESCRIPTION)
    assert out == tmp_path / "out"
    back = load_series(out)
    assert back.volume.shape == wanted.shape and back.multiframe == series.multiframe
    inside = wanted < 4095 * SLOPE + INTERCEPT
    assert np.abs(back.volume - wanted)[inside].max() <= SLOPE / 2 + 1e-4
    assert np.all(back.volume[~inside] == 4095 * SLOPE + INTERCEPT)
    np.testing.assert_allclose(back.affine, series.affine)
    assert digest(built[layout]) == before, "input files must not change"
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "no temporary folder is left beside the output"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_derived_headers(tmp_path, built, layout):
    series = load_series(built[layout])
    description = DESCRIPTION + " with a long suffix that goes past the 64 characters of LO"
    out = save_derived_series(series, series.volume, tmp_path / "out", description)
    sources, derived = read_all(built[layout]), read_all(out)
    assert len(derived) == len(sources)
    by_uid = {ds.SOPInstanceUID: ds for ds in sources}
    assert len({ds.SeriesInstanceUID for ds in derived}) == 1
    assert derived[0].SeriesInstanceUID != sources[0].SeriesInstanceUID
    assert len({ds.SOPInstanceUID for ds in derived} | set(by_uid)) == 2 * len(sources), "every SOP UID is new"
    for ds in derived:
        src = by_uid[ds.SourceImageSequence[0].ReferencedSOPInstanceUID] if layout == "classic" else sources[0]
        for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "FrameOfReferenceUID", "SOPClassUID", "InstanceNumber"):
            assert ds[keyword].value == src[keyword].value, keyword
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SeriesDescription == description[:64] and len(ds.SeriesDescription) == 64
        assert ds.SeriesNumber == src.SeriesNumber + 1000
        assert ds.ContentDate != src.ContentDate and "InstanceCreationDate" in ds
        for keyword in ("BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "Rows", "Columns"):
            assert ds[keyword].value == src[keyword].value, keyword
        if layout == "classic":
            assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "OTHER"]
            assert DESCRIPTION in ds.DerivationDescription
            for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "RescaleSlope", "RescaleIntercept"):
                assert ds[keyword].value == src[keyword].value, keyword
        else:
            assert list(ds.ImageType) == ["DERIVED", "PRIMARY", "VOLUME", "NONE"]
            assert list(ds.SharedFunctionalGroupsSequence[0].MRImageFrameTypeSequence[0].FrameType)[:2] == ["DERIVED", "PRIMARY"]
            for name in ("PixelMeasuresSequence", "PlaneOrientationSequence", "PixelValueTransformationSequence"):
                assert ds.SharedFunctionalGroupsSequence[0][name].value == src.SharedFunctionalGroupsSequence[0][name].value
            for frame, (item, src_item) in enumerate(zip(ds.PerFrameFunctionalGroupsSequence, src.PerFrameFunctionalGroupsSequence)):
                assert item.PlanePositionSequence == src_item.PlanePositionSequence
                reference = item.DerivationImageSequence[0].SourceImageSequence[0]
                assert reference.ReferencedSOPInstanceUID == src.SOPInstanceUID and reference.ReferencedFrameNumber == frame + 1
            evidence = ds.SourceImageEvidenceSequence[0].ReferencedSeriesSequence[0]
            assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID


@pytest.mark.parametrize("layout", LAYOUTS)
def test_geometry_is_unchanged_for_simpleitk(tmp_path, built, layout):
    series = load_series(built[layout])
    out = save_derived_series(series, series.volume, tmp_path / "out", DESCRIPTION)
    before, after = sitk_image(built[layout]), sitk_image(out)
    for attr in ("GetOrigin", "GetSpacing", "GetDirection", "GetSize"):
        assert getattr(after, attr)() == getattr(before, attr)(), attr
    np.testing.assert_array_equal(sitk.GetArrayFromImage(after), sitk.GetArrayFromImage(before))
    if layout == "classic":  # ITK reads classic geometry fully: it must agree with DicomSeries.affine
        affine = series.affine
        assert before.GetSize() == (90, 80, 12)
        np.testing.assert_allclose(before.GetOrigin(), affine[:3, 3])
        direction = np.array(before.GetDirection()).reshape(3, 3) * np.array(before.GetSpacing())
        np.testing.assert_allclose(direction, affine[:3, [2, 1, 0]], atol=1e-6)  # ITK index (col, row, slice)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_geometry_is_unchanged_for_monai(tmp_path, built, layout):
    series = load_series(built[layout])
    out = save_derived_series(series, series.volume, tmp_path / "out", DESCRIPTION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no GPU decoder; no enhanced geometry support (identity affine)
        before = LoadImage(image_only=True)(str(built[layout]), reader=PydicomReader())
        after = LoadImage(image_only=True)(str(out), reader=PydicomReader())
    np.testing.assert_array_equal(after.affine.numpy(), before.affine.numpy())
    np.testing.assert_allclose(after.numpy(), before.numpy())
    if layout == "classic":  # MONAI: (col, row, slice) in RAS
        expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ series.affine[:, [2, 1, 0, 3]]
        np.testing.assert_allclose(before.affine.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("source", ["ct", "_RLE", "_bigendian", "_implicit"])
def test_real_inputs_round_trip_to_explicit_little_endian(tmp_path, source):
    path = CT_SERIES if source == "ct" else MR_SMALL[source]
    folder = path if path.is_dir() else path.parent
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in ([path] if path.is_file() else sorted(path.iterdir()))}
    series = load_series(path)
    out = save_derived_series(series, series.volume, tmp_path / "out", DESCRIPTION)
    back = load_series(out)
    np.testing.assert_array_equal(back.volume, series.volume)
    assert all(ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian for ds in read_all(out))
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before} == before
    assert folder.exists()


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian package dicom3tools) is not installed")
@pytest.mark.parametrize("layout", LAYOUTS + ["ct", "_RLE", "_bigendian"])
def test_dciodvfy_finds_no_new_errors(tmp_path, built, layout):
    source = built.get(layout) or (CT_SERIES if layout == "ct" else MR_SMALL[layout])
    series = load_series(source)
    out = save_derived_series(series, ripple(series.volume), tmp_path / "out", DESCRIPTION)
    inputs = sorted(source.iterdir()) if source.is_dir() else [source]
    errors_in = set().union(*(dciodvfy_errors(p) for p in inputs))
    errors_out = set().union(*(dciodvfy_errors(p) for p in out.iterdir()))
    assert errors_out <= errors_in, errors_out - errors_in
    if layout in LAYOUTS:
        assert errors_in == set(), "the fixtures themselves are valid"


# --- writing: refusals and atomicity ----------------------------------------------------------


@pytest.fixture
def classic_copy(tmp_path, built) -> tuple[Path, DicomSeries]:
    folder = copy_of(built["classic"], tmp_path / "in" / "series")
    return folder, load_series(folder)


def test_refuses_existing_input_or_nested_output_folders(tmp_path, classic_copy):
    folder, series = classic_copy
    (tmp_path / "taken").mkdir()
    cases = [
        (tmp_path / "taken", "output folder exists already"),
        (folder, "would be or contain the input"),
        (folder.parent, "would be or contain the input"),
        (folder / "denoised", "inside the input folder"),
        (tmp_path / "missing" / "out", "parent folder does not exist"),
    ]
    for out, problem in cases:
        with pytest.raises(InputError) as err:
            save_derived_series(series, series.volume, out, DESCRIPTION)
        assert_one_line_naming(err, out if "parent" not in problem else out.parent, problem)
    with pytest.raises(ValueError, match="shape"):
        save_derived_series(series, series.volume[1:], tmp_path / "out", DESCRIPTION)
    with pytest.raises(ValueError, match="NaN or Inf"):
        save_derived_series(series, series.volume * np.nan, tmp_path / "out", DESCRIPTION)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "taken"]


def test_refuses_a_parent_that_is_not_writable(tmp_path, classic_copy, monkeypatch):
    _, series = classic_copy
    monkeypatch.setattr(dicom_module.os, "access", lambda path, mode: False)
    with pytest.raises(InputError) as err:
        save_derived_series(series, series.volume, tmp_path / "out", DESCRIPTION)
    assert_one_line_naming(err, tmp_path, "folder is not writable")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write to any folder")
def test_refuses_a_read_only_parent(tmp_path, classic_copy):
    _, series = classic_copy
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(InputError) as err:
            save_derived_series(series, series.volume, locked / "out", DESCRIPTION)
        assert_one_line_naming(err, locked, "not writable")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), RuntimeError("encoder bug")])
def test_a_failing_write_leaves_no_output(tmp_path, classic_copy, monkeypatch, failure):
    folder, series = classic_copy
    before = digest(folder)
    calls = []
    real_write = pydicom.dcmwrite

    def failing_write(path, ds, **kwargs):
        calls.append(path)
        if len(calls) == 5:
            raise failure
        real_write(path, ds, **kwargs)

    monkeypatch.setattr(dicom_module.pydicom, "dcmwrite", failing_write)
    with pytest.raises(InputError if isinstance(failure, OSError) else RuntimeError) as err:
        save_derived_series(series, series.volume, tmp_path / "out", DESCRIPTION)
    if isinstance(failure, OSError):
        assert_one_line_naming(err, tmp_path / "out", "No space left on device")
    assert len(calls) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"], "neither the output nor a temporary folder is left"
    assert digest(folder) == before
