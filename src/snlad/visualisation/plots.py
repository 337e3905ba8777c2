"""Figures for the interference probes and the report, drawn with Matplotlib's Agg canvas.

Figures are built from ``matplotlib.figure.Figure`` directly, never through
pyplot, so nothing here touches global backend or figure state, and each is
written atomically as a PNG.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from sklearn.metrics import roc_curve

from snlad.files import atomic_write_bytes
from snlad.scoring.metrics import image_metrics

_PANEL = (4.2, 3.2)  # inches per subplot: readable at 90 dpi in a 1400 px page


def save(figure: Figure, path: Path, palette: bool = False) -> Path:
    """Write a PNG; ``palette`` for photo grids, which shrink about 4x with little visible loss."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    atomic_write_bytes(Path(path), palette_png(buffer.getvalue()) if palette else buffer.getvalue())
    return Path(path)


def palette_png(png: bytes) -> bytes:
    """Re-encode a PNG with a 256-colour palette, so example grids stay small enough to commit."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(
        buffer, format="PNG", optimize=True
    )
    return buffer.getvalue()


def _panels(count: int, title: str, width: float = _PANEL[0]) -> tuple[Figure, list]:
    figure = Figure(figsize=(width * count, _PANEL[1] + 0.4), layout="constrained")
    axes = figure.subplots(1, count, squeeze=False)[0]
    figure.suptitle(title)
    return figure, list(axes)


def curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    chance: float | None = 0.5,
) -> Path:
    """One line with markers per series (e.g. AUROC against the mixup ratio, one per run)."""
    figure = Figure(figsize=(6.0, 4.0))
    axis = figure.subplots()
    for label, (xs, ys) in series.items():
        axis.plot(xs, ys, marker="o", label=label)
    if chance is not None:
        axis.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    axis.set(title=title, xlabel=xlabel, ylabel=ylabel, ylim=(-0.02, 1.02))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save(figure, path)


def distributions(per_run: Mapping[str, Mapping[str, np.ndarray]], path: Path, title: str) -> Path:
    """Per run, a box plot with its points for each named group of scores (normals, each lambda)."""
    figure, axes = _panels(len(per_run), title)
    for axis, (label, groups) in zip(axes, per_run.items()):
        values = [np.asarray(v, dtype=float) for v in groups.values()]
        axis.boxplot(values, showfliers=False)
        for position, points in enumerate(values, start=1):
            offsets = np.linspace(-0.15, 0.15, len(points)) if len(points) > 1 else np.zeros(1)
            axis.scatter(position + offsets, points, s=6, alpha=0.6, color="black")
        axis.set_xticks(range(1, len(values) + 1), list(groups), rotation=45, fontsize=7)
        axis.set(title=label, ylabel="image score")
    return save(figure, path)


def histograms(
    per_run: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    title: str,
    thresholds: Mapping[str, float | None] | None = None,
) -> Path:
    """Per run, histograms of the good and the defective images' scores, and its image threshold as a line.

    Outlined (step) histograms: filled ones blended where they overlap into a
    colour the legend does not have. The threshold shows which side of the
    decision each image falls on.
    """
    figure, axes = _panels(len(per_run), title)
    for axis, (label, (good, defective)) in zip(axes, per_run.items()):
        threshold = (thresholds or {}).get(label)
        both = np.concatenate([good, defective, [] if threshold is None else [threshold]])
        bins = np.linspace(both.min(), both.max() + 1e-9, 16) if both.size else 10
        axis.hist(good, bins=bins, histtype="step", linewidth=2, label=f"good ({len(good)})", color="tab:green")
        axis.hist(
            defective, bins=bins, histtype="step", linewidth=2, label=f"defective ({len(defective)})", color="tab:red"
        )
        if threshold is not None:
            axis.axvline(
                threshold, color="black", linestyle="--", linewidth=1.5, label=f"image threshold {threshold:.4g}"
            )
        axis.set(title=label, xlabel="image score", ylabel="images")
        axis.legend(fontsize=8)
    return save(figure, path)


def roc_curves(per_run: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """Image-level ROC curve of every run, from (labels, scores), its AUROC in the legend; runs lacking a class are left out.

    The axes reach a little past [0, 1] and lines are not clipped, so a perfect
    curve (along the left and top edges) stays visible instead of hiding under the frame.
    """
    figure = Figure(figsize=(4.5, 4.2))
    axis = figure.subplots()
    for label, (labels, scores) in per_run.items():
        if 0 < np.sum(labels) < len(labels):
            fpr, tpr, _ = roc_curve(labels, scores)
            auroc = image_metrics(scores, labels)["image_auroc"]
            axis.plot(fpr, tpr, linewidth=2, clip_on=False, label=f"{label} (AUROC {100 * auroc:.1f} %)")
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    limits = (-0.02, 1.02)
    axis.set(title=title, xlabel="false positive rate", ylabel="true positive rate", xlim=limits, ylim=limits)
    axis.legend(fontsize=8, loc="lower right")
    return save(figure, path)


Series = Mapping[str, tuple[Sequence[float], Sequence[float] | None]]  # label -> (bar heights, error bars)


def bar_panels(
    panels: Mapping[str, tuple[Sequence[str], Series]],
    path: Path,
    title: str,
    ylabel: str,
    limits: tuple[float, float] = (0.0, 1.05),
) -> Path:
    """One panel per entry, each with grouped bars: a group per name, a bar per series."""
    most = max(len(groups) for groups, _ in panels.values())
    figure, axes = _panels(len(panels), title, max(_PANEL[0], 1.5 + 0.45 * most))
    for axis, (panel_title, (groups, series)) in zip(axes, panels.items()):
        _bars(axis, groups, series)
        axis.set(title=panel_title, ylabel=ylabel, ylim=limits)
    return save(figure, path)


def _bars(axis, groups: Sequence[str], series: Series) -> None:
    width = 0.8 / max(len(series), 1)
    positions = np.arange(len(groups))
    for offset, (label, (heights, errors)) in enumerate(series.items()):
        axis.bar(
            positions + (offset - (len(series) - 1) / 2) * width, heights, width, yerr=errors, capsize=3, label=label
        )
    axis.set_xticks(positions, list(groups), rotation=35, ha="right", fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)


def image_grid(
    cells: Sequence[Sequence[np.ndarray]],
    row_titles: Sequence[str],
    column_titles: Sequence[str],
    path: Path,
    title: str,
) -> Path:
    """A table of uint8 H x W x 3 images; row and column titles say what each shows."""
    rows, columns = len(cells), len(column_titles)
    figure = Figure(figsize=(1.9 * columns, 1.9 * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    figure.suptitle(title)
    for r, row in enumerate(cells):
        for c, image in enumerate(row):
            axis = axes[r][c]
            axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(column_titles[c], fontsize=8)
            if c == 0:
                axis.set_ylabel(row_titles[r], fontsize=8)
    return save(figure, path, palette=True)


def colour_legend(path: Path, threshold_at: float) -> Path:
    """The overlays' colour bar: jet from the typical normal pixel to past the decision threshold (at ``threshold_at``)."""
    figure = Figure(figsize=(6.0, 0.9), layout="constrained")
    axis = figure.subplots()
    axis.imshow(np.linspace(0, 1, 256)[None, :], cmap="jet", aspect="auto", extent=(0, 1, 0, 1))
    axis.set_yticks([])
    axis.set_xticks(
        [0, threshold_at, 1], ["typical normal pixel", "decision threshold", "further above it"], fontsize=8
    )
    axis.axvline(threshold_at, color="black", linewidth=1)
    return save(figure, path)
