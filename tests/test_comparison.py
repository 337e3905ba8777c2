"""The paired bootstrap of I-AUROC differences against sklearn and against cases whose answer is known."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from snlad.scoring.comparison import CategoryScores, auroc_rows, paired_bootstrap


def test_auroc_rows_equal_sklearn_with_ties():
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    scores = rng.integers(0, 4, size=(5, 8)).astype(float)  # many ties
    assert np.allclose(auroc_rows(scores, labels[None]), [roc_auc_score(labels, row) for row in scores])


def _category(rng, n_good, n_bad, separations):
    labels = np.array([0] * n_good + [1] * n_bad)
    models = {name: rng.normal(size=(3, n_good + n_bad)) + shift * labels[None] for name, shift in separations.items()}
    return CategoryScores(labels, models)


def test_a_model_against_itself_differs_by_exactly_zero_on_every_draw():
    rng = np.random.default_rng(1)
    categories = {"x": _category(rng, 4, 8, {"a": 1.0}), "y": _category(rng, 30, 30, {"a": 0.5})}
    result = paired_bootstrap(categories, "a", "a", resamples=200)
    assert result.observed == result.low == result.high == 0 and result.b_ahead == 0


def test_a_clearly_better_model_is_ahead_on_nearly_every_draw_and_the_observed_value_is_the_tables():
    rng = np.random.default_rng(2)
    categories = {"x": _category(rng, 30, 30, {"a": 0.0, "b": 3.0}), "y": _category(rng, 20, 40, {"a": 0.2, "b": 2.5})}
    result = paired_bootstrap(categories, "a", "b", resamples=500, seed=3)
    table = {
        model: np.mean(
            [np.mean([roc_auc_score(c.labels, seed) for seed in c.models[model]]) for c in categories.values()]
        )
        for model in ("a", "b")
    }
    assert result.observed == pytest.approx(table["b"] - table["a"])
    assert result.low < result.observed < result.high and result.low > 0.3 and result.b_ahead == 1.0
    assert paired_bootstrap(categories, "a", "b", resamples=500, seed=3) == result  # the seed fixes the draws
