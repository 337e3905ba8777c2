"""Inference speed of the default test/predict path against a roofline and against the official RD4AD code.

Per model (EfficientNet-Lite0 teacher; and an RD with a ResNet18 teacher built
from snlad's own parts, random weights) in its own process: images/s of
``optimise_for_inference`` + ``TrainedModel.score`` (what ``snlad test`` and
``predict`` run) at batch 1 and 16, FLOPs per image (torch's flop counter)
and bytes moved per image (every leaf module's inputs, outputs and weights,
plus the scorer's features in and maps out: the traffic if nothing stayed
in cache). The roofline time of an image is the larger of FLOPs / matmul peak
and bytes / memory bandwidth, both measured in the same process (a 2048^2
float32 matmul; a 256 MB tensor copy, read + write); a model's roofline
fraction is that time over its measured time per image at batch 16.
Each model's process runs ``--rounds`` times (default 3), round-robin with
the others, and the medians are reported: the speed of one process on this
shared VM drifted by up to 1.5x between runs minutes apart.

With ``--rd4ad PATH`` (a checkout of github.com/hq-deng/RD4AD; imported from
there, never copied) the official path is timed too: its ResNet18 encoder, bn
and de_resnet18 decoder, then per image its ``cal_anomaly_map`` (taken from
its test.py) and ``scipy.ndimage.gaussian_filter(sigma=4)``, as its test loop does.

    python bench/bench_inference.py [--rd4ad /path/to/RD4AD] [--rounds 3] [--out docs/results/bench-inference.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "fd": [],
    "snl-fd": [],
    "rd": [],
    "snl-rd": [],
    "rd (resnet18 teacher)": ["model.teacher=resnet18"],
}

COMMON = r"""
import json, statistics, sys, time, torch
def matmul_peak(size=2048, repeats=10):
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter(); a @ b; best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best
def bandwidth(megabytes=256, repeats=5):
    x = torch.empty(megabytes * 2**20 // 4); y = torch.empty_like(x); y.copy_(x)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter(); y.copy_(x); best = max(best, 2 * x.numel() * 4 / (time.perf_counter() - start))
    return best
def speed(fn, batch, runs):
    fn(batch); fn(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter(); fn(batch); times.append(time.perf_counter() - start)
    return len(batch) / statistics.median(times)
"""

SNLAD_CHILD = (
    COMMON
    + r"""
from torch.utils.flop_counter import FlopCounterMode
from snlad import api
from snlad.engine.optimise import optimise_for_inference
from snlad.engine.trained import TrainedModel, build_scorer
from snlad.models import build_model
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
config = api.resolve_config(model=args["model"], overrides=args["settings"])
torch.manual_seed(0)
model = build_model(config.model, pretrained_teacher=config.model.teacher.startswith("efficientnet"))
fast = optimise_for_inference(TrainedModel(config, model, build_scorer(config, model), ["bench"]).eval())
x16, x1 = torch.rand(16, 3, 256, 256), torch.rand(1, 3, 256, 256)
moved = [0]
def count(module, inputs, output):
    tensors = [t for t in (*inputs, *(output if isinstance(output, (list, tuple)) else (output,))) if isinstance(t, torch.Tensor)]
    moved[0] += sum(t.numel() * t.element_size() for t in tensors) + sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))
leaves = [m for m in fast.model.modules() if not list(m.children())]
handles = [m.register_forward_hook(count) for m in leaves] + [fast.scorer.register_forward_hook(count)]
with torch.inference_mode():
    with FlopCounterMode(display=False) as counter:
        fast.score(x1)
    for handle in handles:
        handle.remove()
    peak, band = matmul_peak(), bandwidth()
    result = {"flops": counter.get_total_flops(), "bytes": moved[0], "matmul_flops_per_s": peak, "bytes_per_s": band,
              "batch16": speed(fast.score, x16, 20), "batch1": speed(fast.score, x1, 40)}
print(json.dumps(result))
"""
)

RD4AD_CHILD = (
    COMMON
    + r"""
import ast
import numpy as np
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
sys.path.insert(0, args["rd4ad"])
from resnet import resnet18
from de_resnet import de_resnet18
source = open(args["rd4ad"] + "/test.py").read()  # its cal_anomaly_map, run as it is
function = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "cal_anomaly_map")
namespace = {"np": np, "torch": torch, "F": F}
exec(compile(ast.Module([function], []), "RD4AD/test.py", "exec"), namespace)
cal_anomaly_map = namespace["cal_anomaly_map"]
torch.manual_seed(0)
encoder, bn = resnet18(pretrained=False)
decoder = de_resnet18(pretrained=False)
encoder.eval(); bn.eval(); decoder.eval()
def score(images):  # test.py: forward, then per image its map (amap_mode "a"), blur, max
    inputs = encoder(images)
    outputs = decoder(bn(inputs))
    scores = []
    for i in range(len(images)):
        anomaly_map, _ = cal_anomaly_map([o[i : i + 1] for o in inputs], [o[i : i + 1] for o in outputs], images.shape[-1], amap_mode="a")
        scores.append(np.max(gaussian_filter(anomaly_map, sigma=4)))
    return scores
with torch.no_grad():
    result = {"batch16": speed(score, torch.rand(16, 3, 256, 256), 10), "batch1": speed(score, torch.rand(1, 3, 256, 256), 30)}
print(json.dumps(result))
"""
)


def child(code: str, args: dict, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps({**args, "threads": threads})], capture_output=True, text=True, env=env
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rd4ad", type=Path, help="a checkout of github.com/hq-deng/RD4AD, timed too")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "bench-inference.md")
    parser.add_argument("--rounds", type=int, default=3, help="times each model's process runs, round-robin (medians)")
    args = parser.parse_args()
    rounds: dict[str, list[dict]] = {}
    for _ in range(args.rounds):  # round-robin: drift of a shared VM hits every model alike
        for name, settings in MODELS.items():
            model = name.split(" ")[0]
            rounds.setdefault(name, []).append(child(SNLAD_CHILD, {"model": model, "settings": settings}, args.threads))
            print(name, json.dumps(rounds[name][-1]), flush=True)
        if args.rd4ad:
            rounds.setdefault("RD4AD", []).append(child(RD4AD_CHILD, {"rd4ad": str(args.rd4ad)}, args.threads))
            print("RD4AD", json.dumps(rounds["RD4AD"][-1]), flush=True)
    rows = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in rounds.items()}
    reference = rows.pop("RD4AD", None)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    peak = statistics.median(r["matmul_flops_per_s"] for r in rows.values())
    band = statistics.median(r["bytes_per_s"] for r in rows.values())
    lines = [
        "# Inference: the default test/predict path, its roofline, and the official RD4AD code",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, {args.threads} threads; 256 px; measured {time.strftime('%Y-%m-%d')} with "
        f"`python bench/bench_inference.py{' --rd4ad RD4AD' if args.rd4ad else ''}`. Matmul peak {peak / 1e9:.0f} GFLOP/s, "
        f"copy bandwidth {band / 1e9:.1f} GB/s (medians over the models' processes). "
        f"Each model's process ran {args.rounds} times, round-robin with the others; the table shows medians, "
        "and the range of batch-16 speeds over those rounds.",
        "",
        "| model | batch 16 (img/s) | batch 16 range | batch 1 (img/s) | GFLOP / image | MB moved / image | roofline (img/s) | fraction of roofline |"
        + (" vs RD4AD at batch 16 |" if reference else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if reference else ""),
    ]
    for name, row in rows.items():
        bound = max(row["flops"] / row["matmul_flops_per_s"], row["bytes"] / row["bytes_per_s"])
        cells = [
            f"{row['batch16']:.1f}",
            f"{min(r['batch16'] for r in rounds[name]):.1f}-{max(r['batch16'] for r in rounds[name]):.1f}",
            f"{row['batch1']:.1f}",
            f"{row['flops'] / 1e9:.2f}",
            f"{row['bytes'] / 2**20:.0f}",
            f"{1 / bound:.1f}",
            f"{row['batch16'] * bound:.0%}",
        ]
        if reference:
            cells.append(f"{row['batch16'] / reference['batch16']:.1f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if reference:
        lines += [
            "",
            f"Official RD4AD (ResNet18 encoder, bn, de_resnet18, its cal_anomaly_map, gaussian_filter sigma 4, per image as its test.py): "
            f"**{reference['batch16']:.1f} img/s** at batch 16, {reference['batch1']:.1f} at batch 1.",
        ]
    lines += [
        "",
        f"SNL / baseline at batch 16: SNL-FD {rows['fd']['batch16'] / rows['snl-fd']['batch16']:.2f}x the time of FD, "
        f"SNL-RD {rows['rd']['batch16'] / rows['snl-rd']['batch16']:.2f}x the time of RD.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {"rows": rows, "rd4ad": reference, "rounds": rounds, "machine": cpu, "threads": args.threads}, indent=2
        )
    )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
