"""Data-parallel training over processes, one training loop for one process or many.

Launch the ordinary ``snlad train`` command under ``torchrun``; it reads the
rank and world size torchrun puts in the environment:

    torchrun --nproc_per_node=4 -m snlad.cli train --data D --out RUN ...
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 -m snlad.cli train ...

Each process trains the same student on its shard of every global batch
(``train.batch_size`` stays the global batch; each rank takes ``1/world`` of
it, see :class:`~snlad.engine.sampler.ResumableSampler`). DDP averages the
student's gradients; the frozen teacher is left out of every synchronisation.
Backend: NCCL on GPUs, gloo on CPUs. BatchNorm: SyncBatchNorm on GPUs, so the
batch statistics are those of the global batch, as with one process; on CPU
(SyncBatchNorm needs a GPU) each rank normalises with its own shard's
statistics, so results match one process only approximately (tested). Only
rank 0 writes checkpoints, logs and the final model.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from snlad.errors import SnladError
from snlad.models import TeacherStudent


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job; the defaults describe a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any rank (e.g. one rank got Ctrl-C)."""
        if not self.enabled:
            return flag
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over all ranks."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun describes in the environment (once); a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise SnladError(
                    f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible): lower --nproc_per_node"
                )
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def per_rank_batch(batch_size: int, context: DistContext) -> int:
    """The share of the global batch one rank takes."""
    if batch_size % context.world_size:
        raise SnladError(
            f"train.batch_size={batch_size} is the global batch and must be divisible by the {context.world_size} processes"
        )
    return batch_size // context.world_size


def wrap_student(model: TeacherStudent, context: DistContext, device: torch.device) -> nn.Module:
    """The module to call in the training loop: ``model`` itself, or DDP over its student.

    The teacher's parameters and buffers are excluded from DDP's broadcasts and
    gradient reduction (they never change). On GPUs the student's BatchNorms
    become SyncBatchNorm, in place; :func:`unwrap` turns them back.
    """
    if not context.enabled:
        return model
    if device.type == "cuda":
        for name, child in list(model.named_children()):
            if name != "teacher":
                setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
    frozen = [name for name, _ in model.named_parameters() if name.startswith("teacher.")]
    frozen += [name for name, _ in model.named_buffers() if name.startswith("teacher.")]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, frozen)
    return DistributedDataParallel(
        model,
        device_ids=[device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else None,
    )


def unwrap(model: TeacherStudent) -> TeacherStudent:
    """Undo :func:`wrap_student`'s SyncBatchNorm, in place, so the model folds and saves like any other."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.SyncBatchNorm):
                plain = nn.BatchNorm2d(
                    child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
                )
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain.to(child.weight.device).train(child.training))
    return model
