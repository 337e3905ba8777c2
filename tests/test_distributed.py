"""Data-parallel training: 2 CPU processes (gloo) train what 1 process trains with the same global batch.

Exact where no BatchNorm uses batch statistics (the student's BatchNorms
swapped for their affine part): that checks sharding, gradient averaging,
position counting and rank-0-only writing. With BatchNorm each CPU rank
normalises with its own half batch (SyncBatchNorm needs a GPU), so the real
``torchrun`` recipe is compared with a tolerance on the training loss.
"""

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from snlad import api
from snlad.engine import train as train_module
from snlad.engine.sampler import ResumableSampler
from snlad.runs.checkpoint import read_checkpoint

DEMO = Path(__file__).parents[1] / "data" / "demo"
CATEGORIES = ["bottle", "kolektor_sdd"]  # 16 training images: 4 global batches of 4 per epoch
OVERRIDES = [
    "data.image_size=64",
    "train.batch_size=4",
    "data.num_workers=0",
    "loss.affinity_size=8",
    "train.epochs=2",
    "data.holdout_fraction=0",
    "train.device=cpu",
    # The affinity weights the DDP check was calibrated with: at the preset's 10 the per-rank BatchNorm statistics
    # (half batches) moved the 2-epoch losses by 11-17 % (2026-12-04), past the rel=0.1 bound below.
    "loss.intra=1",
    "loss.inter=1",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Each process of a 2-process job gets one core; the single-process reference too (a fair, fast comparison)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_shards_of_every_step_make_up_the_single_process_batch():
    single = list(ResumableSampler(18, seed=3))
    ranks = [ResumableSampler(18, seed=3, rank=r, world_size=3) for r in range(3)]
    shards = [list(sampler) for sampler in ranks]
    assert all(len(shard) == len(sampler) == 6 for shard, sampler in zip(shards, ranks))
    for step in range(3):  # global batch 6 = 3 ranks x 2
        together = sorted(i for shard in shards for i in shard[2 * step : 2 * step + 2])
        assert together == sorted(single[6 * step : 6 * step + 6])
    resumed = ResumableSampler(18, seed=3, rank=1, world_size=3)
    resumed.set_epoch(0, start=7)  # 11 left: 9 usable, 3 per rank
    assert list(resumed) == single[7:16][1::3]


class AffineOnly(nn.Module):
    """A BatchNorm's learnable scale and shift without batch statistics."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.weight = nn.Parameter(bn.weight.detach().clone())
        self.bias = nn.Parameter(bn.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def build_without_batch_statistics(config):
    model = ORIGINAL_BUILD(config)
    teacher = set(map(id, model.teacher.modules()))
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d) and id(child) not in teacher:
                setattr(parent, name, AffineOnly(child))
    return model


ORIGINAL_BUILD = train_module.build_model


def train_without_batch_statistics(out: Path) -> None:
    train_module.build_model = build_without_batch_statistics
    try:
        config = api.resolve_config(model="snl-fd", overrides=OVERRIDES, categories=CATEGORIES)
        api.train(config=config, data=DEMO, out=out)
    finally:
        train_module.build_model = ORIGINAL_BUILD


def _rank(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    train_without_batch_statistics(Path(out))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def student_state(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in read_checkpoint(path)["model"].items() if not k.startswith("teacher.")}


def losses(run: Path) -> list[float]:
    with open(run / "train_log.csv") as file:
        return [float(row["loss"]) for row in csv.DictReader(file)]


@pytest.mark.slow
def test_two_gloo_processes_train_exactly_the_single_process_model(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    mp.spawn(_rank, args=(2, free_port(), str(tmp_path / "ddp")), nprocs=2)
    train_without_batch_statistics(tmp_path / "single")
    ddp, single = student_state(tmp_path / "ddp" / "model.pt"), student_state(tmp_path / "single" / "model.pt")
    assert ddp.keys() == single.keys()
    for key in single:
        assert torch.allclose(ddp[key], single[key], atol=1e-4), key
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=1e-5)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        ".lock",  # held by rank 0 while it trained
        "checkpoint.pt",
        "config.yaml",
        "model.pt",
        "run.json",
        "train_log.csv",
    ]


@pytest.mark.slow
def test_torchrun_recipe_with_batchnorm_is_close_to_one_process(tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "snlad.cli",
        "--quiet",
        "train",
        "--data",
        str(DEMO),
        "--categories",
        ",".join(CATEGORIES),
        "--model",
        "snl-fd",
        "--out",
        str(tmp_path / "ddp"),
    ]
    command += [x for item in OVERRIDES for x in ("--set", item)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    config = api.resolve_config(model="snl-fd", overrides=OVERRIDES, categories=CATEGORIES)
    api.train(config=config, data=DEMO, out=tmp_path / "single")
    # Per-rank BatchNorm statistics (half batches) make the runs differ a little, not the loss scale.
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=0.1)
    assert len(losses(tmp_path / "ddp")) == 2  # rank 0 alone wrote the log
    metrics = api.test(run=tmp_path / "ddp", data=DEMO, categories=["bottle"])
    assert 0.0 <= metrics["bottle"]["image_auroc"] <= 1.0


def test_sync_batchnorm_turns_back_into_plain_batchnorm_with_its_state():
    from snlad.engine.distributed import unwrap

    config = api.resolve_config(model="snl-rd", overrides=["data.image_size=32"])
    model = train_module.build_model(config.model, pretrained_teacher=False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name, child in list(model.named_children()):  # what wrap_student does on GPUs
        if name != "teacher":
            setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    unwrap(model)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_bf16_autocast_trains(tmp_path):
    config = api.resolve_config(
        model="snl-fd", overrides=[*OVERRIDES, "train.epochs=1", "train.amp=bf16"], categories=["bottle"]
    )
    api.train(config=config, data=DEMO, out=tmp_path / "run")
    assert all(0 < loss < 100 for loss in losses(tmp_path / "run"))
