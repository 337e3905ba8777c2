"""Cut-paste probe (paper Fig. 2, right): is another class's content, pasted in, found?

A square cut from a defect-free test image of the source category is pasted at
a random place onto a defect-free test image of the target category; its
ground truth is exactly the pasted square. Each run scores these synthetic
anomalies and the unmodified target normals with the model serving the target
category, and is measured by image AUROC, pixel AUROC and AUPRO
(:mod:`snlad.scoring.metrics`). Cross-class interference shows as a pasted region the
student reproduces well, i.e. low scores inside the square.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from snlad.data.synthesis import PATCH_FRACTION, Paste, check_patch_fraction, paste_all, paste_plan
from snlad.engine.inference import score_tensors
from snlad.errors import SnladError
from snlad.files import write_json
from snlad.probes.common import ImageCache, good_test_samples, run_columns, write_rows
from snlad.runs.runset import LabelledRun, load_runs
from snlad.scoring.metrics import image_metrics, pixel_metrics
from snlad.visualisation import plots, render

METRICS = ("image_auroc", "pixel_auroc", "aupro")


@dataclass(frozen=True)
class CutPasteSettings:
    source: str
    targets: tuple[str, ...]
    patch_size: float = PATCH_FRACTION  # of the image side
    count: int = 40  # synthetic anomalies per target; target normals are used in turn
    seed: int = 0
    batch_size: int = 8
    examples: int = 4  # rows of the example figure


@dataclass
class CutPasteResult:
    """One run on one target: every map and score (normals first), masks, and the metrics."""

    maps: torch.Tensor
    scores: torch.Tensor
    masks: torch.Tensor
    labels: np.ndarray
    metrics: dict[str, float]


def plan_for(settings: CutPasteSettings, target: str, cache: ImageCache) -> list[Paste]:
    """A target's pastes depend only on the seed and its name, not on the other targets given."""
    rng = np.random.default_rng([settings.seed, zlib.crc32(target.encode("utf-8"))])
    counts = len(cache.samples[target]), len(cache.samples[settings.source])
    return paste_plan(*counts, settings.count, settings.patch_size, rng)


def synthesise(
    cache: ImageCache, settings: CutPasteSettings, target: str, plan: Sequence[Paste], size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The planned anomalies at ``size``: images N x 3 x S x S and masks N x S x S."""
    return paste_all(cache.images(target, size), cache.images(settings.source, size), plan, settings.patch_size)


def score_run(
    run: LabelledRun, cache: ImageCache, settings: CutPasteSettings, target: str, plan: Sequence[Paste]
) -> CutPasteResult:
    trained = run.model_for(target)
    size = trained.config.data.image_size
    normals = cache.images(target, size)
    anomalies, pasted = synthesise(cache, settings, target, plan, size)
    maps, scores = score_tensors(trained, torch.cat([normals, anomalies]), settings.batch_size)
    masks = torch.cat([torch.zeros(len(normals), size, size, dtype=torch.bool), pasted])
    labels = np.r_[np.zeros(len(normals)), np.ones(len(anomalies))]
    metrics = {**image_metrics(scores.numpy(), labels), **pixel_metrics(maps.numpy(), masks.numpy())}
    return CutPasteResult(maps, scores, masks, labels, {name: metrics[name] for name in METRICS})


def run_cutpaste(
    run_dirs: Sequence[str | Path], data_root: str | Path, settings: CutPasteSettings, out_dir: str | Path
) -> list[dict]:
    """Score every run on every target; write cutpaste.csv, cutpaste.json and the figures."""
    check_patch_fraction(settings.patch_size)
    if not settings.targets or settings.source in settings.targets:
        raise SnladError("cut-paste needs target categories (--target) other than the source (--source)")
    out_dir = Path(out_dir)
    runs = load_runs(run_dirs)
    cache = ImageCache({c: good_test_samples(data_root, c) for c in (settings.source, *settings.targets)})
    rows = []
    for target in settings.targets:
        plan = plan_for(settings, target, cache)
        results = {run.label: score_run(run, cache, settings, target, plan) for run in runs}
        rows += [_row(run, results[run.label], settings, target) for run in runs]
        _example_grid(runs, results, cache, settings, target, plan, out_dir / f"cutpaste_examples_{target}.png")
    write_rows(out_dir / "cutpaste.csv", rows)
    write_json(
        out_dir / "cutpaste.json", {"probe": "cut-paste", "data": str(data_root), **settings.__dict__, "rows": rows}
    )
    _metric_figure(rows, settings, out_dir / "cutpaste_metrics.png")
    return rows


def _row(run: LabelledRun, result: CutPasteResult, settings: CutPasteSettings, target: str) -> dict:
    return {
        **run_columns(run),
        "source": settings.source,
        "target": target,
        "patch_size": settings.patch_size,
        "n_normal": int(np.sum(result.labels == 0)),
        "n_synthetic": int(np.sum(result.labels == 1)),
        **result.metrics,
    }


def _metric_figure(rows: Sequence[dict], settings: CutPasteSettings, path: Path) -> None:
    runs = list(dict.fromkeys(row["run"] for row in rows))
    panels = {}
    for target in settings.targets:
        by_run = {row["run"]: row for row in rows if row["target"] == target}
        series = {name: ([by_run[r][name] for r in runs], None) for name in METRICS}
        panels[f"{settings.source} pasted on {target}"] = (runs, series)
    plots.bar_panels(panels, path, f"cut-paste, patch {settings.patch_size:g} of the side", "score")


def _example_grid(
    runs: Sequence[LabelledRun],
    results: dict[str, CutPasteResult],
    cache: ImageCache,
    settings: CutPasteSettings,
    target: str,
    plan: Sequence[Paste],
    path: Path,
) -> None:
    """Rows: the first synthetic anomalies; columns: image, ground truth, each run's map."""
    shown = plan[: settings.examples]
    size = runs[0].first.config.data.image_size
    images, masks = synthesise(cache, settings, target, shown, size)
    rows = [[render.to_uint8(image), render.mask_to_rgb(mask)] for image, mask in zip(images, masks)]
    for run in runs:
        result = results[run.label]
        first = int(np.sum(result.labels == 0))  # anomalies follow the normals
        maps = result.maps[first : first + len(shown)].numpy()
        run_images, _ = synthesise(cache, settings, target, shown, run.first.config.data.image_size)
        for row, image, anomaly_map in zip(rows, run_images, maps):
            row.append(
                render.overlay(
                    render.to_uint8(image), anomaly_map, render.ColourScale(float(maps.min()), float(maps.max()))
                )
            )
    titles = [f"{target} #{p.target} + {settings.source} #{p.source}" for p in shown]
    plots.image_grid(
        rows,
        titles,
        ["image", "ground truth", *(run.label for run in runs)],
        path,
        f"{settings.source} patches pasted on {target}",
    )
