"""Scoring with an exported graph in a graph runtime (ONNX Runtime, OpenVINO) instead of eager PyTorch.

A :class:`RuntimeModel` is a :class:`TrainedModel` whose ``score`` runs the
exported graph (images -> maps, scores; :mod:`snlad.export`), so prediction,
testing and the bench use it unchanged: everything else (config, categories,
thresholds) is the run's. Graph runtimes fuse each conv with its activation
and pick kernels for this CPU once, where eager PyTorch dispatches op by op;
see docs/results/bench-inference.md for what that buys here.

Precision: ``fp32`` is exact to float rounding. ``bf16`` (OpenVINO only) runs
the networks in bfloat16 (AMX or AVX512-BF16 instructions where the CPU has
them, emulated otherwise). OpenVINO *defaults* to bf16 on such CPUs, so fp32
is asked for explicitly here: an unasked change of the maps is worse than a
slower default. ``int8`` is a property of the exported file (quantised at
export, :func:`snlad.export_openvino.quantise_int8`), not of the session.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snlad.engine.trained import Scored, TrainedModel
from snlad.errors import SnladError
from snlad.scoring import AnomalyScorer

RUNTIMES = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")  # what a session computes in; int8 comes with the file
INSTALL = {
    "onnxruntime": "pip install 'snlad[export]' (or pip install onnxruntime)",
    "openvino": "pip install 'snlad[openvino]' (or pip install openvino nncf)",
}
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16"}
Session = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # images B x 3 x S x S -> (maps, scores)


def import_runtime(runtime: str) -> Any:
    """The runtime's Python module, or one line naming the pip command that installs it."""
    try:
        if runtime == "onnxruntime":
            import onnxruntime as module
        elif runtime == "openvino":
            import openvino as module
        else:
            raise SnladError(f"unknown runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")
    except ImportError:
        raise SnladError(f"runtime {runtime} is not installed: {INSTALL[runtime]}") from None
    return module


def onnxruntime_session(graph: bytes | Path, threads: int, precision: str = "fp32") -> Session:
    """An ONNX Runtime CPU session of ``graph`` (ONNX bytes or file), ``threads`` intra-op threads."""
    if precision != "fp32":
        raise SnladError(
            "ONNX Runtime's CPU provider runs fp32 only here: use --runtime openvino for bf16, or an int8 export"
        )
    ort = import_runtime("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one graph, one request at a time: a second pool only competes for the cores
    # Idle threads busy-wait after each run by default; predict decodes and writes images between runs, and
    # the spinning took 12-20 % off the work beside it (docs/scaling.md, results/bench-cpu-options.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = graph if isinstance(graph, bytes) else str(graph)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return lambda images: tuple(session.run(["maps", "scores"], {"images": images}))


def openvino_session(graph: bytes | Path | Any, threads: int, precision: str = "fp32") -> Session:
    """An OpenVINO CPU session of ``graph`` (ONNX bytes, an IR or ONNX file, or an ``openvino.Model``)."""
    if precision not in OPENVINO_PRECISION:
        raise SnladError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    ov = import_runtime("openvino")
    core = ov.Core()
    if isinstance(graph, bytes):
        model = core.read_model(graph, b"")
    elif isinstance(graph, str | Path):
        model = core.read_model(str(graph))
    else:
        model = graph
    compiled = core.compile_model(
        model,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision],
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",  # one request uses every thread; our batches bring the parallelism
        },
    )
    request = compiled.create_infer_request()

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = request.infer({"images": images})
        return outputs["maps"].copy(), outputs["scores"].copy()  # the request reuses its output buffers

    return run


SESSIONS: dict[str, Callable[[Any, int, str], Session]] = {
    "onnxruntime": onnxruntime_session,
    "openvino": openvino_session,
}


def runtime_session(runtime: str, graph: Any, threads: int, precision: str = "fp32") -> Session:
    """The session of ``runtime`` ("onnxruntime" or "openvino") for ``graph``."""
    if runtime not in SESSIONS:
        raise SnladError(f"runtime '{runtime}' runs no exported graph: choose one of {', '.join(SESSIONS)}")
    return SESSIONS[runtime](graph, threads, precision)


@dataclass
class RuntimeModel(TrainedModel):
    """A trained model scored by an exported graph in ``session`` (maps and scores on the CPU).

    Only the run's own anomaly map is in the graph: scoring with other scorers
    (``--set map.*``, the selection's variants) needs the PyTorch model.
    """

    session: Session | None = None

    def score_with(self, images: torch.Tensor, scorers: Sequence[AnomalyScorer]) -> list[Scored]:
        if self.session is None or list(scorers) != [self.scorer]:
            raise SnladError("an exported graph scores with the run's own anomaly map only; use --runtime torch")
        chunks = [images] if self.micro_batch <= 0 else images.split(self.micro_batch)
        parts = [self.session(np.ascontiguousarray(chunk.cpu().numpy(), dtype=np.float32)) for chunk in chunks]
        maps = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        scores = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        return [(maps, scores)]


def runtime_model(trained: TrainedModel, session: Session, micro_batch: int = 0) -> RuntimeModel:
    """``trained`` scored by ``session``: ``micro_batch`` images per call (0: the whole batch)."""
    return RuntimeModel(
        trained.config,
        trained.model,
        trained.scorer,
        list(trained.categories),
        trained.calibration,
        micro_batch,
        session,
    ).eval()
