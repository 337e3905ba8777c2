"""Cost of SNL's affinity terms against how they are computed, at 256 px.

For ``loss.affinity_mode=pooled`` with ``loss.affinity_size`` 8, 16 (default),
32 and 64 (= the full stride-4 grid of a 256 px image, N = 4096 positions), and
``affinity_mode=local`` with windows 5, 7 and 9 (every level at its own
resolution), time and memory per batch of
(a) the intra + inter affinity losses, forward and backward, and (b) the
structural anomaly map (inference). Features have EfficientNet-Lite0's shapes
(24 x 64 x 64, 40 x 32 x 32, 112 x 16 x 16) and the training batch size (8).
Each measurement runs in a fresh child process so its peak RSS is its own.
Writes docs/results/bench-affinity.md (and .json).

    python bench/bench_affinity.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("pooled:8", "pooled:16", "pooled:32", "pooled:64", "local:5", "local:7", "local:9")
LEVELS = ((24, 64), (40, 32), (112, 16))  # EfficientNet-Lite0 (channels, side) at 256 px


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settings_of(variant: str):
    """``pooled:S`` or ``local:K`` -> the LossConfig computing affinities that way."""
    from snlad.config import LossConfig

    mode, value = variant.split(":")
    if mode == "local":
        return LossConfig(affinity_mode="local", affinity_window=int(value), affinity_distance="l2")
    return LossConfig(affinity_size=int(value), affinity_distance="l2")


def child(kind: str, variant: str, batch: int, runs: int, threads: int) -> dict:
    from snlad.config import MapConfig
    from snlad.device import use_all_cores
    from snlad.losses.distillation import inter_affinity_loss, intra_affinity_loss
    from snlad.scoring.maps import structural_distance

    use_all_cores() if threads == 0 else torch.set_num_threads(threads)
    settings = settings_of(variant)
    map_settings = MapConfig(
        affinity_mode=settings.affinity_mode,
        affinity_size=settings.affinity_size,
        affinity_window=settings.affinity_window,
    )
    torch.manual_seed(0)
    teacher = [torch.randn(batch, c, s, s) for c, s in LEVELS]
    student = [(t + 0.3 * torch.randn_like(t)).requires_grad_(kind == "loss") for t in teacher]
    if kind == "loss":

        def op() -> None:
            loss = sum(
                intra_affinity_loss(t, s, settings) + inter_affinity_loss(t, s, settings)
                for t, s in zip(teacher, student)
            )
            loss.backward()
    else:

        def op() -> None:
            with torch.inference_mode():
                for t, s in zip(teacher, student):
                    structural_distance(t, s.detach(), map_settings)

    before = rss_mb()
    times = []
    for _ in range(runs + 1):  # the first run is the warm-up
        started = time.perf_counter()
        op()
        times.append(time.perf_counter() - started)
    local = settings.affinity_mode == "local"
    positions = [side**2 if local else min(side, settings.affinity_size) ** 2 for _, side in LEVELS]
    pairs = [n * settings.affinity_window**2 if local else n * n for n in positions]
    return {
        "kind": kind,
        "variant": variant,
        "batch": batch,
        "positions": positions,
        "threads": torch.get_num_threads(),
        "seconds": statistics.median(times[1:]),
        "peak_extra_mb": rss_mb() - before,
        "one_matrix_mb": batch * max(pairs) * 4 / 2**20,  # the largest float32 affinity of one level, whole batch
    }


def markdown(rows: list[dict], load: tuple, load_after: tuple, cpu: str) -> str:
    by = {(r["kind"], r["variant"]): r for r in rows}
    lines = [
        "# Cost of the affinity terms: pooled grids and local windows (256 px)",
        "",
        f"Machine: {cpu}, {len(os.sched_getaffinity(0))} cores; torch {torch.__version__}. Load average before / after: "
        f"{', '.join(f'{v:.1f}' for v in load)} / {', '.join(f'{v:.1f}' for v in load_after)} (above the core count = other jobs were running).",
        "",
        f"Batch {rows[0]['batch']}, EfficientNet-Lite0 feature shapes, {rows[0]['threads']} torch thread(s); median of the timed runs after one warm-up. "
        "*loss* = intra + inter affinity losses over the three levels, forward + backward; *map* = the structural anomaly "
        "distance of the three levels (inference). Peak extra RSS = growth of the process's peak resident memory during the runs. "
        "N = positions per level (stride 4, 8, 16): after pooling for pooled:S (S = 64 is the full stride-4 grid of a 256 px image), "
        "native for local:K, where each position meets its K x K window (K^2 N pairs instead of N^2).",
        "",
        "| variant | N per level | largest affinity, batch (MB) | loss time (s) | loss peak extra RSS (MB) | map time (s) | map peak extra RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        loss, smap = by[("loss", variant)], by[("map", variant)]
        lines.append(
            f"| {variant} | {' / '.join(map(str, loss['positions']))} | {loss['one_matrix_mb']:.1f} | {loss['seconds']:.3f} | "
            f"{loss['peak_extra_mb']:.0f} | {smap['seconds']:.3f} | {smap['peak_extra_mb']:.0f} |"
        )
    base = by.get(("loss", "pooled:16"))
    if base:
        lines += [
            "",
            "Loss time relative to the default (pooled:16): "
            + ", ".join(
                f"{variant} {by[('loss', variant)]['seconds'] / base['seconds']:.1f}x"
                for variant in dict.fromkeys(r["variant"] for r in rows)
            ),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: pooled:8 and local:5, batch 2, 2 runs, to a temp folder"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = every core available)")
    parser.add_argument("--out", help="output folder (default docs/results; --quick: a temp folder)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "VARIANT"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.child:
        Path(args.json).write_text(json.dumps(child(args.child[0], args.child[1], args.batch, args.runs, args.threads)))
        return
    variants = ("pooled:8", "local:5") if args.quick else VARIANTS
    if args.quick:
        args.batch, args.runs = 2, 2
    out = Path(args.out or (tempfile.mkdtemp(prefix="bench-affinity-") if args.quick else ROOT / "docs" / "results"))
    load = os.getloadavg()
    rows = []
    for variant in variants:
        for kind in ("loss", "map"):
            with tempfile.NamedTemporaryFile(suffix=".json") as result:
                command = [
                    sys.executable,
                    __file__,
                    "--child",
                    kind,
                    variant,
                    "--batch",
                    str(args.batch),
                    "--runs",
                    str(args.runs),
                    "--threads",
                    str(args.threads),
                    "--json",
                    result.name,
                ]
                subprocess.run(command, check=True)
                rows.append(json.loads(Path(result.name).read_text()))
            print(f"{variant} {kind}: {rows[-1]['seconds']:.3f} s, +{rows[-1]['peak_extra_mb']:.0f} MB", flush=True)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name:")
        ),
        "unknown",
    )
    text = markdown(rows, load, os.getloadavg(), cpu)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-affinity.md").write_text(text)
    (out / "bench-affinity.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
