"""An inference-only rewrite of a trained model: the same maps (to float rounding), in less time.

``optimise_for_inference`` returns a new :class:`TrainedModel`; the original is
left untouched. What it changes, each measured in bench/bench_speed.py:

- BatchNorm is folded into the conv before it everywhere (teacher, student,
  RD's bottleneck and decoder, CRAM's projection): one op instead of two.
- Weights are stored channels-last (NHWC). oneDNN's depthwise and 1x1 convs,
  most of EfficientNet-Lite, run several times faster in NHWC, and the
  per-position cosine over channels then reads contiguous memory. The first
  conv turns the plain NCHW input into NHWC, so callers change nothing.
- The scorer's per-level bilinear upsampling and the Gaussian blur are linear
  maps along each image axis, so ``blur(sum_l up(D_l))`` equals
  ``sum_l K_l D_l K_l^T`` with ``K_l = G U_l`` precomputed (``FastScorer``): a
  few small matmuls instead of full-resolution interpolations and a 33-tap
  convolution over every map.
- EfficientNet's stride-2 convs with TensorFlow "same" padding get it from the
  conv's own symmetric padding and a one-row/column crop instead of a padded
  copy of their (large) input (``CroppedSameConv2d``).
- On a CPU a batch goes through the networks a few images at a time
  (``TrainedModel.micro_batch``, sized by :func:`cpu_micro_batch`): the
  activations of a whole batch of 16 overflow the cores' caches and every
  memory-bound depthwise conv then streams from main memory.
- Optionally (``torch_compile=True``), ``torch.compile`` with weight freezing fuses
  each conv with its ReLU6 and residual add (fewer passes over memory).
- Gradients are off for every parameter; ``infer`` runs under inference mode.

Parity with the unoptimised model is tested (tests/test_fast.py: max abs map
difference < 1e-4).
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.nn.functional as F
from torch import nn

from snlad.backbones import fold_batchnorm
from snlad.backbones.efficientnet_lite import SameConv2d, _same_padding
from snlad.engine.trained import TrainedModel
from snlad.errors import SnladError
from snlad.losses.affinity import affinity, pooled_positions
from snlad.models.teacher_student import Features
from snlad.scoring import AnomalyScorer


def fold_sequential_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every ``Conv2d``/``ConvTranspose2d`` directly followed by a ``BatchNorm2d`` inside an
    ``nn.Sequential`` (RD's bottleneck and decoder, CRAM's projection), in place; eval-mode statistics."""
    with torch.no_grad():
        for sequential in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
            names = list(sequential._modules)
            for first, second in zip(names, names[1:]):
                conv, bn = sequential._modules[first], sequential._modules[second]
                if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                    _fold(conv, bn)
                    sequential._modules[second] = nn.Identity()
    return module


def _fold(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    """Make ``conv`` compute ``bn(conv(x))``; float64 keeps the result within float32 rounding."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    # Output channels are dim 0 of a Conv2d weight, dim 1 of a ConvTranspose2d weight (groups = 1 here).
    shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
    conv.weight.copy_((conv.weight.double() * scale.view(shape)).to(conv.weight.dtype))
    conv.bias = nn.Parameter(((bias - bn.running_mean.double()) * scale + bn.bias.double()).to(conv.weight.dtype))


class CroppedSameConv2d(nn.Conv2d):
    """TensorFlow "same" padding without padding the input: the same windows, no padded copy.

    "Same" pads a stride-2 conv asymmetrically (``l`` before, ``l + 1`` after)
    and ``SameConv2d`` therefore copies the input into a padded tensor. The
    conv's own symmetric padding ``l + s`` (``s`` the stride) starts every
    window ``s`` positions, i.e. one output, earlier, so dropping the first
    output row and column leaves exactly the windows of the asymmetric
    padding (the extra zeros only reach the dropped outputs). Symmetric cases
    use the plain padding; anything else falls back to explicit padding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = [_same_padding(n, k, s, d) for n, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation)]
        before = [p // 2 for p in pads]
        after = [p - b for p, b in zip(pads, before)]
        if all(a == b for a, b in zip(after, before)):
            return F.conv2d(x, self.weight, self.bias, self.stride, tuple(before), self.dilation, self.groups)
        if all(a == b + 1 for a, b in zip(after, before)):
            padding = tuple(b + s for b, s in zip(before, self.stride))
            return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)[..., 1:, 1:]
        x = F.pad(x, (before[1], after[1], before[0], after[0]))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def crop_instead_of_pad(model: nn.Module) -> nn.Module:
    """Replace every ``SameConv2d`` by a :class:`CroppedSameConv2d` with the same parameters, in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is SameConv2d:
                cropped = CroppedSameConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                            groups=child.groups, bias=child.bias is not None, dilation=child.dilation)
                cropped.weight, cropped.bias = child.weight, child.bias
                setattr(parent, name, cropped)
    return model


def fold_model(model: nn.Module) -> nn.Module:
    """An eval-mode copy of a TeacherStudent with every BatchNorm folded away."""
    return fold_sequential_batchnorm(fold_batchnorm(model))  # ConvBN units (backbones), then the rest


def bilinear_matrix(source: int, target: int) -> torch.Tensor:
    """target x source matrix U with ``U @ x`` = 1-D ``F.interpolate(x, target, 'linear', align_corners=False)``."""
    identity = torch.eye(source, dtype=torch.float64).view(source, 1, source, 1)
    return F.interpolate(identity, size=(target, 1), mode="bilinear", align_corners=False)[:, 0, :, 0].T


def blur_matrix(blur: nn.Module, size: int) -> torch.Tensor:
    """size x size matrix G with ``G @ x`` = the scorer's 1-D Gaussian blur of x (reflect padding)."""
    identity = torch.eye(size, dtype=torch.float64).view(size, 1, 1, size)
    if blur.sigma == 0:
        return identity.view(size, size)
    radius = blur.kernel.numel() // 2
    padded = F.pad(identity, (radius, radius, 0, 0), mode="reflect")
    kernel = blur.kernel.detach().to("cpu", torch.float64)  # the scorer may already sit on a GPU
    columns = F.conv2d(padded, kernel.view(1, 1, 1, -1))  # row j = G @ e_j
    return columns.view(size, size).T


def fixed_pooled_positions(features: torch.Tensor, size: int) -> torch.Tensor:
    """``pooled_positions`` with a fixed-window average pool where the grid divides the map.

    Equal to adaptive pooling then (the same windows); the fixed window exports to ONNX with
    a dynamic batch size, which adaptive pooling does not.
    """
    side = features.shape[-1]
    if side > size and side % size == 0 and features.shape[-2] == side:
        features = F.avg_pool2d(features, side // size)
    return pooled_positions(features, size)


class FastScorer(nn.Module):
    """Same maps and scores as an :class:`AnomalyScorer`, with upsampling and blur as matmuls.

    Level distance maps D (B x h x h) become ``K_h D K_h^T`` (B x S x S) with
    ``K_h = G U_h`` (S x h), G the blur and U_h the bilinear upsampling; one K
    per map size is precomputed from the image size and the affinity grid.
    Square images only (snlad always resizes to S x S).
    """

    def __init__(self, scorer: AnomalyScorer) -> None:
        super().__init__()
        self.beta = scorer.beta
        self.image_size = scorer.image_size
        self.affinity_size = scorer.affinity_size
        self.topk = scorer.topk
        size = self.image_size
        blur = blur_matrix(scorer.blur, size)
        sides = {size // stride for stride in (4, 8, 16)}
        sides |= {min(side, self.affinity_size) for side in sides}
        for side in sorted(sides):
            self.register_buffer(f"k{side}", (blur @ bilinear_matrix(side, size)).float(), persistent=False)

    def _project(self, maps: torch.Tensor) -> torch.Tensor:
        """B x h x h -> B x S x S: bilinear upsampling then blur, as K D K^T."""
        side = maps.shape[-1]
        if not hasattr(self, f"k{side}"):
            raise ValueError(f"FastScorer for {self.image_size} px has no {side} x {side} level (image size changed?)")
        k = getattr(self, f"k{side}")
        return k @ maps @ k.T

    def level_map(self, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        level = self._project(1 - F.cosine_similarity(teacher, student, dim=1))
        if self.beta > 0:
            t, s = fixed_pooled_positions(teacher, self.affinity_size), fixed_pooled_positions(student, self.affinity_size)
            side = min(teacher.shape[-1], self.affinity_size)
            structural = (affinity(t, t) - affinity(s, s)).abs().mean(dim=2)  # B x N
            level = level + self.beta * self._project(structural.view(-1, side, side))
        return level

    def forward(self, teacher: Features, student: Features) -> tuple[torch.Tensor, torch.Tensor]:
        """Features at strides 4, 8, 16 -> (maps B x S x S, scores B)."""
        maps = self.level_map(teacher[0], student[0])
        for t, s in zip(teacher[1:], student[1:]):
            maps = maps + self.level_map(t, s)
        flat = maps.flatten(1)
        scores = flat.max(dim=1).values if self.topk == 1 else flat.topk(self.topk, dim=1).values.mean(dim=1)
        return maps, scores


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
        first = next(iter(str(error).strip().splitlines()), "")
        raise SnladError(f"torch.compile failed ({type(error).__name__}: {first[:200]}); run without --compile") from None
    return compiled


def optimise_for_inference(trained: TrainedModel, channels_last: bool = True, micro_batch: int | None = None, torch_compile: bool = False) -> TrainedModel:
    """A new TrainedModel for scoring only: BatchNorm folded, NHWC weights, matmul scorer, no grads.

    ``micro_batch`` images go through the networks at a time (None: :func:`cpu_micro_batch` on a
    CPU, the whole batch on a GPU; 0: the whole batch). ``torch_compile`` adds :func:`compile_for_inference`.
    """
    model = crop_instead_of_pad(fold_model(trained.model)).requires_grad_(False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    scorer = FastScorer(trained.scorer).to(trained.device)
    if micro_batch is None:
        micro_batch = cpu_micro_batch(trained.config.data.image_size) if trained.device.type == "cpu" else 0
    fast = TrainedModel(trained.config, model, scorer, list(trained.categories), trained.calibration, micro_batch).eval()
    return compile_for_inference(fast) if torch_compile else fast


def optimise_run(models: dict[str, TrainedModel], micro_batch: int | None = None, torch_compile: bool = False) -> dict[str, TrainedModel]:
    """``optimise_for_inference`` for every distinct model of a run (a multi-class model once)."""
    done: dict[int, TrainedModel] = {}
    for trained in models.values():
        if id(trained) not in done:
            done[id(trained)] = optimise_for_inference(trained, micro_batch=micro_batch, torch_compile=torch_compile)
    return {category: done[id(trained)] for category, trained in models.items()}


def use_all_cores() -> int:
    """Intra-op threads = the cores this process may run on (a container's CPU affinity, not the host's)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(cores)
    return cores
