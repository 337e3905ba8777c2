"""The one inference loop: batches in, anomaly maps and image scores out.

Testing, prediction, calibration, selection, the probes and the report all go
through :func:`infer` (or :func:`score_tensors`, built on it), so every number
snlad reports comes from the same code path: ``TrainedModel.score``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from snlad.errors import SnladError
from snlad.progress import bar
from snlad.runs.trained import TrainedModel


def infer(
    trained: TrainedModel, batches: Iterable[dict[str, Any]], desc: str | None = "scoring"
) -> Iterator[tuple[dict[str, Any], torch.Tensor, torch.Tensor]]:
    """Yield (batch, maps B x S x S, scores B) for every batch (a dict with ``image``), maps and scores on the CPU.

    ``desc`` names the progress bar; None shows none (a loop inside another one's bar).

    A batch with no images (every file in it unreadable) yields empty tensors.
    A model whose maps are not finite is refused here, the one place every
    number passes, rather than as NaN scores or a metric's ValueError later.
    """
    trained.eval()
    device = trained.device
    with torch.inference_mode():
        for batch in bar(batches, desc=desc or "", unit="batch", hidden=desc is None):
            if batch["image"].numel() == 0:
                yield batch, torch.empty(0), torch.empty(0)
                continue
            maps, scores = trained.score(batch["image"].to(device))
            if not (torch.isfinite(scores).all() and torch.isfinite(maps).all()):  # else NaN scores, numpy warnings
                raise SnladError(
                    "the model gives NaN or infinite anomaly maps: its weights are broken (training diverged, "
                    "e.g. with a too high train.lr, or the model file was altered); retrain the run"
                )
            yield batch, maps.cpu(), scores.cpu()


def score_tensors(
    trained: TrainedModel, images: torch.Tensor, batch_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anomaly maps N x S x S and image scores N of ``images`` (N x 3 x S x S in [0, 1]) already in memory (no bar of its own)."""
    size = trained.config.data.image_size
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
        raise SnladError(f"images must be N x 3 x {size} x {size} for this model, got {tuple(images.shape)}")
    batches = [{"image": chunk} for chunk in images.split(batch_size)]
    maps, scores = [], []
    for _, batch_maps, batch_scores in infer(trained, batches, desc=None):
        maps.append(batch_maps)
        scores.append(batch_scores)
    return torch.cat(maps), torch.cat(scores)
