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
    """Shuffles per epoch from (seed, epoch); ``start`` skips items already trained on.

    Data-parallel training shards the order by rank, interleaved: rank ``r`` of
    ``w`` takes items ``r, r + w, r + 2w, ...`` of the remaining order. With a
    per-rank batch of ``B / w``, step ``k`` of all ranks together then covers
    exactly items ``[kB, (k + 1)B)``, the batch one process with batch ``B``
    would take. The last ``(size - start) % w`` items of an epoch are dropped so
    every rank runs the same number of steps (none when ``w = 1``).
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.size = size
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        order = epoch_permutation(self.size, self.seed, self.epoch)[self.start :]
        usable = len(order) - len(order) % self.world_size
        return iter(order[self.rank : usable : self.world_size])

    def __len__(self) -> int:
        return (self.size - self.start) // self.world_size
