"""PatchCore's training: one pass of the teacher over the training images, then a coreset of their patches.

No epochs and no gradients: every training image's patch features are
collected (N = images x positions at stride 8, e.g. 1,024 per 256 px image),
and the greedy k-centre coreset keeps ``model.coreset_fraction`` of them as
the memory bank. Both phases show progress and stop early, returning None,
when ``interrupted()`` turns true; :func:`snlad.engine.train.train_model`
then saves a state from which ``--resume`` builds the bank again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from snlad.config import Config
from snlad.data import AnomalyDataset, Sample
from snlad.models.coreset import coreset_size, greedy_coreset
from snlad.models.patchcore import PatchCore


class _Stopped(Exception):
    """Raised from the coreset's step callback once an interrupt arrived."""


@dataclass(frozen=True)
class BankStats:
    """What building a bank cost: for train_log.csv and the one-line summary."""

    patches: int
    kept: int
    feature_seconds: float
    coreset_seconds: float


@torch.no_grad()
def patch_features(
    model: PatchCore, samples: Sequence[Sample], config: Config, progress: bool, interrupted: Callable[[], bool]
) -> torch.Tensor | None:
    """Every training patch feature, N x C on the model's device (None if interrupted)."""
    device = model.bank.device
    dataset = AnomalyDataset(samples, config.data.image_size)
    loader = DataLoader(dataset, batch_size=config.train.batch_size, num_workers=config.data.num_workers)
    side = model.teacher.level_sides(config.data.image_size)[1]
    features = torch.empty(len(samples) * side * side, model.bank.shape[1], device=device)
    filled = 0
    model.eval()
    for batch in tqdm(loader, desc="memory bank: patch features", unit="batch", disable=not progress, leave=False):
        patches = model.patch_features(model.teacher(batch["image"].to(device)))
        flat = patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1])
        features[filled : filled + len(flat)] = flat
        filled += len(flat)
        if interrupted():
            return None
    return features


def build_memory_bank(
    model: PatchCore, samples: Sequence[Sample], config: Config, progress: bool, interrupted: Callable[[], bool]
) -> BankStats | None:
    """Collect the training patches, keep their coreset as ``model``'s bank; None (bank untouched) if interrupted."""
    started = time.perf_counter()
    features = patch_features(model, samples, config, progress, interrupted)
    if features is None:
        return None
    collected = time.perf_counter()
    kept = coreset_size(len(features), config.model.coreset_fraction)
    bar = tqdm(total=kept, desc="memory bank: coreset", unit="patch", disable=not progress, leave=False)

    def step() -> None:
        bar.update(1)
        if interrupted():
            raise _Stopped

    try:
        chosen = greedy_coreset(
            features, config.model.coreset_fraction, config.model.coreset_projection, config.train.seed, step
        )
    except _Stopped:
        return None
    finally:
        bar.close()
    model.set_bank(features[chosen.to(features.device)])
    return BankStats(len(features), kept, collected - started, time.perf_counter() - collected)
