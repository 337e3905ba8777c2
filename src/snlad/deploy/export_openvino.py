"""OpenVINO IR export: the ONNX graph of :mod:`snlad.deploy.export` read by OpenVINO, optionally int8-quantised.

OpenVINO reads the ONNX graph itself (no second tracing of the model), so the
IR computes exactly what the ONNX file does; the model's metadata goes into
the IR's ``rt_info`` under ``snlad``, each value as JSON, as in the ONNX
``metadata_props``. An IR is two files, ``X.xml`` (the graph) and ``X.bin``
(the weights); both are written atomically, the weights first, so a reader
never finds a new graph beside old weights.

int8: post-training quantisation with NNCF (``nncf.quantize``, its default
min-max calibration) on images the caller passes, held-out normal training
images: the model only ever needs to represent normal appearance well, and
test images must not tune anything. The scorer's part (distances, upsampling,
blur) is excluded from quantisation: its values are the anomaly map itself.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from snlad.deploy.runtime import INSTALL, import_runtime
from snlad.errors import SnladError
from snlad.files import atomic_write_bytes

PRECISIONS = ("fp32", "int8")  # what an IR file holds; bf16 is a run-time choice (INFERENCE_PRECISION_HINT)
SCORER_SCOPE = "/scorer/"  # the ONNX exporter names nodes by module path: AnomalyGraph.scorer
CALIBRATION_BATCH = 4  # images per NNCF calibration step; the statistics do not depend on it


def openvino_model(onnx_bytes: bytes, metadata: dict[str, Any]) -> Any:
    """The ONNX graph as an ``openvino.Model`` with ``metadata`` in its rt_info (``snlad`` -> key -> JSON)."""
    ov = import_runtime("openvino")
    model = ov.Core().read_model(onnx_bytes, b"")
    for key, value in metadata.items():
        model.set_rt_info(json.dumps(value), ["snlad", key])
    return model


def quantise_int8(model: Any, images: torch.Tensor) -> Any:
    """``model`` with int8 weights and activations, calibrated on ``images`` (N x 3 x S x S in [0, 1]).

    Only the networks' convolutions are quantised: the scorer's nodes (ONNX
    scope ``/scorer/``, from ``AnomalyGraph.scorer``) stay fp32; ignoring by
    type would not do, the scorer's upsampling and blur are MatMuls too.
    """
    # NNCF sends usage telemetry to Intel on import unless NNCF_CI is set (its only switch short of a consent
    # file in the user's home; it changes nothing else): snlad makes no network calls on a user's behalf.
    os.environ.setdefault("NNCF_CI", "1")
    try:
        import nncf
    except ImportError:
        raise SnladError(f"int8 quantisation needs NNCF: {INSTALL['openvino']}") from None
    nncf.set_log_level(logging.ERROR)  # else one INFO line per node it leaves fp32
    batches = [chunk.numpy() for chunk in images.split(CALIBRATION_BATCH)]
    scorer = [op.get_friendly_name() for op in model.get_ops() if op.get_friendly_name().startswith(SCORER_SCOPE)]
    ignored = nncf.IgnoredScope(names=scorer, validate=False)
    return nncf.quantize(
        model,
        nncf.Dataset(batches),
        subset_size=len(batches),  # NNCF counts dataset items: batches
        ignored_scope=ignored,
        preset=nncf.QuantizationPreset.MIXED,  # asymmetric activations: ReLU6 outputs are one-sided
    )


def save_openvino(model: Any, out: Path) -> Path:
    """Write ``model`` as ``out`` (.xml) and its weights beside it (.bin), each atomically; returns ``out``."""
    ov = import_runtime("openvino")
    out = Path(out)
    if out.suffix != ".xml":
        raise SnladError(f"an OpenVINO IR is an .xml file (its weights go beside it as .bin): got {out}")
    with tempfile.TemporaryDirectory(prefix="snlad-openvino-") as folder:
        staged = Path(folder) / "model.xml"
        ov.save_model(model, str(staged), compress_to_fp16=False)  # fp16 weights would change the maps
        atomic_write_bytes(out.with_suffix(".bin"), staged.with_suffix(".bin").read_bytes())
        atomic_write_bytes(out, staged.read_bytes())
    return out


def read_openvino_metadata(path: Path) -> dict[str, Any]:
    """The ``snlad`` metadata of an exported IR (``X.xml``)."""
    ov = import_runtime("openvino")
    model = ov.Core().read_model(str(path))
    if not model.has_rt_info(["snlad"]):
        return {}
    return {key: json.loads(value) for key, value in model.get_rt_info(["snlad"]).value.items()}
