"""The MONAI bundle, run as users run it: `python -m monai.bundle ...` in subprocesses, on tiny real data."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import pytest
import torch
from monai.bundle import ConfigParser

from conftest import DATA, ROOT
from nad_monai import UnrolledPeronaMalik
from nad_monai.bundle import bundle_root, warm_start

CONFIGS = ROOT / "bundle" / "configs"
TRAIN, EVALUATE, MULTI_GPU = (str(CONFIGS / f"{n}.json") for n in ("train", "evaluate", "multi_gpu_train"))
INFERENCE, METADATA = str(CONFIGS / "inference.json"), str(CONFIGS / "metadata.json")
TRAIN_2_5D, INFERENCE_2_5D = str(CONFIGS / "train_2.5d.json"), str(CONFIGS / "inference_2.5d.json")
SCHEMA = ROOT / "bundle" / "docs" / "meta_schema_20240725.json"
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def bundle(*args: str, cwd: Path = ROOT, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        pytest.fail(f"monai.bundle {args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def tiny_overrides(tmp: Path, epochs: int = 1) -> list[str]:
    """Two small real volumes, 2 diffusion steps, 32x32 patches: seconds per epoch, same code paths."""
    datalist = tmp / "datalist.json"
    datalist.write_text(
        json.dumps(
            {
                "training": [{"image": str(DATA / "dipy_aniso_vox.nii.gz"), "subject": "a"}],
                "validation": [{"image": str(DATA / "dipy_s0.nii.gz"), "subject": "b"}],
                "test": [{"image": str(DATA / "dipy_s0.nii.gz"), "subject": "b"}],
            }
        )
    )
    return [
        "--dataset_dir", str(datalist), "--ckpt_dir", str(tmp / "models"), "--output_dir", str(tmp / "runs"),
        "--epochs", str(epochs), "--batch_size", "4", "--patch_size", "[32,32]", "--network_def#steps", "2",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny training run from the repository root; its folder holds models/ and runs/."""
    tmp = tmp_path_factory.mktemp("bundle")
    result = bundle("run", "training", "--config_file", TRAIN, *tiny_overrides(tmp))
    assert "validation PSNR on" in result.stdout and "classical Perona-Malik" in result.stdout
    return tmp


def tiny_network() -> UnrolledPeronaMalik:
    """The bundle's network_def with the tiny runs' ``--network_def#steps 2``."""
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser["network_def"]["steps"] = 2
    return parser.get_parsed_content("network_def")


@pytest.mark.parametrize("relative", [False, True])
def test_bundle_root_follows_the_config_file_from_any_directory(tmp_path, relative):
    config = os.path.relpath(TRAIN, tmp_path) if relative else TRAIN
    shown = bundle("run", "show", "--config_file", config, "--show", "$print('CKPT', @ckpt_dir)", cwd=tmp_path)
    assert f"CKPT {ROOT / 'bundle' / 'models'}" in shown.stdout


def test_bundle_root_takes_the_first_of_several_config_files():
    assert bundle_root(["x", "run", "--config_file", f"['{TRAIN}', '{EVALUATE}']"]) == str(ROOT / "bundle")
    assert bundle_root(["x", "run", f"--config_file={INFERENCE}"]) == str(ROOT / "bundle")


def test_warm_start_copies_what_fits_from_a_deeper_model(tmp_path):
    deep = UnrolledPeronaMalik(steps=8)
    torch.save(deep.state_dict(), tmp_path / "deep.pt")
    shallow = UnrolledPeronaMalik(steps=4, conduction_kernel_sizes=(3, 1), conduction_padding="zeros")
    assert warm_start(shallow, tmp_path / "deep.pt") == []
    assert torch.equal(shallow.step_logits, deep.step_logits[:4])
    assert torch.equal(shallow.refinement.net[0].weight, deep.refinement.net[0].weight)
    assert all(torch.equal(a, b) for a, b in zip(shallow.guidance.parameters(), deep.guidance.parameters()))
    folded = shallow.conduction[3].net[2].weight
    assert folded.shape[2:] == (1, 1) and torch.allclose(folded, deep.conduction[3].net[2].weight.sum((2, 3), keepdim=True))
    wider = UnrolledPeronaMalik(steps=2, conduction_features=(48, 16))
    assert "conduction.0.net.0.weight" in warm_start(wider, tmp_path / "deep.pt"), "mismatched shapes stay at init"


def test_training_writes_checkpoints_logs_and_compares_with_baselines(trained):
    models = sorted(p.name for p in (trained / "models").iterdir())
    assert models == ["checkpoint_epoch=1.pt", "model.pt"]
    assert any(p.name.startswith("events.out.tfevents") for p in (trained / "runs").iterdir())


def test_training_from_another_directory(tmp_path):
    result = bundle("run", "training", "--config_file", TRAIN, *tiny_overrides(tmp_path), cwd=tmp_path)
    assert (tmp_path / "models" / "model.pt").is_file()
    assert "Epoch[1] Metrics" in result.stdout


def test_checkpoints_load_with_weights_only_and_strictly(trained):
    state = torch.load(trained / "models" / "model.pt", weights_only=True)
    tiny_network().load_state_dict(state, strict=True)
    checkpoint = torch.load(trained / "models" / "checkpoint_epoch=1.pt", weights_only=True)
    assert set(checkpoint) == {"network", "optimizer", "lr_scheduler", "trainer", "best_model"}
    tiny_network().load_state_dict(checkpoint["network"], strict=True)


def test_shipped_weights_load_strictly_into_the_bundle_network():
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(ROOT / "bundle" / "models" / "model.pt", weights_only=True), strict=True)


def evaluate(run: Path, configs: list[str], n_figures: int) -> tuple[Path, list[list[str]]]:
    """Evaluate a tiny run's model with ``configs`` and then evaluate.json: the output folder and its per-slice PSNR CSV rows."""
    out = run / "eval"
    bundle("run", "evaluating", "--config_file", repr([*configs, EVALUATE]), *tiny_overrides(run), "--output_dir", str(out), "--n_figures", str(n_figures))
    with open(out / "val_psnr_raw.csv") as f:
        return out, list(csv.reader(f))


def test_evaluation_writes_metrics_csv_and_figures(trained):
    out, rows = evaluate(trained, [TRAIN], 2)
    assert rows[0][0] == "filename" and len(rows) - 1 >= 5
    assert all(row[0].startswith("dipy_s0.nii.gz#axis2:") and float(row[1]) > 10 for row in rows[1:])
    summary = (out / "metrics.csv").read_text()
    assert all(name in summary for name in ("val_psnr", "val_ssim", "val_edge_mse"))
    figures = sorted((out / "figures").glob("*.png"))
    assert len(figures) == 2 and all(f.stat().st_size > 10_000 for f in figures)


def test_the_2_5d_overlays_train_evaluate_and_denoise_with_neighbouring_slices(tmp_path):
    train = f"['{TRAIN}', '{TRAIN_2_5D}']"
    result = bundle("run", "training", "--config_file", train, *tiny_overrides(tmp_path))
    assert "validation PSNR on" in result.stdout and "classical Perona-Malik" in result.stdout
    net = UnrolledPeronaMalik(steps=2, context_slices=2)
    net.load_state_dict(torch.load(tmp_path / "models" / "model.pt", weights_only=True), strict=True)
    out, rows = evaluate(tmp_path, [TRAIN, TRAIN_2_5D], 1)
    rows = rows[1:]
    assert len(rows) >= 5 and all(float(row[1]) > 10 for row in rows), "scored against the middle slice of each stack"
    assert len(list((out / "figures").glob("*.png"))) == 1
    bundle(
        "run", "--config_file", f"['{INFERENCE}', '{INFERENCE_2_5D}']", "--input", str(DATA / "dipy_s0.nii.gz"),
        "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "denoised"), "--network_def#steps", "2",
    )  # fmt: skip
    assert nib.load(tmp_path / "denoised" / "dipy_s0_denoised.nii.gz").shape == nib.load(DATA / "dipy_s0.nii.gz").shape


def test_the_2_5d_overlays_keep_the_2d_model_and_ship_the_benchmarked_2_5d_weights():
    for files in ([TRAIN, TRAIN_2_5D], [INFERENCE, INFERENCE_2_5D]):
        parser = ConfigParser()
        parser.read_config(files)
        assert Path(parser.get_parsed_content("ckpt_dir")) == ROOT / "bundle" / "models" / "2.5d", "never the 2D model.pt"
        net = parser.get_parsed_content("network_def")
        assert net.context_slices == 2
    shipped = ROOT / "bundle" / "models" / "2.5d" / "model.pt"
    net.load_state_dict(torch.load(shipped, weights_only=True), strict=True)
    scored = ROOT / "benchmarks" / "results" / "training" / "context-slices-2-bundle-loss-zero-air" / "models" / "model.pt"
    assert shipped.read_bytes() == scored.read_bytes(), "the shipped 2.5D weights are the benchmark row that scores them"


def test_the_2_5d_overlay_trains_on_references_with_zero_air_and_evaluation_scores_them_as_they_are():
    """The shipped 2.5D weights were validated against references whose air was set to zero; evaluating
    with the same overlay must still score the unaltered reference (evaluate.json resets the transform)."""
    from conftest import load_volume
    from nad_monai.datasets import volume_slices

    item = volume_slices(torch.from_numpy(load_volume("dipy_s0.nii.gz")[None]), "dipy_s0", "b", context=2)[4]
    reference = item["image"][2:3]
    assert (reference[reference < 0.05] > 0).any(), "the real slice has a noise floor in its air"
    for files, zeroed in (([TRAIN, TRAIN_2_5D], True), ([TRAIN, TRAIN_2_5D, EVALUATE], False)):
        parser = ConfigParser()
        parser.read_config(files)
        label = torch.as_tensor(parser.get_parsed_content("validate#dataset#transform")({**item, "image": item["image"].clone()})["label"])
        assert label.shape == reference.shape
        assert torch.equal(label, reference) is not zeroed, files
        if zeroed:
            assert (label == 0).sum() > (reference == 0).sum() and torch.equal(label[label > 0], reference[label > 0])


def test_verify_metadata_offline_against_the_kept_schema(tmp_path):
    result = bundle("verify_metadata", "--meta_file", METADATA, "--filepath", str(SCHEMA))
    assert "metadata is verified with no error" in result.stdout + result.stderr
    broken = json.loads(Path(METADATA).read_text())
    del broken["network_data_format"]
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    failed = bundle("verify_metadata", "--meta_file", str(tmp_path / "metadata.json"), "--filepath", str(SCHEMA), check=False)
    assert failed.returncode != 0 and "network_data_format" in failed.stdout + failed.stderr


def test_verify_net_in_out():
    result = bundle("verify_net_in_out", "network_def", "--meta_file", METADATA, "--config_file", INFERENCE, "--any", "33")
    assert "data shape of network is verified with no error" in result.stdout + result.stderr


def test_torchscript_export_matches_eager(trained, tmp_path):
    ts = tmp_path / "model.ts"
    bundle(
        "ckpt_export", "network_def", "--filepath", str(ts), "--ckpt_file", str(trained / "models" / "model.pt"),
        "--meta_file", METADATA, "--config_file", INFERENCE, "--network_def#steps", "2",
    )  # fmt: skip
    exported = torch.jit.load(str(ts))
    eager = tiny_network().eval()
    eager.load_state_dict(torch.load(trained / "models" / "model.pt", weights_only=True))
    x = torch.rand(2, 1, 45, 38)
    with torch.no_grad():
        assert (exported(x) - eager(x)).abs().max().item() < 1e-5


def test_resume_after_sigkill_keeps_optimizer_and_scheduler_state(tmp_path):
    epochs = 5
    args = ["run", "training", "--config_file", TRAIN, *tiny_overrides(tmp_path, epochs), "--val_interval", "100"]
    first = subprocess.Popen([sys.executable, "-m", "monai.bundle", *args], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 240
    while not list((tmp_path / "models").glob("checkpoint_epoch=2.pt")):
        assert first.poll() is None and time.time() < deadline, "training ended or stalled before epoch 2"
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done = max(int(p.stem.rsplit("=", 1)[1]) for p in (tmp_path / "models").glob("checkpoint_epoch=*.pt"))
    assert done < epochs, "killed too late to test resuming"

    resumed = bundle(*args, "--resume", "true")
    assert f"Epoch[{done + 1}]" in resumed.stdout and "Epoch[1] Complete" not in resumed.stdout
    final = torch.load(tmp_path / "models" / f"checkpoint_epoch={epochs}.pt", weights_only=True)
    iterations = final["trainer"]["iteration"]
    assert iterations == epochs * final["trainer"]["epoch_length"], "the resumed run finished every epoch"
    adam_steps = {int(s["step"]) for s in final["optimizer"]["state"].values()}
    assert adam_steps == {iterations}, "Adam's moments were restored, not restarted, on resume"
    assert final["lr_scheduler"]["last_epoch"] == epochs


def test_resume_without_a_checkpoint_fails_clearly(tmp_path):
    result = bundle("run", "training", "--config_file", TRAIN, *tiny_overrides(tmp_path), "--resume", "true", check=False)
    assert result.returncode != 0 and "no checkpoint_*.pt training checkpoint to resume from" in result.stdout + result.stderr


def test_multi_process_training_with_gloo(tmp_path):
    result = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
            "run", "training", "--config_file", f"['{TRAIN}', '{MULTI_GPU}']", *tiny_overrides(tmp_path),
        ],  # fmt: skip
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    tiny_network().load_state_dict(state, strict=True)  # saved without the DDP "module." prefix
    assert result.stdout.count("validation PSNR on") == 1, "only rank 0 reports"
