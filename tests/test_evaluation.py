"""nad_monai.evaluation: the benchmark's noisy test sets are the same whichever slices are taken together."""

from __future__ import annotations

import torch

from conftest import DATALIST
from nad_monai.datasets import slice_items
from nad_monai.evaluation import noisy_pairs


def test_a_slices_noise_depends_on_its_id_alone():
    volume = slice_items("nifti", DATALIST, "test")[60:66]
    every, every_other = noisy_pairs(volume, "rician", 0.1), noisy_pairs(volume[::2], "rician", 0.1)
    assert [p[2] for p in every_other] == [p[2] for p in every[::2]]
    for (noisy, clean, _), (again, clean_again, _) in zip(every[::2], every_other):
        assert torch.equal(noisy, again) and torch.equal(clean, clean_again)  # a subset gets the noise of the whole volume
    (n0, c0, _), (n1, c1, _) = every[:2]
    inside = (c0 > 0.3) & (c1 > 0.3)  # high SNR in both: Rician noise about zero-mean there
    residuals = torch.stack([(n0 - c0)[inside], (n1 - c1)[inside]])
    assert inside.sum() > 5000 and abs(torch.corrcoef(residuals)[0, 1]) < 0.05  # neighbouring slices do not share one noise field
