"""A run's model ready to score in the runtime a deployment chose: torch, ONNX Runtime or OpenVINO.

``--runtime torch`` (the default) is the inference-optimised PyTorch model.
The graph runtimes score an exported graph: the file given (``snlad export``;
an int8 OpenVINO IR is one), or, without one, the run's graph exported in
memory at fp32, so trying a runtime needs no export step. An exported file
must come from the same run: its metadata's model and image size are checked
against the run's, and the thresholds stay the run's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from snlad.data import AnomalyDataset, holdout_split, index_dataset
from snlad.deploy.export import export_metadata, onnx_bytes, read_onnx_metadata
from snlad.deploy.export_openvino import read_openvino_metadata
from snlad.deploy.runtime import RUNTIMES, runtime_model, runtime_session
from snlad.engine.optimise import optimise_for_inference
from snlad.errors import SnladError
from snlad.runs.trained import TrainedModel, distinct_models, per_model

CALIBRATION_IMAGES = 64
"""Held-out normal images int8 calibration reads at most: NNCF's min-max statistics settle within a few
dozen images (its default subset is 300 *batches*); more only lengthens the export."""


def deployed(
    trained: TrainedModel,
    runtime: str = "torch",
    exported: Path | None = None,
    precision: str = "fp32",
    micro_batch: int | None = None,
    torch_compile: bool = False,
) -> TrainedModel:
    """``trained`` scored by ``runtime`` (see the module docstring); ``micro_batch`` as in ``optimise_for_inference``.

    For a graph runtime ``micro_batch`` None means the whole batch per call: the runtime schedules its own cache
    blocking (docs/results/bench-inference.md).
    """
    if runtime not in RUNTIMES:
        raise SnladError(f"unknown runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        if exported is not None or precision != "fp32":
            raise SnladError("--runtime torch scores the run's own model at fp32: drop --exported and --precision")
        return optimise_for_inference(trained, micro_batch=micro_batch, torch_compile=torch_compile)
    if torch_compile:
        raise SnladError(f"--compile is for --runtime torch; {runtime} compiles its graph itself")
    graph: Any = (
        onnx_bytes(trained, export_metadata(trained, None))
        if exported is None
        else _checked(trained, exported, runtime)
    )
    session = runtime_session(runtime, graph, torch.get_num_threads(), precision)
    return runtime_model(trained, session, micro_batch or 0)


def deployed_run(
    models: dict[str, TrainedModel],
    runtime: str = "torch",
    exported: Path | None = None,
    precision: str = "fp32",
    micro_batch: int | None = None,
    torch_compile: bool = False,
) -> dict[str, TrainedModel]:
    """:func:`deployed` for every distinct model of a run (a multi-class model once)."""
    if exported is not None and len(distinct_models(models)) > 1:
        raise SnladError(f"{exported} is one model's graph and this run has one per category: score one (--category)")
    return per_model(
        models, lambda trained: deployed(trained, runtime, exported, precision, micro_batch, torch_compile)
    )


def _checked(trained: TrainedModel, exported: Path, runtime: str) -> Path:
    """``exported`` if it is a graph of ``trained``'s model and size that ``runtime`` reads."""
    exported = Path(exported)
    if not exported.is_file():
        raise SnladError(f"exported model {exported} does not exist: write it with `snlad export`")
    if exported.suffix == ".xml":
        if runtime != "openvino":
            raise SnladError(f"{exported} is an OpenVINO IR: score it with --runtime openvino")
        metadata = read_openvino_metadata(exported)
    elif exported.suffix == ".onnx":
        metadata = read_onnx_metadata(exported)
    else:
        raise SnladError(f"{exported}: --exported takes an .onnx file or an OpenVINO .xml written by `snlad export`")
    config = trained.config
    expected = {"model": config.model.name, "teacher": config.model.teacher, "image_size": config.data.image_size}
    found = {key: metadata.get(key) for key in expected}
    if found != expected:
        raise SnladError(f"{exported} was exported from another model ({found}), not this run's ({expected})")
    return exported


def calibration_images(trained: TrainedModel, data_root: Path, limit: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """Up to ``limit`` of the run's held-out normal training images (N x 3 x S x S), spread over its categories.

    The same hold-out the run's thresholds were calibrated on (its fraction
    and seed): images the networks were not trained on, and never test images.
    """
    config = trained.config
    samples = index_dataset(data_root, "train", trained.categories)
    _, held_out = holdout_split(samples, config.data.holdout_fraction, config.train.seed)
    if not held_out:
        raise SnladError(
            "the run held back no normal training images (data.holdout_fraction=0): nothing to calibrate int8 on"
        )
    step = max(1, len(held_out) // limit)
    chosen = held_out[::step][:limit]
    dataset = AnomalyDataset(chosen, config.data.image_size)
    return torch.stack([dataset[index]["image"] for index in range(len(dataset))])
