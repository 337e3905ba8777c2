"""A trained model: its networks, its scorer, its thresholds; saved as and loaded from ``model.pt``.

Loading rebuilds the architecture from the config stored in the file, so a
checkpoint never depends on command-line flags.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from snlad.config import Config, effective_map, from_dict
from snlad.device import resolve_device
from snlad.errors import SnladError, brief
from snlad.models import TeacherStudent, build_model
from snlad.runs.checkpoint import ALTERED, entry, read_checkpoint, real, state_dict, write_checkpoint
from snlad.scoring.maps import AnomalyScorer

T = TypeVar("T")
Scored = tuple[torch.Tensor, torch.Tensor]  # anomaly maps B x S x S, image scores B


@dataclass
class TrainedModel:
    config: Config
    model: TeacherStudent
    scorer: AnomalyScorer
    categories: list[str]
    calibration: dict[str, dict[str, Any]] = field(default_factory=dict)
    micro_batch: int = 0  # images per forward pass inside a batch; 0 = the whole batch at once

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def eval(self) -> TrainedModel:
        self.model.eval()
        self.scorer.eval()
        return self

    def score(self, images: torch.Tensor) -> Scored:
        """Anomaly maps (B x S x S) and image scores (B) of a batch already on the model's device."""
        return self.score_with(images, [self.scorer])[0]

    def score_with(self, images: torch.Tensor, scorers: Sequence[AnomalyScorer]) -> list[Scored]:
        """Maps and scores of ``images`` under each of ``scorers``, the networks run once.

        With ``micro_batch`` set, the batch goes through the networks that many
        images at a time: on a CPU a few images' activations stay in the cores'
        caches while a whole batch's do not: 1.2-1.5x the whole-batch throughput
        for EfficientNet-Lite0 (``snlad.engine.optimise.cpu_micro_batch``, docs/results/bench-speed.md).
        Each image's map depends on that image alone, so the result is the same either way.
        """
        chunks = (
            [images] if self.micro_batch <= 0 or len(images) <= self.micro_batch else images.split(self.micro_batch)
        )
        parts = []
        for chunk in chunks:
            teacher, student = self.model(chunk)
            parts.append([scorer(teacher, student) for scorer in scorers])
        if len(parts) == 1:
            return parts[0]
        return [(torch.cat([p[i][0] for p in parts]), torch.cat([p[i][1] for p in parts])) for i in range(len(scorers))]

    def save(self, path: Path) -> None:
        write_checkpoint(
            path,
            {
                "kind": "model",
                "config": self.config.to_dict(),
                "model": self.model.state_dict(),
                "categories": list(self.categories),
                "calibration": self.calibration,
            },
        )


def distinct_models(models: dict[str, TrainedModel]) -> list[tuple[TrainedModel, list[str]]]:
    """Each distinct model of a run (a multi-class model serves every category, by identity) with the categories it serves, in order."""
    served: dict[int, tuple[TrainedModel, list[str]]] = {}
    for category, trained in models.items():
        served.setdefault(id(trained), (trained, []))[1].append(category)
    return list(served.values())


def per_model(models: dict[str, TrainedModel], make: Callable[[TrainedModel], T]) -> dict[str, T]:
    """``make`` applied once to each distinct model of a run (a multi-class model serves every category), by category."""
    made: dict[str, T] = {}
    for trained, served in distinct_models(models):
        made |= dict.fromkeys(served, make(trained))
    return {category: made[category] for category in models}


def build_scorer(config: Config, model: TeacherStudent) -> AnomalyScorer:
    """The scorer of ``config``'s anomaly map for ``model``'s feature levels, on the model's device."""
    sides = model.teacher.level_sides(config.data.image_size)
    device = next(model.parameters()).device
    return AnomalyScorer(effective_map(config), config.data.image_size, sides).to(device)


def model_from_state(config: Config, state: dict[str, torch.Tensor], source: Path) -> TeacherStudent:
    """Rebuild the architecture the config describes and load ``state`` into it strictly."""
    model = build_model(config.model, pretrained_teacher=False)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        detail = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else brief(error)
        raise SnladError(
            f"checkpoint {source} does not match its own config ({detail}); it was altered or written by another snlad version: retrain the run"
        ) from None
    problems = list(result.missing_keys) + list(result.unexpected_keys)
    if problems:
        raise SnladError(
            f"checkpoint {source} does not match model={config.model.name} teacher={config.model.teacher} "
            f"({len(problems)} mismatched tensors, e.g. {problems[0]}); it was altered or written by another snlad version: retrain the run"
        )
    return model


def load_trained(path: Path, device: str = "auto") -> TrainedModel:
    """The finished model in ``path`` (a ``model.pt``) on ``device`` ("auto": a GPU where this machine has one).

    Never the device the model was trained on (``train.device``): a run trained on a GPU is used on CPU-only machines.
    """
    payload = read_checkpoint(path)
    if payload.get("kind") != "model":
        raise SnladError(
            f"{path} is a training checkpoint, not a finished model: finish it with `snlad train --resume`"
        )
    config = from_dict(entry(payload, "config", dict, path, RETRAIN), source=str(path))
    state = state_dict(payload, "model", path, RETRAIN)
    categories = entry(payload, "categories", list, path, RETRAIN)
    if not categories or not all(isinstance(category, str) for category in categories):
        raise SnladError(f"checkpoint {path}: 'categories' must be a list of category names; {ALTERED}: {RETRAIN}")
    calibration = _checked_calibration(payload.get("calibration", {}), path)
    model = model_from_state(config, state, path).to(resolve_device(device))
    return TrainedModel(config, model, build_scorer(config, model), list(categories), calibration).eval()


RETRAIN = "retrain the run (or restore the file)"
CALIBRATION_CHECKS: dict[str, Callable[[object], bool]] = {  # what predict, export, the report and calibrate read
    "threshold": real,
    "pixel_threshold": real,
    "pixel_floor": lambda value: value is None or real(value),  # runs calibrated before it existed lack it
    "rule": lambda value: isinstance(value, str),
    "source": lambda value: isinstance(value, str),
}


def _checked_calibration(calibration: object, path: Path) -> dict[str, dict[str, Any]]:
    """The stored thresholds: each a finite number, each entry complete; a NaN or a string would mark nothing (or crash) far from the file."""
    fix = "recalibrate with `snlad calibrate` (or retrain the run)"
    if not isinstance(calibration, dict):
        raise SnladError(
            f"checkpoint {path}: 'calibration' is a {type(calibration).__name__}, not a dict; {ALTERED}: {fix}"
        )
    for category, result in calibration.items():
        if not isinstance(result, dict):
            raise SnladError(f"checkpoint {path}: the calibration of {category!r} is not a dict; {ALTERED}: {fix}")
        bad = next((key for key, ok in CALIBRATION_CHECKS.items() if not ok(result.get(key))), None)
        if bad is not None:
            raise SnladError(
                f"checkpoint {path}: the calibration of {category!r} has {bad} {result.get(bad)!r}; {ALTERED}: {fix}"
            )
    return calibration
