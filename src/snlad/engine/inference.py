"""The one inference loop: batches in, anomaly maps and image scores out.

Testing, prediction and calibration all go through ``infer`` so every number
snlad reports comes from the same code path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

if TYPE_CHECKING:
    from snlad.engine.trained import TrainedModel


def infer(trained: "TrainedModel", loader: DataLoader, progress: bool = True, desc: str = "scoring") -> Iterator[tuple[dict[str, Any], torch.Tensor, torch.Tensor]]:
    """Yield (batch, maps B x S x S, scores B) for every batch of ``loader``.

    A batch with no images (every file in it unreadable) yields empty tensors.
    """
    trained.eval()
    device = trained.device
    with torch.inference_mode():
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            if batch["image"].numel() == 0:
                yield batch, torch.empty(0), torch.empty(0)
                continue
            maps, scores = trained.score(batch["image"].to(device))
            yield batch, maps.cpu(), scores.cpu()
