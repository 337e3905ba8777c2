"""What PatchCore costs: patch features, coreset selection, nearest-neighbour search, bank memory.

On the training images of ``--data`` (default the ten-category realad) at
``--size`` px, the way ``snlad train --model patchcore`` builds its bank (10 %
held out, the rest's stride-8 patches): times (1) the teacher's patch features,
(2) the greedy k-centre coreset of ``--fraction`` of them, (3) the exhaustive
search of one batch of 8 images' patches against that bank, and reports the
bank's memory and the process's peak RSS. From the measured rates it projects
how a bank grows with the training set (patches per image x images x fraction)
and what selection and search then cost. One thread (``--threads``), as the
project runs beside other jobs. Writes docs/results/bench-patchcore.md (and .json).

    python bench/bench_patchcore.py [--data ROOT] [--fraction 0.1] [--patches N]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from snlad.config import load_config
from snlad.data import AnomalyDataset, holdout_split, index_dataset
from snlad.engine.memory_bank import training_patches
from snlad.models import build_model
from snlad.models.coreset import coreset_size, greedy_coreset
from snlad.models.patchcore import SEARCH_CHUNK_ELEMENTS

ROOT = Path(__file__).resolve().parents[1]
PROJECTED_IMAGES = (1_000, 5_000, 10_000)  # training-set sizes the growth table projects to
PROJECTED_FRACTIONS = (0.1, 0.01)  # the default coreset and the paper's cheapest setting


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    config = load_config("patchcore", overrides=[f"data.image_size={args.size}", "data.num_workers=0"])
    samples, _ = holdout_split(index_dataset(args.data, "train", None), config.data.holdout_fraction, 0)
    model = build_model(config.model).eval()
    started = time.perf_counter()
    loader = DataLoader(AnomalyDataset(samples, args.size), batch_size=config.train.batch_size)
    features = training_patches(model, loader, args.size, lambda: False)
    feature_seconds = time.perf_counter() - started
    if args.patches and args.patches < len(features):  # a quicker run on a random subset of the patches
        chosen = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))[: args.patches]
        features = features[chosen]
    count = coreset_size(len(features), args.fraction)
    started = time.perf_counter()
    kept = greedy_coreset(features, args.fraction, config.model.coreset_projection, seed=0)
    coreset_seconds = time.perf_counter() - started
    model.set_bank(features[kept])
    side = model.teacher.level_sides(args.size)[1]
    queries = features[: 8 * side * side].view(8, side, side, -1).permute(0, 3, 1, 2)  # 8 images' patches
    with torch.inference_mode():
        model.nearest(queries)  # warm-up
        started = time.perf_counter()
        for _ in range(args.repeats):
            model.nearest(queries)
    search_seconds = (time.perf_counter() - started) / args.repeats / 8
    channels = features.shape[1]
    return {
        "data": str(args.data),
        "image_size": args.size,
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "training_images": len(samples),
        "patches_per_image": side * side,
        "channels": channels,
        "patches": len(features),
        "fraction": args.fraction,
        "bank": count,
        "bank_mib": count * channels * 4 / 2**20,
        "feature_seconds": feature_seconds,
        "coreset_seconds": coreset_seconds,
        "coreset_ns_per_patch_choice": 1e9 * coreset_seconds / (len(features) * count),
        "search_ms_per_image": 1e3 * search_seconds,
        "search_ns_per_query_row": 1e9 * search_seconds / (side * side * count),
        "search_chunk_mib": SEARCH_CHUNK_ELEMENTS * 4 / 2**20,
        "peak_rss_mib": peak_rss_mib(),
    }


def projection(result: dict, images: int, fraction: float) -> dict:
    """The bank, selection time and search time at ``images`` training images, from the measured per-operation rates."""
    patches = images * result["patches_per_image"]
    bank = coreset_size(patches, fraction)
    return {
        "images": images,
        "fraction": fraction,
        "patches": patches,
        "bank": bank,
        "bank_mib": bank * result["channels"] * 4 / 2**20,
        "features_mib": patches * result["channels"] * 4 / 2**20,
        "coreset_hours": result["coreset_ns_per_patch_choice"] * patches * bank / 1e9 / 3600,
        "search_s_per_image": result["search_ns_per_query_row"] * result["patches_per_image"] * bank / 1e9,
    }


def markdown(result: dict, projected: list[dict], command: str) -> str:
    r = result
    lines = [
        "# PatchCore cost: coreset selection, search, bank memory",
        "",
        f"`{command}` on {r['machine']}, {r['threads']} thread(s), {r['image_size']} px, EfficientNet-Lite0 teacher "
        "(the project's 2-core VM, shared with other jobs: times are indicative).",
        "",
        "| what | measured |",
        "|---|---|",
        f"| training images (10 % held out) | {r['training_images']:,} |",
        f"| patches (x {r['patches_per_image']} per image, {r['channels']} channels) | {r['patches']:,} |",
        f"| patch features | {r['feature_seconds']:.0f} s |",
        f"| coreset ({100 * r['fraction']:g} %: {r['bank']:,} patches) | {r['coreset_seconds']:.0f} s "
        f"({r['coreset_ns_per_patch_choice']:.2f} ns per patch and choice) |",
        f"| bank memory (float32) | {r['bank_mib']:.1f} MiB |",
        f"| search, per image ({r['patches_per_image']} queries against the bank) | {r['search_ms_per_image']:.0f} ms "
        f"({r['search_ns_per_query_row']:.3f} ns per query and bank row) |",
        f"| search working memory (bounded, any bank) | {r['search_chunk_mib']:.0f} MiB |",
        f"| peak RSS of this process | {r['peak_rss_mib']:.0f} MiB |",
        "",
        "How the bank grows: patches = images x patches per image, the bank is the coreset fraction of them, so",
        "bank memory and search time per image grow linearly with the training set, and the greedy selection",
        "(one pass over all patches per kept patch) quadratically. Projected from the rates above:",
        "",
        "| training images | patches | coreset | bank | bank memory | patch features held while selecting "
        "| coreset selection | search per image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {p['images']:,} | {p['patches']:,} | {100 * p['fraction']:g} % | {p['bank']:,} | {p['bank_mib']:.0f} MiB "
        f"| {p['features_mib']:.0f} MiB | {p['coreset_hours']:.1f} h | {p['search_s_per_image']:.2f} s |"
        for p in projected
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "realad")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--patches", type=int, default=0, help="select from a random subset of this many patches")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "bench-patchcore.md")
    args = parser.parse_args()
    result = measure(args)
    sizes = (result["training_images"], *PROJECTED_IMAGES)
    projected = [projection(result, images, fraction) for fraction in PROJECTED_FRACTIONS for images in sizes]
    command = "python bench/bench_patchcore.py " + " ".join(
        f"--{name} {value}" for name, value in (("fraction", args.fraction), ("patches", args.patches)) if value
    )
    text = markdown(result, projected, command.strip())
    print(text)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"measured": result, "projected": projected}, indent=2) + "\n")


if __name__ == "__main__":
    main()
