"""Dictionary noise transforms: key isolation, deterministic mode across runs and worker counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, CopyItemsd

from transforms import RandMixedCorruptiond, RandNoiseCorruptiond, RandRicianCorruptiond, item_seed


def slice_items(volume: np.ndarray, n: int = 8) -> list[dict]:
    return [{"image": volume[:, :, :, k].copy(), "id": f"dipy_s0.nii.gz#axis2:{k:04d}"} for k in range(n)]


def noisy_pipeline(seed_key: str | None = "id") -> Compose:
    return Compose(
        [
            CopyItemsd(keys="image", names="label"),
            RandMixedCorruptiond(keys="image", seed_key=seed_key, sigma_key="sigma", model_key="model"),
        ]
    )


def batches(items, num_workers: int, seed_key: str | None = "id") -> list[dict]:
    loader = DataLoader(Dataset(items, transform=noisy_pipeline(seed_key)), batch_size=3, num_workers=num_workers)
    return list(loader)


def test_only_named_key_is_corrupted(colin_slice):
    data = {"image": colin_slice.copy(), "label": colin_slice.copy(), "mask": colin_slice > 0.1, "id": "a"}
    out = RandRicianCorruptiond(keys="image", sigma=0.1, seed_key="id")(data)
    np.testing.assert_array_equal(out["label"], colin_slice)
    np.testing.assert_array_equal(out["mask"], colin_slice > 0.1)
    np.testing.assert_array_equal(data["image"], colin_slice), "the input dict must not be modified"
    assert np.abs(out["image"] - colin_slice).mean() > 0.01


def test_several_keys_share_model_and_level_but_not_noise(colin_slice):
    data = {"a": colin_slice, "b": colin_slice, "id": 7}
    out = RandMixedCorruptiond(keys=["a", "b"], sigma=(0.05, 0.2), seed_key="id", sigma_key="s", model_key="m")(data)
    assert not np.allclose(out["a"], out["b"])
    assert 0.05 <= out["s"] <= 0.2 and out["m"] in ("gaussian", "rician", "speckle")


def test_deterministic_mode_repeats_across_instances_and_orders(dipy_volume):
    items = slice_items(dipy_volume)
    first = [noisy_pipeline()(item) for item in items]
    second = [noisy_pipeline()(item) for item in reversed(items)][::-1]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["image"], b["image"])
        assert a["sigma"] == b["sigma"] and a["model"] == b["model"]
    assert len({float(a["sigma"]) for a in first}) == len(items), "each item draws its own level"


def test_deterministic_mode_is_independent_of_worker_count(dipy_volume):
    items = slice_items(dipy_volume)
    serial, parallel = batches(items, num_workers=0), batches(items, num_workers=2)
    for a, b in zip(serial, parallel):
        torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
        torch.testing.assert_close(a["label"], b["label"], rtol=0, atol=0)
        assert a["model"] == b["model"]
    assert not torch.equal(serial[0]["image"], serial[0]["label"])


def test_random_mode_differs_between_epochs(dipy_volume):
    items = slice_items(dipy_volume, n=3)
    transform = RandMixedCorruptiond(keys="image", seed_key=None)
    transform.set_random_state(seed=0)
    epoch1 = [transform(dict(i))["image"] for i in items]
    epoch2 = [transform(dict(i))["image"] for i in items]
    assert all(not np.array_equal(a, b) for a, b in zip(epoch1, epoch2))


def test_item_seed_is_stable_and_spreads():
    assert item_seed("x#axis2:0001") == item_seed("x#axis2:0001")
    assert len({item_seed(f"x#axis2:{k:04d}") for k in range(1000)}) == 1000
    assert item_seed("x", seed=1) != item_seed("x", seed=2)
    with pytest.raises(TypeError, match="item id"):
        item_seed(np.zeros(3))


def test_not_applied_records_zero_level(colin_slice):
    out = RandNoiseCorruptiond(keys="image", prob=0.0, sigma_key="s", model_key="m")({"image": colin_slice})
    np.testing.assert_array_equal(out["image"], colin_slice)
    assert out["s"] == 0.0 and out["m"] == "none"


def test_bundle_config_can_build_the_transforms():
    parser = ConfigParser(
        {
            "imports": ["$import transforms"],
            "noise": {"_target_": "transforms.RandRicianCorruptiond", "keys": "image", "sigma": 0.1, "seed_key": "id"},
        }
    )
    assert isinstance(parser.get_parsed_content("noise"), RandRicianCorruptiond)
