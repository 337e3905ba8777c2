"""``snlad report``: one self-contained HTML page comparing runs.

DIR/index.html with its images in DIR/images/: the runs, their metrics, per
category the paper's Fig. 5 grid (test images, ground truth, each run's map),
score histograms and ROC curves, then any interference probes and the
one-class vs multi-class figure.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from snlad.data import index_dataset, list_categories
from snlad.engine.evaluate import FEW_TEST_IMAGES, TABLE_COLUMNS
from snlad.errors import SnladError
from snlad.files import atomic_write_text, make_folder
from snlad.progress import bar
from snlad.report.examples import category_grid
from snlad.report.html import esc, image, page, table
from snlad.report.onevsmulti import METRICS, onevsmulti_figure, summarise
from snlad.runs.results import ReportRun, load_report_runs
from snlad.scoring.metrics import percent
from snlad.visualisation import plots, render

IMAGES = "images"


def threshold_rules(run: ReportRun) -> str:
    """How a run's thresholds were calibrated (rule and images), once if every category shares it, else per category.

    Runs calibrated by different rules colour their maps on different scales,
    so the report names each run's rule beside its maps' numbers.
    """
    rules: dict[str, list[str]] = {}
    for category, trained in run.run.models.items():
        entry = trained.calibration.get(category)
        rule = f"{entry['rule']} on the {entry['source']}" if entry else "none (scores only)"
        rules.setdefault(rule, []).append(category)
    if len(rules) == 1:
        return next(iter(rules))
    return "; ".join(f"{', '.join(categories)}: {rule}" for rule, categories in rules.items())


def image_threshold(run: ReportRun, category: str) -> float | None:
    """The run's stored image threshold for ``category`` (None when it has none)."""
    trained = run.run.models.get(category)
    return trained.calibration.get(category, {}).get("threshold") if trained is not None else None


def _runs_section(runs: Sequence[ReportRun]) -> str:
    rows = []
    for run in runs:
        config = run.run.first.config
        rows.append(
            [
                run.label,
                config.model.name,
                config.model.teacher,
                config.data.image_size,
                run.run.mode,
                ", ".join(run.run.models),
                threshold_rules(run),
                run.run.path,
            ]
        )
    return "<h2 id='runs'>Runs</h2>" + table(
        ["run", "model", "teacher", "image size", "mode", "categories", "thresholds calibrated by", "path"], rows
    )


def _metrics_section(runs: Sequence[ReportRun]) -> str:
    summary = [[run.label, *(percent(run.metrics.get("mean", {}).get(name)) for name in TABLE_COLUMNS)] for run in runs]
    parts = [
        "<h2 id='metrics'>Metrics (%)</h2><h3>Mean over categories</h3>",
        table(["run", *TABLE_COLUMNS], summary),
        "<div class='side'>",
    ]
    for run in runs:
        rows = [
            [category, *(percent(values.get(name)) for name in TABLE_COLUMNS)]
            for category, values in run.metrics.items()
        ]
        parts += [
            f"<div><h3>{esc(run.label)}</h3>",
            table(["category", *TABLE_COLUMNS], rows, f'data-run="{esc(run.label)}"'),
            "</div>",
        ]
    return "".join(parts) + "</div>"


def _category_section(
    runs: Sequence[ReportRun], category: str, data_root: Path, available: set[str], examples: int, folder: Path
) -> str:
    parts = [
        f'<section class="category" data-category="{esc(category)}"><h3 id="cat-{esc(category)}">{esc(category)}</h3>'
    ]
    if category not in available:
        return parts[0] + f'<p class="note">{esc(category)} is not in {esc(data_root)}</p></section>'
    parts.append(category_grid(runs, category, index_dataset(data_root, "test", [category]), examples, folder))
    tested = {run.label: run for run in runs if category in run.scores}
    counts = [
        (int(np.sum(run.labels[category] == 0)), int(np.sum(run.labels[category] == 1))) for run in tested.values()
    ]
    if counts and min(min(pair) for pair in counts) < FEW_TEST_IMAGES:
        good, defective = counts[0]
        parts.append(
            f'<p class="note">only {good} good and {defective} defective test images: one image moves the image-level '
            "metrics of this category by many points, so read them as indicative, not as a measurement</p>"
        )
    if tested:
        split = {
            label: (run.scores[category][run.labels[category] == 0], run.scores[category][run.labels[category] == 1])
            for label, run in tested.items()
        }
        plots.histograms(
            split,
            folder / f"{category}-histograms.png",
            f"{category}: image scores, good vs defective",
            {label: image_threshold(run, category) for label, run in tested.items()},
        )
        plots.roc_curves(
            {label: (run.labels[category], run.scores[category]) for label, run in tested.items()},
            folder / f"{category}-roc.png",
            f"{category}: ROC",
        )
        parts.append(
            image(f"{IMAGES}/{category}-histograms.png", f"{category} histograms", "plot")
            + image(f"{IMAGES}/{category}-roc.png", f"{category} ROC", "plot")
        )
    else:
        parts.append(f'<p class="note">no run has test scores for {esc(category)}</p>')
    return "".join(parts) + "</section>"


def _csv_table(path: Path) -> str:
    """A probe's CSV as a table, numbers rounded to 4 decimals."""
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        return ""
    return f"<h4>{esc(path.name)}</h4>" + table(rows[0], [[_rounded(cell) for cell in row] for row in rows[1:]])


def _rounded(cell: str) -> str:
    try:
        return cell if float(cell).is_integer() else f"{float(cell):.4f}"
    except ValueError:
        return cell


def _probes_section(probe_dirs: Sequence[Path], folder: Path) -> str:
    parts = ["<h2 id='probes'>Cross-class interference probes</h2>"]
    for index, probe_dir in enumerate(probe_dirs):
        if not probe_dir.is_dir():
            raise SnladError(
                f"probe directory {probe_dir} does not exist (write it with `snlad probe mixup|cutpaste --out`)"
            )
        parts.append(f'<section class="probe" data-probe="{esc(probe_dir)}"><h3>{esc(probe_dir.name)}</h3>')
        parts += [_csv_table(path) for path in sorted(probe_dir.glob("*.csv"))]
        for picture in sorted(probe_dir.glob("*.png")):
            name = f"probe{index}-{picture.name}"
            shutil.copyfile(picture, folder / name)
            parts.append(image(f"{IMAGES}/{name}", picture.stem, "plot"))
        parts.append("</section>")
    return "".join(parts)


def _experiment_section(experiment_dir: Path, folder: Path) -> str:
    onevsmulti_figure(experiment_dir, folder / "onevsmulti.png")
    rows = [
        [
            mode,
            configuration,
            *(f"{percent(values[m][0])} ± {percent(values[m][1])} ({values[m][2]} seeds)" for m, _ in METRICS),
        ]
        for mode, configurations in summarise(experiment_dir).items()
        for configuration, values in configurations.items()
    ]
    return (
        "<h2 id='onevsmulti'>One-class vs multi-class</h2>"
        + image(f"{IMAGES}/onevsmulti.png", "one-class vs multi-class", "plot")
        + table(["mode", "configuration", *(label for _, label in METRICS)], rows)
    )


def build_report(
    run_dirs: Sequence[str | Path],
    data_root: str | Path,
    out_dir: str | Path,
    probe_dirs: Sequence[str | Path] = (),
    experiment_dir: str | Path | None = None,
    examples: int = 3,
    overwrite: bool = False,
) -> Path:
    """Write OUT/index.html and OUT/images/*; return the page's path.

    An earlier report in ``out_dir`` is replaced only with ``overwrite``; the
    check comes before the runs are read, so a refusal costs nothing.
    """
    out_dir, data_root = Path(out_dir), Path(data_root)
    folder = out_dir / IMAGES
    earlier = [path for path in (out_dir / "index.html", folder) if path.exists()]
    if earlier and not overwrite:
        raise SnladError(f"{earlier[0]} already exists: use --overwrite to replace the report, or another --out")
    runs = load_report_runs(run_dirs)
    make_folder(folder, out_dir / "index.html")
    categories = sorted({c for run in runs for c in run.run.models})
    nav = "<nav>" + "".join(f'<a href="#cat-{esc(c)}">{esc(c)}</a>' for c in categories) + "</nav>"
    plots.colour_legend(folder / "colour-scale.png", render.THRESHOLD_AT)
    parts = [
        f"<h1>snlad report</h1><p class='note'>data: {esc(data_root)}</p>",
        nav,
        _runs_section(runs),
        _metrics_section(runs),
        "<h2 id='categories'>Per category</h2>",
        "<p class='note'>Anomaly maps: each run's map over the image, coloured by the run's own calibration for the category "
        "(as <code>snlad predict</code> overlays): blue is its typical normal pixel, the <em>pixel</em> threshold sits at two "
        "thirds of the bar, so yellow to red is what the run would mark as defect. Each run's column header gives its image and "
        "pixel thresholds and the rule they came from (Runs table); under each map, the image score and the decision: "
        "<em>defective</em> when the score is above the <em>image</em> threshold, as <code>snlad predict</code> flags it.</p>",
        image(f"{IMAGES}/colour-scale.png", "colour scale of the anomaly maps", "plot"),
    ]
    available = set(list_categories(data_root))
    parts += [
        _category_section(runs, category, data_root, available, examples, folder)
        for category in bar(categories, desc="report", unit="category")
    ]
    if probe_dirs:
        parts.append(_probes_section([Path(p) for p in probe_dirs], folder))
    if experiment_dir is not None:
        parts.append(_experiment_section(Path(experiment_dir), folder))
    path = out_dir / "index.html"
    atomic_write_text(path, page("snlad report", parts))
    return path
