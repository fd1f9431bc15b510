"""benchmarks/volume_pilot.py: noisy volumes with a volume estimate as pilot, their training items and the hybrid row's config."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from conftest import ROOT
from nad_monai import UnrolledPeronaMalik, baselines
from nad_monai.baselines import gaussian_smoothing
from nad_monai.datasets import MIN_FOREGROUND, foreground_fraction, slice_items

sys.path.insert(0, str(ROOT / "benchmarks"))
import volume_pilot  # noqa: E402
from compare_methods import LEARNED, TRAIN_CONFIG, all_planes, training_config  # noqa: E402

UNET_25D = "context-slices-2-zero-air-rician-trained-basic-unet"

DATALIST = str(ROOT / "data" / "datalist.json")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """``prepare`` of the two validation volumes at two levels, a Gaussian smoothing standing in for the
    estimate (BM4D's is the bench extra's, a row's takes minutes)."""
    folder = tmp_path_factory.mktemp("volume_pilot")
    calls = []

    def stand_in(noisy, sigma):
        calls.append(sigma)
        return gaussian_smoothing(noisy, sigma=1.0)

    files = volume_pilot.prepare(DATALIST, "validation", [0.10, 0.20], folder, stand_in)
    assert calls == [0.10, 0.10, 0.20, 0.20]  # each volume at each level, told the level
    again = volume_pilot.prepare(DATALIST, "validation", [0.10, 0.20], folder, stand_in)
    assert again == files and len(calls) == 4  # cached: nothing is recomputed
    return folder, files


@pytest.mark.parametrize("pilot", [volume_pilot.BM4D_PILOT, volume_pilot.DCT3D_PILOT])
def test_a_classical_pilot_is_blind_at_its_tuned_noise_scale(monkeypatch, pilot):
    scales = []
    monkeypatch.setitem(baselines.VOLUME_METHODS, pilot, lambda noisy, sigma_scale: scales.append(sigma_scale) or noisy)
    results = ROOT / "benchmarks" / "results"
    estimate = volume_pilot.estimator(pilot, results, None)
    x = torch.rand(3, 1, 8, 8)
    for s in (0.10, 0.20):
        assert estimate(x, s) is x  # no bias correction on top
    tuning = json.loads((results / "tuning.json").read_text())
    assert scales == [tuning[f"rician {s:.2f}"][volume_pilot.CLASSICAL_PILOTS[pilot]]["best"]["sigma_scale"] for s in (0.10, 0.20)]
    if pilot == volume_pilot.BM4D_PILOT:
        assert scales == [1.25, 1.25]  # as BM4D's hybrid rows were trained and scored


def test_the_second_pass_pilot_is_our_row_over_the_three_planes(cache, capsys):
    _, files = cache
    d = torch.load(next(f for f in files if f.name == "dipy_aniso_vox_rician-0.10.pt"), weights_only=True)
    results = ROOT / "benchmarks" / "results"
    estimate = volume_pilot.estimator(volume_pilot.SECOND_PASS_PILOT, results, argparse.ArgumentParser())
    pilot = estimate(d["noisy"], 0.10)
    assert pilot.shape == d["noisy"].shape
    psnr = [float(-10 * torch.log10(((y - d["clean"]) ** 2).mean())) for y in (d["noisy"], pilot)]
    assert psnr[1] > psnr[0] + 5  # a denoised estimate of the volume, not the noisy one
    with pytest.raises(SystemExit):
        volume_pilot.estimator("no-such-row", results, argparse.ArgumentParser())
    assert "training/no-such-row: no trained weights" in capsys.readouterr().err


def test_the_second_pass_with_its_pilot_row_has_under_a_tenth_of_the_unets_parameters():
    change = volume_pilot.ROWS["context-slices-2-zero-air-rician-correction-k4-second-pass"]
    row = volume_pilot.row(4, change)
    assert row["network_def"]["steps"] == 4 and row["network_def"]["volume_pilot"] and "correction row's estimate" in row["name"]
    assert row["training"]["train#dataset"]["cache"].endswith(f"'volume_pilot_{volume_pilot.SECOND_PASS_PILOT}')")
    assert volume_pilot.row(4)["training"]["train#dataset"]["cache"].endswith("'volume_pilot')")  # BM4D's, as its rows trained
    assert volume_pilot.row(4, change, ROOT / "x")["training"]["validate#dataset"]["cache"] == str(ROOT / "x")  # --cache: training reads that folder
    count = {}
    for name, network_def in (("second", row["network_def"]), ("first", LEARNED[change.pilot]["network_def"]), ("unet", LEARNED[UNET_25D]["network_def"])):
        count[name] = sum(p.numel() for p in ConfigParser({"net": network_def}).get_parsed_content("net").parameters())
    assert count["first"] + count["second"] <= count["unet"] / 10


def test_the_rows_with_pilots_of_our_own_stay_under_a_tenth_of_the_unets_parameters():
    def count(network_def: dict) -> int:
        return sum(p.numel() for p in ConfigParser({"net": network_def}).get_parsed_content("net").parameters())

    unet = count(LEARNED[UNET_25D]["network_def"])
    ours = {volume_pilot.DCT3D_PILOT: "3D DCT", volume_pilot.BM_WIENER_PILOT: "block-matched Wiener"}
    rows = {key: change for key, change in volume_pilot.ROWS.items() if change.pilot in ours}
    assert [change.pilot for change in rows.values()].count(volume_pilot.DCT3D_PILOT) == 3  # K = 8, its seed-1 run and K = 12
    # K = 8, with the Edge MSE in its loss (seeds 0 and 1), the PDE run from the pilot, and a T1 scan added
    assert [change.pilot for change in rows.values()].count(volume_pilot.BM_WIENER_PILOT) == 6
    for change in rows.values():
        row = volume_pilot.row(4, change)
        folder = f"volume_pilot_{change.pilot}" + (f"_{Path(change.training_volumes).stem}" if change.training_volumes else "")
        assert row["training"]["train#dataset"]["cache"].endswith(f"'{folder}')") and ours[change.pilot] in row["name"]
        assert count(row["network_def"]) <= unet / 10  # the pilot itself has no parameters
    k16 = volume_pilot.row(4, next(iter(rows.values()))._replace(network={"steps": 16}))["network_def"]
    assert count(k16) > unet / 10  # hence K = 12, not 16


def test_every_committed_pilot_row_was_trained_as_the_code_defines_it(monkeypatch):
    trained = 0
    for key, change in volume_pilot.ROWS.items():
        path = ROOT / "benchmarks" / "results" / "training" / key / "config.json"
        if path.is_file():
            monkeypatch.setitem(LEARNED, key, volume_pilot.row(len(volume_pilot.LEVELS), change))
            assert json.loads(path.read_text()) == training_config(key, {}), key
            trained += 1
    assert trained == len(volume_pilot.ROWS)  # each row's run is committed: BM4D's two, the second pass, the three 3D DCT rows and the six block-matched ones


def test_prepare_draws_seeded_rician_noise_per_level_on_references_with_zero_air(cache):
    _, files = cache
    assert sorted(f.name for f in files) == sorted(f"{v}_rician-{s}.pt" for v in ("dipy_s0", "dipy_aniso_vox") for s in ("0.10", "0.20"))
    low, high = (torch.load(f, weights_only=True) for f in sorted(files) if f.name.startswith("dipy_s0"))
    assert low["sigma"] == 0.10 and high["sigma"] == 0.20
    torch.testing.assert_close(low["clean"], high["clean"])
    assert low["noisy"].shape == low["clean"].shape == low["pilot"].shape == (10, 1, 128, 128)
    air = low["clean"] == 0
    assert 0.2 < air.float().mean() < 0.9  # the air around the head is zero, the head is not
    for d, s in ((low, 0.10), (high, 0.20)):  # Rician noise in the air: Rayleigh, mean s sqrt(pi / 2)
        assert abs(float(d["noisy"][air].mean()) / (s * (torch.pi / 2) ** 0.5) - 1) < 0.03
    assert not torch.allclose(low["noisy"] / 0.10, high["noisy"] / 0.20, atol=0.1)  # another draw per level, not the same one scaled


def test_items_stack_the_noisy_neighbours_then_the_pilot_of_head_slices(cache):
    folder, files = cache
    d = torch.load(next(f for f in files if f.name == "dipy_aniso_vox_rician-0.10.pt"), weights_only=True)
    items = volume_pilot.pilot_items([next(f for f in files if f.name == "dipy_aniso_vox_rician-0.10.pt")], context=2)
    head = [k for k in range(len(d["clean"])) if foreground_fraction(d["clean"][k]) >= MIN_FOREGROUND]
    assert [i["id"] for i in items] == [d["ids"][k] for k in head] and 0 < len(items) < len(d["clean"])
    for item, k in zip(items, head):
        assert item["image"].shape == (6, 58, 58) and item["label"].shape == (1, 58, 58)
        last = len(d["noisy"]) - 1
        for channel, j in enumerate(range(k - 2, k + 3)):
            torch.testing.assert_close(item["image"][channel], d["noisy"][min(max(j, 0), last), 0])
        torch.testing.assert_close(item["image"][5:], d["pilot"][k])
        torch.testing.assert_close(item["label"], d["clean"][k])
    with pytest.raises(FileNotFoundError, match="run benchmarks/volume_pilot.py prepare first"):
        volume_pilot.pilot_dataset(str(folder), "training", context=2)


def test_the_hybrid_row_trains_through_the_bundle_config_on_those_items(cache):
    folder, _ = cache
    row = volume_pilot.row(levels=2)
    assert row["training"]["epochs"] == 30  # the 60 epochs of the row it extends, over two noise draws per slice
    edge = volume_pilot.row(2, volume_pilot.ROWS[f"{volume_pilot.KEY}-gradient-1"])
    assert {k: v for k, v in edge["training"].items() if row["training"].get(k) != v} == {"loss#gradient_weight": 1.0}
    assert "(MSE + 0.1 gradient)" in row["name"] and "(MSE + 1 gradient, " in edge["name"] and edge["network_def"] == row["network_def"]
    bm_wiener = volume_pilot.KEY.replace("bm4d", "bm-wiener")
    edge_mse = volume_pilot.row(2, volume_pilot.ROWS[f"{bm_wiener}-edge-mse"])
    plain = volume_pilot.row(2, volume_pilot.ROWS[bm_wiener])
    assert {k: v for k, v in edge_mse["training"].items() if plain["training"].get(k) != v} == {"loss#edge_weight": 0.05}
    assert "+ 0.05 Edge MSE)" in edge_mse["name"] and edge_mse["network_def"] == plain["network_def"]
    start = volume_pilot.row(2, volume_pilot.ROWS[f"{bm_wiener}-start"])
    assert start["training"] == plain["training"]
    assert {k: v for k, v in start["network_def"].items() if plain["network_def"].get(k) != v} == {"pilot_start": True, "pilot_blend": False}
    parser = ConfigParser()
    parser.read_config(str(TRAIN_CONFIG))
    parser.update({**row["training"], "network_def": row["network_def"], "bundle_root": str(ROOT / "bundle"), "patch_size": [32, 32]})
    for split in ("train", "validate"):  # validation items for both: this test's cache has no training split
        parser[f"{split}#dataset#cache"], parser[f"{split}#dataset#split"] = str(folder), "validation"
    net = parser.get_parsed_content("network_def")
    torch.manual_seed(0)  # the random crops, flips and turns (MONAI's DataLoader seeds them from torch): a crop of mostly air is a poor test
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert batch["image"].shape == (16, 6, 32, 32) and batch["label"].shape == (16, 1, 32, 32)  # 8 slices x 2 crops
    torch.testing.assert_close(batch["label"], batch["label"].clamp(0, 1))
    middle, pilot = batch["image"][:, 2:3], batch["image"][:, 5:]
    for estimate in (middle, pilot):  # cropped, flipped and turned together: each channel lies on its label
        assert ((estimate - batch["label"]) ** 2).mean() < ((estimate.flip(-1).transpose(-1, -2) - batch["label"]) ** 2).mean() / 2
    loss = parser.get_parsed_content("loss")(net(batch["image"]), batch["label"])
    loss.backward()
    assert torch.isfinite(loss) and net.blend_gate.weight.grad.abs().sum() > 0
    validation = parser.get_parsed_content("validate#dataset")
    assert len(validation) == 2 * sum(1 for f in folder.glob("validation/*_rician-0.10.pt") for _ in volume_pilot.pilot_items([f], 2))


def test_the_blend_fixed_on_the_pilot_hands_on_the_pilot_and_leaves_the_row_as_it_is(cache):
    _, files = cache
    d = torch.load(files[0], weights_only=True)
    x = torch.cat([d["noisy"][None, 3:8, 0], d["pilot"][None, 5]], dim=1)  # (1, 6, H, W): five noisy slices, the pilot
    net = UnrolledPeronaMalik(steps=2, context_slices=2, refinement=False, volume_pilot=True, pilot_blend=True).eval()
    fixed = volume_pilot.blend_on_the_pilot(net)
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), x[:, 5:])  # no refinement, no bias correction: the pilot itself
        y, details = net.inspect(x)
        torch.testing.assert_close(y, (details["states"][-1] + x[:, 5:]) / 2)  # the row still blends
    assert not torch.allclose(y, x[:, 5:])


class _Pick(torch.nn.Module):
    """A stand-in 2.5D network with a given pilot that returns one channel of its input."""

    context_slices = 2

    def __init__(self, channel: int):
        super().__init__()
        self.channel = channel

    def forward(self, x):
        assert x.shape[1] == 6
        return x[:, self.channel : self.channel + 1]


def test_all_planes_feeds_each_slice_of_every_plane_with_its_own_pilot(cache):
    _, files = cache
    d = torch.load(next(f for f in files if f.name == "dipy_aniso_vox_rician-0.20.pt"), weights_only=True)
    both = torch.cat([d["noisy"], d["pilot"]], dim=1)  # (Z, 2, H, W): the volume, then its estimate
    for axes in ((2,), (0, 1, 2)):
        torch.testing.assert_close(all_planes(_Pick(5), axes)(both), d["pilot"])
        torch.testing.assert_close(all_planes(_Pick(2), axes)(both), d["noisy"])
    # a neighbour channel is the slice one step along each plane's own axis: the mean of three shifted copies
    shifted = all_planes(_Pick(3))(both)[:, 0]
    v = d["noisy"][:, 0]
    expected = sum(torch.cat([v.narrow(a, 1, v.shape[a] - 1), v.narrow(a, v.shape[a] - 1, 1)], dim=a) for a in range(3)) / 3
    torch.testing.assert_close(shifted, expected)


def test_training_refuses_a_cache_whose_levels_lack_volumes(cache, capsys):
    folder, _ = cache
    with pytest.raises(SystemExit):
        volume_pilot.prepared_levels(argparse.ArgumentParser(), folder, volume_pilot.split_datalists(volume_pilot.ROWS[volume_pilot.KEY], DATALIST))
    assert "level 0.10 lacks training/heudiconv_b0_run1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        volume_pilot.prepared_levels(argparse.ArgumentParser(), folder / "nothing", volume_pilot.split_datalists(volume_pilot.ROWS[volume_pilot.KEY], DATALIST))
    assert "no pilot volumes" in capsys.readouterr().err


def test_a_row_with_other_training_volumes_prepares_and_trains_on_them_in_a_cache_of_its_own(cache, capsys):
    change = volume_pilot.ROWS["context-slices-2-zero-air-rician-correction-bm-wiener-pilot-with-itk-t1"]
    datalists = volume_pilot.split_datalists(change, DATALIST)
    training = datalists["training"]
    volumes = [Path(i["image"]).name for i in json.loads(Path(training).read_text())["training"]]
    assert "itk_kmeans_t1.nii.gz" in volumes and len(volumes) == 6  # the usual five and the T1 scan of one person
    assert datalists["validation"] == DATALIST  # validated as every row
    assert volume_pilot.split_datalists(volume_pilot.ROWS[volume_pilot.KEY], DATALIST) == {"training": DATALIST, "validation": DATALIST}
    assert volume_pilot.cache_name(change) != volume_pilot.cache_name(change._replace(training_volumes=""))
    # its epochs over the six volumes' head slices and the usual rows' over the five train on as many slices: the same budget
    rows = ((training, change), (DATALIST, volume_pilot.ROWS[volume_pilot.KEY]))
    visits = {d: len(slice_items("nifti", d, "training")) * volume_pilot.row(4, c)["training"]["epochs"] for d, c in rows}
    assert abs(visits[training] / visits[DATALIST] - 1) < 0.01
    folder, _ = cache
    with pytest.raises(SystemExit):
        volume_pilot.prepared_levels(argparse.ArgumentParser(), folder, datalists)
    assert "training/itk_kmeans_t1" in capsys.readouterr().err  # the T1 scan is wanted among the training volumes


def test_scores_split_the_edge_mse_by_band_for_json(colin_slice):
    clean = torch.as_tensor(colin_slice)[None]
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    scores = volume_pilot.means([(noisy, clean, "noisy"), (0.9 * clean, clean, "darker")])
    bands = scores["edge_mse_by_band"]
    assert sum(b["edge_mse"] for b in bands) == pytest.approx(scores["edge_mse"], rel=1e-4)  # images of one size: the mean of theirs
    assert bands[-1]["high"] is None and sum(b["pixels"] for b in bands) == pytest.approx(1.0)
    json.dumps(scores, allow_nan=False)
