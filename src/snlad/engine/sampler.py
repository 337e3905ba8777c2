"""A resumable, seeded epoch order.

The order of epoch ``e`` is a permutation drawn from ``seed`` and ``e`` alone,
so an interrupted epoch can be resumed at any batch and give exactly the
weights an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def epoch_permutation(size: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(size, generator=generator).tolist()


class ResumableSampler(Sampler[int]):
    """Shuffles per epoch from (seed, epoch); ``start`` skips items already trained on."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        return iter(epoch_permutation(self.size, self.seed, self.epoch)[self.start :])

    def __len__(self) -> int:
        return self.size - self.start
