"""ZeroBackground: the air around the head of a real scan goes to zero, the head is left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import load_volume
from nad_monai.evaluation import head_mask
from transforms import ZeroBackground, ZeroBackgroundd
from transforms.background import HEAD_THRESHOLD


@pytest.fixture(scope="module")
def b0_stack() -> np.ndarray:
    """Five neighbouring axial slices (5, 152, 150) of a heudiconv b0 run, whose air holds the scanner's noise floor."""
    return np.moveaxis(load_volume("heudiconv_b0_run1.nii.gz")[:, :, 38:43], 2, 0).copy()


def test_the_noise_floor_in_the_air_goes_and_the_head_stays(b0_stack):
    out = ZeroBackground()(b0_stack)
    assert isinstance(out, np.ndarray) and out.shape == b0_stack.shape and out.dtype == b0_stack.dtype
    air = out == 0
    assert 0.4 < air.mean() < 0.7, "about half of these slices is air"
    assert b0_stack[air].mean() > 0.005, "the floor that was there"
    assert b0_stack[air].max() <= HEAD_THRESHOLD, "nothing as bright as tissue is zeroed"
    np.testing.assert_array_equal(out[~air], b0_stack[~air])
    # every slice gets its own mask: the same as the benchmark's head mask of that slice
    expected = head_mask(torch.as_tensor(b0_stack)[:, None])[:, 0].numpy()
    np.testing.assert_array_equal(out, np.where(expected, b0_stack, 0))


def test_dark_tissue_inside_the_head_is_kept(colin_slice):
    """Ventricles and other dark regions enclosed by the head are holes of the threshold mask, filled."""
    out = ZeroBackground()(torch.as_tensor(colin_slice))
    inside = torch.as_tensor(head_mask(torch.as_tensor(colin_slice)[None])[0])
    dark_inside = inside & (torch.as_tensor(colin_slice) < HEAD_THRESHOLD)
    assert dark_inside.sum() > 100
    assert torch.equal(out[dark_inside], torch.as_tensor(colin_slice)[dark_inside])


def test_template_without_a_floor_is_unchanged(mni_slice):
    np.testing.assert_array_equal(ZeroBackground()(mni_slice), mni_slice)


def test_dictionary_form_changes_only_its_keys(b0_stack):
    data = {"image": torch.as_tensor(b0_stack), "label": torch.as_tensor(b0_stack)}
    out = ZeroBackgroundd(keys="image", dilation=0)(data)
    assert torch.equal(out["label"], data["label"]) and out["image"] is not data["image"]
    assert (out["image"] == 0).float().mean() > (ZeroBackground()(b0_stack) == 0).mean(), "no dilation: a tighter mask"


def test_bad_shapes_and_dilations_are_refused(colin_slice):
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        ZeroBackground()(colin_slice[0])
    with pytest.raises(ValueError, match="dilation"):
        ZeroBackground(dilation=-1)
