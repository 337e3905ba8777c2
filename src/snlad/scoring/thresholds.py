"""Decision thresholds from scored images: the rules, pure numpy (``snlad.engine.calibration`` scores the images).

Each category of a model gets ``threshold`` (image score) and
``pixel_threshold`` (map value at the model's resolution); a score or pixel
strictly above its threshold is anomalous. Rules (docs/thresholds.md):

- ``max`` (default, after training): the largest held-out normal score and
  the largest held-out normal pixel, times ``1 + margin``. No held-out normal
  image is flagged and no normal pixel is marked; with the image score being
  the map's max, an image gets a non-empty mask exactly when it is flagged.
- ``quantile``: the ``q``-quantile of held-out normal scores and of all
  held-out normal pixels, times ``1 + margin`` (many normals, some false alarms
  tolerated); ``quantile`` 1.0 is the ``max`` rule.
- ``synthetic-f1``: F1-optimal thresholds separating held-out normals from
  cut-paste anomalies made from them (a square of one normal pasted elsewhere
  into another, as in CutPaste), for images and for pixels.
- ``f1``: F1-optimal thresholds on labelled defects (``snlad calibrate
  --split``; a validation split, not the one you report on).

An F1-optimal threshold is placed halfway between the lowest score it flags
and the highest score it does not, so the decision has a margin both ways.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from snlad.errors import SnladError

RULES = ("max", "quantile", "synthetic-f1", "f1")


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
        if not (math.isfinite(self.margin) and self.margin >= 0):  # NaN or inf would store a threshold nothing exceeds
            raise SnladError(f"threshold margin must be a finite number >= 0, got {self.margin}")


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

    def subset(self, keep: np.ndarray) -> Scored:
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


def _normal_quantile(rule: Rule, normals: Scored, anomalies: Scored | None) -> dict[str, float]:
    """The ``quantile`` of held-out normal scores and pixels, times ``1 + margin``."""
    return {
        "threshold": float(np.quantile(normals.scores, rule.quantile)) * (1 + rule.margin),
        "pixel_threshold": float(np.quantile(normals.maps, rule.quantile)) * (1 + rule.margin),
    }


def _normal_max(rule: Rule, normals: Scored, anomalies: Scored | None) -> dict[str, float]:
    """The largest held-out normal score and pixel, times ``1 + margin`` (the quantile 1.0)."""
    return _normal_quantile(dataclasses.replace(rule, quantile=1.0), normals, anomalies)


def _best_f1(rule: Rule, normals: Scored, anomalies: Scored | None) -> dict[str, float]:
    """F1-optimal image and pixel thresholds between the normals and the anomalies (labelled or synthetic)."""
    if anomalies is None or len(anomalies.scores) == 0:
        raise SnladError(
            f"rule '{rule.name}' needs anomalous images, and the calibration set has none: give a labelled validation root "
            "with --split test (not the root you report on), or use --rule synthetic-f1"
        )
    labels = np.r_[np.zeros(len(normals.scores), bool), np.ones(len(anomalies.scores), bool)]
    image, image_f1 = f1_threshold(np.r_[normals.scores, anomalies.scores], labels)
    masked = anomalies.subset(anomalies.has_mask)
    if len(masked.scores) == 0:  # image-level labels only: no pixel F1 to optimise
        pixel_threshold = float(normals.maps.max()) * (1 + rule.margin)
        return {
            "threshold": image,
            "pixel_threshold": pixel_threshold,
            "image_f1": image_f1,
            "pixel_rule": "max (no defect masks)",
        }
    pixels = np.concatenate([normals.maps.ravel(), masked.maps.ravel()])
    pixel, pixel_f1 = f1_threshold(pixels, np.concatenate([normals.masks.ravel(), masked.masks.ravel()]))
    return {"threshold": image, "pixel_threshold": pixel, "image_f1": image_f1, "pixel_f1": pixel_f1}


RULE_THRESHOLDS: dict[str, Callable[[Rule, Scored, Scored | None], dict[str, float]]] = {
    "max": _normal_max,
    "quantile": _normal_quantile,
    "synthetic-f1": _best_f1,
    "f1": _best_f1,
}
"""Each rule's thresholds from the normal (and, for the F1 rules, anomalous) calibration images."""
if set(RULE_THRESHOLDS) != set(RULES):
    raise ImportError(f"RULE_THRESHOLDS {sorted(RULE_THRESHOLDS)} must implement the rules {sorted(RULES)}")


def thresholds(rule: Rule, normals: Scored, anomalies: Scored | None) -> dict[str, float]:
    """Image and pixel thresholds of ``rule`` from normal images (and anomalous ones for the F1 rules)."""
    return RULE_THRESHOLDS[rule.name](rule, normals, anomalies)
