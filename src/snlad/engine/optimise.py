"""An inference-only rewrite of a trained model: the same maps (to float rounding), in less time.

``optimise_for_inference`` returns a new :class:`TrainedModel`; the original is
left untouched. What it changes, each measured in bench/bench_speed.py:

- BatchNorm is folded into the conv before it everywhere (teacher, student,
  RD's bottleneck and decoder, CRAM's projection): one op instead of two.
- Weights are stored channels-last (NHWC). oneDNN's depthwise and 1x1 convs,
  most of EfficientNet-Lite, run several times faster in NHWC, and the
  per-position cosine over channels then reads contiguous memory. The first
  conv turns the plain NCHW input into NHWC, so callers change nothing.
- On a CPU a batch goes through the networks a few images at a time
  (``TrainedModel.micro_batch``, sized by :func:`cpu_micro_batch`): the
  activations of a whole batch of 16 overflow the cores' caches and every
  memory-bound depthwise conv then streams from main memory.
- Optionally (``torch_compile=True``), ``torch.compile`` with weight freezing fuses
  each conv with its ReLU6 and residual add (fewer passes over memory).
- Gradients are off for every parameter; ``infer`` runs under inference mode.

The scorer is the same :class:`~snlad.scoring.maps.AnomalyScorer` in both (matmul
upsampling and blur by construction). Parity with the unoptimised model is
tested (tests/test_optimise.py: max abs map difference < 1e-4).
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from snlad.backbones import fold_batchnorm
from snlad.errors import SnladError, brief
from snlad.runs.trained import TrainedModel, per_model

CPU_MICRO_BATCH_PIXELS = 4 * 256 * 256
"""Pixels per forward pass on a CPU: 4 images at 256 px. bench/bench_speed.py sweeps the micro-batch
at batch 16 on the project's 2-core machine: 4 at 256 px is the fastest or within 6 % of the fastest
for every model, EfficientNet-Lite0 (1.2-1.5x the whole-batch throughput) and WideResNet50-2 alike."""


def cpu_micro_batch(image_size: int) -> int:
    """Images per forward pass on a CPU: a constant pixel count, so the cached working set stays put."""
    return max(1, round(CPU_MICRO_BATCH_PIXELS / image_size**2))


def compile_for_inference(trained: TrainedModel) -> TrainedModel:
    """``trained`` with its networks and scorer through ``torch.compile`` (inductor, frozen weights).

    Compiles now, on one micro-batch of zeros, so a missing C++ compiler or an
    unsupported op fails here with one message instead of on the first real
    batch. Each new batch size compiles once more (seconds), so keep it fixed.
    Dynamic shapes are not used: torch 2.13's inductor crashes on them.
    """
    options = {"freezing": True}  # constant weights: conv + ReLU6/add fusion and weight prepacking
    compiled = dataclasses.replace(
        trained,
        model=torch.compile(trained.model, dynamic=False, options=options),
        scorer=torch.compile(trained.scorer, dynamic=False, options=options),
    )
    size = trained.config.data.image_size
    try:
        with torch.inference_mode():
            compiled.score(torch.zeros(max(1, compiled.micro_batch), 3, size, size, device=trained.device))
    except Exception as error:  # noqa: BLE001 -- inductor raises many types (compiler missing, lowering failures)
        raise SnladError(f"torch.compile failed ({brief(error)}); run without --compile") from None
    return compiled


def optimise_for_inference(
    trained: TrainedModel, channels_last: bool = True, micro_batch: int | None = None, torch_compile: bool = False
) -> TrainedModel:
    """A new TrainedModel for scoring only: BatchNorm folded, NHWC weights, no grads.

    ``micro_batch`` images go through the networks at a time (None: :func:`cpu_micro_batch` on a
    CPU, the whole batch on a GPU; 0: the whole batch). ``torch_compile`` adds :func:`compile_for_inference`.
    """
    model = fold_batchnorm(trained.model).requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if micro_batch is None:
        micro_batch = cpu_micro_batch(trained.config.data.image_size) if trained.device.type == "cpu" else 0
    fast = TrainedModel(
        trained.config, model, copy.deepcopy(trained.scorer), list(trained.categories), trained.calibration, micro_batch
    ).eval()
    return compile_for_inference(fast) if torch_compile else fast


def optimise_run(
    models: dict[str, TrainedModel], micro_batch: int | None = None, torch_compile: bool = False
) -> dict[str, TrainedModel]:
    """``optimise_for_inference`` for every distinct model of a run (a multi-class model once)."""
    return per_model(
        models, lambda trained: optimise_for_inference(trained, micro_batch=micro_batch, torch_compile=torch_compile)
    )
