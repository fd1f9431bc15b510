"""nad_monai.evaluation: the benchmark's noisy test sets are the same whichever slices are taken together."""

from __future__ import annotations

import pytest
import torch

from conftest import DATALIST
from nad_monai.datasets import slice_items
from nad_monai.evaluation import noisy_pairs, volumes, with_neighbours


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


def test_a_2_5d_stack_holds_the_very_noisy_slice_between_its_noisy_neighbours():
    every = noisy_pairs(slice_items("nifti", DATALIST, "test", min_foreground=0), "rician", 0.1)
    scored = noisy_pairs(slice_items("nifti", DATALIST, "test")[::40], "rician", 0.1)  # head slices only, as the benchmark
    stacks = with_neighbours(scored, volumes(every), context=1)
    by_id = {p[2]: p[0] for p in every}
    last = max(int(i.rsplit(":", 1)[1]) for i in by_id)
    for (noisy, clean, slice_id), (stack, clean_again, same_id) in zip(scored, stacks):
        assert same_id == slice_id and torch.equal(clean, clean_again) and stack.shape == (1, 3, *noisy.shape[2:])
        prefix, k = slice_id.rsplit(":", 1)
        neighbours = [by_id[f"{prefix}:{min(max(j, 0), last):04d}"] for j in (int(k) - 1, int(k) + 1)]
        assert torch.equal(stack[:, 1:2], noisy)  # the middle slice carries the noise every other row sees
        assert torch.equal(stack[:, 0:1], neighbours[0]) and torch.equal(stack[:, 2:3], neighbours[1])
    grouped = volumes(every)
    assert list(grouped) == ["colin27_t1.nii.gz#axis2"] and grouped["colin27_t1.nii.gz#axis2"][0].shape == (181, 1, 181, 217)
    with pytest.raises(ValueError, match="slices missing"):
        volumes(every[:5] + every[6:])
