"""Model selection reads training images only and marks exactly the pasted pixels."""

import shutil

import numpy as np
import pytest
import torch

from conftest import DEMO, SHARED_CATEGORIES, SHARED_SIZE
from snlad import api
from snlad.data import AnomalyDataset, holdout_split, index_dataset
from snlad.engine.selection import map_grid, real_validation, synthetic_validation
from snlad.errors import SnladError
from snlad.runs.run import load_run


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


def test_map_grid_on_real_defects_matches_validate_real_and_its_variants_differ(run_copy):
    """The grid's default variant is what ``snlad validate --real-defects`` measures by its own path (loader, accumulator).

    Casting has image-level labels only: its pixel metrics are NaN and left out of the mean.
    """
    trained = next(iter(load_run(run_copy).values()))
    batches = real_validation(DEMO, SHARED_CATEGORIES, SHARED_SIZE)
    assert [b["category"] for b in batches] == sorted(SHARED_CATEGORIES)
    casting = next(b for b in batches if b["category"] == "casting")
    assert casting["label"].any() and not casting["known"][casting["label"] == 1].any()
    default, sharper = map_grid(trained, batches, [{}, {"sigma": 1.0, "image_score": "topk"}], chunk=3)
    reference = api.validate_real(run=run_copy, data=DEMO)["mean"]
    assert default["image_auroc"] == pytest.approx(reference["image_auroc"], abs=1e-9)
    for key in ("pixel_auroc", "aupro"):  # validate_real's accumulator bins the pixel scores; map_grid's are exact
        assert default[key] == pytest.approx(reference[key], abs=1e-3)
    assert sharper["sigma"] == 1.0 and sharper["pixel_auroc"] != pytest.approx(default["pixel_auroc"], abs=1e-9)


def test_validate_real_with_another_map_writes_the_rescored_numbers_beside_the_run_never_into_it(run_copy, tmp_path):
    """``validate --real-defects --set map.* --out``: the numbers are the grid's variant; the run's own files stay as they were."""
    trained = next(iter(load_run(run_copy).values()))
    variant = {"sigma": 1.0, "image_score": "topk"}
    (expected,) = map_grid(trained, real_validation(DEMO, SHARED_CATEGORIES, SHARED_SIZE), [variant], chunk=3)
    out = tmp_path / "rescored"
    settings = ("map.sigma=1", "map.image_score=topk")
    results = api.validate_real(run=run_copy, data=DEMO, map_settings=settings, out=out)["mean"]
    assert results["image_auroc"] == pytest.approx(expected["image_auroc"], abs=1e-9)
    assert results["pixel_auroc"] == pytest.approx(expected["pixel_auroc"], abs=1e-3)
    assert not (run_copy / "validation-real.json").exists()
    assert "scored with map.sigma=1, map.image_score=topk" in (out / "validation-real.md").read_text()
    with pytest.raises(SnladError, match="use --overwrite"):
        api.validate_real(run=run_copy, data=DEMO, map_settings=settings, out=out)
    another = shutil.copytree(run_copy, tmp_path / "another")
    with pytest.raises(SnladError, match="holds another run"):
        api.validate_real(run=run_copy, data=DEMO, map_settings=settings, out=another)
    with pytest.raises(SnladError, match="only map"):
        api.validate_real(run=run_copy, data=DEMO, map_settings=("loss.intra=2",), out=tmp_path / "other")
