"""Whole-image inference: NIfTI/PNG/JPEG round trips, units and dtypes, tiling, devices, bad input, the CLI."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from conftest import DATA, ROOT, load_volume
from dicom_fixtures import real_values, write_classic, write_enhanced
from nad_monai import InputError, UnrolledPeronaMalik, image_io
from nad_monai.cli import main
from nad_monai.inference import Denoiser, bundle_network, denoise_file, denoise_files, load_weights, weights_id
from nad_monai.evaluation import head_mask
from nad_monai.metrics import denoising_metrics
from transforms import RandRicianCorruption

WEIGHTS = ROOT / "bundle" / "models" / "model.pt"


@pytest.fixture(scope="module")
def shipped() -> Denoiser:
    return Denoiser(load_weights(bundle_network(), WEIGHTS), device="cpu")


@pytest.fixture(scope="module")
def tiny() -> Denoiser:
    torch.manual_seed(0)
    return Denoiser(UnrolledPeronaMalik(steps=2), device="cpu")


def colin_block(slices: slice = slice(80, 86)) -> np.ndarray:
    """A few axial slices of Colin27, (181, 217, n) in [0, 1]."""
    return load_volume("colin27_t1.nii.gz")[:, :, slices].copy()


def noisy(clean: np.ndarray, sigma: float = 0.1) -> np.ndarray:
    noise = RandRicianCorruption(sigma=sigma)
    noise.set_random_state(0)
    return np.asarray(noise(clean[None]))[0]


def save_nifti(path: Path, data: np.ndarray, dtype=np.float32, zooms=(0.9, 1.1, 2.5)) -> Path:
    affine = np.diag([*zooms[: data.ndim], 1.0] + [1.0] * (3 - data.ndim))[:4, :4] if data.ndim < 3 else np.diag([*zooms, 1.0])
    affine[:3, 3] = [-80.0, -110.0, 12.5]
    img = nib.Nifti1Image(data.astype(dtype) if np.issubdtype(dtype, np.floating) else data, affine)
    img.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    return path


def psnr(x: np.ndarray, clean: np.ndarray) -> float:
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]  # noqa: E731
    return denoising_metrics()["psnr"](to(x).clamp(0, 1), to(clean)).item()


def digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()


def test_nifti_volume_keeps_shape_affine_header_and_denoises(tmp_path, shipped):
    clean = colin_block()
    src = save_nifti(tmp_path / "noisy.nii.gz", noisy(clean) * 1000.0)  # own units: x1000
    result = denoise_file(src, tmp_path / "out", shipped, "denoised by test")
    out = nib.load(result.output)
    inp = nib.load(src)
    assert Path(result.output).name == "noisy_denoised.nii.gz" and result.slices == clean.shape[2]
    assert out.shape == inp.shape and np.allclose(out.affine, inp.affine)
    assert out.header.get_zooms() == inp.header.get_zooms() and out.header.get_xyzt_units() == ("mm", "sec")
    assert out.get_data_dtype() == inp.get_data_dtype() and out.header["descrip"].item() == b"denoised by test"
    denoised = out.get_fdata() / 1000.0
    gain = psnr(denoised, clean) - psnr(noisy(clean), clean)
    assert gain > 6.0, f"PSNR gain {gain:.2f} dB on real Colin27 slices with Rician 0.10"


def test_units_and_integer_types_come_back(tmp_path, tiny):
    raw = np.rint(colin_block() * 3000).astype(np.int16)
    src = save_nifti(tmp_path / "int16.nii", raw, dtype=np.int16)
    out = nib.load(denoise_file(src, tmp_path, tiny, "x").output)
    assert out.get_data_dtype() == np.int16 and out.dataobj.slope == 1.0  # integers, unscaled, like the input
    values = np.asarray(out.dataobj)
    assert values.dtype == np.int16 and 0.5 * raw.max() < values.max() < 1.5 * raw.max()

    scaled = tmp_path / "scaled.nii.gz"
    nib.save(nib.load(DATA / "dipy_s0.nii.gz"), scaled)  # uint16 with scl_slope 2^-15
    out = nib.load(denoise_file(scaled, tmp_path, tiny, "x").output)
    assert out.get_data_dtype() == np.uint16 and abs(float(out.get_fdata().max()) - 1.0) < 0.5


@pytest.mark.parametrize("shape", [(181, 217), (181, 217, 1)])
def test_2d_nifti_keeps_its_shape(tmp_path, tiny, shape):
    src = save_nifti(tmp_path / "slice.nii.gz", noisy(colin_block(slice(90, 91))).reshape(shape))
    result = denoise_file(src, tmp_path / "out", tiny, "x")
    assert nib.load(result.output).shape == shape and result.slices == 1


def test_4d_nifti_is_refused(tmp_path, tiny):
    src = save_nifti(tmp_path / "4d.nii.gz", np.random.default_rng(0).random((8, 8, 4, 3)))
    with pytest.raises(InputError, match=r"4d.nii.gz: 4-D image of shape \(8, 8, 4, 3\)"):
        denoise_file(src, tmp_path / "out", tiny, "x")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name, mode, dtype", [("grey.png", "L", np.uint8), ("grey16.png", "I;16", np.uint16), ("grey.jpg", "L", np.uint8), ("rgb.png", "RGB", np.uint8)]
)
def test_png_and_jpeg_same_format_mode_and_size_out(tmp_path, shipped, name, mode, dtype):
    clean = colin_block(slice(90, 91))[..., 0]
    top = np.iinfo(dtype).max
    image = Image.fromarray(np.rint(np.clip(noisy(clean), 0, 1) * top).astype(dtype))
    image.convert(mode).save(tmp_path / name) if mode == "RGB" else image.save(tmp_path / name)
    result = denoise_file(tmp_path / name, tmp_path / "out", shipped, "x")
    with Image.open(result.output) as out:
        assert out.format == ("JPEG" if name.endswith(".jpg") else "PNG") and out.mode == mode and out.size == image.size
        values = np.asarray(out.convert("L") if mode == "RGB" else out, dtype=np.float32) / top
    assert psnr(values, clean) > psnr(noisy(clean), clean) + 3.0


def test_colour_image_is_refused(tmp_path, tiny):
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(InputError, match="colour.png: colour image"):
        denoise_file(tmp_path / "colour.png", tmp_path / "out", tiny, "x")


def test_tiled_sliding_window_matches_whole_slices(tmp_path, shipped):
    volume = torch.from_numpy(noisy(colin_block(slice(88, 91))))[None]
    whole = shipped(volume)
    tiled = Denoiser(shipped.network, device="cpu", roi_size=(96, 96), overlap=0.5)(volume)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().mean() < 0.01 * float(whole.max()), "tiles blend into nearly the same image"
    image = volume[..., 1]
    assert torch.allclose(Denoiser(shipped.network, device="cpu", roi_size=(96, 96))(image).abs().mean(), shipped(image).abs().mean(), rtol=0.02)


def test_volume_axis_choice_slices_across_that_axis(tiny):
    volume = torch.from_numpy(noisy(colin_block(slice(80, 84))))[None]
    for axis in (0, 1, 2):
        out = tiny(volume, axis=axis)
        assert out.shape == volume.shape and out.dtype == torch.float32


def test_amp_only_on_a_gpu():
    net = UnrolledPeronaMalik(steps=1)
    assert Denoiser(net, device="cpu", amp=True).amp is False
    assert Denoiser(net, device=None).device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert Denoiser(net, device="cuda").amp is True


def write_truncated_nifti(path: Path) -> Path:
    whole = gzip.compress(nib.Nifti1Image(np.ones((40, 40, 40), np.float32), np.eye(4)).to_bytes())
    path.write_bytes(whole[: len(whole) // 3])
    return path


def nan_nifti(path: Path) -> Path:
    data = colin_block(slice(0, 2))
    data[5, 5, 0] = np.nan
    return save_nifti(path, data)


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "not a NIfTI (.nii, .nii.gz), DICOM, PNG or JPEG file"),
        (lambda d: write_truncated_nifti(d / "cut.nii.gz"), "not a readable NIfTI file"),
        (lambda d: (d / "fake.nii").write_bytes(b"\0" * 100) and d / "fake.nii", "not a readable NIfTI file"),
        (lambda d: nan_nifti(d / "nan.nii.gz"), "1 of 78554 voxels are NaN or Inf"),
        (lambda d: save_nifti(d / "flat.nii.gz", np.zeros((9, 9, 3))), "the image is constant"),
        (lambda d: (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken") and d / "broken.png", "not a readable PNG image"),
        (lambda d: d / "missing.nii.gz", "no such file or folder"),
    ],
)
def test_bad_input_is_one_line_naming_the_file_and_writes_nothing(tmp_path, tiny, make, problem):
    src = make(tmp_path)
    with pytest.raises(InputError) as err:
        denoise_file(src, tmp_path / "out", tiny, "x")
    message = str(err.value)
    assert message.startswith(f"{src}: ") and problem in message and "\n" not in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_output_equal_to_input_existing_output_and_unwritable_folder(tmp_path, tiny):
    src = save_nifti(tmp_path / "in.nii.gz", noisy(colin_block(slice(90, 92))))
    before = digest(src)
    with pytest.raises(InputError, match="output path is the input"):
        denoise_file(src, src, tiny, "x")
    (tmp_path / "in_denoised.nii.gz").write_bytes(b"old")
    with pytest.raises(InputError, match="output exists; pass --overwrite"):
        denoise_file(src, tmp_path, tiny, "x")
    assert denoise_file(src, tmp_path, tiny, "x", overwrite=True).output == str(tmp_path / "in_denoised.nii.gz")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(InputError, match=f"{blocker}/sub: cannot create the output folder"):
        denoise_file(src, blocker / "sub", tiny, "x")
    assert digest(src) == before, "the input is never touched"


def test_failed_write_leaves_no_partial_file(tmp_path, tiny, monkeypatch):
    src = save_nifti(tmp_path / "in.nii.gz", noisy(colin_block(slice(90, 92))))

    def dies_halfway(img, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(image_io.nib, "save", dies_halfway)
    with pytest.raises(InputError, match="in_denoised.nii.gz: cannot write the output .No space left on device."):
        denoise_file(src, tmp_path / "out", tiny, "x")
    assert list((tmp_path / "out").iterdir()) == []


def test_empty_folder_is_refused(tmp_path, tiny):
    (tmp_path / "empty").mkdir()
    [result] = denoise_files([tmp_path / "empty"], tmp_path / "out", tiny, "x")
    assert result.error.startswith(f"{tmp_path / 'empty'}: ") and "empty folder" in result.error


def test_cli_many_inputs_one_bad(tmp_path, capsys):
    good = [save_nifti(tmp_path / f"v{i}.nii.gz", noisy(colin_block(slice(90 + i, 92 + i)))) for i in range(2)]
    png = tmp_path / "s.png"
    Image.fromarray((np.clip(noisy(colin_block(slice(90, 91))[..., 0]), 0, 1) * 255).astype(np.uint8)).save(png)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"nope")
    before = {p: digest(p) for p in [*good, png, bad]}
    code = main([str(good[0]), str(bad), str(good[1]), str(png), "-o", str(tmp_path), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.strip().splitlines() == [f"FAILED {bad}: not a readable NIfTI file (ImageFileError: File {bad} is not a gzip file)"]
    assert "denoised 3 of 4 inputs: 5 slices in" in out and "slices/s) on cpu; 1 failed" in out
    assert all((tmp_path / name).is_file() for name in ("v0_denoised.nii.gz", "v1_denoised.nii.gz", "s_denoised.png"))
    assert {p: digest(p) for p in before} == before


def test_cli_exit_codes(tmp_path, capsys):
    src = save_nifti(tmp_path / "in.nii.gz", noisy(colin_block(slice(90, 91))))
    assert main([str(src), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    assert main([str(src), "-o", str(tmp_path / "o2"), "--weights", str(tmp_path / "none.pt")]) == 2
    assert main([str(src), "-o", str(tmp_path / "o3"), "--weights", str(src)]) == 2
    if not torch.cuda.is_available():
        assert main([str(src), "-o", str(tmp_path / "o4"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert f"nad-denoise: {tmp_path / 'none.pt'}: weights file not found" in err
    assert "not a readable PyTorch weights file" in err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_console_script_and_bundle_inference(tmp_path):
    src = save_nifti(tmp_path / "in.nii.gz", noisy(colin_block(slice(90, 92))))
    script = Path(sys.executable).parent / "nad-denoise"
    cli = subprocess.run([str(script), str(src), "-o", str(tmp_path / "cli"), "--quiet"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    bundle = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(ROOT / "bundle/configs/inference.json"),
         "--input", str(src), "--output_dir", str(tmp_path / "bundle")],  # fmt: skip
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert bundle.returncode == 0, bundle.stdout[-2000:] + bundle.stderr[-2000:]
    a = nib.load(tmp_path / "cli" / "in_denoised.nii.gz").get_fdata()
    b = nib.load(tmp_path / "bundle" / "in_denoised.nii.gz").get_fdata()
    assert np.array_equal(a, b), "the CLI and the bundle run the same pipeline"


@pytest.mark.parametrize("layout", ["classic", "enhanced"])
def test_dicom_series_denoised_into_a_derived_series_with_the_same_geometry(tmp_path, shipped, layout):
    clean = real_values()  # (slices, rows, cols) in the fixture's real-world units
    rng = np.random.default_rng(0)
    noisy_values = clean + 0.05 * clean.max() * rng.standard_normal(clean.shape)
    stored = np.clip(np.rint((noisy_values + 20.0) / 1.5), 0, 4095)  # the fixtures' slope 1.5, intercept -20
    src = tmp_path / "in"
    write_classic(src, stored) if layout == "classic" else write_enhanced(src / "mr.dcm", stored)
    result = denoise_file(src, tmp_path / "out", shipped, "denoised nad-monai test")
    assert Path(result.output).name == "in_denoised" and result.slices == clean.shape[0]
    before, after = image_io.load(src), image_io.load(result.output)
    assert np.allclose(after.source.affine, before.source.affine)
    assert after.source.datasets[0].StudyInstanceUID == before.source.datasets[0].StudyInstanceUID
    assert after.source.series_uid != before.source.series_uid
    assert after.source.datasets[0].SeriesDescription == "denoised nad-monai test"
    scale = float(clean.max())
    gain = psnr(after.image[0].numpy() / scale, clean / scale) - psnr(before.image[0].numpy() / scale, clean / scale)
    assert gain > 2.0, f"PSNR gain {gain:.2f} dB on the DICOM series"


def test_dicom_folder_with_two_series_takes_the_larger_and_says_so(tmp_path, tiny, capsys):
    folder = tmp_path / "mixed"
    write_classic(folder)
    small = tmp_path / "other"
    write_enhanced(small / "mr.dcm")
    ds = pydicom.dcmread(small / "mr.dcm")
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "other.dcm")
    code = main([str(folder), "-o", str(tmp_path / "out"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "2 DICOM series here; took series" in out and "--series UID picks another" in out
    code = main([str(folder), "-o", str(tmp_path / "out2"), "--quiet", "--series", str(ds.SeriesInstanceUID)])
    assert code == 0
    written = list((tmp_path / "out2" / "mixed_denoised").iterdir())
    assert len(written) == 1, "the one multi-frame file of the chosen series"
    assert main([str(folder), "-o", str(tmp_path / "out3"), "--quiet", "--series", "1.2.3"]) == 1
    assert "1.2.3" in capsys.readouterr().err


def test_the_shipped_2_5d_model_beats_the_2d_one_inside_the_head_of_a_real_volume(tmp_path):
    clean = colin_block(slice(80, 92))
    scan = save_nifti(tmp_path / "scan.nii.gz", noisy(clean))
    configs = [str(ROOT / "bundle" / "configs" / name) for name in ("inference.json", "inference_2.5d.json")]
    assert main([str(scan), "-o", str(tmp_path / "flat"), "--quiet"]) == 0
    assert main([str(scan), "-o", str(tmp_path / "stacked"), "--config", *configs, "--quiet"]) == 0
    descrip = nib.load(tmp_path / "stacked" / "scan_denoised.nii.gz").header["descrip"].item().decode()
    assert weights_id(ROOT / "bundle" / "models" / "2.5d" / "model.pt") in descrip, "the 2.5D config's model_file was used"
    reference = torch.from_numpy(clean)
    head = head_mask(reference.permute(2, 0, 1)[:, None])[:, 0].permute(1, 2, 0)

    def head_psnr(folder: str) -> float:
        out = torch.from_numpy(nib.load(tmp_path / folder / "scan_denoised.nii.gz").get_fdata(dtype=np.float32))
        return float(10 * torch.log10(1 / ((out - reference)[head] ** 2).mean()))

    flat, stacked = head_psnr("flat"), head_psnr("stacked")
    assert stacked > flat + 1.0, f"2.5D {stacked:.2f} dB vs 2D {flat:.2f} dB inside the head (measured: 28.85 vs 27.00)"


def test_a_2_5d_network_denoises_volumes_with_their_neighbours_and_refuses_2d_images(tmp_path, capsys):
    config = tmp_path / "inference_2_5d.json"
    config.write_text('{"network_def": {"_target_": "nad_monai.UnrolledPeronaMalik", "steps": 2, "context_slices": 1}}')
    torch.manual_seed(0)
    net = bundle_network(config)
    assert net.context_slices == 1
    torch.save(net.state_dict(), tmp_path / "model_2_5d.pt")
    block = noisy(colin_block(slice(84, 90)))
    volume = save_nifti(tmp_path / "scan.nii.gz", block)
    png = tmp_path / "slice.png"
    Image.fromarray((np.clip(block[..., 2], 0, 1) * 255).astype(np.uint8)).save(png)
    code = main([str(volume), str(png), "-o", str(tmp_path / "out"), "--config", str(config), "--weights", str(tmp_path / "model_2_5d.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, "the volume was denoised, the 2D image refused"
    assert f"{png}: a 2D image or a single slice; the network is 2.5D (context_slices=1) and denoises volumes only" in err
    assert not (tmp_path / "out" / "slice_denoised.png").exists()
    written = nib.load(tmp_path / "out" / "scan_denoised.nii.gz")
    assert written.shape == block.shape and np.allclose(written.affine, nib.load(volume).affine)
    expected = Denoiser(net.eval(), device="cpu")(torch.from_numpy(block)[None])[0].numpy()
    assert np.allclose(written.get_fdata(dtype=np.float32), expected, atol=1e-5)
    with pytest.raises(ValueError, match="denoises volumes only"):
        Denoiser(net, device="cpu")(torch.from_numpy(block[None, ..., 0]))
    with pytest.raises(ValueError, match="denoises volumes only"):
        Denoiser(net, device="cpu")(torch.from_numpy(block[None, ..., :1]), axis=2)  # one slice across the axis
    with pytest.raises(SystemExit):
        main(["-o", str(tmp_path / "o"), "--config", str(config), str(volume)])  # an input after --config
    assert f"{volume} is not a bundle config (.json, .yaml); give the inputs before --config" in capsys.readouterr().err




def test_all_planes_averages_the_three_planes_and_beats_each_of_them_on_a_real_volume(tmp_path, capsys):
    clean = load_volume("colin27_t1.nii.gz")[66:114, 84:132, 68:100].copy()  # 48 x 48 x 32 voxels of 1 mm inside the head
    scan = save_nifti(tmp_path / "scan.nii.gz", noisy(clean), zooms=(1.0, 1.0, 1.0))
    configs = [str(ROOT / "bundle" / "configs" / name) for name in ("inference.json", "inference_2.5d.json")]
    assert main([str(scan), "-o", str(tmp_path / "out"), "--config", *configs, "--all-planes", "--quiet"]) == 0
    written = nib.load(tmp_path / "out" / "scan_denoised.nii.gz")
    assert written.header["descrip"].item().decode().endswith("all planes"), "the output says how it was made"
    net = load_weights(bundle_network(configs), ROOT / "bundle" / "models" / "2.5d" / "model.pt", "cpu")
    image = torch.from_numpy(nib.load(scan).get_fdata(dtype=np.float32))[None]
    planes = [Denoiser(net, device="cpu", axis=axis)(image)[0].numpy() for axis in (0, 1, 2)]
    out = written.get_fdata(dtype=np.float32)
    assert np.allclose(out, np.mean(planes, axis=0), atol=1e-5), "the mean of the sagittal, coronal and axial passes"
    single, mean = [psnr(plane, clean) for plane in planes], psnr(out, clean)
    assert mean > max(single) + 0.05, f"all planes {mean:.2f} dB vs one plane {[round(s, 2) for s in single]} (measured: 30.55 vs 30.38-30.42)"
    with pytest.raises(ValueError, match=r"a volume of shape \(48, 1, 32\) is too thin to denoise in all three planes"):
        Denoiser(net, device="cpu", all_planes=True)(image[:, :, :1])
    with pytest.raises(ValueError, match="all_planes must be True or False, got 'false'"):
        Denoiser(net, device="cpu", all_planes="false")  # what a bundle command line's "--all_planes false" gives


def test_all_planes_notes_thick_slices_and_leaves_2d_images_alone(tmp_path, capsys):
    thick = save_nifti(tmp_path / "thick.nii.gz", noisy(colin_block(slice(80, 84)))[60:100, 60:100], zooms=(1.0, 1.0, 3.0))
    png = tmp_path / "slice.png"
    Image.fromarray((noisy(colin_block(slice(80, 81)))[60:100, 60:100, 0] * 255).clip(0, 255).astype(np.uint8)).save(png)
    assert main([str(thick), str(png), "-o", str(tmp_path / "out"), "--all-planes", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"note   {thick}: voxels of 1 x 1 x 3 mm: two of the three planes see thick slices" in out
    assert "(84 slices" in out, "40 + 40 + 4 slices in the three planes"
    assert nib.load(tmp_path / "out" / "thick_denoised.nii.gz").header["descrip"].item().decode().endswith("all planes")
    assert f"note   {png}" not in out and "(1 slices" in out, "a 2D image is one slice, denoised as without the option"
