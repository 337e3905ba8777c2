"""What both probes share: their normal images, image caching per input size, output files."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from snlad.data import Sample, index_dataset
from snlad.engine.checkpoint import atomic_write_text
from snlad.engine.tensors import load_samples
from snlad.errors import SnladError


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
            self.loaded[key] = load_samples(self.samples[category], size)[0]
        return self.loaded[key]


def write_rows(path: Path, rows: Sequence[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    atomic_write_text(path, buffer.getvalue())


def write_json(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, default=_plain))


def _plain(value: object) -> object:
    """numpy/torch numbers and arrays as plain JSON numbers and lists."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
