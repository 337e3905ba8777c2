"""The one evaluation loop: per-category metrics and their mean, written to files.

Maps are compared with the ground truth at the model's resolution (masks
resized with nearest neighbour), the MVTec protocol of RD4AD and its peers.
Pixel metrics stream through ``PixelMetricAccumulator``, so memory does not
grow with the number of test images.

Pixel metrics use the good images and the defective images that have a mask;
a defective image without one (image-level label only) counts for the image
metrics alone, since its unknown defect pixels must not be scored as normal.
A category with no mask at all has no pixel metrics (NaN, ``null`` in JSON,
an empty CSV cell, ``n/a`` in tables), and the mean of a metric is over the
categories that have it; the mean row says how many that is.

Beside the threshold-free metrics, each calibrated category gets the
accuracy, precision, recall and F1 of its stored image threshold's decisions
(``score > threshold``, as ``snlad predict`` flags). Units: metrics are
fractions in [0, 1] in the files and from the API (metrics.json, metrics.csv,
``api.test``) and percentages in the tables printed for people (metrics.md,
the terminal, the report).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from snlad.data import AnomalyDataset, Sample
from snlad.engine.inference import infer
from snlad.errors import SnladError
from snlad.files import atomic_write_text, write_csv, write_json
from snlad.runs.run import Run
from snlad.runs.trained import TrainedModel
from snlad.scoring.metrics import (
    DECISION_NAMES,
    METRIC_NAMES,
    PixelMetricAccumulator,
    decision_metrics,
    image_metrics,
    mean_over_categories,
    percent,
)

TABLE_COLUMNS = ("image_auroc", "pixel_auroc", "aupro", "image_ap", "image_f1max", "pixel_ap", "pixel_f1max")
COUNT_COLUMNS = ("images", "defective", "masked")  # test images, defective ones, defective ones with a mask
COVERAGE_COLUMNS = ("image_categories", "pixel_categories")  # mean row: categories with image / pixel metrics
SCORE_COLUMNS = ("image", "category", "label", "has_mask", "score")  # test_scores.csv
FEW_TEST_IMAGES = 10  # fewer good or defective test images than this: the category's numbers are indicative only


def pixel_ground_truth(batch: dict) -> torch.Tensor:
    """Which images of a batch have known pixel labels: good images and defective images with a mask."""
    return (batch["label"] == 0) | batch["has_mask"]


def evaluate_category(
    trained: TrainedModel,
    samples: Sequence[Sample],
    batch_size: int,
    scored: list[dict] | None = None,
) -> tuple[dict[str, float], list[dict]]:
    """Metrics and image counts of one category's test images, and one row per image (path, label, mask, score).

    Each row is also appended to ``scored`` as soon as it exists, so an interruption keeps them.
    """
    config = trained.config
    loader = DataLoader(
        AnomalyDataset(samples, config.data.image_size), batch_size=batch_size, num_workers=config.data.num_workers
    )
    with pixel_temporaries():
        accumulator = PixelMetricAccumulator()
    rows: list[dict] = []
    for batch, maps, scores in infer(trained, loader, desc=f"testing {samples[0].category}"):
        known = pixel_ground_truth(batch)
        if known.any():
            with pixel_temporaries():
                accumulator.update(maps[known].numpy(), batch["mask"][known, 0].numpy() > 0.5)
        batch_rows = [
            {"image": path, "category": category, "label": int(label), "has_mask": int(has_mask), "score": float(score)}
            for path, category, label, has_mask, score in zip(
                batch["path"], batch["category"], batch["label"], batch["has_mask"], scores
            )
        ]
        rows += batch_rows
        if scored is not None:
            scored += batch_rows
    labels = np.array([row["label"] for row in rows])
    scores = np.array([row["score"] for row in rows])
    counts = {
        "images": len(rows),
        "defective": int(labels.sum()),
        "masked": sum(row["label"] * row["has_mask"] for row in rows),
    }
    threshold = trained.calibration.get(samples[0].category, {}).get("threshold")
    decisions = {
        "threshold": math.nan if threshold is None else threshold,
        **decision_metrics(scores, labels, threshold),
    }
    with pixel_temporaries():
        pixel = accumulator.compute()
    return {**image_metrics(scores, labels), **pixel, **decisions, **counts}, rows


@contextlib.contextmanager
def pixel_temporaries() -> Iterator[None]:
    """The pixel metrics stream through files in TMPDIR (8 bytes per pixel): a full or unwritable one is one line."""
    try:
        yield
    except OSError as error:
        raise SnladError(
            f"cannot write the pixel metrics' temporary files in {tempfile.gettempdir()}: {error.strerror}; "
            "free space there or point TMPDIR at a folder with room"
        ) from None


def mean_row(per_category: dict[str, dict[str, float]]) -> dict[str, float]:
    """Means of the metrics over the categories that have them, total counts, and how many categories each mean covers."""
    averaged = (*METRIC_NAMES, *DECISION_NAMES)  # not the thresholds: each is on its own category's scale
    row = mean_over_categories({c: {name: values[name] for name in averaged} for c, values in per_category.items()})
    row["threshold"] = math.nan
    row.update({name: sum(values[name] for values in per_category.values()) for name in COUNT_COLUMNS})
    row["image_categories"] = sum(not np.isnan(values["image_auroc"]) for values in per_category.values())
    row["pixel_categories"] = sum(not np.isnan(values["pixel_auroc"]) for values in per_category.values())
    return row


def evaluate(
    models: dict[str, TrainedModel],
    samples: Sequence[Sample],
    batch_size: int = 8,
    partial: Path | None = None,
) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """Per-category metrics plus the 'mean' row, and every test image's score.

    Interrupted (Ctrl-C, SIGTERM), the scores of the images already done are written to ``partial``
    (a CSV like test_scores.csv) before the interruption goes on; a complete earlier test_scores.csv stays.
    """
    per_category: dict[str, dict[str, float]] = {}
    all_rows: list[dict] = []
    try:
        for category in sorted({sample.category for sample in samples}):
            category_samples = [sample for sample in samples if sample.category == category]
            per_category[category], _ = evaluate_category(models[category], category_samples, batch_size, all_rows)
    except KeyboardInterrupt:
        if partial is not None and all_rows:
            write_csv(partial, SCORE_COLUMNS, all_rows)
        raise
    per_category["mean"] = mean_row(per_category)
    return per_category, all_rows


def metrics_markdown(per_category: dict[str, dict[str, float]], title: str | None = None) -> str:
    """One row per category plus the mean, in percent, with each category's test-image counts.

    A mean cell that covers fewer than all categories says how many, e.g. ``84.1 (7/10)``.
    """
    categories = {c: v for c, v in per_category.items() if c != "mean"}
    header = "| category | " + " | ".join(TABLE_COLUMNS) + " | test images (defective / with mask) |"
    lines = [f"### {title}", ""] if title else []
    lines += [header, "|" + "---|" * (len(TABLE_COLUMNS) + 2)]
    for category, values in categories.items():
        cells = [percent(values[name]) for name in TABLE_COLUMNS]
        lines.append(
            f"| {category} | "
            + " | ".join(cells)
            + f" | {values['images']} ({values['defective']} / {values['masked']}) |"
        )
    if "mean" in per_category:
        mean = per_category["mean"]
        cells = []
        for name in TABLE_COLUMNS:
            covered = mean["pixel_categories" if name.startswith(("pixel", "aupro")) else "image_categories"]
            cells.append(percent(mean[name]) + (f" ({covered}/{len(categories)})" if covered < len(categories) else ""))
        lines.append(
            "| **mean** | " + " | ".join(cells) + f" | {mean['images']} ({mean['defective']} / {mean['masked']}) |"
        )
        small = [
            c
            for c, values in categories.items()
            if min(values["defective"], values["images"] - values["defective"]) < FEW_TEST_IMAGES
        ]
        if small:
            lines += [
                "",
                f"Fewer than {FEW_TEST_IMAGES} good or defective test images in {', '.join(small)}: one image moves their numbers by many points; read them as indicative.",
            ]
        unmasked = [c for c, values in categories.items() if np.isnan(values["pixel_auroc"])]
        if unmasked:
            lines += [
                "",
                f"Pixel metrics (pixel_*, aupro): mean over the {mean['pixel_categories']} of {len(categories)} categories with defect masks; "
                f"{', '.join(unmasked)}: image-level labels only (n/a).",
            ]
    return "\n".join(lines + _decisions_markdown(categories, per_category.get("mean"))) + "\n"


def _decisions_markdown(categories: dict[str, dict[str, float]], mean: dict[str, float] | None) -> list[str]:
    """The decisions table: each calibrated category's image threshold and how its decisions fare (none if none is)."""
    calibrated = {c: v for c, v in categories.items() if not np.isnan(v.get("threshold", math.nan))}
    if not calibrated:
        return []
    lines = [
        "",
        "At the stored image threshold (score > threshold is flagged, as `snlad predict` does):",
        "",
        "| category | image threshold | " + " | ".join(DECISION_NAMES) + " |",
        "|" + "---|" * (len(DECISION_NAMES) + 2),
    ]
    lines += [
        f"| {c} | {v['threshold']:.4g} | " + " | ".join(percent(v[name]) for name in DECISION_NAMES) + " |"
        for c, v in calibrated.items()
    ]
    if mean is not None and len(calibrated) > 1:
        lines.append("| **mean** | | " + " | ".join(percent(mean[name]) for name in DECISION_NAMES) + " |")
    return lines


def _csv_cell(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.6f}"


def write_metrics_json(path: Path, per_category: dict[str, dict[str, float]]) -> None:
    """Per-category metrics as JSON, a metric a category does not have (NaN) as ``null``."""
    write_json(
        path,
        {
            c: {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in values.items()}
            for c, values in per_category.items()
        },
    )


def write_metrics(
    out_dir: Path, per_category: dict[str, dict[str, float]], rows: list[dict], title: str | None = None
) -> None:
    """metrics.csv, metrics.json, metrics.md and test_scores.csv in ``out_dir`` (a run), each written atomically.

    A metric a category does not have is an empty CSV cell and ``null`` in JSON.
    """
    run = Run(Path(out_dir))
    decided = ("threshold", *DECISION_NAMES)
    header = ["category", *METRIC_NAMES, *decided, *COUNT_COLUMNS, *COVERAGE_COLUMNS]
    table = [
        {
            "category": category,
            **{name: _csv_cell(values[name]) for name in (*METRIC_NAMES, *decided)},
            **{name: values[name] for name in (*COUNT_COLUMNS, *COVERAGE_COLUMNS) if name in values},
        }
        for category, values in per_category.items()
    ]
    write_csv(run.metrics_csv, header, table)
    write_metrics_json(run.metrics_json, per_category)
    atomic_write_text(run.metrics_md, metrics_markdown(per_category, title))
    write_csv(run.test_scores, SCORE_COLUMNS, rows)
