"""Where tensors live and how many threads compute them; snlad never needs a GPU.

The config says ``train.device`` "auto", "cpu" or "cuda[:N]".
"""

from __future__ import annotations

import os

import torch

from snlad.errors import SnladError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SnladError(f"train.device={name} but this machine has no CUDA GPU: use train.device=auto or cpu")
    return torch.device(name)


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU affinity, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def use_all_cores() -> int:
    """Intra-op threads = :func:`usable_cores`."""
    cores = usable_cores()
    torch.set_num_threads(cores)
    return cores
