"""Experiment files and their tables: which runs an experiment asks for, and the tables of its finished runs.

:func:`snlad.api.experiment` trains, tests and validates the runs; this module
reads the file, plans the runs and writes the comparison tables.

An experiment file (``configs/experiments/*.yaml``) names shared settings,
seeds, modes and configurations (a model name plus overrides), and which
categories of the data root to use: the top-level ``categories: [a, b]`` or,
the same, ``data.categories`` under ``settings`` (default: every category;
``snlad experiment --category`` overrides both). Each
(mode, configuration, seed) is one run directory ``OUT/<mode>/<name>/seed<k>``;
a run whose ``metrics.json`` exists is not trained again, and a run with a
checkpoint resumes, so the whole experiment can be stopped and restarted.

Each run is also scored where settings are chosen: on real defects disjoint
from the test split when ``real_defects`` names such a root (``snlad validate
--real-defects``; tables ``results-<mode>-realval.md``), and on held-out normals
+ cross-class cut-paste (``validate: true``, the default; tables
``results-<mode>-validation.md``). ``summary-<mode>.md`` puts the real
validation means beside the test means, one row per configuration. Settings
are chosen on validation; the test tables only report.

``references: {mode: {name: [run folder, ...]}}`` adds rows for finished runs
made elsewhere (another model's own study, e.g. PatchCore's), folders relative
to the experiment file: they are read, never trained, so a comparison needs
no copy of their numbers.

Only the results of a run need to be kept for it to count as done (its
``metrics.json``): an output folder whose results are committed without the
model files continues on any machine with the runs that have none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from snlad.config import MAX_SEED, is_seed, read_yaml
from snlad.errors import SnladError
from snlad.files import atomic_write_text, confined, write_csv
from snlad.runs.run import MODES, Run

TABLE_METRICS = (("image_auroc", "I-AUROC"), ("pixel_auroc", "P-AUROC"), ("aupro", "AUPRO"))
# What a table reports: the test sets, the synthetic validation sets, or the real-defect validation root.
TEST, VALIDATION, REAL_VALIDATION = "test", "validation", "realval"
SOURCE_TITLES = {
    TEST: "test sets",
    VALIDATION: "validation sets (held-out normals + cross-class cut-paste)",
    REAL_VALIDATION: "real-defect validation (choose settings here)",
}
# The runs behind each row of a mode's tables: row name -> (seed, run folder) of each run.
TableRows = dict[str, list[tuple[int, Path]]]


@dataclass
class Experiment:
    name: str
    settings: list[str]
    seeds: list[int]
    modes: list[str]
    configurations: dict[str, dict[str, Any]]
    categories: list[str] | None
    validate: bool = True
    references: dict[str, dict[str, list[Path]]] = field(default_factory=dict)  # mode -> name -> run folders


def load_experiment(path: str | Path) -> Experiment:
    values = read_yaml(path)
    known = {"name", "settings", "seeds", "modes", "configurations", "categories", "validate", "references"}
    unknown = set(values) - known
    if unknown:
        raise SnladError(
            f"{path}: unknown experiment key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})"
        )
    if not isinstance(values.get("settings") or {}, dict):
        raise SnladError(f"{path}: 'settings' must be a mapping of section.key: value, e.g. train.epochs: 5")
    shared = dict(values.get("settings") or {})
    categories = values.get("categories")
    # The same choice as a setting: the runner needs the categories before any setting applies.
    if "data.categories" in shared:
        chosen = shared.pop("data.categories")
        if categories is not None and categories != chosen:
            raise SnladError(f"{path}: 'categories' {categories} and settings' data.categories {chosen} disagree")
        categories = chosen
    settings = [f"{key}={json.dumps(value)}" for key, value in shared.items()]
    modes = list(values.get("modes", MODES))
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SnladError(f"{path}: unknown mode(s) {', '.join(bad)} (known: {', '.join(MODES)})")
    configurations = values.get("configurations") or {}
    if not configurations:
        raise SnladError(f"{path}: 'configurations' must list at least one configuration")
    if not isinstance(configurations, dict):
        raise SnladError(f"{path}: 'configurations' must be a mapping of names to configurations")
    for name, spec in configurations.items():
        if not isinstance(name, str) or not isinstance(spec, dict) or "model" not in spec:
            raise SnladError(f"{path}: configuration '{name}' needs a 'model' (and optional 'set' overrides)")
    seeds = values.get("seeds", [0])
    if not isinstance(seeds, list) or not all(is_seed(seed) for seed in seeds):
        raise SnladError(f"{path}: 'seeds' must be a list of whole numbers in [0, {MAX_SEED}], got {seeds!r}")
    return Experiment(
        values.get("name", Path(path).stem),
        settings,
        seeds,
        modes,
        configurations,
        [categories] if isinstance(categories, str) else categories,
        bool(values.get("validate", True)),
        _load_references(Path(path), values.get("references") or {}, configurations),
    )


def _load_references(path: Path, values: Any, configurations: dict[str, Any]) -> dict[str, dict[str, list[Path]]]:
    """The ``references`` key: per mode, named lists of finished run folders (relative to the experiment file)."""
    shape = f"{path}: 'references' must map a mode ({', '.join(MODES)}) to {{name: [run folder, ...]}}"
    if not isinstance(values, dict) or any(mode not in MODES or not isinstance(v, dict) for mode, v in values.items()):
        raise SnladError(shape)
    references: dict[str, dict[str, list[Path]]] = {}
    for mode, named in values.items():
        references[mode] = {}
        for name, folders in named.items():
            if name in configurations:
                raise SnladError(f"{path}: reference '{name}' has a configuration's name; give it its own")
            folders = [folders] if isinstance(folders, str) else folders
            if not isinstance(folders, list) or not folders or not all(isinstance(f, str) for f in folders):
                raise SnladError(shape)
            runs = [path.parent / folder for folder in folders]
            for run in runs:
                if not Run(run).metrics_json.is_file():
                    raise SnladError(f"{path}: reference '{name}': {run} holds no finished run (no metrics.json)")
            references[mode][name] = runs
    return references


def check_selection(experiment: Experiment, out_dir: Path, only: list[str] | None) -> None:
    """Every configuration names a folder inside ``out_dir``, and ``only`` names configurations the file has."""
    for name in experiment.configurations:  # each names the folder OUT/<mode>/<name>: never one outside OUT
        confined(out_dir, name, "experiment configuration name", single=True)
    unknown = [n for n in only or [] if n not in experiment.configurations]
    if unknown:
        raise SnladError(
            f"unknown configuration(s) {', '.join(unknown)} (the experiment has {', '.join(experiment.configurations)})"
        )


def planned_runs(
    experiment: Experiment, out_dir: Path, mode: str, only: list[str] | None, seeds: list[int] | None
) -> list[tuple[str, int, Run]]:
    """(configuration, seed, run folder ``OUT/<mode>/<name>/seed<k>``) of every run of ``mode`` selected, in the file's order."""
    return [
        (name, seed, Run(out_dir / mode / name / f"seed{seed}"))
        for name in experiment.configurations
        if only is None or name in only
        for seed in experiment.seeds
        if seeds is None or seed in seeds
    ]


def run_overrides(experiment: Experiment, name: str, seed: int) -> list[str]:
    """The settings of one run: the file's shared ones, then the configuration's, then its seed."""
    return experiment.settings + list(experiment.configurations[name].get("set", [])) + [f"train.seed={seed}"]


def write_mode_tables(
    experiment: Experiment, out_dir: Path, mode: str, categories: list[str], real_defects: str | Path | None
) -> dict[str, Path]:
    """The tables of one mode from its finished runs: test, validation, and real-defect validation with its summary."""
    rows = table_rows(experiment, out_dir, mode)
    tables = {mode: write_tables(out_dir, mode, rows, categories)}
    if experiment.validate:
        tables[f"{mode}-validation"] = write_tables(out_dir, mode, rows, categories, VALIDATION)
    if real_defects is not None or any(collect(runs, REAL_VALIDATION) for runs in rows.values()):
        tables[f"{mode}-realval"] = write_tables(out_dir, mode, rows, None, REAL_VALIDATION)
        tables[f"{mode}-summary"] = write_summary(out_dir, mode, rows)
    return tables


def table_rows(experiment: Experiment, out_dir: Path, mode: str) -> TableRows:
    """Each configuration's seeds in ``OUT/<mode>``, in the file's order, then the mode's references."""
    rows: TableRows = {
        name: [(seed, out_dir / mode / name / f"seed{seed}") for seed in experiment.seeds]
        for name in experiment.configurations
    }
    for name, folders in experiment.references.get(mode, {}).items():
        rows[f"{name} (reference)"] = [(_trained_seed(folder, i), folder) for i, folder in enumerate(folders)]
    return rows


def _trained_seed(folder: Path, position: int) -> int:
    """The seed a reference run was trained with (its config.yaml), else its position in the list."""
    config = Run(folder).config
    seed = (read_yaml(config).get("train") or {}).get("seed") if config.is_file() else None
    return seed if is_seed(seed) else position


def collect(runs: list[tuple[int, Path]], source: str = TEST) -> list[tuple[int, dict[str, dict[str, float]]]]:
    """(seed, metrics) of each finished run of one row (``source`` TEST: metrics.json; VALIDATION: validation.json; ...).

    A list, not a mapping by seed: two reference runs may share a seed, and both count.
    """
    results = []
    for seed, folder in runs:
        run = Run(folder)
        path = {TEST: run.metrics_json, VALIDATION: run.validation_json, REAL_VALIDATION: run.real_validation_json}[
            source
        ]
        if path.exists():
            results.append((seed, json.loads(path.read_text())))
    return results


def _cell(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mean = 100 * float(np.mean(values))
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {100 * float(np.std(values)):.1f}"


def _coverage_note(rows: TableRows, key: str, total: int, source: str) -> str:
    """Under a pixel-metric table: over how many categories its 'mean' column is taken (categories without masks have none)."""
    if key == "image_auroc":
        return ""
    covered = {
        r["mean"].get("pixel_categories") for runs in rows.values() for _, r in collect(runs, source) if "mean" in r
    }
    covered.discard(None)
    if not covered or covered == {total}:
        return ""
    return f"mean: over the {', '.join(str(c) for c in sorted(covered))} of {total} categories with defect masks (n/a: image-level labels only)."


def write_tables(
    out_dir: Path,
    mode: str,
    rows: TableRows,
    categories: list[str] | None,
    source: str = TEST,
) -> Path:
    """results-<mode>[-<source>].md (mean ± std over seeds) and .csv (one row per run and category).

    ``categories`` None: the categories the results hold (a validation root covers fewer than the data).
    """
    if categories is None:
        categories = sorted({c for runs in rows.values() for _, r in collect(runs, source) for c in r if c != "mean"})
    columns = [*categories, "mean"]
    suffix = "" if source == TEST else f"-{source}"
    lines = [f"## {mode}: {SOURCE_TITLES[source]}", ""]
    for key, label in TABLE_METRICS:
        lines += [
            f"### {label} (%, mean ± std over seeds)",
            "",
            "| configuration | seeds | " + " | ".join(columns) + " |",
            "|" + "---|" * (len(columns) + 2),
        ]
        for name, runs in rows.items():
            results = [r for _, r in collect(runs, source)]
            if not results:
                continue
            cells = [_cell([r[c][key] for r in results if c in r]) for c in columns]
            lines.append(f"| {name} | {len(results)} | " + " | ".join(cells) + " |")
        lines += [_coverage_note(rows, key, len(categories), source), ""]
    csv_rows = [
        [name, seed, category, *(result[category][key] for key, _ in TABLE_METRICS)]
        for name, runs in rows.items()
        for seed, result in collect(runs, source)
        for category in columns
        if category in result
    ]
    path = out_dir / f"results-{mode}{suffix}.md"
    atomic_write_text(path, "\n".join(lines))
    write_csv(
        out_dir / f"results-{mode}{suffix}.csv",
        ["configuration", "seed", "category", *(key for key, _ in TABLE_METRICS)],
        csv_rows,
    )
    return path


def selection_score(validation_mean: dict[str, float | None]) -> float | None:
    """What the campaign chooses on: the mean of the real-defect validation I-AUROC and P-AUROC (None if either is missing).

    Image and pixel accuracy count alike, although the pixel mean covers fewer categories (those with masks).
    """
    values = [validation_mean.get(key) for key in ("image_auroc", "pixel_auroc")]
    return None if any(v is None or v != v for v in values) else sum(values) / 2


def write_summary(out_dir: Path, mode: str, rows: TableRows) -> Path:
    """summary-<mode>.md: per configuration, the real-validation means (chosen on) beside the test means (reported).

    Each cell is the mean ± std over the seeds that have it; the seed counts say how many. The first
    number column is the :func:`selection_score`.
    """
    labels = [label for _, label in TABLE_METRICS]
    header = (
        "| configuration | seeds (val / test) | val score | "
        + " | ".join(f"val {label}" for label in labels)
        + " | "
        + " | ".join(f"test {label}" for label in labels)
        + " |"
    )
    lines = [
        f"## {mode}: real-defect validation (choose here) beside test (report only)",
        "",
        "val score: the mean of val I-AUROC and val P-AUROC, what settings are chosen on;"
        " ± the standard deviation over the seeds (population: numpy's default, ddof 0).",
        "",
        header,
        "|" + "---|" * (3 + 2 * len(labels)),
    ]
    for name, runs in rows.items():
        validation = [r for _, r in collect(runs, REAL_VALIDATION)]
        test = [r for _, r in collect(runs, TEST)]
        if not validation and not test:
            continue
        score = _cell([selection_score(r["mean"]) for r in validation])
        cells = [_cell([r["mean"][key] for r in results]) for results in (validation, test) for key, _ in TABLE_METRICS]
        lines.append(f"| {name} | {len(validation)} / {len(test)} | {score} | " + " | ".join(cells) + " |")
    path = out_dir / f"summary-{mode}.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
