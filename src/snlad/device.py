"""Where tensors live and how many threads compute them; snlad never needs a GPU.

The config says ``train.device`` "auto", "cpu" or "cuda[:N]".
"""

from __future__ import annotations

import os
import re
import statistics
import time
from pathlib import Path

import torch

from snlad.errors import SnladError, notice


def resolve_device(name: str) -> torch.device:
    """``train.device`` or a command's ``--device``: "auto" (a GPU where there is one), "cpu" or "cuda[:N]"."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise SnladError(f"device {name!r}: use auto, cpu or cuda[:N]")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SnladError(f"device {name} asked for, but this machine has no CUDA GPU: use auto or cpu")
    return torch.device(name)


def usable_cores() -> int:
    """The cores this process may run on (a container's CPU affinity, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def use_all_cores() -> int:
    """Intra-op threads = :func:`usable_cores`."""
    cores = usable_cores()
    torch.set_num_threads(cores)
    return cores


def busy_threads_elsewhere(samples: int = 5, interval_s: float = 0.05) -> int:
    """Threads of other processes (not this one, not its children) that are running, median of a few snapshots (Linux)."""
    me = os.getpid()
    counts = []
    for _ in range(samples):
        running = 0
        for stat in Path("/proc").glob("[0-9]*/task/*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended while we looked
                continue
            pid = int(stat.parts[2])
            if fields[0] == "R" and pid != me and int(fields[1]) != me:
                running += 1
        counts.append(running)
        time.sleep(interval_s)
    return int(statistics.median(counts))


def threads_chosen() -> bool:
    """Whether the thread count is the user's choice (``OMP_NUM_THREADS``, or ``--threads`` below one per core)."""
    return "OMP_NUM_THREADS" in os.environ or torch.get_num_threads() != usable_cores()


def warn_if_oversubscribed() -> None:
    """Say once when this job's threads plus the threads other jobs keep busy exceed the cores, if the user can act on it.

    Two trainings on 2 cores, each with 2 threads and a decoding worker, were
    measured to slow each other about 8x (OpenMP threads spin while waiting
    for a descheduled sibling), far worse than sharing the cores in proportion.
    The note is only for a job that took every core: one that runs a single
    thread, or a share the user chose, has nothing left to change.
    """
    if not Path("/proc").is_dir() or int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun's ranks are meant to share
        return
    ours = torch.get_num_threads()
    if ours <= 1 or threads_chosen():
        return
    others, cores = busy_threads_elsewhere(), usable_cores()
    if others + ours > cores:
        notice(
            f"{others} thread(s) of other processes are busy on this {cores}-core machine and snlad uses {ours}: the jobs will "
            "slow each other down, often several times over; give each job its share with --threads N (or OMP_NUM_THREADS=N)"
        )
