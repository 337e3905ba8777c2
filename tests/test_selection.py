"""Model selection reads training images only and marks exactly the pasted pixels."""

from pathlib import Path

import numpy as np
import pytest
import torch

from snlad import api
from snlad.data import AnomalyDataset, holdout_split, index_dataset
from snlad.selection import synthetic_validation

DEMO = Path(__file__).parents[1] / "data" / "demo"


def test_validation_set_is_held_out_normals_plus_pasted_copies():
    config = api.resolve_config(
        model="snl-fd",
        overrides=["data.image_size=64", "data.holdout_fraction=0.25"],
        categories=["bottle", "metal_nut"],
    )
    batches = synthetic_validation(DEMO, config, pastes_per_image=2, fraction=0.25, seed=3)
    _, held_out = holdout_split(index_dataset(DEMO, "train", ["bottle", "metal_nut"]), 0.25, config.train.seed)
    assert [b["category"] for b in batches] == ["bottle", "metal_nut"]
    for batch in batches:
        normals = [AnomalyDataset([s], 64)[0]["image"] for s in held_out if s.category == batch["category"]]
        n = len(normals)
        assert batch["label"].tolist() == [0] * n + [1] * 2 * n
        assert torch.equal(batch["image"][:n], torch.stack(normals))
        for k, (image, mask) in enumerate(zip(batch["image"][n:], batch["mask"][n:])):
            changed = (image != normals[k % n]).any(dim=0)  # pastes go to the held-out normals in turn
            assert int(mask.sum()) == round(0.25 * 64) ** 2
            assert not changed[~mask].any() and changed[mask].any()


def test_same_seed_same_validation_set():
    config = api.resolve_config(model="fd", overrides=["data.image_size=64"], categories=["bottle", "capsule"])
    first, second = synthetic_validation(DEMO, config, seed=1), synthetic_validation(DEMO, config, seed=1)
    assert all(torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"]) for a, b in zip(first, second))


def test_validate_writes_the_validation_metrics_of_a_run(run_copy):
    """The shared run (tests/conftest.py), copied: validation writes into the run folder."""
    categories = ["bottle", "casting", "kolektor_sdd", "metal_nut"]
    assert not (run_copy / "validation.json").exists()
    results = api.validate(run=run_copy, data=DEMO)
    assert set(results) == {*categories, "mean"}
    assert all(0.0 <= results[c][k] <= 1.0 for c in results for k in ("image_auroc", "pixel_auroc", "aupro"))
    assert results["mean"]["image_auroc"] == pytest.approx(np.mean([results[c]["image_auroc"] for c in categories]))
    assert (run_copy / "validation.json").is_file() and "| mean |" in (run_copy / "validation.md").read_text()
