"""The MONAI Deploy app end to end: a real MR series (Colin27 crop, classic DICOM) in, a valid derived series out.

The app runs as users run it (``python -m nad_monai.deploy -i IN -o OUT``, a subprocess); its
pixels are compared with ``nad-denoise`` on the same input. Needs the ``deploy`` extra, which CI installs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from monai.data import PydicomReader
from monai.transforms import LoadImage

pytest.importorskip("monai.deploy", reason='needs the deploy extra: pip install -e ".[deploy]"')

from dicom_fixtures import DCIODVFY, INTERCEPT, SLOPE, dciodvfy_errors, real_values, sitk_image, write_classic  # noqa: E402
from nad_monai.cli import main as cli_main  # noqa: E402
from nad_monai.deploy.app import model_files  # noqa: E402
from nad_monai.dicom import load_series  # noqa: E402
from nad_monai.inference import bundle_network  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run_app(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HOLOSCAN_LOG_LEVEL": "WARN"}
    command = [sys.executable, "-m", "nad_monai.deploy", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def noisy_series(folder: Path) -> np.ndarray:
    """Write the fixture's real MR slices with Gaussian noise (5% of the maximum) as classic DICOM; returns the clean values."""
    clean = real_values()
    noisy = clean + 0.05 * clean.max() * np.random.default_rng(1).standard_normal(clean.shape)
    write_classic(folder, np.clip(np.rint((noisy - INTERCEPT) / SLOPE), 0, 4095))
    return clean


def psnr(x: np.ndarray, clean: np.ndarray) -> float:
    scale = float(clean.max())
    return float(10 * np.log10(1.0 / np.mean(((x - clean) / scale) ** 2)))


@pytest.fixture(scope="module")
def app_run(tmp_path_factory):
    """One app run and one ``nad-denoise`` run on the same noisy series."""
    tmp = tmp_path_factory.mktemp("deploy")
    clean = noisy_series(tmp / "dicom_in")
    done = run_app("-i", tmp / "dicom_in", "-o", tmp / "dicom_out")
    assert cli_main([str(tmp / "dicom_in"), "-o", str(tmp / "cli_out"), "--quiet"]) == 0
    return tmp, clean, done


def test_app_writes_one_derived_series_with_the_source_geometry(app_run):
    tmp, clean, done = app_run
    assert done.returncode == 0, done.stderr[-3000:]
    source = load_series(tmp / "dicom_in")
    outputs = list((tmp / "dicom_out").iterdir())
    assert [p.name for p in outputs] == [f"{source.series_uid}_denoised"]
    out = outputs[0]
    result = load_series(out)
    np.testing.assert_allclose(result.affine, source.affine)
    src_by_position = {tuple(ds.ImagePositionPatient): ds for ds in source.datasets}
    sop_uids = set()
    for ds in result.datasets:
        src = src_by_position[tuple(ds.ImagePositionPatient)]
        assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.PatientID == src.PatientID
        assert ds.SeriesInstanceUID != src.SeriesInstanceUID and ds.SOPInstanceUID != src.SOPInstanceUID
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert ds.SeriesDescription.startswith("denoised nad-monai ")
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        for keyword in ("ImageOrientationPatient", "PixelSpacing", "SliceThickness", "RescaleSlope", "RescaleIntercept", "BitsStored"):
            assert ds[keyword].value == src[keyword].value, keyword
        sop_uids.add(ds.SOPInstanceUID)
    assert len(sop_uids) == len(source.datasets) and len({ds.SeriesInstanceUID for ds in result.datasets}) == 1
    before, after = sitk_image(tmp / "dicom_in"), sitk_image(out)
    for attr in ("GetOrigin", "GetSpacing", "GetDirection", "GetSize"):
        assert getattr(after, attr)() == getattr(before, attr)(), attr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monai_in = LoadImage(image_only=True)(str(tmp / "dicom_in"), reader=PydicomReader())
        monai_out = LoadImage(image_only=True)(str(out), reader=PydicomReader())
    np.testing.assert_array_equal(monai_out.affine.numpy(), monai_in.affine.numpy())
    gain = psnr(result.volume, clean) - psnr(source.volume, clean)
    assert gain > 2.0, f"PSNR gain {gain:.2f} dB"


def test_app_pixels_equal_the_cli_within_rounding(app_run):
    tmp, _, done = app_run
    assert done.returncode == 0, done.stderr[-3000:]
    app = load_series(next((tmp / "dicom_out").iterdir()))
    cli = load_series(tmp / "cli_out" / "dicom_in_denoised")
    assert app.volume.shape == cli.volume.shape
    np.testing.assert_allclose(app.volume, cli.volume, rtol=0, atol=SLOPE)  # one stored unit


def test_the_2_5d_variant_runs_as_nad_denoise_runs_it(tmp_path):
    noisy_series(tmp_path / "dicom_in")
    done = run_app("-i", tmp_path / "dicom_in", "-o", tmp_path / "dicom_out", "-m", ROOT / "bundle" / "models" / "2.5d")
    assert done.returncode == 0, done.stderr[-3000:]
    configs = [str(ROOT / "bundle" / "configs" / name) for name in ("inference.json", "inference_2.5d.json")]
    assert cli_main([str(tmp_path / "dicom_in"), "-o", str(tmp_path / "cli_out"), "--config", *configs, "--quiet"]) == 0
    app = load_series(next((tmp_path / "dicom_out").iterdir()))
    cli = load_series(tmp_path / "cli_out" / "dicom_in_denoised")
    assert "model.pt:" + hashlib.sha256((ROOT / "bundle/models/2.5d/model.pt").read_bytes()).hexdigest()[:12] in app.datasets[0].SeriesDescription
    np.testing.assert_allclose(app.volume, cli.volume, rtol=0, atol=SLOPE)  # the same neighbours, in the same order
    write_classic(tmp_path / "one_slice", np.clip(np.rint((real_values()[:1] - INTERCEPT) / SLOPE), 0, 4095))
    done = run_app("-i", tmp_path / "one_slice", "-o", tmp_path / "out_one", "-m", ROOT / "bundle" / "models" / "2.5d")
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'one_slice'}: a 2D image or a single slice; the network is 2.5D (context_slices=2) and denoises volumes only"
    )
    assert not (tmp_path / "out_one").exists() or not any((tmp_path / "out_one").iterdir()), "nothing written"


def test_all_planes_runs_as_nad_denoise_runs_it(tmp_path):
    noisy_series(tmp_path / "dicom_in")
    model = ROOT / "bundle" / "models" / "2.5d"
    done = run_app("-i", tmp_path / "dicom_in", "-o", tmp_path / "dicom_out", "-m", model, "--all-planes")
    assert done.returncode == 0, done.stderr[-3000:]
    configs = [str(ROOT / "bundle" / "configs" / name) for name in ("inference.json", "inference_2.5d.json")]
    assert cli_main([str(tmp_path / "dicom_in"), "-o", str(tmp_path / "cli_out"), "--config", *configs, "--all-planes", "--quiet"]) == 0
    app = load_series(next((tmp_path / "dicom_out").iterdir()))
    cli = load_series(tmp_path / "cli_out" / "dicom_in_denoised")
    assert app.datasets[0].SeriesDescription.endswith("all planes")
    # the fixture's voxels are 0.9 x 1.1 x 2.5 mm: the app warns as nad-denoise notes
    assert "voxels of 2.5 x 0.9 x 1.1 mm: two of the three planes see thick slices" in done.stderr + done.stdout, done.stderr[-3000:]
    np.testing.assert_allclose(app.volume, cli.volume, rtol=0, atol=SLOPE)  # the same three planes, averaged


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (Debian package dicom3tools) is not installed")
def test_dciodvfy_finds_no_new_errors(app_run):
    tmp, _, done = app_run
    assert done.returncode == 0, done.stderr[-3000:]
    errors_in = set().union(*(dciodvfy_errors(p) for p in (tmp / "dicom_in").iterdir()))
    errors_out = set().union(*(dciodvfy_errors(p) for p in next((tmp / "dicom_out").iterdir()).iterdir()))
    assert errors_in == set() and errors_out == set(), errors_out


def truncate_one_file(folder: Path) -> Path:
    noisy_series(folder)
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:3000])
    return victim


BAD_INPUTS = {
    "empty folder": (lambda folder: folder.mkdir() or folder, "no DICOM images found"),
    "no DICOM": (lambda folder: folder.mkdir() or (folder / "README.txt").write_text("notes") and folder, "no DICOM images found"),
    "corrupt file": (truncate_one_file, "cannot decode pixel data"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_ends_with_one_clear_line_and_no_output(tmp_path, case):
    make, problem = BAD_INPUTS[case]
    named = make(tmp_path / "dicom_in")
    done = run_app("-i", tmp_path / "dicom_in", "-o", tmp_path / "dicom_out")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {named}: ") and problem in last, last
    assert not (tmp_path / "dicom_out").exists(), "nothing is left behind"


def test_no_matching_series_and_existing_output_are_refused(tmp_path):
    noisy_series(tmp_path / "dicom_in")
    rules = tmp_path / "ct.json"
    rules.write_text(json.dumps({"selections": [{"name": "CT", "conditions": {"Modality": "(?i)CT"}}]}))
    done = run_app("-i", tmp_path / "dicom_in", "-o", tmp_path / "out_a", "--rules", rules)
    assert done.returncode == 1 and not (tmp_path / "out_a").exists()
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'dicom_in'}: no series matches the selection rules; found: MR series 3 'T1 coronal crop'"
    )
    uid = pydicom.dcmread(next((tmp_path / "dicom_in").iterdir()), stop_before_pixels=True).SeriesInstanceUID
    existing = tmp_path / "out_b" / f"{uid}_denoised"
    existing.mkdir(parents=True)
    (existing / "keep.txt").write_text("an earlier result")
    done = run_app("-i", tmp_path / "dicom_in", "-o", tmp_path / "out_b")
    assert done.returncode == 1 and "output folder exists already" in done.stderr.strip().splitlines()[-1]
    assert [p.name for p in existing.iterdir()] == ["keep.txt"], "an existing series folder is never touched"
    assert [p.name for p in (tmp_path / "out_b").iterdir()] == [existing.name], "no partial series beside it"


def test_model_path_forms(tmp_path):
    shipped_configs, shipped_weights = model_files(None)
    assert shipped_weights == ROOT / "bundle" / "models" / "model.pt" and [c.name for c in shipped_configs] == ["inference.json"]
    assert model_files(tmp_path / "missing") == (shipped_configs, shipped_weights)  # the SDK's default "models"
    weights = tmp_path / "w.pt"
    weights.write_bytes(shipped_weights.read_bytes())
    assert model_files(weights) == (shipped_configs, weights)
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "model.pt").write_bytes(shipped_weights.read_bytes())
    assert model_files(tmp_path / "own") == (shipped_configs, tmp_path / "own" / "model.pt")
    assert model_files(ROOT / "bundle") == ([ROOT / "bundle" / "configs" / "inference.json"], ROOT / "bundle" / "models" / "model.pt")
    configs, weights = model_files(ROOT / "bundle" / "models" / "2.5d")
    assert [c.name for c in configs] == ["inference.json", "inference_2.5d.json"] and weights == ROOT / "bundle" / "models" / "2.5d" / "model.pt"
    assert bundle_network(configs).context_slices == 2, "the variant's network, which its weights fit"
    assert model_files(weights) == (configs, weights), "its weights file names the variant too"
    with pytest.raises(ValueError, match="no model.pt here"):
        model_files(tmp_path)


def test_packager_reads_the_app_configuration():
    from holoscan_cli.packager.config_reader import ApplicationConfiguration

    config = ApplicationConfiguration()
    config.read(ROOT / "nad_monai" / "deploy" / "app.yaml")
    assert config.title() == "nad-monai DICOM series denoiser"
    assert (ROOT / "nad_monai" / "deploy" / "__main__.py").is_file(), "the packager runs the folder's __main__.py"
