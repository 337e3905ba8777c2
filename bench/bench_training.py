"""Training speed of the levers, each on and off, and of RD4AD-style ResNet18 training, on real images.

Every variant trains for two epochs on the same subset of the training images
(the first K per category of ``--data``, 256 px) in its own process, so
memory and threads start clean; epoch 1 fills the caches, epoch 2 is the
steady state every later epoch runs at. Variants (SNL-FD, the default model):

- ``before``: the pipeline before the levers (every image decoded every epoch
  by one worker, the teacher run every step, float32, batch 8);
- ``+image cache``: decoded, resized images kept in memory (``data.cache_mb``);
- ``+teacher cache``: and the teacher's features kept from epoch 1 on (``train.teacher_cache_mb``);
- ``+bf16``, ``batch 16``, ``1 thread``: the same with one setting changed.

References: snlad's RD with a ResNet18 teacher (random weights: cost only)
and, with ``--rd4ad PATH`` (a checkout of github.com/hq-deng/RD4AD; its code is
imported from there, never copied), the official training step: ResNet18
encoder (gradients tracked, as its main.py does), bottleneck and de_resnet18
decoder, its loss, Adam, batch 16.

    python bench/bench_training.py --data ../shared/data/realad [--rd4ad /path/to/RD4AD] [--per-category 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "before": ["data.cache_mb=0", "train.teacher_cache_mb=0", "data.num_workers=1"],
    "+image cache": ["train.teacher_cache_mb=0"],
    "+teacher cache": [],
    "+teacher cache, bf16": ["train.amp=bf16"],
    "+teacher cache, batch 16": ["train.batch_size=16"],
    "+teacher cache, 1 thread": ["@threads=1"],
}

CHILD = r"""
import json, resource, sys, time, torch
from pathlib import Path
from snlad import api
from snlad.data import index_dataset
from snlad.engine.distributed import DistContext
from snlad.runs.run import ModelDir
from snlad.engine.train import fit
from snlad.models import build_model
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
config = api.resolve_config(model=args["model"], overrides=["train.epochs=2", "data.holdout_fraction=0", *args["settings"]])
samples = [s for s in index_dataset(args["data"], "train") if s.image.stem in set(args["stems"].get(s.category, []))]
torch.manual_seed(0)
model = build_model(config.model, pretrained_teacher=args["model_teacher_pretrained"]).to(memory_format=torch.channels_last)
folder = ModelDir(Path(args["out"]))
folder.path.mkdir(parents=True, exist_ok=True)
started = time.perf_counter()
fit(model, samples, config, folder, None, context=DistContext())
rows = (folder.train_log).read_text().splitlines()
header = rows[0].split(",")
epochs = [dict(zip(header, map(float, row.split(",")))) for row in rows[1:]]
print(json.dumps({"images": len(samples), "epoch_s": [e["seconds"] for e in epochs], "images_per_s": [e["images_per_s"] for e in epochs],
                  "wall_s": time.perf_counter() - started, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

RD4AD_CHILD = r"""
import json, resource, sys, time, torch
args = json.loads(sys.argv[1])
sys.path.insert(0, args["rd4ad"])
torch.set_num_threads(args["threads"])
from resnet import resnet18
from de_resnet import de_resnet18
torch.manual_seed(0)
encoder, bn = resnet18(pretrained=False)
decoder = de_resnet18(pretrained=False)
encoder.eval()
optimizer = torch.optim.Adam(list(decoder.parameters()) + list(bn.parameters()), lr=0.005, betas=(0.5, 0.999))
cos = torch.nn.CosineSimilarity()
def loss_function(a, b):  # RD4AD main.py's loss_fucntion: 1 - cos of the flattened maps per level
    return sum(torch.mean(1 - cos(x.view(x.shape[0], -1), y.view(y.shape[0], -1))) for x, y in zip(a, b))
images = torch.rand(args["batch"], 3, 256, 256)
times = []
for step in range(args["steps"] + 2):
    start = time.perf_counter()
    bn.train(); decoder.train()
    inputs = encoder(images)
    outputs = decoder(bn(inputs))
    loss = loss_function(inputs, outputs)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    if step >= 2:
        times.append(time.perf_counter() - start)
times.sort()
print(json.dumps({"images_per_s": args["batch"] / times[len(times) // 2], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def subset(data: Path, per_category: int) -> dict[str, list[str]]:
    sys.path.insert(0, str(ROOT / "src"))
    from snlad.data import index_dataset

    stems: dict[str, list[str]] = {}
    for sample in index_dataset(data, "train"):
        if len(stems.setdefault(sample.category, [])) < per_category:
            stems[sample.category].append(sample.image.stem)
    return stems


def run_variant(
    model: str, settings: list[str], threads: int, data: Path, stems: dict, out: Path, pretrained: bool = True
) -> dict:
    args = {
        "model": model,
        "settings": [s for s in settings if not s.startswith("@")],
        "threads": threads,
        "data": str(data),
        "stems": stems,
        "out": str(out),
        "model_teacher_pretrained": pretrained,
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_rd4ad(path: Path, threads: int, batch: int = 16, steps: int = 5) -> dict:
    args = {"rd4ad": str(path), "threads": threads, "batch": batch, "steps": steps}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [sys.executable, "-c", RD4AD_CHILD, json.dumps(args)], capture_output=True, text=True, env=env
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--per-category", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rd4ad", type=Path, help="a checkout of github.com/hq-deng/RD4AD, timed too")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "bench-training.md")
    parser.add_argument("--only", help="comma-separated variant names")
    args = parser.parse_args()
    stems = subset(args.data, args.per_category)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        wanted = [v for v in VARIANTS if not args.only or v in args.only.split(",")]
        for name in wanted:
            settings = VARIANTS[name]
            threads = int(next((s.split("=")[1] for s in settings if s.startswith("@threads=")), args.threads))
            result = run_variant("snl-fd", settings, threads, args.data, stems, Path(folder) / name.replace(" ", "_"))
            rows.append({"model": "snl-fd", "variant": name, "threads": threads, **result})
            print(json.dumps(rows[-1]), flush=True)
        for model in ("fd", "rd", "snl-rd"):
            result = run_variant(model, [], args.threads, args.data, stems, Path(folder) / model)
            rows.append({"model": model, "variant": "+teacher cache", "threads": args.threads, **result})
            print(json.dumps(rows[-1]), flush=True)
        result = run_variant(
            "rd",
            ["model.teacher=resnet18", "train.batch_size=16", "data.cache_mb=0", "train.teacher_cache_mb=0"],
            args.threads,
            args.data,
            stems,
            Path(folder) / "rd18",
            pretrained=False,
        )
        rows.append(
            {
                "model": "rd (resnet18 teacher, snlad parts)",
                "variant": "before, batch 16",
                "threads": args.threads,
                **result,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    reference = run_rd4ad(args.rd4ad, args.threads) if args.rd4ad else None
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    images = rows[0]["images"]
    lines = [
        "# Training speed: the levers on and off (256 px, images/s)",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores; {args.threads} threads unless said; {images} real training images "
        f"(the first {args.per_category} per category of {args.data}), 2 epochs per variant, each in its own process. "
        f"Measured {time.strftime('%Y-%m-%d')}. Command: `python bench/bench_training.py --data {args.data}"
        + (" --rd4ad RD4AD" if args.rd4ad else "")
        + "`.",
        "",
        "| model | variant | threads | epoch 1 (img/s) | epoch 2 = later epochs (img/s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['variant']} | {row['threads']} | {row['images_per_s'][0]:.1f} | {row['images_per_s'][1]:.1f} | {row['peak_rss_mb']:.0f} |"
        )
    if reference:
        lines += [
            "",
            f"Official RD4AD training step (ResNet18 encoder + de_resnet18, batch 16, random weights, its main.py loop): "
            f"**{reference['images_per_s']:.1f} img/s** (peak RSS {reference['peak_rss_mb']:.0f} MB).",
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "rd4ad": reference, "machine": cpu}, indent=2))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
