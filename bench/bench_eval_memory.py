"""Peak memory of evaluation (``snlad test``) at 1x and 10x the test images.

Builds a data root in a temp folder from the demo's test images and masks
(every category), once as they are and once with each image and mask copied
10 times under new names, then runs the ordinary evaluation of one multi-class
snl-fd model (pretrained teacher, untrained student: memory does not depend on
the weights) on each, in a fresh child process, and reports its peak RSS and
time. Evaluation keeps per-image scores only; maps stream through the
disk-backed PixelMetricAccumulator, so the peak should barely grow with the
number of images. Writes docs/results/bench-eval-memory.md (and .json).

    python bench/bench_eval_memory.py [--quick] [--scales 1,10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"


def make_root(out: Path, copies: int) -> int:
    """MVTec-layout root with every demo test image (and mask) ``copies`` times; returns the image count."""
    from snlad.data import index_dataset

    count = 0
    for sample in index_dataset(DEMO, "test"):
        folder = out / sample.category / "test" / sample.image.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        (out / sample.category / "train" / "good").mkdir(parents=True, exist_ok=True)
        for k in range(copies):
            stem = f"{sample.image.stem}_{k:03d}"
            shutil.copyfile(sample.image, folder / f"{stem}{sample.image.suffix}")
            if sample.mask is not None:
                masks = out / sample.category / "ground_truth" / sample.image.parent.name
                masks.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(sample.mask, masks / f"{stem}_mask{sample.mask.suffix}")
            count += 1
    return count


def make_run(out: Path, size: int) -> None:
    from snlad.config import preset
    from snlad.data import list_categories
    from snlad.models import build_model
    from snlad.runs.run import Run
    from snlad.runs.trained import TrainedModel, build_scorer

    config = preset("snl-fd")
    config.data.image_size = size
    categories = list_categories(DEMO)
    config.data.categories = categories
    model = build_model(config.model)
    trained = TrainedModel(config, model, build_scorer(config, model), categories)
    out.mkdir(parents=True, exist_ok=True)
    trained.save(out / "model.pt")
    Run(out).write_index("multi-class", categories)


CHILD = """
import json, resource, sys, time
from snlad import api
started = time.perf_counter()
metrics = api.test(run=sys.argv[1], data=sys.argv[2], scoring=api.ScoringOptions(batch_size=8))
print(json.dumps({"seconds": time.perf_counter() - started, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "mean_image_auroc": metrics["mean"]["image_auroc"]}))
"""

BASELINE = """
import json, resource, sys
from snlad.engine.optimise import optimise_run
from snlad.runs.run import load_run
models = optimise_run(load_run(sys.argv[1]))
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_python(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 px, scales 1 and 2, to a temp folder")
    parser.add_argument("--scales", default="1,10")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", help="output folder (default docs/results; --quick: a temp folder)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.quick:
        args.size, args.scales = 64, "1,2"
    out = Path(args.out or (tempfile.mkdtemp(prefix="bench-eval-") if args.quick else ROOT / "docs" / "results"))
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        make_run(Path(folder) / "run", args.size)
        baseline = run_python(BASELINE, str(Path(folder) / "run"))
        for scale in (int(s) for s in args.scales.split(",")):
            root = Path(folder) / f"data{scale}"
            images = make_root(root, scale)
            result = run_python(CHILD, str(Path(folder) / "run"), str(root))
            rows.append({"scale": scale, "images": images, **result})
            print(
                f"{scale}x ({images} images): peak RSS {result['peak_rss_mb']:.0f} MB, {result['seconds']:.1f} s",
                flush=True,
            )
            shutil.rmtree(root)
    lines = [
        "# Peak memory of evaluation vs number of test images",
        "",
        f"`snlad test` of one multi-class snl-fd model (efficientnet_lite0, {args.size} px, batch 8) on the demo's test images "
        "(all categories) and on 10 copies of each (new file names, same pixels). Each evaluation runs in a fresh process; "
        f"peak RSS is that process's. Loading the model alone (imports, weights, optimised copy) peaks at {baseline['peak_rss_mb']:.0f} MB. "
        f"Torch threads: {os.environ.get('OMP_NUM_THREADS', 'default (one per core)')} (OMP_NUM_THREADS); data.num_workers=1. "
        f"Load average before / after: {', '.join(f'{v:.1f}' for v in load)} / {', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
        "| test images | scale | peak RSS (MB) | above model loading (MB) | time (s) | images/s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['images']} | {r['scale']}x | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - baseline['peak_rss_mb']:.0f} | {r['seconds']:.1f} | {r['images'] / r['seconds']:.1f} |"
        for r in rows
    ]
    if len(rows) > 1:
        lines += [
            "",
            f"Peak RSS grows {rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}x for {rows[-1]['images'] / rows[0]['images']:.0f}x the images.",
        ]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-eval-memory.md").write_text(text)
    (out / "bench-eval-memory.json").write_text(json.dumps({"baseline": baseline, "rows": rows}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
