"""The benchmark report's pure pieces on hand-made rows: summary bold, goal verdicts, grid-edge flags, crop window."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import benchmark_report  # noqa: E402
from benchmark_report import CROP, OURS, goal_check, grid_edges, summary_table  # noqa: E402


def row(method: str, psnr: float, edge: float, parameters=None, groups="main", setting="rician 0.10") -> dict:
    return {"setting": setting, "method": method, "groups": groups, "parameters": parameters, "psnr_mean": psnr, "edge_mse_mean": edge}


ROWS = [
    row("noisy input", 18.8, 0.11),
    row("BM3D (bm3d package)", 30.2, 0.018),
    row("U-Net (MONAI BasicUNet, residual)", 27.0, 0.03, parameters=1_978_433),
    row("DnCNN (17 layers)", 28.9, 0.025, parameters=556_097),
    row(OURS, 28.5, 0.027, parameters=91_121),
]


def test_summary_marks_the_best_denoiser_of_each_setting_not_the_noisy_input():
    lines = summary_table(ROWS + [row("noisy input", 40.0, 0.0, setting="speckle 0.05")])
    assert lines[0] == "| method | rician 0.10 | speckle 0.05 |"
    bm3d = next(line for line in lines if line.startswith("| BM3D"))
    assert "**30.20**" in bm3d
    assert "**" not in next(line for line in lines if line.startswith("| noisy input"))  # a lone noisy row is no winner


def test_goal_check_reports_each_verdict_from_the_numbers():
    lines = goal_check(ROWS)
    bm3d, unet, dncnn, edge = (next(line for line in lines if key in line) for key in ("BM3D", "U-Net", "DnCNN", "Edge MSE"))
    assert "(-1.70 dB): **not met**" in bm3d
    assert "(+1.50 dB), parameters 0.046 of theirs: met" in unet
    assert "(-0.40 dB)" in dncnn and dncnn.endswith("**not met**")
    assert "best other BM3D (bm3d package) 0.0180: **not met**" in edge
    assert goal_check([r for r in ROWS if r["method"] != OURS]) == []


def test_goal_check_repeats_the_verdicts_with_the_rows_trained_longer():
    longer = [
        row(f"{OURS}, 70 epochs on a GPU", 29.0, 0.026, parameters=91_121, groups="longer"),
        row("U-Net (MONAI BasicUNet, residual), 70 epochs on a GPU", 29.5, 0.015, parameters=1_978_433, groups="longer"),
        row("ours + an option, 70 epochs on a GPU", 31.0, 0.010, parameters=100_000, groups="longer"),  # no main row: no peer
    ]
    lines = goal_check(ROWS + longer)
    at = lines.index(next(line for line in lines if line.startswith("The same with the learned rows trained longer (70 epochs on a GPU")))
    first, second = lines[:at], lines[at:]
    assert sum("U-Net" in line for line in first) == 1 and "(+1.50 dB)" in next(line for line in first if "U-Net" in line)
    bm3d, unet, dncnn, edge = (next(line for line in second if key in line) for key in ("BM3D", "U-Net", "DnCNN", "Edge MSE"))
    assert "29.00 vs 30.20 dB (-1.20 dB)" in bm3d
    assert "29.00 vs 29.50 dB (-0.50 dB)" in unet and unet.endswith("**not met**")
    assert "29.00 vs 28.90 dB (+0.10 dB)" in dncnn  # no DnCNN trained longer: the main row stands in
    assert "ours 0.0260, best other U-Net (MONAI BasicUNet, residual) 0.0150: **not met**" in edge  # the longer U-Net's Edge MSE
    without_ours = goal_check(ROWS + longer[1:])
    assert without_ours == goal_check(ROWS)  # no longer run of ours: no second block


def test_the_volume_goal_reads_each_tagged_row_of_ours_against_the_tagged_peers():
    """Each 2.5D all-planes row of ours tagged for the second goal check gets its own verdicts: against the main table's
    BM3D, the tagged peers (a 2.5D U-Net, BM4D: no parameters, no ratio) and the Edge MSE of every other method's row."""
    tag = benchmark_report.VOLUME_GOAL
    volume = [
        row("ours, 2.5D, seed 0; mean over the three planes", 31.3, 0.015, parameters=189_320, groups=f"tried {tag}"),
        row("ours, 2.5D, seed 1; mean over the three planes", 31.1, 0.009, parameters=189_320, groups=f"tried {tag}"),
        row("U-Net (MONAI BasicUNet, residual), 2.5D; mean over the three planes", 29.7, 0.019, parameters=1_979_585, groups=f"tried {tag}"),
        row("BM4D (bm4d package, whole volume)", 32.1, 0.010, groups=f"tried figures {tag}"),
        row("ours, 2.5D, untagged; mean over the three planes", 35.0, 0.001, parameters=1, groups="tried"),
        row("ours, 2.5D, seed 0; mean over the three planes", 40.0, 0.001, parameters=189_320, groups=f"tried {tag}", setting="rician 0.20"),
    ]
    lines = benchmark_report.volume_goal_verdicts(ROWS + volume)
    assert [line for line in lines if not line.startswith("  ")] == [f"- {r['method']}:" for r in volume[:2]]  # one list per row of ours
    first = lines[1 : lines.index(f"- {volume[1]['method']}:")]
    bm3d, unet, bm4d, edge = (next(line for line in first if key in line) for key in ("BM3D", "U-Net", "BM4D", "Edge MSE"))
    assert bm3d.startswith("  - ") and "31.30 vs 30.20 dB (+1.10 dB): met" in bm3d
    assert "31.30 vs 29.70 dB (+1.60 dB), parameters 0.096 of theirs: met" in unet
    assert bm4d.endswith("31.30 vs 32.10 dB (-0.80 dB): **not met**") and "parameters" not in bm4d
    assert "ours 0.0150, best other BM4D (bm4d package, whole volume) 0.0100: **not met**" in edge  # the untagged row of ours is no rival
    assert not any("DnCNN" in line for line in lines)  # only the tagged rows are peers
    assert "ours 0.0090, best other BM4D (bm4d package, whole volume) 0.0100: met" in lines[-1]
    assert benchmark_report.volume_goal_verdicts(ROWS) == []
    checked = goal_check(ROWS + volume)
    assert checked[checked.index(lines[0]) :] == [*lines, ""]  # results.md's goal check ends with them


def test_slug_keeps_short_names_and_bounds_long_ones_to_writable_distinct_file_names(tmp_path):
    assert benchmark_report.slug("BM3D (bm3d package)") == "bm3d-bm3d-package"
    long = "ours, 2.5D with two neighbouring slices on each side (MSE + 0.1 gradient), learned Rician bias correction, " * 3
    first, second = benchmark_report.slug(long + "seed 1"), benchmark_report.slug(long + "seed 2")
    assert len(first) == len(second) == benchmark_report.SLUG_LENGTH and first != second
    assert first[:-13] == second[:-13] == benchmark_report.slug(long)[: benchmark_report.SLUG_LENGTH - 13]
    path = tmp_path / f"{first}.json"
    benchmark_report.write_text_atomic(path, "{}")  # through a hidden temporary name, longer still
    assert path.read_text() == "{}"


def test_grid_edges_flags_only_ends_of_real_grids():
    tuning = {
        "gaussian 0.10": {
            "TV": {"best": {"weight": 0.02}, "grid": {"weight": [0.02, 0.04, 0.08]}},
            "PM": {"best": {"kind": "rational", "k": 0.05}, "grid": {"kind": ["rational"], "k": [0.02, 0.05, 0.1]}},
        }
    }
    assert grid_edges(tuning) == ["gaussian 0.10: TV weight=0.02"]


def test_the_crop_window_holds_the_most_edges():
    clean = np.zeros((181, 217), dtype=np.float32)
    clean[120:150, 30:60] = 1.0  # one bright square: all the edges of the slice
    rows, cols = benchmark_report._crop_window(clean)
    assert rows.stop - rows.start == CROP and cols.stop - cols.start == CROP
    assert rows.start <= 120 and 150 <= rows.stop and cols.start <= 30 and 60 <= cols.stop


def test_group_sections_only_cover_the_settings_where_the_group_was_scored():
    metrics = {f"{m}_{k}": 0.5 for m in benchmark_report.METRICS for k in ("mean", "std")}

    def full(method: str, groups: str, setting: str) -> dict:
        return {**row(method, 0.5, 0.5, groups=groups, setting=setting), **metrics, "seconds_per_256x256": "", "training_seconds": ""}

    rows = [full(m, g, s) for s in ("gaussian 0.10", "rician 0.10") for m, g in (("noisy input", "main"), (OURS, "main ablation"))]
    rows.append(full("ours, K = 4", "ablation", "rician 0.10"))  # ablations scored on the goal setting only
    rows += [full("BM3D (bm3d package)", "main", s) for s in ("gaussian 0.10", "rician 0.10")]
    rows.append(full(f"{OURS}, 70 epochs on a GPU", "longer", "rician 0.10"))
    text = "\n".join(benchmark_report.group_sections(rows))
    main, rest = text.split("## Ablations")
    ablations, longer = rest.split("## Trained longer on a GPU")
    assert "### gaussian 0.10" in main and "### rician 0.10" in main and "ours, K = 4" not in main
    assert "### gaussian 0.10" not in ablations and "### rician 0.10" in ablations
    assert "| method | rician 0.10 |" in ablations and "ours, K = 4" in ablations and "BM3D" not in ablations
    assert "70 epochs on a GPU" in longer and "| BM3D (bm3d package) |" in longer and "### gaussian 0.10" not in longer
    assert "Trying to improve ours" not in text  # no "tried" rows: no section


def test_the_readme_shows_the_committed_results():
    readme = (ROOT / "README.md").read_text()
    names = [m[1] for m in benchmark_report.README_BLOCK.finditer(readme)]
    assert sorted(names) == sorted(benchmark_report.README_BLOCK_NAMES)  # every block is in the README, once
    assert list(benchmark_report.readme_blocks([])) == list(benchmark_report.README_BLOCK_NAMES)
    rows = benchmark_report.read_rows(ROOT / "benchmarks" / "results" / "results.csv")
    assert benchmark_report.render_readme(readme, rows) == readme, "README.md is out of date: run python benchmarks/benchmark_report.py README.md"


def test_render_readme_fills_each_block_and_keeps_the_rest():
    metrics = {f"{m}_{k}": 0.25 for m in benchmark_report.METRICS for k in ("mean", "std")}
    timing = {"seconds_per_256x256": 0.5, "training_seconds": 60, "epoch_seconds_median": 2.0}
    rows = [{**r, **metrics, **timing, "psnr_mean": r["psnr_mean"], "edge_mse_mean": r["edge_mse_mean"]} for r in ROWS]
    text = "intro\n<!-- benchmark:main -->\nstale\n<!-- /benchmark -->\nmiddle\n<!-- benchmark:goal -->\n<!-- /benchmark -->\nend\n"
    new = benchmark_report.render_readme(text, rows)
    assert new.startswith("intro\n<!-- benchmark:main -->\n\n| method | parameters | s / 256² slice | PSNR (dB) |")
    assert new.endswith("<!-- /benchmark -->\nend\n")
    assert "stale" not in new and "\nmiddle\n" in new and "training" not in new  # the README tables leave out training time
    assert "| U-Net (MONAI BasicUNet, residual) | 1,978,433 | 0.500 | 27.00 ± 0.25 |" in new
    assert "\n- ours >= bias-corrected BM3D + 1 dB: 28.50 vs 30.20 dB (-1.70 dB): **not met**\n" in new
    assert benchmark_report.render_readme(new, rows) == new  # rendering again changes nothing


def test_render_readme_refuses_an_unknown_block_naming_the_file():
    with pytest.raises(ValueError, match=r"notes\.md: unknown benchmark block\(s\) \['mian'\]"):
        benchmark_report.render_readme("<!-- benchmark:mian -->\n<!-- /benchmark -->\n", ROWS, "notes.md")


def test_read_rows_gives_back_the_numbers_written(tmp_path):
    rows = [
        {"setting": "rician 0.10", "method": "ours, K = 4", "groups": "ablation", "parameters": 52_365, "seconds": 0.0591, "psnr_mean": 28.681234567891234},
        {"setting": "rician 0.10", "method": "noisy input", "groups": "main", "parameters": "", "seconds": "", "psnr_mean": 18.78},
    ]
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert benchmark_report.read_rows(path) == rows
