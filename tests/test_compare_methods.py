"""The benchmark's reduced run (benchmarks/compare_methods.py --quick): every row and column, finite and sane values."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

from conftest import ROOT

EXPECTED_METHODS = ["noisy input", "Gaussian smoothing", "TV (scikit-image Chambolle)", "unrolled Perona-Malik (ours)"]
COLUMNS = ["psnr", "ssim", "edge_mse", "head_psnr", "head_ssim", "head_edge_mse"]


def test_reduced_benchmark_run(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_methods.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    settings = ["gaussian 0.10", "rician 0.10"]
    assert [(r["setting"], r["method"]) for r in rows] == [(s, m) for s in settings for m in EXPECTED_METHODS]
    for r in rows:
        for column in COLUMNS:
            assert math.isfinite(float(r[f"{column}_mean"])) and float(r[f"{column}_std"]) >= 0, (r["method"], column)
    for setting in settings:
        by_method = {r["method"]: r for r in rows if r["setting"] == setting}
        noisy = by_method.pop("noisy input")
        for method, r in by_method.items():
            assert float(r["psnr_mean"]) > float(noisy["psnr_mean"]) + 3, (setting, method)
            assert float(r["edge_mse_mean"]) < float(noisy["edge_mse_mean"]), (setting, method)
            assert 0 < float(r["ssim_mean"]) <= 1 and float(r["seconds_per_256x256"]) > 0
        assert int(by_method["unrolled Perona-Malik (ours)"]["parameters"]) > 0
    tuning = json.loads((tmp_path / "tuning.json").read_text())
    for setting in settings:
        for method, record in tuning[setting].items():
            assert all(record["best"][k] in values for k, values in record["grid"].items()), (setting, method)
    table = (tmp_path / "results.md").read_text()
    assert all(f"### {s}" in table for s in settings) and table.count("| head PSNR |") == 2
    assert (tmp_path / "psnr_vs_sigma.png").stat().st_size > 10_000
