"""Score images already in memory, through the one inference loop.

The interference probes build synthetic anomalies as tensors and the report
scores only the handful of test images it shows; both hand batches of dicts to
:func:`snlad.engine.inference.infer` instead of calling a model themselves, so
their maps and scores are computed exactly like those of ``snlad test``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from snlad.data import AnomalyDataset, Sample
from snlad.engine.inference import infer
from snlad.engine.trained import TrainedModel
from snlad.errors import SnladError


def load_samples(samples: Sequence[Sample], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images N x 3 x S x S in [0, 1] and boolean masks N x S x S, resized as for testing."""
    if not samples:
        raise SnladError("no images to load")
    dataset = AnomalyDataset(samples, image_size)
    items = [dataset[index] for index in range(len(dataset))]
    return torch.stack([item["image"] for item in items]), torch.stack([item["mask"][0] > 0.5 for item in items])


def score_tensors(trained: TrainedModel, images: torch.Tensor, batch_size: int = 8, desc: str = "scoring", progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Anomaly maps N x S x S and image scores N of ``images`` (N x 3 x S x S in [0, 1])."""
    size = trained.config.data.image_size
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
        raise SnladError(f"images must be N x 3 x {size} x {size} for this model, got {tuple(images.shape)}")
    batches = [{"image": chunk} for chunk in images.split(batch_size)]
    maps, scores = [], []
    for _, batch_maps, batch_scores in infer(trained, batches, progress, desc):
        maps.append(batch_maps)
        scores.append(batch_scores)
    return torch.cat(maps), torch.cat(scores)
