"""Paper Fig. 1: each configuration's I-AUROC and P-AUROC, one-class vs multi-class.

Reads the experiment runner's OUT/results-<mode>.csv (one row per
configuration, seed and category). Per seed the categories are averaged (the
'mean' rows are recomputed, not trusted, and missing values skipped); bars are
the mean over seeds and error bars the standard deviation over seeds.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from snlad.errors import SnladError
from snlad.visualisation import plots

MODES = ("one-class", "multi-class")
METRICS = (("image_auroc", "I-AUROC"), ("pixel_auroc", "P-AUROC"))

Summary = dict[
    str, dict[str, dict[str, tuple[float, float, int]]]
]  # mode -> configuration -> metric -> (mean, std, seeds)


def _value(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "", "None") else math.nan
    except ValueError:
        return math.nan


def read_results(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """configuration -> seed -> metric -> mean over categories."""
    values: dict[tuple[str, str, str], list[float]] = {}
    try:
        with path.open(newline="") as file:
            for row in csv.DictReader(file):
                if row["category"] == "mean":
                    continue
                for metric, _ in METRICS:
                    values.setdefault((row["configuration"], row["seed"], metric), []).append(_value(row[metric]))
    except KeyError as error:
        raise SnladError(
            f"{path} lacks the column {error}: expected configuration,seed,category,{','.join(m for m, _ in METRICS)}"
        ) from None
    results: dict[str, dict[str, dict[str, float]]] = {}
    for (configuration, seed, metric), numbers in values.items():
        finite = [v for v in numbers if not math.isnan(v)]
        results.setdefault(configuration, {}).setdefault(seed, {})[metric] = (
            float(np.mean(finite)) if finite else math.nan
        )
    return results


def summarise(experiment_dir: str | Path) -> Summary:
    """Mean and std over seeds per mode, configuration and metric, from the modes whose CSV exists."""
    experiment_dir = Path(experiment_dir)
    summary: Summary = {}
    for mode in MODES:
        path = experiment_dir / f"results-{mode}.csv"
        if not path.is_file():
            continue
        summary[mode] = {}
        for configuration, seeds in read_results(path).items():
            summary[mode][configuration] = {}
            for metric, _ in METRICS:
                numbers = [s[metric] for s in seeds.values() if not math.isnan(s.get(metric, math.nan))]
                mean, std = (float(np.mean(numbers)), float(np.std(numbers))) if numbers else (math.nan, math.nan)
                summary[mode][configuration][metric] = (mean, std, len(numbers))
    if not summary:
        raise SnladError(
            f"{experiment_dir} has neither results-one-class.csv nor results-multi-class.csv (run `snlad experiment` first)"
        )
    return summary


def onevsmulti_figure(
    experiment_dir: str | Path, out_png: str | Path, configurations: Sequence[str] | None = None
) -> Path:
    """Two panels (I-AUROC, P-AUROC) of grouped bars, one group per configuration, in percent.

    ``configurations``: which to draw, in this order (a campaign's tables hold many); default every one.
    """
    summary = summarise(experiment_dir)
    known = list(dict.fromkeys(c for mode in summary.values() for c in mode))
    unknown = [c for c in configurations or [] if c not in known]
    if unknown:
        raise SnladError(
            f"{experiment_dir}'s tables hold no results of {', '.join(unknown)} (they have {', '.join(known)})"
        )
    configurations = list(configurations or known)
    panels = {}
    for metric, title in METRICS:
        series = {}
        for mode, table in summary.items():
            cells = [table.get(c, {}).get(metric, (math.nan, math.nan, 0)) for c in configurations]
            series[mode] = ([100 * m for m, _, _ in cells], [100 * s for _, s, _ in cells])
        panels[title] = (configurations, series)
    title = "one-class vs multi-class (mean over categories; error bars: std over seeds)"
    return plots.bar_panels(panels, Path(out_png), title, "%", limits=(_floor(panels), 100.5))


def _floor(panels: dict) -> float:
    """A y-axis start 5 points below the lowest bar (rounded down to 10), so close bars stay apart."""
    lows = [
        m - (s or 0)
        for _, series in panels.values()
        for means, stds in series.values()
        for m, s in zip(means, stds)
        if not math.isnan(m)
    ]
    return max(0.0, 10 * math.floor((min(lows, default=5.0) - 5) / 10))
