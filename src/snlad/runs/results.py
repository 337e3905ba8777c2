"""A run as the report sees it: its models, its metrics and its per-image test scores.

The report reuses what ``snlad test`` wrote (metrics.json, test_scores.csv)
for tables, histograms and ROC curves instead of scoring every test image
again; only the few images it shows are run through the model.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snlad.errors import SnladError
from snlad.runs.run import Run
from snlad.runs.runset import LabelledRun, load_runs


@dataclass
class ReportRun:
    run: LabelledRun
    metrics: dict[str, dict[str, float | None]]
    labels: dict[str, np.ndarray]  # category -> 0/1 per tested image
    scores: dict[str, np.ndarray]  # category -> image score, same order

    @property
    def label(self) -> str:
        return self.run.label


def _test_output(run_dir: Path, path: Path) -> Path:
    """``path``, a file ``snlad test`` writes into ``run_dir``, or the error saying to run it."""
    if not run_dir.is_dir():
        raise SnladError(f"run directory {run_dir} does not exist")
    if not path.is_file():
        raise SnladError(
            f"run {run_dir} has no {path.name}: evaluate it first with `snlad test --run {run_dir} --data ROOT`"
        )
    return path


def read_metrics(run_dir: Path) -> dict[str, dict[str, float | None]]:
    path = _test_output(run_dir, Run(run_dir).metrics_json)
    try:
        metrics = json.loads(path.read_text())
        return {str(c): {str(k): (None if v is None else float(v)) for k, v in m.items()} for c, m in metrics.items()}
    except (ValueError, AttributeError, TypeError):
        raise SnladError(f"{path} is corrupt; rerun `snlad test --run {run_dir}`") from None


@dataclass(frozen=True)
class TestScore:
    """One row of ``test_scores.csv``: a test image, its category, its label (1 = defective) and its image score."""

    image: str
    category: str
    label: int
    score: float


def read_test_rows(run_dir: Path) -> list[TestScore]:
    """Every row of a tested run's test_scores.csv, in the file's order."""
    path = _test_output(run_dir, Run(run_dir).test_scores)
    try:
        with path.open(newline="") as file:
            return [
                TestScore(row["image"], row["category"], int(row["label"]), float(row["score"]))
                for row in csv.DictReader(file)
            ]
    except (KeyError, ValueError, TypeError):
        raise SnladError(
            f"{path} is corrupt (expected columns image,category,label,score); rerun `snlad test --run {run_dir}`"
        ) from None


def read_test_scores(run_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per category: labels (0/1) and scores of every test image, from test_scores.csv."""
    labels: dict[str, list[int]] = {}
    scores: dict[str, list[float]] = {}
    for row in read_test_rows(run_dir):
        labels.setdefault(row.category, []).append(row.label)
        scores.setdefault(row.category, []).append(row.score)
    return {c: np.array(v) for c, v in labels.items()}, {c: np.array(v) for c, v in scores.items()}


def load_report_runs(paths: Sequence[str | Path]) -> list[ReportRun]:
    """Check every run's test outputs before loading any model, so a broken run fails fast."""
    outputs = [(read_metrics(Path(p)), *read_test_scores(Path(p))) for p in paths]
    return [
        ReportRun(run, metrics, labels, scores) for run, (metrics, labels, scores) in zip(load_runs(paths), outputs)
    ]
