"""How sure a difference of image AUROC between two models is: a paired bootstrap over the test images.

A ten-category mean I-AUROC mixes categories of 12 and of 60 test images; in
a 12-image category one good image moves the AUROC by 25 points. Whether a
difference of a point or two between two models is more than the draw of
the test images is therefore worth stating beside it. The bootstrap draws
the test images again with replacement, within each category and class
(good, defective) so every draw keeps the category's class balance, and
scores both models on the *same* draw (paired: they were tested on the same
images); the statistic is the mean over seeds of the mean over categories,
as the campaign tables report. Nothing here chooses a setting: it reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


def auroc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``scores`` (... x N) against ``labels`` (... x N, 1 = defective): Mann-Whitney U, ties halved."""
    ranks = rankdata(scores, axis=-1)
    positives = labels.sum(axis=-1)
    negatives = labels.shape[-1] - positives
    u = (ranks * labels).sum(axis=-1) - positives * (positives + 1) / 2
    return u / (positives * negatives)


@dataclass(frozen=True)
class CategoryScores:
    """One category's test images: labels (N), and each model's image scores per seed (seeds x N), same image order."""

    labels: np.ndarray
    models: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Difference:
    """``b`` minus ``a`` in mean I-AUROC (fractions): observed, the bootstrap's 2.5/97.5 % quantiles, and P(b > a)."""

    observed: float
    low: float
    high: float
    b_ahead: float


def _mean_auroc(categories: Mapping[str, CategoryScores], model: str, draws: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per draw (R), the mean over seeds and categories of ``model``'s I-AUROC on the drawn images."""
    per_category = []
    for name, category in categories.items():
        picked = draws[name]  # R x N image indices
        scores = category.models[model][:, picked]  # seeds x R x N
        per_category.append(auroc_rows(scores, category.labels[picked][None]).mean(axis=0))
    return np.mean(per_category, axis=0)


def paired_bootstrap(
    categories: Mapping[str, CategoryScores], a: str, b: str, resamples: int = 10000, seed: int = 0
) -> Difference:
    """The difference ``b`` - ``a`` of the mean I-AUROC, with its paired bootstrap interval over the test images."""
    rng = np.random.default_rng(seed)
    draws = {}
    for name, category in categories.items():
        columns = []
        for label in (0, 1):
            members = np.flatnonzero(category.labels == label)
            columns.append(members[rng.integers(0, len(members), size=(resamples, len(members)))])
        draws[name] = np.concatenate(columns, axis=1)
    identity = {name: np.arange(len(c.labels))[None] for name, c in categories.items()}
    observed = float(_mean_auroc(categories, b, identity)[0] - _mean_auroc(categories, a, identity)[0])
    differences = _mean_auroc(categories, b, draws) - _mean_auroc(categories, a, draws)
    low, high = np.quantile(differences, [0.025, 0.975])
    return Difference(observed, float(low), float(high), float((differences > 0).mean()))
