"""Decision thresholds: which image is anomalous, which pixels are defect, never from test images.

Each category of a model gets ``threshold`` (image score) and
``pixel_threshold`` (map value at the model's resolution); a score or pixel
strictly above its threshold is anomalous. Rules (docs/thresholds.md):

- ``max`` (default, after training): the largest held-out normal score and
  the largest held-out normal pixel, times ``1 + margin``. No held-out normal
  image is flagged and no normal pixel is marked; with the image score being
  the map's max, an image gets a non-empty mask exactly when it is flagged.
- ``quantile``: the ``q``-quantile of held-out normal scores and of all
  held-out normal pixels, times ``1 + margin`` (many normals, some false alarms
  tolerated).
- ``synthetic-f1``: F1-optimal thresholds separating held-out normals from
  cut-paste anomalies made from them (a square of one normal pasted elsewhere
  into another, as in CutPaste), for images and for pixels.
- ``f1``: F1-optimal thresholds on labelled defects (``snlad calibrate
  --split``; a validation split, not the one you report on).

An F1-optimal threshold is placed halfway between the lowest score it flags
and the highest score it does not, so the decision has a margin both ways.
Maps and scores come from the inference-optimised model, the one that
``snlad predict`` uses.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from snlad.config import Config
from snlad.data import AnomalyDataset, Sample
from snlad.engine.fast import optimise_for_inference
from snlad.engine.inference import infer
from snlad.engine.trained import TrainedModel
from snlad.errors import SnladError

RULES = ("max", "quantile", "synthetic-f1", "f1")
SYNTHETIC_PATCH = 0.15  # of the image side (2 % of the area): the scale of MVTec's small defects
SYNTHETIC_PER_NORMAL = 2  # cut-paste anomalies per held-out normal image


@dataclass(frozen=True)
class Rule:
    name: str = "max"
    quantile: float = 1.0  # rule "quantile" only
    margin: float = 0.0  # relative, on the normal-based rules: threshold * (1 + margin)

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise SnladError(f"unknown threshold rule '{self.name}': choose one of {', '.join(RULES)}")
        if not 0.0 < self.quantile <= 1.0:
            raise SnladError(f"threshold quantile must be in (0, 1], got {self.quantile}")
        if self.margin < 0:
            raise SnladError(f"threshold margin must be >= 0, got {self.margin}")


@dataclass
class Scored:
    """One category's calibration images: scores N, labels N, maps N x S x S, masks N x S x S.

    ``has_mask`` (N) says whose pixel labels are known: False for a defective
    image without a mask, whose all-zero mask must not enter a pixel threshold.
    """

    scores: np.ndarray
    labels: np.ndarray
    maps: np.ndarray
    masks: np.ndarray
    has_mask: np.ndarray

    def subset(self, keep: np.ndarray) -> "Scored":
        return Scored(self.scores[keep], self.labels[keep], self.maps[keep], self.masks[keep], self.has_mask[keep])


EXACT_F1_LIMIT = 2**22  # values (pixels) up to which the F1 search is exact; above, 65536 quantile bins


def f1_threshold(values: np.ndarray, positives: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 of ``values > threshold``; halfway between neighbouring values.

    Exact up to ``EXACT_F1_LIMIT`` values; a larger set (the pixels of many
    images) is searched over 65536 candidate thresholds at its quantiles, in
    O(n) memory instead of a full sort.
    """
    values, positives = np.asarray(values).ravel(), np.asarray(positives, dtype=bool).ravel()
    if not positives.any() or positives.all():
        raise SnladError("an F1-optimal threshold needs both normal and anomalous examples")
    if values.size > EXACT_F1_LIMIT:
        return _binned_f1_threshold(values, positives)
    values = values.astype(np.float64)
    order = np.argsort(-values, kind="stable")
    sorted_values, sorted_positives = values[order], positives[order]
    last_of_run = np.r_[sorted_values[1:] != sorted_values[:-1], True]  # flag all ties together
    true_pos = np.cumsum(sorted_positives)[last_of_run]
    flagged = np.flatnonzero(last_of_run) + 1
    f1 = 2 * true_pos / (flagged + positives.sum())
    best = int(np.argmax(f1))
    distinct = sorted_values[last_of_run]
    below = distinct[best + 1] if best + 1 < len(distinct) else distinct[best] - 1e-6 * max(abs(distinct[best]), 1.0)
    return float((distinct[best] + below) / 2), float(f1[best])


def _binned_f1_threshold(values: np.ndarray, positives: np.ndarray, bins: int = 65536) -> tuple[float, float]:
    """F1-optimal ``value > edge`` over quantile edges of a subsample (deterministic)."""
    step = max(1, values.size // (32 * bins))
    sample = np.sort(values[::step])
    edges = np.unique(sample[np.linspace(0, sample.size - 1, bins + 1).round().astype(np.int64)])
    index = np.searchsorted(edges, values, side="left")  # value > edges[k] <=> index > k
    flagged_pos = np.cumsum(np.bincount(index[positives], minlength=len(edges) + 1)[::-1])[::-1]
    flagged_all = np.cumsum(np.bincount(index, minlength=len(edges) + 1)[::-1])[::-1]
    # Threshold edges[k] flags every value with index >= k + 1.
    tp, flagged = flagged_pos[1 : len(edges) + 1], flagged_all[1 : len(edges) + 1]
    f1 = 2 * tp / (flagged + positives.sum())
    best = int(np.argmax(f1))
    return float(edges[best]), float(f1[best])


def thresholds(rule: Rule, normals: Scored, anomalies: Scored | None) -> dict[str, float]:
    """Image and pixel thresholds of ``rule`` from normal images (and anomalous ones for the F1 rules)."""
    if rule.name in ("max", "quantile"):
        q = 1.0 if rule.name == "max" else rule.quantile
        return {
            "threshold": float(np.quantile(normals.scores, q)) * (1 + rule.margin),
            "pixel_threshold": float(np.quantile(normals.maps, q)) * (1 + rule.margin),
        }
    if anomalies is None or len(anomalies.scores) == 0:
        raise SnladError(f"rule '{rule.name}' needs anomalous images, and the calibration set has none")
    labels = np.r_[np.zeros(len(normals.scores), bool), np.ones(len(anomalies.scores), bool)]
    image, image_f1 = f1_threshold(np.r_[normals.scores, anomalies.scores], labels)
    masked = anomalies.subset(anomalies.has_mask)
    if len(masked.scores) == 0:  # image-level labels only: no pixel F1 to optimise
        pixel_threshold = float(normals.maps.max()) * (1 + rule.margin)
        return {"threshold": image, "pixel_threshold": pixel_threshold, "image_f1": image_f1, "pixel_rule": "max (no defect masks)"}
    pixels = np.concatenate([normals.maps.ravel(), masked.maps.ravel()])
    pixel, pixel_f1 = f1_threshold(pixels, np.concatenate([normals.masks.ravel(), masked.masks.ravel()]))
    return {"threshold": image, "pixel_threshold": pixel, "image_f1": image_f1, "pixel_f1": pixel_f1}


def score_samples(trained: TrainedModel, samples: Sequence[Sample], batch_size: int = 8, num_workers: int = 0) -> Scored:
    """Maps and scores of ``samples`` at the model's resolution, with their labels and masks."""
    dataset = AnomalyDataset(samples, trained.config.data.image_size)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    parts = [(scores, batch["label"], maps, batch["mask"][:, 0] > 0.5, batch["has_mask"]) for batch, maps, scores in infer(trained, loader, progress=False)]
    return Scored(*(torch.cat(column).numpy() for column in zip(*parts)))


def synthetic_anomalies(trained: TrainedModel, normals: Sequence[Sample], seed: int, batch_size: int = 8) -> Scored:
    """Cut-paste anomalies made from held-out normals of one category, scored."""
    from snlad.probes.synthesis import cut_paste, paste_plan  # the probes' generator: one implementation

    size = trained.config.data.image_size
    dataset = AnomalyDataset(normals, size)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    rng = np.random.default_rng([seed % 2**32, zlib.crc32(normals[0].category.encode())])
    plan = paste_plan(len(normals), len(normals), SYNTHETIC_PER_NORMAL * len(normals), SYNTHETIC_PATCH, rng)
    pasted = [cut_paste(images[p.target], images[p.source], p, SYNTHETIC_PATCH) for p in plan]
    synthetic, masks = torch.stack([image for image, _ in pasted]), torch.stack([mask for _, mask in pasted])
    batches = [{"image": chunk} for chunk in synthetic.split(batch_size)]
    maps, scores = zip(*[(m, s) for _, m, s in infer(trained, batches, progress=False)])
    return Scored(torch.cat(scores).numpy(), np.ones(len(plan), dtype=np.int64), torch.cat(maps).numpy(), masks.numpy(), np.ones(len(plan), dtype=bool))


def calibrate_category(trained: TrainedModel, samples: Sequence[Sample], rule: Rule, seed: int, source: str) -> dict:
    """Thresholds of one category from ``samples`` (normals, plus labelled defects for rule f1)."""
    scored = score_samples(trained, samples, num_workers=trained.config.data.num_workers)
    normal = scored.labels == 0
    if not normal.any():
        raise SnladError(f"category {samples[0].category}: the calibration images hold no normal image")
    normals = scored.subset(normal)
    anomalies = None
    if rule.name == "f1":
        anomalies = scored.subset(~normal)
    elif rule.name == "synthetic-f1":
        anomalies = synthetic_anomalies(trained, [s for s, n in zip(samples, normal) if n], seed)
    result = {
        "rule": rule.name,
        "quantile": rule.quantile,
        "margin": rule.margin,
        "source": source,
        "normal_scores": normals.scores.tolist(),
        "anomalous_images": int(len(anomalies.scores)) if anomalies is not None else 0,
        **thresholds(rule, normals, anomalies),
    }
    return result


def calibrate(trained: TrainedModel, held_out: Sequence[Sample], config: Config, rule: Rule = Rule()) -> dict[str, dict]:
    """Thresholds per category from held-back normal training images (never test images).

    A category with no held-out image gets no entry; its predictions then carry scores only.
    """
    fast = optimise_for_inference(trained)
    by_category: dict[str, list[Sample]] = {}
    for sample in held_out:
        by_category.setdefault(sample.category, []).append(sample)
    return {
        category: calibrate_category(fast, samples, rule, config.train.seed, "held-out normal training images")
        for category, samples in sorted(by_category.items())
    }


def recalibrate_run(run_dir: Path, data_root: str | Path, split: str, rule: Rule, categories: Sequence[str] | None = None) -> dict[str, dict]:
    """Recompute thresholds of a finished run from ``split`` of ``data_root`` and store them in its model files.

    Split ``train`` uses the held-out normals of training (the same hold-out as
    ``snlad train``); any other split uses all its images and their labels.
    """
    from snlad.data import holdout_split, index_dataset
    from snlad.engine.checkpoint import load_checkpoint, save_checkpoint
    from snlad.engine.fast import optimise_run
    from snlad.engine.trained import load_run

    run_dir = Path(run_dir)
    models = optimise_run(load_run(run_dir))
    wanted = list(categories) if categories else list(models)
    unknown = [c for c in wanted if c not in models]
    if unknown:
        raise SnladError(f"the run {run_dir} was not trained on {', '.join(unknown)} (it knows {', '.join(models)})")
    one_class = json.loads((run_dir / "run.json").read_text())["mode"] == "one-class"  # load_run checked the file
    updates: dict[Path, dict[str, dict]] = {}
    for category in wanted:
        trained = models[category]
        samples = index_dataset(data_root, split, [category])
        if split == "train":
            samples = holdout_split(samples, trained.config.data.holdout_fraction, trained.config.train.seed)[1]
            if not samples:
                raise SnladError(f"category {category}: no held-out training image (data.holdout_fraction=0); use --split with a labelled validation set")
        result = calibrate_category(trained, samples, rule, trained.config.train.seed, f"{split} split of {data_root}")
        path = run_dir / category / "model.pt" if one_class else run_dir / "model.pt"
        updates.setdefault(path, {})[category] = result
    for path, calibration in updates.items():
        payload = load_checkpoint(path)
        payload["calibration"] = {**payload.get("calibration", {}), **calibration}
        save_checkpoint(path, payload)
    return {category: result for calibration in updates.values() for category, result in calibration.items()}
