"""Mixed precision for training: bfloat16 autocast of forward and loss, or plain float32."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from snlad.config import check_registry

PRECISIONS: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16}
"""``train.amp``: the autocast dtype of forward and loss (weights and optimiser stay float32); None: plain float32."""
check_registry(PRECISIONS, "train.amp")


@contextlib.contextmanager
def autocast(device: torch.device, amp: str) -> Iterator[None]:
    """Autocast to ``PRECISIONS[amp]`` on ``device``; plain float32 where that is None."""
    dtype = PRECISIONS[amp]
    with torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        yield
