"""Paper Fig. 5 for every category: test images, ground truth and each run's anomaly map side by side.

Only the shown images are scored. Each run's maps use the colour scale that
``snlad predict`` uses (:func:`snlad.visualisation.render.colour_scale`): from the run's
calibration for the category, blue = its typical normal pixel, yellow-orange
= its decision threshold; so a good image that stays blue next to a red
defect means the run separates them, whatever range its maps live in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from snlad.data import Sample, load_tensors
from snlad.engine.inference import score_tensors
from snlad.files import atomic_write_bytes
from snlad.report.html import esc, image
from snlad.runs.results import ReportRun
from snlad.visualisation import render

DISPLAY = 176  # px per grid cell, as in the page's stylesheet


def write_png(image: np.ndarray, path: Path) -> None:
    atomic_write_bytes(path, render.png_bytes(image))


def pick_examples(samples: Sequence[Sample], count: int) -> list[Sample]:
    """Up to ``count`` defective images, taking the defect types in turn, then the first good image."""
    ordered = sorted(samples, key=lambda s: s.image.as_posix())
    queues = {}
    for sample in ordered:
        if sample.label:
            queues.setdefault(sample.defect, []).append(sample)
    chosen: list[Sample] = []
    while len(chosen) < count and any(queues.values()):
        for defect in sorted(queues):
            if queues[defect] and len(chosen) < count:
                chosen.append(queues[defect].pop(0))
    return chosen + [s for s in ordered if not s.label][:1]


def _run_cells(
    report_run: ReportRun, category: str, shown: Sequence[Sample], pictures: np.ndarray, folder: Path, prefix: str
) -> tuple[list[str], str]:
    """One cell per shown image (the run's overlay and its image score), and the run's colour scale in words."""
    if category not in report_run.run.models:
        return [f'<span class="note">not trained on {esc(category)}</span>'] * len(shown), ""
    trained = report_run.run.models[category]
    maps, scores = score_tensors(trained, load_tensors(shown, trained.config.data.image_size)[0])
    maps = F.interpolate(maps[:, None], size=(DISPLAY, DISPLAY), mode="bilinear", align_corners=False)[:, 0].numpy()
    calibration = trained.calibration.get(category)
    scale = render.colour_scale(calibration, maps)
    cells = []
    for index, (picture, anomaly_map, score) in enumerate(zip(pictures, maps, scores, strict=True)):
        name = f"{prefix}-{index}.png"
        write_png(render.overlay(picture, anomaly_map, scale), folder / name)
        verdict = "" if not calibration else (" defective" if float(score) > calibration["threshold"] else " normal")
        cells.append(image(f"{folder.name}/{name}", f"{report_run.label} map") + f"score {float(score):.3f}{verdict}")
    if calibration and "pixel_floor" in calibration:
        legend = (
            f"image threshold {calibration['threshold']:.4g}, pixel threshold {calibration['pixel_threshold']:.4g} "
            f"({calibration['rule']}); colours {scale.low:.3g} (typical normal) to {scale.high:.3g}"
        )
    else:
        legend = f"colours {scale.low:.3g} to {scale.high:.3g} (range of these maps: no calibrated threshold)"
    return cells, legend


def category_grid(runs: Sequence[ReportRun], category: str, samples: Sequence[Sample], count: int, folder: Path) -> str:
    """The HTML table of one category; its PNGs are written into ``folder``."""
    shown = pick_examples(samples, count)
    pictures, masks = load_tensors(shown, DISPLAY)
    pictures = np.stack([render.to_uint8(p) for p in pictures])
    columns = [[], []]
    for index, (picture, mask) in enumerate(zip(pictures, masks)):
        write_png(picture, folder / f"{category}-image-{index}.png")
        columns[0].append(
            image(f"{folder.name}/{category}-image-{index}.png", shown[index].image.name)
            + f"{esc(shown[index].defect)}: {esc(shown[index].image.name)}"
        )
        if shown[index].label and shown[index].mask is None:
            columns[1].append('<span class="note">no mask (image-level label only)</span>')
            continue
        write_png(render.mask_to_rgb(mask), folder / f"{category}-mask-{index}.png")
        columns[1].append(image(f"{folder.name}/{category}-mask-{index}.png", "ground truth"))
    cells = [_run_cells(run, category, shown, pictures, folder, f"{category}-run{r}") for r, run in enumerate(runs)]
    columns += [run_cells for run_cells, _ in cells]
    header = "".join(
        f'<th data-run="{esc(run.label)}">{esc(run.label)}<br><span class="note">{esc(legend)}</span></th>'
        for run, (_, legend) in zip(runs, cells, strict=True)
    )
    rows = "".join("<tr>" + "".join(f"<td>{column[i]}</td>" for column in columns) + "</tr>" for i in range(len(shown)))
    return f'<table class="grid"><tr><th>image</th><th>ground truth</th>{header}</tr>{rows}</table>'
