"""PatchCore's training: one pass of the teacher over the training images, then a coreset of their patches.

No epochs and no gradients: every training image's patch features are
collected from the training loader (N = images x positions at stride 8, e.g. 1,024 per 256 px image),
and the greedy k-centre coreset keeps ``model.coreset_fraction`` of them as
the memory bank. Both phases show progress and stop early, returning None,
when ``interrupted()`` turns true; :func:`snlad.engine.train.train_model`
then saves a state from which ``--resume`` builds the bank again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from snlad.config import Config
from snlad.models.coreset import coreset_size, greedy_coreset
from snlad.models.patchcore import PatchCore
from snlad.progress import bar


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
def training_patches(
    model: PatchCore, loader: DataLoader, image_size: int, interrupted: Callable[[], bool]
) -> torch.Tensor | None:
    """Every patch feature of the ``loader``'s images (S x S), N x C on the model's device (None if interrupted)."""
    device = model.bank.device
    side = model.teacher.level_sides(image_size)[1]
    features = torch.empty(len(loader.dataset) * side * side, model.bank.shape[1], device=device)
    filled = 0
    model.eval()
    for batch in bar(loader, desc="memory bank: patch features", unit="batch"):
        patches = model.patch_features(model.teacher(batch["image"].to(device)))
        flat = patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1])
        features[filled : filled + len(flat)] = flat
        filled += len(flat)
        if interrupted():
            return None
    return features


def build_memory_bank(
    model: PatchCore, loader: DataLoader, config: Config, interrupted: Callable[[], bool]
) -> BankStats | None:
    """Collect the training patches, keep their coreset as ``model``'s bank; None (bank untouched) if interrupted."""
    started = time.perf_counter()
    features = training_patches(model, loader, config.data.image_size, interrupted)
    if features is None:
        return None
    collected = time.perf_counter()
    kept = coreset_size(len(features), config.model.coreset_fraction)
    coreset_bar = bar(total=kept, desc="memory bank: coreset", unit="patch")

    def step() -> None:
        coreset_bar.update(1)
        if interrupted():
            raise _Stopped

    try:
        chosen = greedy_coreset(
            features, config.model.coreset_fraction, config.model.coreset_projection, config.train.seed, step
        )
    except _Stopped:
        return None
    finally:
        coreset_bar.close()
    model.set_bank(features[chosen.to(features.device)])
    return BankStats(len(features), kept, collected - started, time.perf_counter() - collected)
