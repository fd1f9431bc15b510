"""benchmarks/other_volumes.py: trained rows against BM3D and BM4D on volumes other than the test volume."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import pytest
import torch

from conftest import ROOT
from nad_monai.datasets import slice_items
from nad_monai.evaluation import noisy_pairs

sys.path.insert(0, str(ROOT / "benchmarks"))
from other_volumes import BM3D, BM4D, METRICS, main, markdown, scores_by_volume  # noqa: E402


@pytest.fixture(scope="module")
def pairs():
    """Gaussian s = 0.10 pairs of every 3rd validation slice (both validation volumes)."""
    return noisy_pairs(slice_items("nifti", ROOT / "data" / "datalist.json", "validation")[::3], "gaussian", 0.10)


def test_scores_are_grouped_per_volume_and_over_all_slices(pairs):
    scores = scores_by_volume(pairs)
    volumes = sorted({key.split("#")[0] for _, _, key in pairs})
    assert sorted(scores) == sorted(["all", *volumes]) and len(volumes) == 2
    assert scores["all"]["slices"] == len(pairs) == sum(scores[v]["slices"] for v in volumes)
    for metric in METRICS:  # the mean over all slices is the slice-weighted mean of the volumes' means
        weighted = sum(scores[v][metric] * scores[v]["slices"] for v in volumes) / len(pairs)
        assert math.isclose(scores["all"][metric], weighted, rel_tol=1e-6)


def test_weaker_noise_scores_higher_on_every_volume_and_the_table_lists_every_row(pairs):
    generator = torch.Generator().manual_seed(0)
    faint = [((clean + 0.01 * torch.randn(clean.shape, generator=generator)).clamp(0, 1), clean, key) for _, clean, key in pairs]
    report = {"noisy input": scores_by_volume(pairs), "s = 0.01": scores_by_volume(faint)}
    for volume in report["noisy input"]:
        assert report["s = 0.01"][volume]["psnr"] > report["noisy input"][volume]["psnr"] + 15  # 20 log10(10) = 20 dB less noise
        assert report["s = 0.01"][volume]["edge_mse"] < report["noisy input"][volume]["edge_mse"] / 10
    table = markdown("all", report)
    assert table.startswith(f"all ({len(pairs)} slices)") and "| noisy input |" in table and "| s = 0.01 |" in table


def test_main_refuses_a_row_without_weights_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--rows", "no-such-row", "--results", str(tmp_path)])
    assert "no-such-row" in capsys.readouterr().err.splitlines()[-1]


BENCH_MISSING = importlib.util.find_spec("bm4d") is None or importlib.util.find_spec("bm3d") is None


@pytest.mark.skipif(BENCH_MISSING, reason="bm3d and bm4d are not installed (bench extra)")
def test_main_scores_a_trained_row_and_both_block_matching_methods(tmp_path):
    out = tmp_path / "gap.json"
    main(["--rows", "ours", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["split"] == "validation" and record["setting"] == "rician 0.10"
    scores = record["scores"]
    assert list(scores) == ["noisy input", BM3D, BM4D, "ours"]
    for name in (BM3D, BM4D, "ours"):
        assert scores[name]["all"]["psnr"] > scores["noisy input"]["all"]["psnr"] + 5
    assert scores[BM4D]["all"]["psnr"] > scores[BM3D]["all"]["psnr"]  # it sees the neighbouring slices too
