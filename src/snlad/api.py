"""The Python API: everything the ``snlad`` command does, as functions; the CLI is a thin layer over them.

```python
from snlad import api
config = api.resolve_config("snl-fd", overrides=["train.epochs=20"])
api.train(config, "ROOT", "runs/mine")
metrics = api.test("runs/mine", "ROOT")          # {category: {metric: value}, "mean": {...}}
detector = api.load("runs/mine", category="bottle")  # score images in memory, nothing written
[detection] = detector.score(pil_image)           # also numpy arrays, tensors, paths, or a list of them
detection.score, detection.anomalous, detection.map, detection.mask
```

Metrics are fractions in [0, 1] here and in the files; printed tables show percentages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from snlad.backbones import BACKBONE_NAMES
from snlad.config import MAX_SEED, MODEL_NAMES, RESUMABLE_SETTINGS, is_seed
from snlad.engine.detector import Detection, Detector, ImageLike
from snlad.engine.evaluate import metrics_markdown
from snlad.engine.predict import MAP_DTYPES, MAP_RESOLUTIONS
from snlad.engine.run import Run
from snlad.engine.train import TrainingInterrupted
from snlad.experiments import load_experiment, run_experiment
from snlad.probes import CutPasteSettings, MixupSettings, run_cutpaste, run_mixup
from snlad.report import build_report, onevsmulti_figure
from snlad.thresholds import RULES
from snlad.workflow import (
    calibrate,
    export,
    predict,
    resolve_config,
    resume_config,
    run_model,
    test,
    train,
    validate,
    validate_real,
)

__all__ = [
    "BACKBONE_NAMES",
    "MAP_DTYPES",
    "MAP_RESOLUTIONS",
    "MAX_SEED",
    "MODEL_NAMES",
    "RESUMABLE_SETTINGS",
    "RULES",
    "CutPasteSettings",
    "Detection",
    "Detector",
    "ImageLike",
    "MixupSettings",
    "Run",
    "TrainingInterrupted",
    "calibrate",
    "experiment",
    "export",
    "figure_onevsmulti",
    "load",
    "is_seed",
    "metrics_table",
    "predict",
    "probe_cutpaste",
    "probe_mixup",
    "report",
    "resolve_config",
    "resume_config",
    "run_model",
    "test",
    "train",
    "validate",
    "validate_real",
]


def load(run_dir: str | Path, category: str | None = None) -> Detector:
    """A run's model ready to score images in memory (:class:`Detector`); ``category`` picks its thresholds.

    Each detection has the image ``score``, the anomaly ``map`` at the image's
    size, and with a calibrated category ``anomalous`` (score > image
    threshold) and the defect ``mask`` (map > pixel threshold), as ``snlad predict`` writes them.
    """
    return Detector(run_model(run_dir, category), category)


def metrics_table(per_category: dict[str, dict[str, float]], title: str | None = None) -> str:
    """The Markdown table ``snlad test`` prints and writes to ``metrics.md``."""
    return metrics_markdown(per_category, title)


def experiment(
    path: str | Path,
    data_root: str | Path,
    out_dir: str | Path,
    only: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    modes: Sequence[str] | None = None,
    tables_only: bool = False,
    progress: bool = True,
    real_defects: str | Path | None = None,
    categories: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Train, test and validate every configuration x seed x mode of an experiment file; returns the tables written.

    ``real_defects``: a root of real defects disjoint from the test split (e.g. realad-val) every run is also validated on.
    ``categories``: instead of the file's ``categories`` (or its settings' ``data.categories``; default all).
    """
    return run_experiment(
        load_experiment(path),
        data_root,
        out_dir,
        list(only) if only else None,
        list(seeds) if seeds else None,
        list(modes) if modes else None,
        tables_only,
        progress,
        real_defects,
        list(categories) if categories else None,
    )


def probe_mixup(
    runs: Sequence[str | Path], data_root: str | Path, settings: MixupSettings, out_dir: str | Path
) -> list[dict]:
    """Mixup interference probe (paper Fig. 2, left); see :mod:`snlad.probes.mixup`."""
    return run_mixup(runs, data_root, settings, out_dir)


def probe_cutpaste(
    runs: Sequence[str | Path], data_root: str | Path, settings: CutPasteSettings, out_dir: str | Path
) -> list[dict]:
    """Cut-paste interference probe (paper Fig. 2, right); see :mod:`snlad.probes.cutpaste`."""
    return run_cutpaste(runs, data_root, settings, out_dir)


def report(
    runs: Sequence[str | Path],
    data_root: str | Path,
    out_dir: str | Path,
    probe_dirs: Sequence[str | Path] = (),
    experiment_dir: str | Path | None = None,
    examples: int = 3,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """The HTML report comparing tested runs; returns ``OUT/index.html`` (an earlier one replaced only with ``overwrite``)."""
    return build_report(runs, data_root, out_dir, probe_dirs, experiment_dir, examples, progress, overwrite)


def figure_onevsmulti(experiment_dir: str | Path, out_png: str | Path) -> Path:
    """Paper Fig. 1 from a finished experiment: one-class vs multi-class bars."""
    return onevsmulti_figure(experiment_dir, out_png)
