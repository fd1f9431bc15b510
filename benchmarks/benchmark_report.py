"""Tables and figures of ``compare_methods.py``: results.md, results.csv, tuning.json, psnr_vs_sigma.png, crops_<noise>.png.

Rows are dictionaries with ``setting``, ``method``, ``groups`` (space-separated: "main", "ablation", "tried", "longer"),
``parameters``, ``seconds_per_256x256``, ``training_seconds`` and ``<metric>_mean`` / ``<metric>_std``
for every metric in ``METRICS``. The denoised example slice of every row drawn in a crop figure (``drawn``) is a
``.npy`` file under ``OUT/examples/<setting>/`` (``example_path``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from nad_monai.evaluation import MODELS

METRICS = ("psnr", "ssim", "edge_mse", "head_psnr", "head_ssim", "head_edge_mse")
OURS = "unrolled Perona-Malik (ours)"
GOAL_SETTING = "rician 0.10"
BM3D = "BM3D (bm3d package)"
LEARNED_PEERS = ("U-Net (MONAI BasicUNet, residual)", "DnCNN (17 layers)")
"""The main table's learned peers that the goal compares ours with."""
VOLUME_GOAL = "volume-goal"
"""Group tag of the rows of the second goal check (``volume_goal_verdicts``): rows of ours, and their peers, that see the
neighbouring slices and run over the three planes of the volume (no table of its own)."""
GROUP_TITLES = {"main": "Main table", "ablation": "Ablations", "tried": "Trying to improve ours", "longer": "Trained longer on a GPU"}
REFERENCES = {"ablation": ("noisy input", OURS), "tried": ("noisy input", OURS), "longer": ("noisy input", BM3D, OURS)}
"""Rows of the main table repeated in each other group's section, to read its rows against."""
CROP = 72
"""Side of the zoomed square of the crop figures, in pixels."""


SLUG_LENGTH = 230
"""Longest file-name stem ``slug`` gives: file names stay under the usual 255-byte limit with an extension and the
hidden temporary name of an atomic write around them."""


def slug(text: str) -> str:
    """``text`` as a file-name stem: lower case, runs of anything but ``a-z0-9.`` as one "-"; a stem longer than
    ``SLUG_LENGTH`` is cut and ends in 12 hex digits of its SHA-256 instead, so that long row names stay distinct."""
    stem = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")
    if len(stem) <= SLUG_LENGTH:
        return stem
    return f"{stem[: SLUG_LENGTH - 13]}-{hashlib.sha256(stem.encode()).hexdigest()[:12]}"


def drawn(setting: str, groups: Sequence[str]) -> bool:
    """Whether a row of table ``groups`` on ``setting`` is drawn in a crop figure: the main table's rows and the
    "figures" rows, at s = 0.10 of each noise model and on mixed noise."""
    return (setting.endswith("0.10") or setting.startswith("mixed")) and bool({"main", "figures"} & set(groups))


def example_path(out: Path, setting: str, name: str) -> Path:
    """Where the denoised example slice of row ``name`` on ``setting`` is kept (``(H, W)`` float32 in [0, 1])."""
    folder = out / "examples" / slug(setting)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{slug(name)}.npy"


def in_group(row: dict, group: str) -> bool:
    return group in row["groups"].split()


def own_member(groups: Sequence[str], group: str) -> bool:
    """Whether a row of ``groups`` is one of ``group``'s own rows: in it and, for any group but
    "main", not also in the main table (such rows only give the others something to compare with)."""
    return group in groups and (group == "main" or "main" not in groups)


def _cell(row: dict, metric: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    digits = 2 if "psnr" in metric else 3 if "ssim" in metric else 4
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _seconds(value) -> str:
    return "" if value == "" else f"{value:.3f}"


def _training(row: dict) -> str:
    if row.get("training_seconds", "") == "":
        return ""
    return f"{row['training_seconds'] / 60:.1f} ({row['epoch_seconds_median']:.0f})"


def table(rows: list[dict], training: bool = True) -> list[str]:
    """A Markdown table of full rows: parameters, speed, training time (unless ``training`` is False) and every metric as
    mean ± std."""
    head = ["method", "parameters", "s / 256² slice", *(["training: min (s / epoch)"] * training), "PSNR (dB)", "SSIM", "Edge MSE", "head PSNR (dB)", "head SSIM", "head Edge MSE"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (2 + training) + "---|" * len(METRICS)]
    for r in rows:
        parameters = "" if r["parameters"] in ("", None) else f"{r['parameters']:,}"
        cells = [r["method"], parameters, _seconds(r["seconds_per_256x256"]), *([_training(r)] * training), *(_cell(r, m) for m in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_table(rows: list[dict], metric: str = "psnr") -> list[str]:
    """Methods x settings of one metric's mean; the best value of each column in bold."""
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    value = {(r["method"], r["setting"]): r[f"{metric}_mean"] for r in rows}
    lower_better = "edge_mse" in metric
    best = {s: (min if lower_better else max)((v for (m, s2), v in value.items() if s2 == s and m != "noisy input"), default=None) for s in settings}
    lines = ["| method | " + " | ".join(settings) + " |", "|---|" + "---:|" * len(settings)]
    for m in methods:
        cells = []
        for s in settings:
            v = value.get((m, s))
            text = "" if v is None else f"{v:.2f}" if "psnr" in metric else f"{v:.4f}"
            cells.append(f"**{text}**" if v is not None and v == best[s] else text)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _goal_rows(rows: list[dict]) -> tuple[dict[str, dict], str | None, dict[str, dict]]:
    """The rows of the goal setting by method name: the main table's; the budget suffix of ours' row in the "longer"
    group (``", 70 epochs on a GPU"``), or None; and the main rows with every row ``<name><suffix>`` of the "longer"
    group put under ``<name>``, replacing the main row of that name if there is one ({} without a suffix)."""
    at = {r["method"]: r for r in rows if r["setting"] == GOAL_SETTING and in_group(r, "main")}
    longer = {r["method"]: r for r in rows if r["setting"] == GOAL_SETTING and in_group(r, "longer")}
    suffix = next((m[len(OURS) :] for m in longer if m.startswith(OURS + ", ")), None)
    retrained = {**at, **{m[: -len(suffix)]: r for m, r in longer.items() if m.endswith(suffix)}} if suffix else {}
    return at, suffix, retrained


def goal_blocks(rows: list[dict]) -> dict[str, list[str]]:
    """The goal's verdict lines by README block name: "goal" (ours against the main table's rows; none without ours),
    "goal-longer" (the learned rows of the "longer" group in place of theirs, the others keeping their main rows,
    ``_goal_rows``; none without ours' longer row) and "goal-volume" (``volume_goal_verdicts``)."""
    at, suffix, retrained = _goal_rows(rows)
    return {
        "goal": _goal_verdicts(at[OURS], at, LEARNED_PEERS) if OURS in at else [],
        "goal-longer": _goal_verdicts(retrained[OURS], retrained, LEARNED_PEERS) if suffix else [],  # a suffix comes from ours' longer row
        "goal-volume": volume_goal_verdicts(rows),
    }


def goal_check(rows: list[dict]) -> list[str]:
    """The benchmark issue's goal on Rician s = 0.10, measured: ours vs BM3D + 1 dB, vs the U-Net and DnCNN, parameters,
    Edge MSE; then the same with the rows trained longer, and for the rows that see the volume (``goal_blocks``)."""
    at, suffix, _ = _goal_rows(rows)
    if OURS not in at:
        return []
    blocks = goal_blocks(rows)
    lines = [f"Goal on {GOAL_SETTING} (whole-image means over the test slices):", "", *blocks["goal"]]
    if suffix:
        lines += ["", f"The same with the learned rows trained longer ({suffix[2:]}; see \"{GROUP_TITLES['longer']}\") in place of theirs:", ""]
        lines += blocks["goal-longer"]
    if blocks["goal-volume"]:
        lines += ["", "The same for the rows of ours that see the neighbouring slices, run over the three planes, against their peers that see the volume too:", ""]
        lines += blocks["goal-volume"]
    return lines + [""]


def volume_goal_verdicts(rows: list[dict]) -> list[str]:
    """The goal's verdicts on the goal setting for each row of ours tagged ``VOLUME_GOAL`` (method name starting with
    "ours"), one nested list each: against the main table's BM3D, the other tagged rows as peers (the 2.5D U-Net, BM4D)
    and, for the Edge MSE, every other method's row of the main table and of the tag."""
    at = {r["method"]: r for r in rows if r["setting"] == GOAL_SETTING and (in_group(r, "main") or in_group(r, VOLUME_GOAL))}
    tagged = [m for m, r in at.items() if in_group(r, VOLUME_GOAL)]
    ours = [m for m in tagged if m.startswith("ours")]
    peers = [m for m in tagged if m not in ours]
    lines = []
    for name in ours:
        lines += [f"- {name}:", *(f"  {line}" for line in _goal_verdicts(at[name], at, peers))]
    return lines


def _goal_verdicts(ours: dict, at: dict[str, dict], peers: Sequence[str]) -> list[str]:
    """The goal's verdict lines for row ``ours`` against the rows ``at`` (by method name) of the goal setting: bias-corrected
    BM3D + 1 dB, each of ``peers`` in PSNR (and in parameters, where it has them), and the lowest Edge MSE of the rows of
    every other method (not "ours..." nor "unrolled...")."""
    lines = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    bm3d = at.get(BM3D)
    if bm3d:
        gap = ours["psnr_mean"] - bm3d["psnr_mean"]
        lines.append(f"- ours >= bias-corrected BM3D + 1 dB: {ours['psnr_mean']:.2f} vs {bm3d['psnr_mean']:.2f} dB ({gap:+.2f} dB): {verdict(gap >= 1)}")
    for peer in peers:
        if peer in at:
            gap = ours["psnr_mean"] - at[peer]["psnr_mean"]
            size = "" if at[peer]["parameters"] in ("", None) else f", parameters {ours['parameters'] / at[peer]['parameters']:.3f} of theirs"
            lines.append(f"- ours >= {peer}: {ours['psnr_mean']:.2f} vs {at[peer]['psnr_mean']:.2f} dB ({gap:+.2f} dB){size}: {verdict(gap >= 0)}")
    others = {m: r["edge_mse_mean"] for m, r in at.items() if m != "noisy input" and not m.startswith(("ours", "unrolled"))}
    if others:
        best = min(others, key=others.get)
        lines.append(f"- lowest Edge MSE of all other methods' rows: ours {ours['edge_mse_mean']:.4f}, best other {best} {others[best]:.4f}: {verdict(ours['edge_mse_mean'] < others[best])}")
    return lines


def grid_edges(tuning: dict) -> list[str]:
    """``"setting: method param=value"`` for every tuned parameter that sits at an end of a grid of 3 or more values."""
    found = []
    for setting, methods in tuning.items():
        for method, record in methods.items():
            for param, values in record["grid"].items():
                if len(values) >= 3 and record["best"][param] in (values[0], values[-1]):
                    found.append(f"{setting}: {method} {param}={record['best'][param]}")
    return found


def group_rows(rows: list[dict], group: str) -> list[dict]:
    """The rows of ``group``'s section: on the settings where the group has rows of its own (rows not also in the main
    table), or rows at all when it has none of its own, its rows and its ``REFERENCES`` rows."""
    members = [r for r in rows if in_group(r, group)]
    own = [r for r in members if own_member(r["groups"].split(), group)]
    scored = {r["setting"] for r in own or members}
    return [r for r in rows if r["setting"] in scored and (in_group(r, group) or r["method"] in REFERENCES.get(group, ()))]


def group_sections(rows: list[dict]) -> list[str]:
    """The sections of results.md, one per group of ``GROUP_TITLES`` that has rows (``group_rows``): full tables per
    setting; the groups other than "main" start with their own PSNR-by-setting table."""
    lines = []
    for group, title in GROUP_TITLES.items():
        chosen = group_rows(rows, group)
        if not chosen:
            continue
        lines += [f"## {title}", ""]
        if group != "main":
            lines += ["### PSNR (dB) by setting", "", *summary_table(chosen), ""]
        for setting in dict.fromkeys(r["setting"] for r in chosen):
            lines += [f"### {setting}", "", *table([r for r in chosen if r["setting"] == setting]), ""]
    return lines


README_BLOCK = re.compile(r"<!-- benchmark:([a-z-]+) -->\n.*?<!-- /benchmark -->", re.S)
"""A block of the README that ``render_readme`` fills: ``<!-- benchmark:NAME -->``, anything, ``<!-- /benchmark -->``."""
README_BLOCK_NAMES = ("goal", "psnr", *GROUP_TITLES, "goal-longer", "goal-volume")


def readme_blocks(rows: list[dict]) -> dict[str, list[str]]:
    """What the README shows of the benchmark, by block name (``README_BLOCK_NAMES``): "goal" (the verdicts of the main
    rows on the goal setting), "psnr" (PSNR by setting of the main rows), one table of the goal setting per group of
    ``GROUP_TITLES`` without the training column, "goal-longer" (the verdicts with the rows trained longer) and
    "goal-volume" (the verdicts of the rows that see the volume); the verdicts come from ``goal_blocks``."""
    verdicts = goal_blocks(rows)
    blocks = {"goal": verdicts["goal"], "psnr": summary_table([r for r in rows if in_group(r, "main")])}
    for group in GROUP_TITLES:
        blocks[group] = table([r for r in group_rows(rows, group) if r["setting"] == GOAL_SETTING], training=False)
    return {**blocks, "goal-longer": verdicts["goal-longer"], "goal-volume": verdicts["goal-volume"]}


def render_readme(text: str, rows: list[dict], source: str = "README") -> str:
    """``text`` with every benchmark block (``README_BLOCK``) holding ``readme_blocks(rows)``'s lines, a blank line
    either side. Raises ValueError naming ``source`` for a block name that is not one of them."""
    unknown = sorted({m[1] for m in README_BLOCK.finditer(text)} - set(README_BLOCK_NAMES))
    if unknown:
        raise ValueError(f"{source}: unknown benchmark block(s) {unknown}; known: {list(README_BLOCK_NAMES)}")
    blocks = readme_blocks(rows)
    return README_BLOCK.sub(lambda m: "\n".join([f"<!-- benchmark:{m[1]} -->", "", *blocks[m[1]], "", "<!-- /benchmark -->"]), text)


def sync_readme(path: Path, rows: list[dict]) -> bool:
    """Rewrite the benchmark blocks of the Markdown file ``path`` from ``rows`` (through a rename); whether it changed."""
    text = path.read_text()
    new = render_readme(text, rows, str(path))
    if new != text:
        write_text_atomic(path, new)
    return new != text


def read_rows(path: Path) -> list[dict]:
    """The rows of a ``results.csv``, numbers as int or float again and empty cells as ""."""

    def value(text: str):
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    with path.open(newline="") as f:
        return [{k: value(v) for k, v in r.items()} for r in csv.DictReader(f)]


def write_outputs(out: Path, rows: list[dict], tuning: dict, meta: dict) -> None:
    """Write ``results.csv``, ``tuning.json``, ``results.md`` and the figures into ``out`` (each file through a rename)."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    table_text = io.StringIO(newline="")
    writer = csv.DictWriter(table_text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(out / "results.csv", table_text.getvalue())
    write_text_atomic(out / "tuning.json", json.dumps(tuning, indent=1))
    main_learned = {r["method"] for r in rows if in_group(r, "main")}
    epochs = sorted({e for name, e in meta["epochs"].items() if name in main_learned})
    lines = [
        "# Benchmark results",
        "",
        f"Test split: {meta['test']} slices; classical parameters tuned per setting on {meta['validation']} validation "
        f"slices (`tuning.json`); learned rows trained by the bundle's workflow for {', '.join(map(str, epochs)) or '-'} epochs "
        "each on the same data; mean ± std over test slices; head = inside the head mask. "
        "Seconds per slice and per training epoch were measured on a shared 2-core CPU"
        + (f" (training epochs of the \"{GROUP_TITLES['longer']}\" rows: on a GPU)." if any(in_group(r, "longer") for r in rows) else "."),
        "",
        *(["The shipped row is the bundle's own model (`bundle/configs/inference.json`: 4 steps, faster), trained longer than this "
           "budget (`bundle/docs/README.md`).", ""] if any(r["method"].startswith("ours, shipped") for r in rows) else []),
        *goal_check(rows),
        "Tuned parameters at an end of their grid: " + ("; ".join(grid_edges(tuning)) or "none") + ".",
        "",
        "## PSNR (dB) by setting",
        "",
        *summary_table([r for r in rows if in_group(r, "main")]),
        "",
    ]
    write_text_atomic(out / "results.md", "\n".join(lines + group_sections(rows)))
    main_rows = [r for r in rows if in_group(r, "main")]
    plot_psnr_vs_sigma(out / "psnr_vs_sigma.png", main_rows)
    for setting in dict.fromkeys(r["setting"] for r in main_rows):
        shown = [r["method"] for r in rows if r["setting"] == setting and drawn(setting, r["groups"].split())]
        if shown:
            plot_crops(out, setting, shown, meta["example"])


@contextmanager
def _replaced_after(path: Path, suffix: str = "") -> Iterator[Path]:
    """A hidden temporary path beside ``path`` (ending in ``suffix``, for writers that take the format from it),
    renamed to ``path`` when the block ends without error, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    yield tmp
    tmp.replace(path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as it is (no newline translation), through a rename."""
    with _replaced_after(path) as tmp:
        tmp.write_text(text, newline="")


def save_example(out: Path, setting: str, name: str, image: np.ndarray) -> None:
    """Keep the example slice ``image`` ``(H, W)`` of row ``name`` on ``setting`` (``example_path``), through a
    rename: a run stopped midway never leaves half a file for the next to draw."""
    with _replaced_after(example_path(out, setting, name)) as tmp, tmp.open("wb") as f:
        np.save(f, image)


def _savefig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with _replaced_after(path, ".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_psnr_vs_sigma(path: Path, rows: list[dict]) -> None:
    """One panel per noise model: test PSNR against s for every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if any(r["setting"].startswith(m) for r in rows)]
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.5), squeeze=False)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(methods)))
    for ax, model in zip(axes[0], models):
        for method, colour in zip(methods, colours):
            points = sorted((float(r["setting"].split()[1]), r["psnr_mean"]) for r in rows if r["method"] == method and r["setting"].startswith(model))
            style = {"linewidth": 2.5, "color": "black"} if method == OURS else {"color": colour}
            ax.plot(*zip(*points), marker="o", label=method, **style)
        ax.set(title=f"{model} noise", xlabel="s (fraction of the intensity range)", ylabel="test PSNR (dB)")
        ax.grid(alpha=0.3)
    handles = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02 - 0.035 * len(methods) / 3))
    fig.tight_layout()
    _savefig(fig, path)


def _crop_window(clean: np.ndarray) -> tuple[slice, slice]:
    """The ``CROP``-pixel square with the most edge energy (mean gradient magnitude) of the clean slice."""
    gy, gx = np.gradient(clean)
    energy = np.hypot(gy, gx)
    best, where = -1.0, (0, 0)
    step = CROP // 4
    for i in range(0, max(1, clean.shape[0] - CROP + 1), step):
        for j in range(0, max(1, clean.shape[1] - CROP + 1), step):
            e = energy[i : i + CROP, j : j + CROP].mean()
            if e > best:
                best, where = e, (i, j)
    return slice(where[0], where[0] + CROP), slice(where[1], where[1] + CROP)


def plot_crops(out: Path, setting: str, methods: list[str], example: str) -> None:
    """``crops_<setting>.png``: the clean slice with the zoom box, then the zoomed square of every method with its slice PSNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    clean = np.load(example_path(out, setting, "clean"))
    rows_, cols_ = _crop_window(clean)
    panels = [(m, np.load(example_path(out, setting, m))) for m in methods if example_path(out, setting, m).is_file()]
    n = len(panels) + 1
    ncols = min(n, 7)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    first = axes.flat[0]
    first.imshow(np.rot90(clean), cmap="gray", vmin=0, vmax=1)
    # np.rot90 shows array pixel (i, j) at x = i, y = W - 1 - j
    first.add_patch(Rectangle((rows_.start - 0.5, clean.shape[1] - cols_.stop - 0.5), CROP, CROP, fill=False, edgecolor="yellow", linewidth=1.2))
    first.set_title(f"clean, {example.split('#')[-1]}", fontsize=7)
    for ax, (name, img) in zip(list(axes.flat)[1:], panels):
        psnr = 10 * np.log10(1.0 / max(float(np.mean((img - clean) ** 2)), 1e-12))
        ax.imshow(np.rot90(img[rows_, cols_]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{textwrap.fill(name, 48)}\n{psnr:.2f} dB", fontsize=7, fontweight="bold" if name == OURS else "normal")
    fig.suptitle(f"Colin27 test slice, {setting}: {CROP}x{CROP} crops (PSNR of the whole slice)", fontsize=9)
    fig.tight_layout()
    _savefig(fig, out / f"crops_{slug(setting)}.png")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Rewrite the benchmark blocks (<!-- benchmark:NAME --> ... <!-- /benchmark -->) of a Markdown file from a results.csv.")
    parser.add_argument("markdown", type=Path, help="the file to update, e.g. README.md")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "results.csv", help="the benchmark's results.csv (default: the committed run's)")
    args = parser.parse_args(argv)
    for path in (args.markdown, args.results):
        if not path.is_file():
            parser.exit(2, f"error: {path}: no such file\n")
    try:
        changed = sync_readme(args.markdown, read_rows(args.results))
    except KeyError as error:
        parser.exit(2, f"error: {args.results}: no column {error}\n")
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    print(f"{args.markdown}: {'updated' if changed else 'already matches'} {args.results}")


if __name__ == "__main__":
    main()
