"""benchmarks/edge_error.py: Edge MSE split by the strength of the reference's edges, on a real slice."""

from __future__ import annotations

import math
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from nad_monai.metrics import EdgeMSEMetric

sys.path.insert(0, str(ROOT / "benchmarks"))
from edge_error import BANDS, edge_error_by_band, main, markdown  # noqa: E402


@pytest.fixture(scope="module")
def clean(colin_slice):
    return torch.as_tensor(colin_slice)[None]  # (1, 1, 181, 217)


def test_the_bands_cover_every_pixel_and_sum_to_the_edge_mse(clean):
    noisy = (clean.expand(2, 1, -1, -1) + torch.randn(2, *clean.shape[1:], generator=torch.Generator().manual_seed(0)) * 0.05).clamp(0, 1)
    rows = edge_error_by_band(noisy, clean.expand(2, 1, -1, -1))
    assert [(r["low"], r["high"]) for r in rows] == list(zip(BANDS[:-1], BANDS[1:]))
    assert math.isclose(sum(r["pixels"] for r in rows), 1.0, rel_tol=1e-9)
    assert math.isclose(sum(r["edge_mse"] for r in rows), float(EdgeMSEMetric()(noisy, clean.expand(2, 1, -1, -1)).mean()), rel_tol=1e-4)
    assert all(r["pixels"] > 0 for r in rows)  # a brain slice has flat regions, faint and strong edges


def test_noise_adds_edges_where_it_is_flat_and_blur_weakens_the_strong_edges(clean):
    noisy = (clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(1)) * 0.05).clamp(0, 1)
    kernel = torch.full((1, 1, 5, 5), 1 / 25)
    blurred = F.conv2d(F.pad(clean, (2, 2, 2, 2), mode="replicate"), kernel)
    by_noise, by_blur = edge_error_by_band(noisy, clean), edge_error_by_band(blurred, clean)
    assert by_noise[0]["strength_error"] > 0.1  # the flat band (|Sobel| < 0.05) gains noise edges
    assert by_blur[-1]["strength_error"] < -0.3 and by_blur[-2]["strength_error"] < 0  # strong edges lose strength
    assert by_blur[-1]["edge_mse"] > 10 * by_blur[0]["edge_mse"]  # and that is where blur's Edge MSE lies
    table = markdown("blurred", by_blur)
    assert table.count("\n| ") == len(BANDS) and f"Edge MSE {sum(r['edge_mse'] for r in by_blur):.4f}" in table


def test_main_refuses_a_row_without_weights_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--rows", "no-such-row", "--results", str(tmp_path)])
    assert "no-such-row" in capsys.readouterr().err.splitlines()[-1]
