"""The one evaluation loop: per-category metrics and their mean, written to files.

Maps are compared with the ground truth at the model's resolution (masks
resized with nearest neighbour), the MVTec protocol of RD4AD and its peers.
Pixel metrics stream through ``PixelMetricAccumulator``, so memory does not
grow with the number of test images.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from snlad.data import AnomalyDataset, Sample
from snlad.engine.checkpoint import atomic_write_text
from snlad.engine.inference import infer
from snlad.engine.trained import TrainedModel
from snlad.metrics import METRIC_NAMES, PixelMetricAccumulator, image_metrics, mean_over_categories

TABLE_COLUMNS = ("image_auroc", "pixel_auroc", "aupro", "image_ap", "image_f1max", "pixel_ap", "pixel_f1max")


def evaluate_category(trained: TrainedModel, samples: Sequence[Sample], batch_size: int, progress: bool = True) -> tuple[dict[str, float], list[dict]]:
    """Metrics of one category's test images, and one row per image (path, label, score)."""
    config = trained.config
    loader = DataLoader(AnomalyDataset(samples, config.data.image_size), batch_size=batch_size, num_workers=config.data.num_workers)
    accumulator = PixelMetricAccumulator()
    rows: list[dict] = []
    for batch, maps, scores in infer(trained, loader, progress, desc=f"testing {samples[0].category}"):
        accumulator.update(maps.numpy(), batch["mask"][:, 0].numpy() > 0.5)
        rows += [
            {"image": path, "category": category, "label": int(label), "score": float(score)}
            for path, category, label, score in zip(batch["path"], batch["category"], batch["label"], scores)
        ]
    labels = np.array([row["label"] for row in rows])
    scores = np.array([row["score"] for row in rows])
    return {**image_metrics(scores, labels), **accumulator.compute()}, rows


def evaluate(models: dict[str, TrainedModel], samples: Sequence[Sample], batch_size: int = 8, progress: bool = True) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """Per-category metrics plus the 'mean' row, and every test image's score."""
    per_category: dict[str, dict[str, float]] = {}
    all_rows: list[dict] = []
    for category in sorted({sample.category for sample in samples}):
        category_samples = [sample for sample in samples if sample.category == category]
        per_category[category], rows = evaluate_category(models[category], category_samples, batch_size, progress)
        all_rows += rows
    per_category["mean"] = mean_over_categories({k: v for k, v in per_category.items()})
    return per_category, all_rows


def metrics_markdown(per_category: dict[str, dict[str, float]], title: str | None = None) -> str:
    """One row per category plus the mean, in percent."""
    header = "| category | " + " | ".join(TABLE_COLUMNS) + " |"
    lines = [f"### {title}", ""] if title else []
    lines += [header, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
    for category, values in per_category.items():
        cells = ["n/a" if np.isnan(values[name]) else f"{100 * values[name]:.1f}" for name in TABLE_COLUMNS]
        name = f"**{category}**" if category == "mean" else category
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_metrics(run_dir: Path, per_category: dict[str, dict[str, float]], rows: list[dict], title: str | None = None) -> None:
    """metrics.csv, metrics.json, metrics.md and test_scores.csv, each written atomically."""
    run_dir = Path(run_dir)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["category", *METRIC_NAMES])
    for category, values in per_category.items():
        writer.writerow([category, *(f"{values[name]:.6f}" for name in METRIC_NAMES)])
    atomic_write_text(run_dir / "metrics.csv", table.getvalue())
    clean = {c: {k: (None if np.isnan(v) else v) for k, v in values.items()} for c, values in per_category.items()}
    atomic_write_text(run_dir / "metrics.json", json.dumps(clean, indent=2))
    atomic_write_text(run_dir / "metrics.md", metrics_markdown(per_category, title))
    scores = io.StringIO()
    writer = csv.DictWriter(scores, fieldnames=["image", "category", "label", "score"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / "test_scores.csv", scores.getvalue())
