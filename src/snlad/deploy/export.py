"""Export a trained model as one graph: images in, anomaly maps and scores out.

The graph takes ``images`` (float32, B x 3 x S x S, RGB in [0, 1], S the
model's image size, any B) and returns ``maps`` (B x S x S) and ``scores``
(B): teacher, student, per-level distances, upsampling and Gaussian smoothing
are all inside, so a deployment needs no snlad code (PatchCore: its memory
bank and the exhaustive nearest-neighbour search, MatMul + ArgMin per bank chunk). It is built from the
inference-optimised model (``snlad.engine.optimise``: BatchNorm folded,
NHWC), whose maps equal the PyTorch model's to float rounding; the export
test checks both files against it on real images.

Formats: OpenVINO IR (``X.xml`` + ``X.bin``, read from the ONNX graph by
OpenVINO; fp32, or int8 quantised by NNCF on held-out normal training
images: :mod:`snlad.deploy.export_openvino`), ONNX (opset 17, dynamic batch axis, via torch's TorchScript-based
exporter because the dynamo exporter needs the optional ``onnxscript``
package) and TorchScript (``torch.jit.trace``; load with ``torch.jit.load``).
Image size is fixed in both: TensorFlow "same" padding and the scorer's
matrices are computed for S. The model's calibration (thresholds) and its
image size travel in the file as metadata (ONNX ``metadata_props``,
TorchScript extra file ``snlad.json``).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snlad.deploy.export_openvino import PRECISIONS as EXPORT_PRECISIONS
from snlad.deploy.export_openvino import openvino_model, quantise_int8, save_openvino
from snlad.engine.optimise import cpu_micro_batch, optimise_for_inference
from snlad.errors import SnladError
from snlad.files import atomic_write_bytes
from snlad.runs.trained import TrainedModel

FORMATS = ("onnx", "torchscript", "openvino")
ONNX_OPSET = 17  # Gather/Pad/ReduceMax forms that onnxruntime >= 1.13 runs; nothing newer is needed


class AnomalyGraph(nn.Module):
    """images B x 3 x S x S in [0, 1] -> (maps B x S x S, scores B), in one module."""

    def __init__(self, trained: TrainedModel) -> None:
        super().__init__()
        self.model = trained.model
        self.scorer = trained.scorer  # its ops are named /scorer/... in the graph: int8 keeps them fp32

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher, student = self.model(images)
        return self.scorer(teacher, student)


def anomaly_graph(trained: TrainedModel, channels_last: bool = False) -> AnomalyGraph:
    """The exportable module of ``trained`` (on CPU, eval mode, BatchNorm folded)."""
    fast = optimise_for_inference(trained, channels_last=channels_last)
    return AnomalyGraph(fast).cpu().eval()


def export_metadata(trained: TrainedModel, category: str | None) -> dict[str, Any]:
    """What a deployment needs besides the graph: input contract and the decision thresholds."""
    config = trained.config
    calibration = trained.calibration.get(category, {}) if category else {}
    return {
        "format": "snlad-export-1",
        "model": config.model.name,
        "teacher": config.model.teacher,
        "image_size": config.data.image_size,
        "input": "images: float32 B x 3 x S x S, RGB in [0, 1], resized (not cropped) to S x S",
        "outputs": "maps: B x S x S; scores: B",
        "cpu_images_per_run": cpu_micro_batch(
            config.data.image_size
        ),  # fastest batch to feed on a CPU (docs/scaling.md)
        "categories": list(trained.categories),
        "category": category,
        "threshold": calibration.get("threshold"),
        "pixel_threshold": calibration.get("pixel_threshold"),
    }


def export(
    trained: TrainedModel,
    fmt: str,
    out: Path,
    category: str | None = None,
    precision: str = "fp32",
    calibration_images: torch.Tensor | None = None,
) -> Path:
    """Write ``trained`` as one graph in ``fmt`` to ``out`` (atomically).

    ``precision`` "int8" (OpenVINO only) quantises on ``calibration_images``
    (N x 3 x S x S in [0, 1], held-out normal training images).
    """
    if fmt not in FORMATS:
        raise SnladError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    if precision not in EXPORT_PRECISIONS or (precision != "fp32" and fmt != "openvino"):
        raise SnladError(f"precision {precision} is not exported as {fmt}: int8 is an OpenVINO export (fp32 otherwise)")
    if precision == "int8" and (calibration_images is None or not len(calibration_images)):
        raise SnladError("an int8 export needs calibration images: held-out normal training images (--data)")
    out = Path(out)
    metadata = {**export_metadata(trained, category), "precision": precision}
    if fmt == "openvino":
        model = openvino_model(onnx_bytes(trained, metadata), metadata)
        if precision == "int8":
            model = quantise_int8(model, calibration_images)
        return save_openvino(model, out)
    if fmt == "onnx":
        data = onnx_bytes(trained, metadata)
    else:
        data = _torchscript_bytes(anomaly_graph(trained, channels_last=True), _example(trained), metadata)
    atomic_write_bytes(out, data)
    return out


def _example(trained: TrainedModel) -> torch.Tensor:
    size = trained.config.data.image_size
    return torch.rand(2, 3, size, size)


def onnx_bytes(trained: TrainedModel, metadata: dict[str, Any]) -> bytes:
    """The ONNX file of ``trained`` with ``metadata``, in memory (what ``--runtime`` runs without an exported file)."""
    return _onnx_bytes(anomaly_graph(trained), _example(trained), metadata)


def _onnx_bytes(graph: AnomalyGraph, example: torch.Tensor, metadata: dict[str, Any]) -> bytes:
    with torch.no_grad(), _quiet_tracing():
        return _traced_onnx_bytes(graph, example, metadata)


def _traced_onnx_bytes(graph: AnomalyGraph, example: torch.Tensor, metadata: dict[str, Any]) -> bytes:
    try:
        import onnx
    except ImportError:
        raise SnladError(
            "ONNX export needs the onnx package: pip install 'snlad[export]' (or pip install onnx)"
        ) from None
    buffer = io.BytesIO()
    torch.onnx.export(
        graph,
        (example,),
        buffer,
        dynamo=False,
        input_names=["images"],
        output_names=["maps", "scores"],
        dynamic_axes={"images": {0: "batch"}, "maps": {0: "batch"}, "scores": {0: "batch"}},
        opset_version=ONNX_OPSET,
    )
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"snlad.{key}", json.dumps(value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _torchscript_bytes(graph: AnomalyGraph, example: torch.Tensor, metadata: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with torch.no_grad(), _quiet_tracing():  # also torch.jit.save's deprecation warning, as before
        traced = torch.jit.trace(graph, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={"snlad.json": json.dumps(metadata)})
    return buffer.getvalue()


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Tracing warns about every shape read turned into a constant: by design, S is fixed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*[Cc]onstant folding.*")
        # RD++'s projection: instance norm without running statistics normalises by each input's own
        # statistics in eval mode too, which is what "train=True" exports.
        warnings.filterwarnings("ignore", message=".*operator 'instance_norm' is set to train=True.*")
        yield


def read_onnx_metadata(path: Path) -> dict[str, Any]:
    """The ``snlad.*`` metadata of an exported ONNX file."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {
        p.key.removeprefix("snlad."): json.loads(p.value) for p in proto.metadata_props if p.key.startswith("snlad.")
    }
