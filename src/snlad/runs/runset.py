"""Several trained runs side by side, each with a short human-readable label.

Probes and the report compare runs (SNL vs its baseline) in one table or
figure, so every run needs a name that tells it apart: its model name, plus
the shortest tail of its path that differs when two runs share a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from snlad.errors import SnladError
from snlad.runs.run import Run, known_categories
from snlad.runs.trained import TrainedModel


@dataclass
class LabelledRun:
    label: str
    path: Path
    models: dict[str, TrainedModel]
    mode: str  # "multi-class" or "one-class", from run.json

    @property
    def first(self) -> TrainedModel:
        return next(iter(self.models.values()))

    def model_for(self, category: str) -> TrainedModel:
        """The model that serves ``category``; a clear error when the run never saw it."""
        known_categories(self.path, self.models, [category])
        return self.models[category]


def run_labels(paths: Sequence[Path], names: Sequence[str]) -> list[str]:
    """``names[i]``, or ``names[i] (a/b)`` with the shortest distinguishing path tail when names repeat."""
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise SnladError("the same run directory was given twice")
    labels = []
    for path, name in zip(resolved, names):
        twins = [p for p, n in zip(resolved, names) if n == name]
        if len(twins) == 1:
            labels.append(name)
            continue
        depth = 1
        while len({p.parts[-depth:] for p in twins}) < len(twins):
            depth += 1
        labels.append(f"{name} ({'/'.join(path.parts[-depth:])})")
    return labels


def load_runs(paths: Sequence[str | Path]) -> list[LabelledRun]:
    """Load every run directory (``SnladError`` for a missing or broken one) and label it."""
    if not paths:
        raise SnladError("give at least one run directory (--run)")
    runs = [Run(Path(path)) for path in paths]
    loaded = [run.load_models() for run in runs]
    empty = [str(path) for path, models in zip(paths, loaded, strict=True) if not models]
    if empty:
        raise SnladError(f"run {empty[0]} lists no categories in its run.json; retrain it")
    names = [next(iter(models.values())).config.model.name for models in loaded]
    labels = run_labels([run.path for run in runs], names)
    modes = [run.read_index().mode for run in runs]
    return [LabelledRun(*fields) for fields in zip(labels, (run.path for run in runs), loaded, modes, strict=True)]
