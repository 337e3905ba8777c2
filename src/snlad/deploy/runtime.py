"""Scoring with an exported graph in a graph runtime (ONNX Runtime, OpenVINO) instead of eager PyTorch.

A :class:`RuntimeModel` is a :class:`TrainedModel` whose ``score`` runs the
exported graph (images -> maps, scores; :mod:`snlad.deploy.export`), so prediction,
testing and the bench use it unchanged: everything else (config, categories,
thresholds) is the run's. Graph runtimes fuse each conv with its activation
and pick kernels for this CPU once, where eager PyTorch dispatches op by op;
see docs/results/bench-inference.md for what that buys here.

Precision: ``fp32`` is exact to float rounding. ``bf16`` (OpenVINO only) runs
the networks in bfloat16 (AMX or AVX512-BF16 instructions where the CPU has
them, emulated otherwise). OpenVINO *defaults* to bf16 on such CPUs, so fp32
is asked for explicitly here: an unasked change of the maps is worse than a
slower default. ``int8`` is a property of the exported file (quantised at
export, :func:`snlad.deploy.export_openvino.quantise_int8`), not of the session.

``mixed`` (OpenVINO only): bf16 except the teacher's first stage and the
scoring, which stay fp32. Measured on realad (docs/results/bench-inference.md):
plain bf16 moves the maps by about 7 % of their range and nearly all of it
enters in the teacher's first, highest-resolution stage (pretrained weights
with BatchNorm folded in, large pre-activations), whose rounding the later
stages carry on; the student rounds harmlessly (under 1 %), and keeping only
the scoring (distances, upsampling, blur) in fp32 changes nothing. OpenVINO's
CPU plugin ignores per-node precision marks (rt_info ``precise_0`` /
``disable_fp16_compression_0``) under bf16, so the graph is cut instead:
:func:`split_graph` makes three models, run one after the other, each
compiled at its own precision; intermediate features pass between them as
arrays (no copy on input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snlad.errors import SnladError
from snlad.runs.trained import Scored, TrainedModel
from snlad.scoring.maps import AnomalyScorer

RUNTIMES = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "mixed")  # what a session computes in; int8 comes with the file
INSTALL = {
    "onnxruntime": "pip install 'snlad[export]' (or pip install onnxruntime)",
    "openvino": "pip install 'snlad[openvino]' (or pip install openvino nncf)",
}
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16"}
FP32_HEAD = ("/model/teacher/stages.0/",)
"""``mixed``: ONNX scopes (module paths) that run in fp32 before the bf16 part, with everything they read."""
SCORER_SCOPE = "/scorer/"  # AnomalyGraph.scorer: fp32 in ``mixed``, with everything computed from it
MIXED = ("f32", "bf16", "f32")  # the head, the rest of the networks, the scorer
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
    if precision not in PRECISIONS:
        raise SnladError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    ov = import_runtime("openvino")
    core = ov.Core()
    if isinstance(graph, bytes):
        model = core.read_model(graph, b"")
    elif isinstance(graph, str | Path):
        model = core.read_model(str(graph))
    else:
        model = graph
    if precision == "mixed":
        return split_session(core, model, threads, MIXED)
    request = _compiled(core, model, threads, OPENVINO_PRECISION[precision]).create_infer_request()

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = request.infer({"images": images})
        return outputs["maps"].copy(), outputs["scores"].copy()  # the request reuses its output buffers

    return run


def _compiled(core: Any, model: Any, threads: int, precision: str) -> Any:
    """``model`` compiled for this CPU at OpenVINO ``precision`` ("f32", "bf16")."""
    return core.compile_model(
        model,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",  # one request uses every thread; our batches bring the parallelism
        },
    )


Key = tuple[str, int]  # (a node's unique name, its output index): one tensor of the graph


@dataclass
class Part:
    """One piece of a cut graph: its model, the tensors its parameters take, the tensors its results give."""

    index: int  # 0 head, 1 body, 2 tail
    model: Any
    inputs: list[Key]
    outputs: list[Key]


def _source(port: Any) -> tuple[str, Any]:
    """The name of the node an input ``port`` reads, and the output it reads."""
    output = port.get_source_output()
    return output.get_node().get_name(), output


def _assign_parts(ops: Sequence[Any], head: Sequence[str], tail: str) -> tuple[dict[str, int], set[str]]:
    """:func:`split_graph`'s cut: each node's part (0 head, 1 body, 2 tail) and the constant-only nodes (shared)."""
    static: set[str] = set()
    part: dict[str, int] = {}
    for op in ops:
        name, kind = op.get_name(), op.get_type_name()
        parents = [_source(port)[0] for port in op.inputs()]
        if kind == "Constant" or (kind not in ("Parameter", "Result") and all(p in static for p in parents)):
            static.add(name)
        elif kind == "Result" or op.get_friendly_name().startswith(tail) or any(part.get(p) == 2 for p in parents):
            part[name] = 2
        elif kind != "Parameter":
            part[name] = 0 if op.get_friendly_name().startswith(tuple(head)) else 1
    for op in reversed(ops):  # what the head reads is the head's
        if part.get(op.get_name()) == 0:
            for parent, _ in map(_source, op.inputs()):
                if part.get(parent) == 1:
                    part[parent] = 0
    return part, static


def split_graph(model: Any, head: Sequence[str] = FP32_HEAD, tail: str = SCORER_SCOPE) -> list[Part]:
    """``model`` (images -> maps, scores) cut in three parts, run in order: head, body, tail.

    The tail: the nodes in scope ``tail`` and every node computed from one
    (the outputs with them). The head: the nodes in a ``head`` scope and every
    node they read. The body: the rest. Constants and what is computed from
    constants only are shared, not cut. Each tensor a part reads from an
    earlier one (the images included) becomes a parameter of it; a part
    without nodes is dropped. Changes ``model`` (read a fresh one for this).
    """
    ov = import_runtime("openvino")
    ops = model.get_ordered_ops()  # topological: every node after the nodes it reads
    by_name = {op.get_name(): op for op in ops}
    part, static = _assign_parts(ops, head, tail)
    reads: list[dict[Key, tuple[Any, list[Any]]]] = [{}, {}, {}]  # part -> tensor it reads -> (output, ports)
    for op in ops:
        index = part.get(op.get_name())
        if index is None:
            continue
        for port in op.inputs():
            parent, output = _source(port)
            if parent in static or part.get(parent) == index:
                continue
            if part.get(parent, -1) > index:
                raise SnladError(
                    f"cannot split the graph for mixed precision: {op.get_friendly_name()} reads a later part"
                )
            reads[index].setdefault((parent, output.get_index()), (output, []))[1].append(port)
    later_reads = [{key for key in {**reads[1], **reads[2]} if part.get(key[0]) == index} for index in range(2)]
    parts = []
    for index in range(3):
        if not any(value == index for value in part.values()):
            continue
        results = (
            model.get_results()
            if index == 2
            else [ov.opset13.result(by_name[key[0]].output(key[1])) for key in sorted(later_reads[index])]
        )
        parameters = []
        for output, ports in reads[index].values():
            parameter = ov.opset13.parameter(output.get_partial_shape(), output.get_element_type())
            for port in ports:
                port.replace_source_output(parameter.output(0))
            parameters.append(parameter)
        outputs = [] if index == 2 else sorted(later_reads[index])
        parts.append(Part(index, ov.Model(results, parameters, f"part{index}"), list(reads[index]), outputs))
    return parts


def split_session(core: Any, model: Any, threads: int, precisions: Sequence[str]) -> Session:
    """``model`` cut by :func:`split_graph`, each part compiled at its precision (``precisions``: head, body, tail)."""
    images = (model.get_parameters()[0].get_name(), 0)
    parts = split_graph(model)
    if parts[0].index != 0:
        raise SnladError(f"mixed precision finds no {' or '.join(FP32_HEAD)} in this graph: use fp32 or bf16")
    requests = [_compiled(core, part.model, threads, precisions[part.index]).create_infer_request() for part in parts]

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = {images: batch}
        for part, request in zip(parts, requests, strict=True):
            outputs = request.infer([values[key] for key in part.inputs], share_inputs=True)
            values.update(zip(part.outputs, outputs.values(), strict=False))  # the tail's: maps and scores
        return outputs["maps"].copy(), outputs["scores"].copy()  # the requests reuse their output buffers

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
