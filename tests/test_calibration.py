"""Decision thresholds: rules, storage in model.pt, is_anomalous and binary masks from predict."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from snlad import api
from snlad.cli import main
from snlad.data import holdout_split, index_dataset
from snlad.errors import SnladError
from snlad.runs.run import load_run
from snlad.scoring.metrics import decision_metrics
from snlad.scoring.thresholds import Rule, Scored, f1_threshold, thresholds

DEMO = Path(__file__).parents[1] / "data" / "demo"


def test_f1_threshold_lies_halfway_between_the_classes():
    threshold, f1 = f1_threshold(np.array([0.1, 0.2, 0.3, 0.7, 0.9]), np.array([0, 0, 0, 1, 1]))
    assert threshold == pytest.approx(0.5) and f1 == 1.0
    threshold, f1 = f1_threshold(np.array([0.1, 0.5, 0.4, 0.9]), np.array([0, 0, 1, 1]))
    assert f1 == pytest.approx(0.8) and 0.1 < threshold < 0.4  # flag 0.4, 0.5, 0.9: TP 2, FP 1
    with pytest.raises(SnladError, match="both"):
        f1_threshold(np.array([0.1, 0.2]), np.array([0, 0]))


def test_normal_rules():
    maps = np.linspace(0, 1, 4 * 9).reshape(4, 3, 3)
    normals = Scored(
        maps.reshape(4, -1).max(axis=1), np.zeros(4), maps, np.zeros_like(maps, dtype=bool), np.ones(4, bool)
    )
    assert thresholds(Rule("max"), normals, None) == {"threshold": 1.0, "pixel_threshold": 1.0}
    margin = thresholds(Rule("max", margin=0.1), normals, None)
    assert margin["threshold"] == pytest.approx(1.1)
    quantile = thresholds(Rule("quantile", quantile=0.5), normals, None)
    assert quantile["pixel_threshold"] == pytest.approx(0.5) and quantile["threshold"] < 1.0
    with pytest.raises(SnladError, match="rule"):
        Rule("median")


def test_f1_pixel_threshold_ignores_defective_images_without_a_mask():
    """An unmasked defect's zero mask would count its (high) pixels as normal and push the threshold up."""
    normal_maps = np.full((2, 2, 2), 0.1)
    masked_map = np.array([[[0.1, 0.9], [0.1, 0.1]]])
    unmasked_map = np.full(
        (1, 2, 2), 0.95
    )  # a defect everywhere, but its mask is unknown: as "normal" pixels they would spoil F1
    normals = Scored(np.array([0.1, 0.1]), np.zeros(2), normal_maps, np.zeros((2, 2, 2), bool), np.ones(2, bool))
    masks = np.zeros((2, 2, 2), bool)
    masks[0, 0, 1] = True
    anomalies = Scored(
        np.array([0.9, 0.95]), np.ones(2), np.concatenate([masked_map, unmasked_map]), masks, np.array([True, False])
    )
    result = thresholds(Rule("f1"), normals, anomalies)
    assert result["pixel_f1"] == 1.0 and 0.1 < result["pixel_threshold"] < 0.9
    assert 0.1 < result["threshold"] < 0.9 and result["image_f1"] == 1.0  # both defects count for the image threshold
    none_masked = anomalies.subset(np.array([False, True]))
    result = thresholds(Rule("f1"), normals, none_masked)
    assert result["pixel_threshold"] == pytest.approx(0.1) and result["pixel_rule"] == "max (no defect masks)"


@pytest.fixture
def run(shared_run):
    """The session's run (tests/conftest.py): hold-out 0.25, image score = map max, so image and pixel
    thresholds can be compared below. Read only: tests that recalibrate or test into the run take ``run_copy``."""
    return shared_run


@pytest.mark.slow
def test_training_stores_image_and_pixel_thresholds_from_held_out_normals(run, tmp_path):
    trained = load_run(run)["bottle"]
    calibration = trained.calibration["bottle"]
    held_out = holdout_split(index_dataset(DEMO, "train", ["bottle"]), 0.25, trained.config.train.seed)[1]
    assert calibration["rule"] == "max" and len(calibration["normal_scores"]) == len(held_out) == 2
    assert calibration["threshold"] == pytest.approx(max(calibration["normal_scores"]))
    assert calibration["pixel_threshold"] == pytest.approx(calibration["threshold"], rel=1e-5)  # image score = map max

    images = [sample.image for sample in held_out] + sorted((DEMO / "bottle" / "test" / "broken_large").iterdir())[:1]
    rows, failed = api.predict(run=run, images=images, out=tmp_path / "pred", category="bottle")
    assert not failed and [row["is_anomalous"] for row in rows[:2]] == [0, 0]
    for row, image in zip(rows, images):
        mask = np.asarray(Image.open(tmp_path / "pred" / "masks" / f"{row['output']}.png"))  # mirrors sub-folders
        assert mask.shape == Image.open(image).size[::-1] and set(np.unique(mask)) <= {0, 255}
        assert bool(mask.any()) == bool(row["is_anomalous"])  # no held-out normal pixel is marked


def test_calibrate_replaces_stored_thresholds_only_with_overwrite_and_says_old_and_new(run_copy, capsys):
    """Training stored thresholds; predictions and reports depend on them, so replacing them is the user's explicit choice."""
    run = run_copy
    model = run / "model.pt"
    before, stored = model.read_bytes(), load_run(run)["bottle"].calibration["bottle"]
    assert main(["calibrate", "--run", str(run), "--data", str(DEMO), "--rule", "synthetic-f1"]) == 2
    err = capsys.readouterr().err
    assert "already holds thresholds for bottle (image" in err and "--overwrite" in err and model.read_bytes() == before
    argv = ["calibrate", "--run", str(run), "--data", str(DEMO), "--category", "bottle", "--margin", "0.5"]
    assert main([*argv, "--overwrite"]) == 0
    new = load_run(run)["bottle"].calibration["bottle"]
    out = capsys.readouterr().out
    assert f"bottle: image threshold {stored['threshold']:.6g} -> {new['threshold']:.6g}, pixel threshold" in out
    assert f"(max, was {stored['rule']};" in out and str(model) in out
    assert new["threshold"] == pytest.approx(1.5 * stored["threshold"])


@pytest.mark.slow
def test_cli_recalibrates_with_synthetic_and_labelled_anomalies(run_copy, capsys):
    run = run_copy
    assert main(["calibrate", "--run", str(run), "--data", str(DEMO), "--rule", "synthetic-f1", "--overwrite"]) == 0
    synthetic = load_run(run)["bottle"].calibration["bottle"]
    assert synthetic["rule"] == "synthetic-f1" and synthetic["anomalous_images"] == 4 and 0 < synthetic["pixel_f1"] <= 1
    # A labelled split (here the demo's test split stands in for a validation split).
    test_split = ["--split", "test", "--rule", "f1", "--overwrite"]
    assert main(["calibrate", "--run", str(run), "--data", str(DEMO), *test_split]) == 0
    labelled = load_run(run)["bottle"].calibration["bottle"]
    assert labelled["rule"] == "f1" and labelled["anomalous_images"] > 0 and "test split" in labelled["source"]
    assert "bottle: image threshold" in capsys.readouterr().out
    no_defects = ["--rule", "f1", "--overwrite"]  # the train split has none
    assert main(["calibrate", "--run", str(run), "--data", str(DEMO), *no_defects]) == 2
    assert "needs anomalous images" in capsys.readouterr().err


def test_binned_f1_search_on_many_pixels_agrees_with_the_exact_one(monkeypatch):
    from snlad.scoring import thresholds as calibration

    rng = np.random.default_rng(0)
    positives = rng.random(200_000) < 0.05
    values = rng.normal(0, 1, positives.size) + 2.5 * positives
    exact, exact_f1 = f1_threshold(values, positives)
    monkeypatch.setattr(calibration, "EXACT_F1_LIMIT", 1000)
    binned, binned_f1 = f1_threshold(values, positives)
    assert binned_f1 == pytest.approx(exact_f1, abs=2e-3) and binned == pytest.approx(exact, abs=0.05)
    assert binned_f1 == pytest.approx(
        2 * ((values > binned) & positives).sum() / ((values > binned).sum() + positives.sum())
    )


def test_decision_metrics_count_score_above_threshold_as_flagged():
    metrics = decision_metrics(np.array([0.1, 0.5, 0.5, 0.9]), np.array([0, 0, 1, 1]), 0.5)
    assert metrics == {"accuracy": 0.75, "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3)}
    assert np.isnan(decision_metrics(np.array([0.1]), np.array([0]), 0.5)["precision"])  # nothing flagged
    assert all(np.isnan(v) for v in decision_metrics(np.array([0.1]), np.array([1]), None).values())


@pytest.mark.slow
def test_test_finds_the_trained_root_and_scores_the_stored_thresholds_decisions(run_copy, tmp_path, capsys):
    """`snlad test --run R` alone: the run knows its data root; the stored threshold's decisions are measured."""
    run = run_copy
    assert main(["test", "--run", str(run), "--quiet"]) == 0
    assert "At the stored image threshold" in capsys.readouterr().out
    threshold = load_run(run)["bottle"].calibration["bottle"]["threshold"]
    rows = [row for row in csv.DictReader((run / "test_scores.csv").open()) if row["category"] == "bottle"]
    flagged = np.array([float(r["score"]) > threshold for r in rows])
    labels = np.array([r["label"] == "1" for r in rows])
    metrics = json.loads((run / "metrics.json").read_text())["bottle"]
    assert metrics["threshold"] == pytest.approx(threshold)
    assert metrics["accuracy"] == pytest.approx(np.mean(flagged == labels))
    assert metrics["recall"] == pytest.approx(np.sum(flagged & labels) / np.sum(labels))
    # Thresholds belong to the trained map: with another map there is no decision to measure.
    assert main(["test", "--run", str(run), "--quiet", "--set", "map.beta=3", "--out", str(tmp_path / "beta")]) == 0
    assert json.loads((tmp_path / "beta" / "metrics.json").read_text())["bottle"]["accuracy"] is None
    copy = tmp_path / "moved"
    shutil.copytree(run, copy)
    index = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**index, "data_root": str(tmp_path / "gone")}))
    assert main(["test", "--run", str(copy), "--quiet"]) == 2
    assert f"was trained on {tmp_path / 'gone'}, which is no longer there: pass --data ROOT" in capsys.readouterr().err
