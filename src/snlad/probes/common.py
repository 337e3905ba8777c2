"""What both probes share: their normal images, image caching per input size, the CSV of results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from snlad.data import Sample, index_dataset, load_tensors
from snlad.errors import SnladError
from snlad.files import write_csv
from snlad.runs.runset import LabelledRun


def good_test_samples(data_root: str | Path, category: str) -> list[Sample]:
    """The defect-free TEST images of a category, the probes' only source images.

    Test-good images are never trained on, are the same for every run whatever
    its hold-out seed, and exist even for few-shot categories whose training
    split is tiny (capsule and metal_nut keep 4 training images in realad).
    """
    samples = [s for s in index_dataset(data_root, "test", [category]) if s.label == 0]
    if not samples:
        raise SnladError(f"{data_root}: category '{category}' has no good test images")
    return samples


class ImageCache:
    """Each category's images loaded once per input size, as runs may differ in size."""

    def __init__(self, samples: dict[str, Sequence[Sample]]) -> None:
        self.samples = samples
        self.loaded: dict[tuple[str, int], torch.Tensor] = {}

    def images(self, category: str, size: int) -> torch.Tensor:
        key = (category, size)
        if key not in self.loaded:
            self.loaded[key] = load_tensors(self.samples[category], size)[0]
        return self.loaded[key]


def run_columns(run: LabelledRun) -> dict[str, str]:
    """The columns that say which run a probe's row belongs to."""
    return {"run": run.label, "model": run.first.config.model.name}


def write_rows(path: Path, rows: Sequence[dict]) -> None:
    """One CSV row per result, floats to 6 decimals."""
    write_csv(
        path, list(rows[0]), ({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    )
