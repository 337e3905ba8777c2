"""Memory of a long ``snlad predict``: RSS over 2,000+ images with corrupt files mixed in.

Generates N small PNGs (default 2,000 at 128 x 128, so a leaked float32 map
would cost 64 KB per image, 125 MB per 2,000) plus a few corrupt files (empty,
truncated, text), builds a run (snl-fd, 64 px, pretrained teacher, untrained
student: memory does not depend on the weights) and runs ``snlad predict`` on
the folder in a fresh child process, sampling the resident memory of the
process and of its DataLoader worker after every batch. Writes
docs/results/bench-predict-memory.md (and .json).

    python bench/bench_predict_memory.py [--quick] [--images 2000] [--side 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import contextlib, io, json, resource, sys, time
import snlad.engine.predict as predict_module
from snlad.cli import main

def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024

def children():
    pids = []
    for task in __import__("os").listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as handle:
            pids += [int(pid) for pid in handle.read().split()]
    return pids

def worker_rss():
    total = 0.0
    for pid in children():
        try:
            total += rss_mb(pid)
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            pass
    return total

samples = []
original = predict_module.infer

def traced(*args, **kwargs):
    done = 0
    for batch, maps, scores in original(*args, **kwargs):
        done += len(batch.get("path", [])) + len(batch["failed"])
        yield batch, maps, scores  # resumes once predict has written this batch's files
        samples.append((done, rss_mb("self"), worker_rss()))

predict_module.infer = traced
err = io.StringIO()
started = time.perf_counter()
with contextlib.redirect_stderr(err):
    code = main(["--quiet", "predict", sys.argv[1], "--run", sys.argv[2], "--out", sys.argv[3]])
seconds = time.perf_counter() - started
lines = err.getvalue().strip().splitlines()
print(json.dumps({
    "exit_code": code, "seconds": seconds, "samples": samples,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "skipped": [line.split(":", 1)[0].removeprefix("skipped ") for line in lines if line.startswith("skipped ")],
    "summary": lines[-1] if lines else "",
}))
"""


def make_images(folder: Path, count: int, side: int, corrupt: int) -> list[str]:
    """``count`` good PNGs and ``corrupt`` broken files spread among them; returns the broken names."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        coarse = rng.integers(40, 200, (side // 8, side // 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((side, side), Image.Resampling.BILINEAR).save(folder / f"img_{index:05d}.png")
    broken = []
    for k in range(corrupt):
        name = f"img_{(k + 1) * count // (corrupt + 1):05d}_broken.png"
        data = (folder / "img_00000.png").read_bytes()
        (folder / name).write_bytes([b"", data[: len(data) // 2], b"not an image"][k % 3])
        broken.append(name)
    return broken


def make_run(out: Path, size: int) -> None:
    from snlad.config import preset
    from snlad.models import build_model
    from snlad.runs.run import Run
    from snlad.runs.trained import TrainedModel, build_scorer

    config = preset("snl-fd")
    config.data.image_size = size
    config.data.categories = ["widget"]
    model = build_model(config.model)
    trained = TrainedModel(config, model, build_scorer(config, model), ["widget"])
    out.mkdir(parents=True, exist_ok=True)
    trained.save(out / "model.pt")
    Run(out).write_index("multi-class", ["widget"])


def at_fraction(samples: list, fraction: float) -> list:
    total = samples[-1][0]
    return next(sample for sample in samples if sample[0] >= fraction * total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 images, written to a temp folder")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--side", type=int, default=128, help="side of the generated images (px)")
    parser.add_argument("--corrupt", type=int, default=12)
    parser.add_argument("--size", type=int, default=64, help="model input size (px)")
    parser.add_argument("--out", help="output folder (default docs/results; --quick: a temp folder)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.corrupt = 200, 3
    out = Path(args.out or (tempfile.mkdtemp(prefix="bench-predict-") if args.quick else ROOT / "docs" / "results"))
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        broken = make_images(base / "images", args.images, args.side, args.corrupt)
        make_run(base / "run", args.size)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a shared 2-core machine
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(base / "images"), str(base / "run"), str(base / "pred")],
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        written = {sub: len(list((base / "pred" / sub).iterdir())) for sub in ("maps", "overlays")}
    samples = result["samples"]
    points = [(fraction, at_fraction(samples, fraction)) for fraction in (0.05, 0.25, 0.5, 0.75, 1.0)]
    first, last = points[0][1], points[-1][1]
    growth = last[1] - first[1]
    per_1000 = growth / max(last[0] - first[0], 1) * 1000
    leak_mb = args.images * args.side * args.side * 4 / 2**20
    lines = [
        "# Memory of a long `snlad predict`",
        "",
        f"`snlad predict` on one folder of {args.images} generated {args.side} x {args.side} PNGs with {args.corrupt} corrupt files "
        f"mixed in (empty, truncated, text), one snl-fd model (efficientnet_lite0, {args.size} px, batch 8, 1 DataLoader worker, "
        "1 torch thread), in a fresh process. Resident memory (RSS) sampled after every batch, once its maps and overlays "
        f"were written. Load average before / after: {', '.join(f'{v:.1f}' for v in load)} / {', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
        "| files done | main process RSS (MB) | worker RSS (MB) |",
        "|---|---|---|",
    ]
    lines += [f"| {sample[0]} ({fraction:.0%}) | {sample[1]:.0f} | {sample[2]:.0f} |" for fraction, sample in points]
    lines += [
        "",
        f"From 5 % to the end the main process grows {growth:+.1f} MB ({per_1000:+.2f} MB per 1,000 images); keeping every "
        f"anomaly map at its original size would have added about {leak_mb:.0f} MB. Peak RSS {result['peak_rss_mb']:.0f} MB.",
        f"Time {result['seconds']:.0f} s ({args.images / result['seconds']:.0f} images/s). Exit code {result['exit_code']} "
        f"(3 = some files skipped, the rest scored); {len(result['skipped'])} files reported as skipped "
        f"({'all' if sorted(Path(p).name for p in result['skipped']) == sorted(broken) else 'NOT all'} of the corrupt ones); "
        f"{written['maps']} maps and {written['overlays']} overlays written. Last stderr line: `{result['summary']}`.",
        "",
        "What stays in memory by design: one score row and one output name per image (a few hundred bytes each) and "
        "the list of skipped files; maps and overlays are written as each batch is scored and then dropped.",
    ]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-predict-memory.md").write_text(text)
    (out / "bench-predict-memory.json").write_text(
        json.dumps({**result, "images": args.images, "side": args.side, "broken": broken}, indent=2)
    )
    print(text)


if __name__ == "__main__":
    main()
