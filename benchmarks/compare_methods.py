"""Compare learned denoisers with tuned classical ones on the demo test split: Markdown, CSV and a figure.

For each noise setting (Gaussian, Rician, speckle at s = 0.05, 0.10, 0.15, 0.20, and mixed), the
test slices are corrupted deterministically (``nad_monai.evaluation.noisy_pairs``). Every classical
method's parameters are grid-searched on validation slices of the same setting (mean PSNR; the grids
and every score go to ``tuning.json``); on Rician settings each classical output is bias-corrected
with ``sqrt(max(y^2 - 2 s^2, 0))`` (dipy's NLM corrects itself; on mixed settings nothing is, as a
blind denoiser would not know the model). Learned rows are bundle networks given as
``NAME=CONFIG:WEIGHTS``. Scores: PSNR, SSIM, Edge MSE (mean and std over slices), over the whole
image and over the head mask; parameter count; seconds per 256x256 slice on this machine.

    python benchmarks/compare_methods.py --out benchmark_results           # full protocol (hours on 2 CPU cores)
    python benchmarks/compare_methods.py --quick --out /tmp/bench          # 2 settings, 3 methods, a few slices
    python benchmarks/compare_methods.py --settings rician:0.10 --test-every 4 --out rician10   # one setting
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from nad_monai.baselines import GRIDS, METHODS, rician_bias_correction, tune
from nad_monai.datasets import slice_items
from nad_monai.evaluation import MODELS, SIGMAS, noisy_pairs, score_images
from nad_monai.metrics import denoising_metrics

ROOT = Path(__file__).resolve().parents[1]
PM_K = {"k": [0.02, 0.03, 0.05, 0.08, 0.12, 0.2]}
CLASSICAL: dict[str, tuple[str, dict, dict]] = {
    "Gaussian smoothing": ("gaussian", {}, GRIDS["gaussian"]),
    "heat equation": ("heat", {}, GRIDS["heat"]),
    "Perona-Malik exponential, 4 nb, 16 it": ("perona_malik", {"kind": "exponential", "neighbours": 4, "steps": 16}, PM_K),
    "Perona-Malik rational, 4 nb, 16 it": ("perona_malik", {"kind": "rational", "neighbours": 4, "steps": 16}, PM_K),
    "Perona-Malik exponential, 8 nb, 16 it": ("perona_malik", {"kind": "exponential", "neighbours": 8, "steps": 16}, PM_K),
    "Perona-Malik rational, 8 nb, 16 it": ("perona_malik", {"kind": "rational", "neighbours": 8, "steps": 16}, PM_K),
    "TV (scikit-image Chambolle)": ("tv", {}, GRIDS["tv"]),
    "NLM (scikit-image, sigma estimated)": ("nlm", {}, GRIDS["nlm"]),
    "BM3D (bm3d package)": ("bm3d", {}, GRIDS["bm3d"]),
    "dipy NLM (Rician)": ("dipy_nlmeans", {}, GRIDS["dipy_nlmeans"]),
}
"""Classical rows: name -> (``nad_monai.baselines.METHODS`` key, fixed parameters, tuning grid)."""
SELF_CORRECTING = {"dipy_nlmeans"}
OURS = f"unrolled Perona-Malik (ours)={ROOT / 'bundle/configs/inference.json'}:{ROOT / 'bundle/models/model.pt'}"
METRICS = ("psnr", "ssim", "edge_mse", "head_psnr", "head_ssim", "head_edge_mse")


def settings(chosen: list[str] | None, quick: bool) -> list[tuple[str, float | None]]:
    """``(noise model, s)`` pairs from ``MODEL:S`` or ``mixed`` strings; ``("mixed", None)`` for mixed noise.

    Default: every model at every level and mixed (``--quick``: Gaussian and Rician at 0.10).
    """
    if chosen:
        return [("mixed", None) if c == "mixed" else (c.split(":")[0], float(c.split(":")[1])) for c in chosen]
    if quick:
        return [("gaussian", 0.10), ("rician", 0.10)]
    return [(m, s) for m in MODELS for s in SIGMAS] + [("mixed", None)]


def label(model: str, sigma: float | None) -> str:
    return "mixed, s 0.05-0.20" if sigma is None else f"{model} {sigma:.2f}"


def learned(spec: str) -> tuple[str, torch.nn.Module]:
    """``NAME=CONFIG:WEIGHTS`` -> (name, network in eval mode with the weights)."""
    name, files = spec.split("=", 1)
    config, weights = files.rsplit(":", 1)
    parser = ConfigParser()
    parser.read_config(config)
    net = parser.get_parsed_content("network_def").eval()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return name, net


def seconds_per_slice(denoise, repeats: int) -> float:
    """Median seconds to denoise one noisy 256x256 crop of a real MR slice."""
    x = (torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.3).clamp(0, 1)
    with torch.inference_mode():
        denoise(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            denoise(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for results.md, results.csv, tuning.json, psnr_vs_sigma.png")
    parser.add_argument("--learned", action="append", help="NAME=CONFIG:WEIGHTS of a bundle network (repeatable; default: ours)")
    parser.add_argument("--methods", nargs="+", help="classical rows to run (default: all; in --quick: Gaussian smoothing and TV)")
    parser.add_argument("--settings", nargs="+", help="noise settings as MODEL:S (e.g. rician:0.10) or mixed (default: all)")
    parser.add_argument("--datalist", default=str(ROOT / "data" / "datalist.json"))
    parser.add_argument("--val-every", type=int, default=2, help="tune on every n-th validation slice")
    parser.add_argument("--test-every", type=int, default=1, help="score every n-th test slice")
    parser.add_argument("--quick", action="store_true", help="2 settings, 2 classical rows, 3 validation and 4 test slices")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bad = [c for c in args.settings or [] if c != "mixed" and not re.fullmatch(rf"({'|'.join(MODELS)}):(0?\.\d+)", c)]
    if bad:
        parser.error(f"settings must be MODEL:S with MODEL in {MODELS}, or mixed; got {bad}")
    names = args.methods or (["Gaussian smoothing", "TV (scikit-image Chambolle)"] if args.quick else list(CLASSICAL))
    unknown = sorted(set(names) - set(CLASSICAL))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {sorted(CLASSICAL)}")
    nets = [learned(spec) for spec in (args.learned or [OURS])]
    val = slice_items("nifti", args.datalist, "validation")[:: args.val_every]
    test = slice_items("nifti", args.datalist, "test")[:: args.test_every]
    if args.quick:
        val, test = val[:3], test[:: max(1, len(test) // 4)][:4]
    args.out.mkdir(parents=True, exist_ok=True)

    speed = {name: seconds_per_slice(net, 3) for name, net in nets}  # classical rows: timed with their tuned parameters below
    params = {name: sum(p.numel() for p in net.parameters()) for name, net in nets}

    rows, tuning = [], {}
    psnr = denoising_metrics()["psnr"]
    for model, sigma in settings(args.settings, args.quick):
        setting = label(model, sigma)
        print(f"{setting}: tuning {len(names)} methods on {len(val)} validation slices, scoring on {len(test)} test slices", flush=True)
        val_pairs, test_pairs = noisy_pairs(val, model, sigma), noisy_pairs(test, model, sigma)
        scored = {"noisy input": score_images(test_pairs, lambda x: x)}
        tuning[setting] = {}
        for name in names:
            key, fixed, grid_ = CLASSICAL[name]
            correct = sigma if model == "rician" and key not in SELF_CORRECTING else None
            best, best_score = tune(
                key,
                [p[0] for p in val_pairs],
                [p[1] for p in val_pairs],
                lambda y, c: float(psnr(y.clamp(0, 1), c).mean()),
                {**{k: [v] for k, v in fixed.items()}, **grid_},
                correct=[correct] * len(val_pairs),
            )
            tuning[setting][name] = {"best": best, "validation_psnr": best_score, "grid": {k: list(v) for k, v in grid_.items()}}

            def denoise(x, key=key, best=best, correct=correct):
                out = METHODS[key](x, **best)
                return out if correct is None else rician_bias_correction(out, correct)

            scored[name] = score_images(test_pairs, denoise)
            speed.setdefault(name, seconds_per_slice(denoise, 1 if args.quick else 3))  # parameters tuned on the first setting
        for name, net in nets:
            scored[name] = score_images(test_pairs, net)
        for name, values in scored.items():
            row = {"setting": setting, "method": name, "parameters": params.get(name, ""), "seconds_per_256x256": speed.get(name, "")}
            for metric in METRICS:
                row[f"{metric}_mean"], row[f"{metric}_std"] = float(values[metric].mean()), float(values[metric].std())
            rows.append(row)
        print(f"  {setting}: " + ", ".join(f"{r['method']} {r['psnr_mean']:.2f}" for r in rows if r["setting"] == setting), flush=True)

    write_outputs(args.out, rows, tuning, len(val), len(test))


def write_outputs(out: Path, rows: list[dict], tuning: dict, n_val: int, n_test: int) -> None:
    """``results.csv``, ``results.md`` (one table per setting), ``tuning.json`` and ``psnr_vs_sigma.png``."""
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "tuning.json").write_text(json.dumps(tuning, indent=1))
    lines = [f"Test split: {n_test} slices; classical parameters tuned on {n_val} validation slices (tuning.json).", ""]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        lines += [
            f"### {setting}",
            "",
            "| method | parameters | s / 256x256 slice | PSNR (dB) | SSIM | Edge MSE | head PSNR | head SSIM | head Edge MSE |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["setting"] == setting):
            cells = [f"{r[f'{m}_mean']:.2f} ± {r[f'{m}_std']:.2f}" if "psnr" in m else f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}" if "ssim" in m else f"{r[f'{m}_mean']:.4f} ± {r[f'{m}_std']:.4f}" for m in METRICS]
            seconds = f"{r['seconds_per_256x256']:.3f}" if r["seconds_per_256x256"] != "" else ""
            lines.append(f"| {r['method']} | {r['parameters']} | {seconds} | " + " | ".join(cells) + " |")
        lines.append("")
    (out / "results.md").write_text("\n".join(lines))
    plot_psnr_vs_sigma(out / "psnr_vs_sigma.png", rows)


def plot_psnr_vs_sigma(path: Path, rows: list[dict]) -> None:
    """One panel per noise model: test PSNR against s for every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if any(r["setting"].startswith(m) for r in rows)]
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for method in dict.fromkeys(r["method"] for r in rows):
            points = sorted((float(r["setting"].split()[1]), r["psnr_mean"]) for r in rows if r["method"] == method and r["setting"].startswith(model))
            ax.plot(*zip(*points), marker="o", label=method)
        ax.set(title=f"{model} noise", xlabel="s (fraction of the intensity range)", ylabel="test PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
