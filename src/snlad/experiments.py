"""Experiment runner: train and test a list of configurations, seeds and modes; tabulate.

An experiment file (``configs/experiments/*.yaml``) names shared settings,
seeds, modes and configurations (a model name plus overrides). Each
(mode, configuration, seed) is one run directory ``OUT/<mode>/<name>/seed<k>``;
a run whose ``metrics.json`` exists is not trained again, and a run with a
checkpoint resumes, so the whole experiment can be stopped and restarted.

Each run is also scored on its validation set (``validate: true``, the
default: held-out normals + cross-class cut-paste, ``snlad validate``), and
the validation numbers get tables of their own beside the test tables
(``results-<mode>-validation.md``): settings are chosen on those, the test
tables only report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from snlad import workflow
from snlad.config import read_yaml
from snlad.data import list_categories
from snlad.engine.run import MODES, ONE_CLASS, Run
from snlad.errors import SnladError
from snlad.files import atomic_write_text, write_csv

TABLE_METRICS = (("image_auroc", "I-AUROC"), ("pixel_auroc", "P-AUROC"), ("aupro", "AUPRO"))
TEST, VALIDATION = "test", "validation"  # what a table reports: the test sets, or the validation sets (chosen on)


@dataclass
class Experiment:
    name: str
    settings: list[str]
    seeds: list[int]
    modes: list[str]
    configurations: dict[str, dict[str, Any]]
    categories: list[str] | None
    validate: bool = True


def load_experiment(path: str | Path) -> Experiment:
    values = read_yaml(path)
    known = {"name", "settings", "seeds", "modes", "configurations", "categories", "validate"}
    unknown = set(values) - known
    if unknown:
        raise SnladError(
            f"{path}: unknown experiment key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})"
        )
    settings = [f"{key}={json.dumps(value)}" for key, value in (values.get("settings") or {}).items()]
    modes = list(values.get("modes", MODES))
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SnladError(f"{path}: unknown mode(s) {', '.join(bad)} (known: {', '.join(MODES)})")
    configurations = values.get("configurations") or {}
    if not configurations:
        raise SnladError(f"{path}: 'configurations' must list at least one configuration")
    for name, spec in configurations.items():
        if not isinstance(spec, dict) or "model" not in spec:
            raise SnladError(f"{path}: configuration '{name}' needs a 'model' (and optional 'set' overrides)")
    return Experiment(
        values.get("name", Path(path).stem),
        settings,
        list(values.get("seeds", [0])),
        modes,
        configurations,
        values.get("categories"),
        bool(values.get("validate", True)),
    )


def run_experiment(
    experiment: Experiment,
    data_root: str | Path,
    out_dir: str | Path,
    only: list[str] | None = None,
    seeds: list[int] | None = None,
    modes: list[str] | None = None,
    tables_only: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Train, test and validate every (mode, configuration, seed) not yet done; write the tables of each mode.

    ``only``/``seeds``/``modes`` restrict what is trained (several processes can
    share one experiment that way); ``tables_only`` trains nothing.
    """
    out_dir = Path(out_dir)
    categories = experiment.categories or list_categories(data_root)
    unknown = [n for n in only or [] if n not in experiment.configurations]
    if unknown:
        raise SnladError(
            f"unknown configuration(s) {', '.join(unknown)} (the experiment has {', '.join(experiment.configurations)})"
        )
    names = [n for n in experiment.configurations if only is None or n in only]
    tables = {}
    for mode in experiment.modes:
        for name in names if not tables_only and (modes is None or mode in modes) else []:
            spec = experiment.configurations[name]
            for seed in [s for s in experiment.seeds if seeds is None or s in seeds]:
                run = Run(out_dir / mode / name / f"seed{seed}")
                if not run.metrics_json.exists():
                    overrides = experiment.settings + list(spec.get("set", [])) + [f"train.seed={seed}"]
                    config = workflow.resolve_config(spec["model"], None, overrides, categories=categories)
                    resume = any(folder.checkpoint.exists() for folder in run.model_dirs())
                    print(f"[{experiment.name}] {mode} {name} seed {seed}", flush=True)
                    workflow.train(
                        config,
                        data_root,
                        run.path,
                        one_class=mode == ONE_CLASS,
                        resume=resume,
                        overwrite=not resume,
                        progress=progress,
                    )
                    workflow.test(run.path, data_root, categories, progress=progress)
                if experiment.validate and not run.validation_json.exists():  # --overwrite training removes it
                    workflow.validate(run.path, data_root)
        all_names = list(experiment.configurations)
        tables[mode] = write_tables(out_dir, mode, all_names, experiment.seeds, categories)
        if experiment.validate:
            tables[f"{mode}-validation"] = write_tables(
                out_dir, mode, all_names, experiment.seeds, categories, VALIDATION
            )
    return tables


def collect(
    out_dir: Path, mode: str, name: str, seeds: list[int], source: str = TEST
) -> dict[int, dict[str, dict[str, float]]]:
    """Metrics (``source`` TEST: metrics.json; VALIDATION: validation.json) of each finished seed of one configuration."""
    results = {}
    for seed in seeds:
        run = Run(out_dir / mode / name / f"seed{seed}")
        path = run.metrics_json if source == TEST else run.validation_json
        if path.exists():
            results[seed] = json.loads(path.read_text())
    return results


def _cell(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mean = 100 * float(np.mean(values))
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {100 * float(np.std(values)):.1f}"


def _coverage_note(
    out_dir: Path, mode: str, names: list[str], seeds: list[int], key: str, total: int, source: str
) -> str:
    """Under a pixel-metric table: over how many categories its 'mean' column is taken (categories without masks have none)."""
    if key == "image_auroc":
        return ""
    covered = {
        r["mean"].get("pixel_categories")
        for n in names
        for r in collect(out_dir, mode, n, seeds, source).values()
        if "mean" in r
    }
    covered.discard(None)
    if not covered or covered == {total}:
        return ""
    return f"mean: over the {', '.join(str(c) for c in sorted(covered))} of {total} categories with defect masks (n/a: image-level labels only)."


def write_tables(
    out_dir: Path, mode: str, names: list[str], seeds: list[int], categories: list[str], source: str = TEST
) -> Path:
    """results-<mode>.md (mean ± std over seeds) and results-<mode>.csv (one row per run and category).

    With ``source`` VALIDATION: the same of the validation numbers, results-<mode>-validation.md / .csv.
    """
    columns = [*categories, "mean"]
    suffix = "" if source == TEST else f"-{VALIDATION}"
    what = "test sets" if source == TEST else "validation sets (held-out normals + cross-class cut-paste)"
    lines = [f"## {mode}: {what}", ""]
    for key, label in TABLE_METRICS:
        lines += [
            f"### {label} (%, mean ± std over seeds)",
            "",
            "| configuration | seeds | " + " | ".join(columns) + " |",
            "|" + "---|" * (len(columns) + 2),
        ]
        for name in names:
            results = collect(out_dir, mode, name, seeds, source).values()
            if not results:
                continue
            cells = [_cell([r[c][key] for r in results if c in r]) for c in columns]
            lines.append(f"| {name} | {len(results)} | " + " | ".join(cells) + " |")
        lines += [_coverage_note(out_dir, mode, names, seeds, key, len(categories), source), ""]
    rows = [
        [name, seed, category, *(result[category][key] for key, _ in TABLE_METRICS)]
        for name in names
        for seed, result in collect(out_dir, mode, name, seeds, source).items()
        for category in columns
        if category in result
    ]
    path = out_dir / f"results-{mode}{suffix}.md"
    atomic_write_text(path, "\n".join(lines))
    write_csv(
        out_dir / f"results-{mode}{suffix}.csv",
        ["configuration", "seed", "category", *(key for key, _ in TABLE_METRICS)],
        rows,
    )
    return path
