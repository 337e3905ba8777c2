"""Calibration: score held-back normals (or a labelled split) and set each category's decision thresholds.

The rules themselves are in :mod:`snlad.scoring.thresholds` (docs/thresholds.md).
Thresholds never come from the test images a run is reported on. Maps and
scores come from the inference-optimised model, the one that ``snlad
predict`` uses.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from snlad.config import Config
from snlad.data import AnomalyDataset, Sample, holdout_split, index_dataset, load_tensors
from snlad.data.synthesis import PATCH_FRACTION, paste_all, paste_plan
from snlad.engine.inference import infer
from snlad.engine.optimise import optimise_for_inference, optimise_run
from snlad.errors import SnladError, notice
from snlad.progress import bar
from snlad.runs.checkpoint import read_checkpoint, write_checkpoint
from snlad.runs.run import Run, known_categories
from snlad.runs.trained import TrainedModel
from snlad.scoring.thresholds import RULES, Rule, Scored, thresholds

SYNTHETIC_PER_NORMAL = 2  # cut-paste anomalies per held-out normal image
FEW_NORMALS = 10  # fewer held-out normals than this: the largest of them is a noisy threshold (said, not refused)


def score_samples(
    trained: TrainedModel, samples: Sequence[Sample], batch_size: int = 8, num_workers: int = 0
) -> Scored:
    """Maps and scores of ``samples`` at the model's resolution, with their labels and masks."""
    dataset = AnomalyDataset(samples, trained.config.data.image_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    parts = [
        (scores, batch["label"], maps, batch["mask"][:, 0] > 0.5, batch["has_mask"])
        for batch, maps, scores in infer(trained, loader, desc=None)
    ]
    return Scored(*(torch.cat(column).numpy() for column in zip(*parts)))


def synthetic_anomalies(trained: TrainedModel, normals: Sequence[Sample], seed: int, batch_size: int = 8) -> Scored:
    """Cut-paste anomalies made from held-out normals of one category, scored."""
    images = load_tensors(normals, trained.config.data.image_size)[0]
    rng = np.random.default_rng([seed % 2**32, zlib.crc32(normals[0].category.encode())])
    plan = paste_plan(len(normals), len(normals), SYNTHETIC_PER_NORMAL * len(normals), PATCH_FRACTION, rng)
    synthetic, masks = paste_all(images, images, plan, PATCH_FRACTION)
    batches = [{"image": chunk} for chunk in synthetic.split(batch_size)]
    maps, scores = zip(*[(m, s) for _, m, s in infer(trained, batches, desc=None)])
    return Scored(
        torch.cat(scores).numpy(),
        np.ones(len(plan), dtype=np.int64),
        torch.cat(maps).numpy(),
        masks.numpy(),
        np.ones(len(plan), dtype=bool),
    )


ANOMALIES: dict[str, Callable[[TrainedModel, Sequence[Sample], Scored, int], Scored | None]] = {
    "max": lambda trained, samples, scored, seed: None,
    "quantile": lambda trained, samples, scored, seed: None,
    "f1": lambda trained, samples, scored, seed: scored.subset(scored.labels != 0),  # the labelled defects
    "synthetic-f1": lambda trained, samples, scored, seed: synthetic_anomalies(
        trained, [sample for sample, label in zip(samples, scored.labels) if label == 0], seed
    ),
}
"""What each threshold rule (:data:`snlad.scoring.thresholds.RULES`) separates the normals from: nothing, or anomalous images."""
if set(ANOMALIES) != set(RULES):
    raise ImportError(f"ANOMALIES {sorted(ANOMALIES)} must serve the threshold rules {sorted(RULES)}")


def calibrate_category(trained: TrainedModel, samples: Sequence[Sample], rule: Rule, seed: int, source: str) -> dict:
    """Thresholds of one category from ``samples`` (normals, plus labelled defects for rule f1)."""
    scored = score_samples(trained, samples, num_workers=trained.config.data.num_workers)
    normal = scored.labels == 0
    if not normal.any():
        raise SnladError(f"category {samples[0].category}: the calibration images hold no normal image")
    normals = scored.subset(normal)
    anomalies = ANOMALIES[rule.name](trained, samples, scored, seed)
    result = {
        "rule": rule.name,
        "quantile": rule.quantile,
        "margin": rule.margin,
        "source": source,
        "normal_scores": normals.scores.tolist(),
        "anomalous_images": int(len(anomalies.scores)) if anomalies is not None else 0,
        # The typical normal pixel: the bottom of the overlays' colour scale (snlad.visualisation.render.calibrated_scale).
        "pixel_floor": float(np.median(normals.maps)),
        **thresholds(rule, normals, anomalies),
    }
    return result


def note_few_normals(results: dict[str, dict]) -> None:
    """One note naming the categories whose thresholds rest on fewer than :data:`FEW_NORMALS` normal images."""
    few = {
        category: len(result["normal_scores"])
        for category, result in results.items()
        if len(result["normal_scores"]) < FEW_NORMALS
    }
    if few:
        counts = ", ".join(f"{category} {count}" for category, count in few.items())
        notice(
            f"thresholds from fewer than {FEW_NORMALS} normal images ({counts}) are noisy; calibrate on more normals "
            "(a larger data.holdout_fraction, or snlad calibrate --split test on a labelled validation root)"
        )


def calibrate(
    trained: TrainedModel, held_out: Sequence[Sample], config: Config, rule: Rule = Rule()
) -> dict[str, dict]:
    """Thresholds per category from held-back normal training images (never test images).

    A category with no held-out image gets no entry; its predictions then carry scores only.
    """
    fast = optimise_for_inference(trained)
    by_category: dict[str, list[Sample]] = {}
    for sample in held_out:
        by_category.setdefault(sample.category, []).append(sample)
    results = {
        category: calibrate_category(fast, samples, rule, config.train.seed, "held-out normal training images")
        for category, samples in bar(sorted(by_category.items()), desc="calibrating thresholds", unit="category")
    }
    note_few_normals(results)
    return results


def recalibrate_run(
    run_dir: Path,
    data_root: str | Path,
    split: str,
    rule: Rule,
    categories: Sequence[str] | None = None,
    overwrite: bool = False,
    device: str = "auto",
) -> dict[str, dict]:
    """Recompute thresholds of a finished run from ``split`` of ``data_root`` and store them in its model files.

    Split ``train`` uses the held-out normals of training (the same hold-out as
    ``snlad train``); any other split uses all its images and their labels.
    Stored thresholds decide every later prediction and report, so they are
    replaced only with ``overwrite`` (refused before any image is scored).
    Each returned entry also names the ``file`` it was stored in and the
    ``previous`` entry it replaced (None where there was none). The models run on ``device`` (:func:`snlad.device.resolve_device`).
    """
    run = Run(Path(run_dir))
    files = run.model_files()
    models = optimise_run(run.load_models(device))
    wanted = list(categories) if categories else list(models)
    known_categories(run.path, models, wanted)
    previous = {c: models[c].calibration[c] for c in wanted if c in models[c].calibration}
    if previous and not overwrite:
        stored = ", ".join(
            f"{c} (image {p['threshold']:.4g}, pixel {p['pixel_threshold']:.4g}, rule {p['rule']})"
            for c, p in previous.items()
        )
        raise SnladError(
            f"the run {run.path} already holds thresholds for {stored}: pass --overwrite to replace them "
            "(later predictions and reports then use the new ones)"
        )
    updates: dict[Path, dict[str, dict]] = {}
    for category in bar(wanted, desc="calibrating", unit="category"):
        trained = models[category]
        samples = index_dataset(data_root, split, [category])
        if split == "train":
            samples = holdout_split(samples, trained.config.data.holdout_fraction, trained.config.train.seed)[1]
            if not samples:
                raise SnladError(
                    f"category {category}: no held-out training image (data.holdout_fraction=0); use --split with a labelled validation set"
                )
        result = calibrate_category(trained, samples, rule, trained.config.train.seed, f"{split} split of {data_root}")
        updates.setdefault(files[category], {})[category] = result
    for path, calibration in updates.items():
        payload = read_checkpoint(path)
        payload["calibration"] = {**payload.get("calibration", {}), **calibration}
        write_checkpoint(path, payload)
    results = {
        category: {**result, "file": str(path), "previous": previous.get(category)}
        for path, calibration in updates.items()
        for category, result in calibration.items()
    }
    note_few_normals(results)
    return results
