"""Mixup probe (paper Fig. 2, left): is a blend of two classes' normal images anomalous?

For a base category, every anomaly is ``(1 - lambda) * base + lambda * other``
with both images defect-free test images (see
:func:`snlad.probes.common.good_test_samples`); the normals are the base
category's unmodified test-good images, scored by the model that serves the
base category. Cross-class interference shows as an AUROC near 0.5 for small
and medium lambda: the student reproduces the other class's content, so the
blend looks normal. The same (base, other) pairs are used for every lambda and
every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from snlad.data.synthesis import DEFAULT_LAMBDAS, mix, pair_plan
from snlad.engine.inference import score_tensors
from snlad.errors import SnladError
from snlad.files import write_json
from snlad.probes.common import ImageCache, good_test_samples, run_columns, write_rows
from snlad.runs.runset import LabelledRun, load_runs
from snlad.scoring.metrics import image_metrics
from snlad.visualisation import plots, render

EXAMPLE_LAMBDAS = 5  # columns of the example figure, spread over the sweep


@dataclass(frozen=True)
class MixupSettings:
    base: str
    other: str
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    seed: int = 0
    pairs: int = 40  # 10 bottle x 4 metal_nut test-good images in realad: every pair
    batch_size: int = 8


@dataclass
class MixupResult:
    """One run's scores: normals (N), mixtures per lambda (P each), and the first pair's maps."""

    normal: torch.Tensor
    mixtures: dict[float, torch.Tensor]
    example_maps: list[torch.Tensor]

    def auroc(self, lam: float) -> float:
        scores = torch.cat([self.normal, self.mixtures[lam]]).numpy()
        labels = np.r_[np.zeros(len(self.normal)), np.ones(len(self.mixtures[lam]))]
        return image_metrics(scores, labels)["image_auroc"]


def score_run(
    run: LabelledRun, cache: ImageCache, pairs: Sequence[tuple[int, int]], settings: MixupSettings
) -> MixupResult:
    trained = run.model_for(settings.base)
    size = trained.config.data.image_size
    base, other = cache.images(settings.base, size), cache.images(settings.other, size)
    base_index = torch.tensor([p[0] for p in pairs])
    other_index = torch.tensor([p[1] for p in pairs])
    normal_maps, normal = score_tensors(trained, base, settings.batch_size)
    mixtures, example_maps = {}, [normal_maps[pairs[0][0]]]
    for lam in settings.lambdas:
        maps, mixtures[lam] = score_tensors(
            trained, mix(base[base_index], other[other_index], lam), settings.batch_size
        )
        example_maps.append(maps[0])
    return MixupResult(normal, mixtures, example_maps)


def run_mixup(
    run_dirs: Sequence[str | Path], data_root: str | Path, settings: MixupSettings, out_dir: str | Path
) -> list[dict]:
    """Score every run; write mixup.csv, mixup.json and the three figures into ``out_dir``."""
    if settings.base == settings.other:
        raise SnladError("mixup needs two different categories (--base and --other)")
    if not settings.lambdas or any(not 0.0 <= lam <= 1.0 for lam in settings.lambdas):
        raise SnladError(f"--lambdas must be values in [0, 1], got {list(settings.lambdas)}")
    out_dir = Path(out_dir)
    runs = load_runs(run_dirs)
    cache = ImageCache({c: good_test_samples(data_root, c) for c in (settings.base, settings.other)})
    counts = {c: len(s) for c, s in cache.samples.items()}
    pairs = pair_plan(
        counts[settings.base], counts[settings.other], settings.pairs, np.random.default_rng(settings.seed)
    )
    results = {run.label: score_run(run, cache, pairs, settings) for run in runs}
    rows = [_row(run, results[run.label], lam, settings) for run in runs for lam in settings.lambdas]
    write_rows(out_dir / "mixup.csv", rows)
    write_json(out_dir / "mixup.json", _payload(runs, results, pairs, settings, str(data_root)))
    _figures(runs, results, cache, pairs, settings, out_dir)
    return rows


def _row(run: LabelledRun, result: MixupResult, lam: float, settings: MixupSettings) -> dict:
    return {
        **run_columns(run),
        "base": settings.base,
        "other": settings.other,
        "lambda": lam,
        "n_normal": len(result.normal),
        "n_mixture": len(result.mixtures[lam]),
        "image_auroc": result.auroc(lam),
        "normal_mean": float(result.normal.mean()),
        "mixture_mean": float(result.mixtures[lam].mean()),
    }


def _payload(
    runs: Sequence[LabelledRun],
    results: dict[str, MixupResult],
    pairs: Sequence[tuple[int, int]],
    settings: MixupSettings,
    data_root: str,
) -> dict:
    return {
        "probe": "mixup",
        "data": data_root,
        "base": settings.base,
        "other": settings.other,
        "seed": settings.seed,
        "lambdas": list(settings.lambdas),
        "pairs": [list(p) for p in pairs],
        "runs": [
            {
                "label": run.label,
                "path": str(run.path),
                "model": run.first.config.model.name,
                "image_size": run.first.config.data.image_size,
                "normal_scores": results[run.label].normal,
                "mixture_scores": {str(lam): scores for lam, scores in results[run.label].mixtures.items()},
                "image_auroc": {str(lam): results[run.label].auroc(lam) for lam in settings.lambdas},
            }
            for run in runs
        ],
    }


def _figures(
    runs: Sequence[LabelledRun],
    results: dict[str, MixupResult],
    cache: ImageCache,
    pairs: Sequence[tuple[int, int]],
    settings: MixupSettings,
    out_dir: Path,
) -> None:
    title = f"mixup {settings.base} + lambda x {settings.other}"
    lambdas = list(settings.lambdas)
    curves = {run.label: (lambdas, [results[run.label].auroc(lam) for lam in lambdas]) for run in runs}
    plots.curves(
        curves,
        out_dir / "mixup_auroc.png",
        f"{title}: normal vs mixture",
        "lambda (share of the other image)",
        "image AUROC",
    )
    groups = {
        run.label: {
            "normal": results[run.label].normal,
            **{f"{lam:g}": s for lam, s in results[run.label].mixtures.items()},
        }
        for run in runs
    }
    plots.distributions(groups, out_dir / "mixup_scores.png", f"{title}: image scores")
    _example_grid(runs, results, cache, pairs[0], settings, out_dir / "mixup_examples.png")


def _example_grid(
    runs: Sequence[LabelledRun],
    results: dict[str, MixupResult],
    cache: ImageCache,
    pair: tuple[int, int],
    settings: MixupSettings,
    path: Path,
) -> None:
    """Row 1: the base image and a few mixtures; one row per run: its maps on a shared colour scale."""
    shown = sorted(set(np.linspace(0, len(settings.lambdas) - 1, EXAMPLE_LAMBDAS).round().astype(int)))
    lams = [0.0] + [settings.lambdas[i] for i in shown]
    rows = [_mixed(cache, settings, pair, lams, runs[0].first.config.data.image_size)]
    for run in runs:
        maps = [results[run.label].example_maps[0].numpy()] + [
            results[run.label].example_maps[i + 1].numpy() for i in shown
        ]
        low, high = min(m.min() for m in maps), max(m.max() for m in maps)
        images = _mixed(cache, settings, pair, lams, run.first.config.data.image_size)
        rows.append([render.overlay(image, m, render.ColourScale(low, high)) for image, m in zip(images, maps)])
    titles = ["images", *(run.label for run in runs)]
    plots.image_grid(
        rows, titles, [f"lambda={lam:g}" for lam in lams], path, f"{settings.base} mixed with {settings.other}"
    )


def _mixed(
    cache: ImageCache, settings: MixupSettings, pair: tuple[int, int], lams: Sequence[float], size: int
) -> list[np.ndarray]:
    base, other = cache.images(settings.base, size)[pair[0]], cache.images(settings.other, size)[pair[1]]
    return [render.to_uint8(mix(base, other, lam)) for lam in lams]
