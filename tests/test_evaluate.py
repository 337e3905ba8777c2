"""Evaluation with image-level-only labels: defective images without masks never enter pixel metrics."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from snlad import api
from snlad.data import AnomalyDataset, index_dataset
from snlad.engine.evaluate import evaluate_category
from snlad.engine.inference import infer
from snlad.models import build_model
from snlad.runs.trained import TrainedModel, build_scorer
from snlad.scoring.metrics import pixel_metrics

DEMO = Path(__file__).parents[1] / "data" / "demo"
PIXEL = ("pixel_auroc", "pixel_ap", "pixel_f1max", "aupro")

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def untrained_model(image_size: int = 64) -> TrainedModel:
    """A real teacher and a random student: evaluation logic needs maps, not a good model."""
    torch.manual_seed(0)
    config = api.resolve_config(model="fd", overrides=[f"data.image_size={image_size}", "data.num_workers=0"])
    model = build_model(config.model)
    return TrainedModel(config, model, build_scorer(config, model), ["bottle"]).eval()


def test_pixel_metrics_of_a_mixed_category_equal_those_of_its_masked_subset(tmp_path: Path) -> None:
    """Half of bottle's defect masks removed: pixel metrics come from the good and the still-masked images only."""
    shutil.copytree(DEMO / "bottle", tmp_path / "bottle")
    masks = sorted((tmp_path / "bottle" / "ground_truth").rglob("*_mask.png"))
    for mask in masks[::2]:
        mask.unlink()
    samples = index_dataset(tmp_path, "test")
    unmasked = [s for s in samples if s.label == 1 and s.mask is None]
    assert len(unmasked) == len(masks[::2]) >= 2
    trained = untrained_model()

    mixed, rows = evaluate_category(trained, samples, batch_size=3)
    subset = [s for s in samples if s.label == 0 or s.mask is not None]
    masked_only, _ = evaluate_category(trained, subset, batch_size=3)
    for name in PIXEL:
        assert mixed[name] == pytest.approx(masked_only[name], abs=1e-6), name
    assert (mixed["images"], mixed["defective"], mixed["masked"]) == (
        len(samples),
        len(masks),
        len(masks) - len(unmasked),
    )
    assert [row["has_mask"] for row in rows if row["label"] == 1].count(0) == len(unmasked)

    # Independently: the exact in-memory metrics on the known pixels, and what the old bug gave.
    loader = DataLoader(AnomalyDataset(samples, 64), batch_size=4)
    maps, truth, known = [], [], []
    for batch, batch_maps, _ in infer(trained, loader, desc=None):
        maps.append(batch_maps.numpy())
        truth.append(batch["mask"][:, 0].numpy() > 0.5)
        known.append(((batch["label"] == 0) | batch["has_mask"]).numpy())
    maps, truth, known = np.concatenate(maps), np.concatenate(truth), np.concatenate(known)
    exact = pixel_metrics(maps[known], truth[known])
    for name in PIXEL:
        assert mixed[name] == pytest.approx(exact[name], abs=2e-3), name
    as_background = pixel_metrics(maps, truth)  # unmasked defects' pixels counted as normal
    assert as_background["pixel_auroc"] != pytest.approx(exact["pixel_auroc"], abs=1e-4)


def build_mixed_layout_root(root: Path) -> None:
    """Four categories from demo bottle images: MVTec with masks, and one mask-less category per layout."""
    source = DEMO / "bottle"
    shutil.copytree(source, root / "masked")
    mvtec = root / "mvtec_nomask"
    shutil.copytree(source, mvtec, ignore=shutil.ignore_patterns("ground_truth"))
    plain = root / "folder_nomask"
    shutil.copytree(source / "train" / "good", plain / "train")
    shutil.copytree(source / "test", plain / "test")
    rows = []
    visa = root / "visa_nomask" / "Data" / "Images"
    for folder in ("Normal", "Anomaly"):
        (visa / folder).mkdir(parents=True)
    for image in sorted((source / "train" / "good").iterdir()):
        shutil.copy(image, visa / "Normal" / f"train_{image.name}")
        rows.append(["visa_nomask", "train", "normal", f"visa_nomask/Data/Images/Normal/train_{image.name}", ""])
    for image in sorted((source / "test").rglob("*.jpg")):
        good = image.parent.name == "good"
        name = f"{image.parent.name}_{image.name}"
        shutil.copy(image, visa / ("Normal" if good else "Anomaly") / name)
        rows.append(
            [
                "visa_nomask",
                "test",
                "normal" if good else "anomaly",
                f"visa_nomask/Data/Images/{'Normal' if good else 'Anomaly'}/{name}",
                "",
            ]
        )
    (root / "split_csv").mkdir()
    with (root / "split_csv" / "1cls.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["object", "split", "label", "image", "mask"], *rows])


@pytest.mark.slow
def test_every_layout_reads_a_category_without_masks_and_reports_image_metrics_only(tmp_path: Path) -> None:
    root = tmp_path / "data"
    build_mixed_layout_root(root)
    config = api.resolve_config(
        model="fd", overrides=["data.image_size=32", "train.batch_size=4", "data.num_workers=0", "train.epochs=1"]
    )
    api.train(config=config, data=root, out=tmp_path / "run")
    metrics = api.test(run=tmp_path / "run", data=root)

    maskless = ("folder_nomask", "mvtec_nomask", "visa_nomask")
    for category in maskless:
        assert math.isfinite(metrics[category]["image_auroc"]), category
        assert all(math.isnan(metrics[category][name]) for name in PIXEL), category
        assert metrics[category]["masked"] == 0 and metrics[category]["defective"] == 4
    assert all(math.isfinite(metrics["masked"][name]) for name in PIXEL)
    mean = metrics["mean"]
    assert mean["pixel_categories"] == 1 and mean["image_categories"] == 4
    assert mean["pixel_auroc"] == pytest.approx(metrics["masked"]["pixel_auroc"])
    assert mean["image_auroc"] == pytest.approx(np.mean([metrics[c]["image_auroc"] for c in (*maskless, "masked")]))

    stored = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert stored["visa_nomask"]["pixel_auroc"] is None and stored["mean"]["pixel_categories"] == 1
    with (tmp_path / "run" / "metrics.csv").open(newline="") as handle:
        table = {row["category"]: row for row in csv.DictReader(handle)}
    assert table["mvtec_nomask"]["aupro"] == "" and float(table["masked"]["aupro"]) == pytest.approx(
        metrics["masked"]["aupro"], abs=1e-6
    )
    assert table["mean"]["pixel_categories"] == "1"
    markdown = (tmp_path / "run" / "metrics.md").read_text()
    folder_row = next(line for line in markdown.splitlines() if line.startswith("| folder_nomask |"))
    assert folder_row.count("| n/a ") == 4 and "7 (4 / 0)" in folder_row
    assert "(1/4)" in next(line for line in markdown.splitlines() if line.startswith("| **mean** |"))
    assert "mean over the 1 of 4 categories with defect masks" in markdown
