"""A trained model on disk (``model.pt``) and in memory, and run-directory layout.

A multi-class run is ``RUN_DIR/model.pt``; a one-class run holds one
sub-run per category, ``RUN_DIR/<category>/model.pt``, listed in
``RUN_DIR/run.json``. Loading rebuilds the architecture from the config
stored in the file, so a checkpoint never depends on command-line flags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from snlad.config import Config, from_dict
from snlad.engine.device import resolve_device
from snlad.engine.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from snlad.errors import SnladError
from snlad.models import TeacherStudent, build_model
from snlad.scoring import AnomalyScorer


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

    def eval(self) -> "TrainedModel":
        self.model.eval()
        self.scorer.eval()
        return self

    def score(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly maps (B x S x S) and image scores (B) of a batch already on the model's device.

        With ``micro_batch`` set, the batch goes through the networks that many
        images at a time: on a CPU a few images' activations stay in the cores'
        caches while a whole batch's do not: 1.2-1.5x the whole-batch throughput
        for EfficientNet-Lite0 (``snlad.engine.fast.cpu_micro_batch``, docs/results/bench-speed.md). Each image's
        map depends on that image alone, so the result is the same either way.
        """
        if self.micro_batch <= 0 or len(images) <= self.micro_batch:
            return self.scorer(*self.model(images))
        parts = [self.scorer(*self.model(chunk)) for chunk in images.split(self.micro_batch)]
        return torch.cat([maps for maps, _ in parts]), torch.cat([scores for _, scores in parts])


def build_scorer(config: Config) -> AnomalyScorer:
    return AnomalyScorer(config.map, config.data.image_size, config.loss.affinity_size)


def save_trained(path: Path, trained: TrainedModel) -> None:
    save_checkpoint(
        path,
        {
            "kind": "model",
            "config": trained.config.to_dict(),
            "model": trained.model.state_dict(),
            "categories": list(trained.categories),
            "calibration": trained.calibration,
        },
    )


def model_from_state(config: Config, state: dict[str, torch.Tensor], source: Path) -> TeacherStudent:
    """Rebuild the architecture the config describes and load ``state`` into it strictly."""
    model = build_model(config.model, pretrained_teacher=False)
    result = model.load_state_dict(state, strict=False)
    problems = list(result.missing_keys) + list(result.unexpected_keys)
    if problems:
        raise SnladError(
            f"checkpoint {source} does not match model={config.model.name} teacher={config.model.teacher} "
            f"({len(problems)} mismatched tensors, e.g. {problems[0]}); it was altered or written by another snlad version: retrain the run"
        )
    return model


def load_trained(path: Path) -> TrainedModel:
    payload = load_checkpoint(path)
    if payload.get("kind") != "model":
        raise SnladError(f"{path} is a training checkpoint, not a finished model: finish it with `snlad train --resume`")
    config = from_dict(payload["config"], source=str(path))
    try:
        model = model_from_state(config, payload["model"], path)
    except RuntimeError as error:  # shape mismatches
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise SnladError(f"checkpoint {path} does not match its own config ({first}); it was altered or written by another snlad version: retrain the run") from None
    device = resolve_device(config.train.device)
    trained = TrainedModel(config, model.to(device), build_scorer(config).to(device), list(payload["categories"]), payload.get("calibration", {}))
    return trained.eval()


def write_run_index(run_dir: Path, mode: str, categories: list[str]) -> None:
    atomic_write_text(run_dir / "run.json", json.dumps({"mode": mode, "categories": categories}, indent=2))


def load_run(run_dir: Path) -> dict[str, TrainedModel]:
    """Map every category of the run to the model that serves it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SnladError(f"run directory {run_dir} does not exist")
    index_path = run_dir / "run.json"
    if not index_path.is_file():
        raise SnladError(f"{run_dir} is not a finished snlad run (no run.json): train it with `snlad train --out {run_dir}`")
    try:
        index = json.loads(index_path.read_text())
        mode, categories = index["mode"], index["categories"]
    except (ValueError, KeyError, TypeError):
        raise SnladError(f"{index_path} is corrupt; retrain the run") from None
    if mode == "multi-class":
        trained = load_trained(run_dir / "model.pt")
        return {category: trained for category in categories}
    return {category: load_trained(run_dir / category / "model.pt") for category in categories}
