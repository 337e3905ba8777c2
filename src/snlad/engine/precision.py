"""Mixed precision for training: bfloat16 autocast of forward and loss, or plain float32."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def autocast(device: torch.device, amp: str) -> Iterator[None]:
    """bfloat16 autocast when ``amp == "bf16"`` (weights and optimiser stay float32); plain float32 otherwise."""
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
        yield
