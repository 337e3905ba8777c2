"""Where tensors live: the config says "auto", "cpu" or "cuda[:N]"; snlad never needs a GPU."""

from __future__ import annotations

import torch

from snlad.errors import SnladError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SnladError(f"train.device={name} but this machine has no CUDA GPU: use train.device=auto or cpu")
    return torch.device(name)
