"""Training images decoded once: resized uint8 copies kept in memory within a budget, the rest streamed.

Training visits every image once per epoch; decoding a 900 x 900 PNG and
resizing it again every epoch costs CPU time the network could use (on 2
cores the decoding worker takes it from the training threads). Nothing
random happens to a training image (no augmentation), so its resized pixels
are the same every epoch: :class:`TrainingImages` decodes the first images
that fit ``budget_bytes`` once (3 S^2 bytes each: 192 KB at 256 px, 182 MB
for the 973 training images of the ten-category realad) and decodes the rest
on demand, so MVTec AD or VisA beyond the budget still train. The cached
pixels are exactly the streamed ones (uint8 / 255, as
:class:`~snlad.data.dataset.AnomalyDataset` computes them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from snlad.data.dataset import AnomalyDataset
from snlad.data.sample import Sample
from snlad.progress import bar


class TrainingImages(Dataset):
    """Items ``{"image": 3 x S x S float32 in [0, 1], "index": i}``; the first :attr:`cached` images come from memory."""

    def __init__(
        self,
        samples: Sequence[Sample],
        image_size: int,
        budget_bytes: int,
        num_workers: int = 0,
        hidden: bool = False,
    ) -> None:
        self.stream = AnomalyDataset(samples, image_size)
        self.cached = min(len(samples), max(0, budget_bytes) // (3 * image_size**2))
        self.pixels = torch.empty((self.cached, 3, image_size, image_size), dtype=torch.uint8)
        if self.cached:
            self._fill(num_workers, hidden)

    def _fill(self, num_workers: int, hidden: bool) -> None:
        """Decode the cached images once, in parallel workers when there are any (``hidden``: no bar, a non-main rank)."""
        head = torch.utils.data.Subset(self.stream, range(self.cached))
        loader = DataLoader(head, batch_size=16, num_workers=num_workers)
        position = 0
        for batch in bar(loader, desc="decoding training images", unit="batch", hidden=hidden):
            count = len(batch["image"])
            self.pixels[position : position + count] = (batch["image"] * 255).round_().to(torch.uint8)
            position += count

    @property
    def fully_cached(self) -> bool:
        return self.cached == len(self.stream)

    def __len__(self) -> int:
        return len(self.stream)

    def __getitem__(self, index: int) -> dict:
        image = self.pixels[index].float() / 255 if index < self.cached else self.stream[index]["image"]
        return {"image": image, "index": index}
