"""Inference speed of two snlad source trees side by side: did a change (a refactor) make scoring slower?

Each tree is a ``src`` folder (e.g. a ``git worktree`` of an older commit and
this checkout). For every model, one child process per tree builds the model
(random student, real teacher, 256 px) and times the default ``snlad
test``/``predict`` path: ``optimise_for_inference`` then ``TrainedModel.score``
at batch 16 and batch 1. Trees are timed round-robin, several rounds, so that
load drifts hit both alike; the table gives medians over rounds and the ratio.
Maps of the two trees are compared on the same images (same seed).

    git worktree add /tmp/old <commit>
    python bench/bench_trees.py --tree old=/tmp/old/src --tree new=src --out docs/results/bench-trees.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = ("fd", "snl-fd", "rd", "snl-rd")

CHILD = r"""
import json, sys, time, statistics
import numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from snlad.config import preset
from snlad.models import build_model
try:  # trees with the folders of issue 20
    from snlad.runs.trained import TrainedModel, build_scorer
except ImportError:  # trees before them
    from snlad.engine.trained import TrainedModel, build_scorer
try:
    from snlad.engine.optimise import optimise_for_inference
    make_scorer = lambda config, model: build_scorer(config, model)
except ImportError:  # trees before the structural clean-up of issue 14
    from snlad.engine.fast import optimise_for_inference
    make_scorer = lambda config, model: build_scorer(config)
config = preset(sys.argv[1])
torch.manual_seed(0)
model = build_model(config.model)
fast = optimise_for_inference(TrainedModel(config, model, make_scorer(config, model), ["bench"]).eval())
generator = torch.Generator().manual_seed(1)
x16, x1 = torch.rand(16, 3, 256, 256, generator=generator), torch.rand(1, 3, 256, 256, generator=generator)
result = {}
with torch.inference_mode():
    for label, x, reps in (("batch16", x16, 5), ("batch1", x1, 20)):
        fast.score(x); fast.score(x)
        times = []
        for _ in range(reps):
            start = time.perf_counter(); fast.score(x); times.append(time.perf_counter() - start)
        result[label] = len(x) / statistics.median(times)
    maps = fast.score(x16[:2])[0].numpy()
np.save(sys.argv[2] + ".npy", maps)
print(json.dumps(result))
"""


def run_child(src: Path, model: str, threads: int, maps_path: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, model, maps_path, str(threads)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", action="append", required=True, metavar="NAME=SRC", help="a source tree to time (give two)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="Markdown file to write (a .json beside it)")
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.tree)
    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in MODELS:
            speeds: dict[str, dict[str, list[float]]] = {name: {"batch16": [], "batch1": []} for name in trees}
            for _ in range(args.rounds):
                for name, src in trees.items():
                    for key, value in run_child(Path(src).resolve(), model, args.threads, f"{folder}/{name}").items():
                        speeds[name][key].append(value)
            maps = [np.load(f"{folder}/{name}.npy") for name in trees]
            row = {"model": model, "max_map_difference": float(np.abs(maps[0] - maps[-1]).max())}
            for name in trees:
                for key in ("batch16", "batch1"):
                    row[f"{name}_{key}"] = statistics.median(speeds[name][key])
            rows.append(row)
            print(json.dumps(row), flush=True)
    names = list(trees)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    lines = [
        "# Inference speed of two source trees (images/s, default test/predict path)",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores. Trees: {', '.join(f'`{n}` = {trees[n]}' for n in names)}. {args.threads} threads, 256 px, EfficientNet-Lite0 teacher, "
        f"medians of {args.rounds} round-robin rounds (5 timed batches of 16 / 20 of 1 each). Command: "
        f"`python bench/bench_trees.py {' '.join(f'--tree {n}={trees[n]}' for n in names)} --threads {args.threads} "
        f"--rounds {args.rounds} --out {args.out}`.",
        "",
        "| model | "
        + " | ".join(f"{n} batch 16 | {n} batch 1" for n in names)
        + f" | {names[-1]}/{names[0]} batch 16 | batch 1 | max map difference |",
        "|" + "---|" * (2 * len(names) + 4),
    ]
    for row in rows:
        cells = [f"{row[f'{n}_{k}']:.1f}" for n in names for k in ("batch16", "batch1")]
        ratios = [f"{row[f'{names[-1]}_{k}'] / row[f'{names[0]}_{k}']:.2f}" for k in ("batch16", "batch1")]
        lines.append(f"| {row['model']} | " + " | ".join(cells + ratios) + f" | {row['max_map_difference']:.1e} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(
        json.dumps({"trees": trees, "threads": args.threads, "rows": rows}, indent=2)
    )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
