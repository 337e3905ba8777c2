"""GPU smoke check and timings (needs a CUDA GPU; prints one JSON line per check).

1. Training on the demo data with ``train.amp=bf16`` and with float32 (epoch times, finite loss).
2. The distributed code path on the GPU: NCCL process group, SyncBatchNorm + DDP over the
   student (``wrap_student``), then ``unwrap``. With one GPU the group has one rank; the
   context claims two so every distributed branch runs (the sampler gives this rank half).
3. Inference: plain vs optimised model, batch 16 and 64, float32, CUDA-synchronised medians.

    PYTHONPATH=src python bench/gpu_check.py [--out DIR]

Status: written for the issue-6 GPU check, not yet run on a GPU (the session's device
time ran out before it could start); the CPU tests cover the same code paths with gloo.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"


def report(**values) -> None:
    print(json.dumps(values), flush=True)


def check_training(out: Path) -> None:
    from snlad import api

    for amp in ("bf16", "none"):
        config = api.resolve_config(
            model="snl-fd", overrides=["train.epochs=3", "train.device=cuda", f"train.amp={amp}", "data.num_workers=4"]
        )
        started = time.perf_counter()
        api.train(config=config, data=DEMO, out=out / f"run-{amp}")
        with open(out / f"run-{amp}" / "train_log.csv") as file:
            log = list(csv.DictReader(file))
        metrics = api.test(run=out / f"run-{amp}", data=DEMO)
        report(
            check="train",
            amp=amp,
            seconds=time.perf_counter() - started,
            epoch_seconds=[float(r["seconds"]) for r in log],
            losses=[float(r["loss"]) for r in log],
            mean_image_auroc=metrics["mean"]["image_auroc"],
        )


def check_distributed_path(out: Path) -> None:
    import torch.distributed as dist

    from snlad import api
    from snlad.data import index_dataset
    from snlad.engine.distributed import DistContext, unwrap
    from snlad.engine.train import fit
    from snlad.models import build_model
    from snlad.runs.run import ModelDir

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29555", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    dist.init_process_group("nccl")
    config = api.resolve_config(
        model="snl-rd", overrides=["train.epochs=1", "train.device=cuda", "train.amp=bf16", "train.batch_size=8"]
    )
    torch.manual_seed(0)
    model = build_model(config.model).cuda()
    (out / "ddp").mkdir(parents=True, exist_ok=True)
    fit(
        model,
        index_dataset(DEMO, "train"),
        config,
        ModelDir(out / "ddp"),
        None,
        context=DistContext(0, 2, 0),
    )
    sync = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    unwrap(model)
    left = sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    with open(out / "ddp" / "train_log.csv") as file:
        log = list(csv.DictReader(file))
    report(
        check="distributed-path",
        backend=dist.get_backend(),
        sync_batchnorms_during=sync,
        left_after_unwrap=left,
        loss=float(log[-1]["loss"]),
    )
    dist.destroy_process_group()


def check_inference() -> None:
    from snlad.config import preset
    from snlad.engine.optimise import optimise_for_inference
    from snlad.models import build_model
    from snlad.runs.trained import TrainedModel, build_scorer

    for name in ("fd", "snl-fd", "rd", "snl-rd"):
        config = preset(name)
        model = build_model(config.model).cuda()
        trained = TrainedModel(config, model, build_scorer(config, model), ["x"]).eval()
        fast = optimise_for_inference(trained)
        for batch in (16, 64):
            x = torch.rand(batch, 3, 256, 256, device="cuda")
            row = {"check": "inference", "model": name, "batch": batch}
            with torch.inference_mode():
                for label, t in (("before", trained), ("after", fast)):
                    fn = lambda t=t, x=x: t.scorer(*t.model(x))  # noqa: E731
                    for _ in range(3):
                        fn()
                    torch.cuda.synchronize()
                    times = []
                    for _ in range(10):
                        started = time.perf_counter()
                        fn()
                        torch.cuda.synchronize()
                        times.append(time.perf_counter() - started)
                    row[f"{label}_images_per_s"] = batch / statistics.median(times)
                row["parity"] = float(
                    (trained.scorer(*trained.model(x))[0] - fast.scorer(*fast.model(x))[0]).abs().max()
                )
            report(**row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU")
    report(check="device", name=torch.cuda.get_device_name(), torch=torch.__version__)
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu-check-"))
    for check in (check_inference, lambda: check_training(out), lambda: check_distributed_path(out)):
        try:
            check()
        except Exception as error:  # report every check, even after one fails
            report(check="failed", error=f"{type(error).__name__}: {error}"[:2000])


if __name__ == "__main__":
    main()
