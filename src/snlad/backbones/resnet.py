"""ResNet-18 and Wide-ResNet-50-2 up to layer3, loading torchvision-format weights.

The architecture follows torchvision (ResNet v1.5: the stride sits on the 3x3
conv of a Bottleneck), so torchvision's ImageNet state dicts load after a pure
renaming; layer4 and fc are not built.
"""

import os
from collections import OrderedDict

import torch
from torch import nn

from snlad.backbones.base import Backbone
from snlad.backbones.fold import ConvBN
from snlad.backbones.weights import load_pretrained, read_state_dict
from snlad.errors import SnladError

_BN_EPS = 1e-5
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_STEM_CHANNELS = 64


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False)


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, *, relu: bool) -> ConvBN:
    act = nn.ReLU(inplace=True) if relu else None
    return ConvBN(_conv(in_channels, out_channels, kernel, stride), eps=_BN_EPS, act=act)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, width_per_group: int) -> None:
        super().__init__()
        if width_per_group != 64:
            raise ValueError("BasicBlock only supports width_per_group=64")
        self.conv1 = _conv_bn(in_channels, planes, 3, stride, relu=True)
        self.conv2 = _conv_bn(planes, planes, 3, relu=False)
        self.downsample = _downsample(in_channels, planes * self.expansion, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand with a residual connection (ResNet-50 family)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, width_per_group: int) -> None:
        super().__init__()
        width = planes * width_per_group // 64
        self.conv1 = _conv_bn(in_channels, width, 1, relu=True)
        self.conv2 = _conv_bn(width, width, 3, stride, relu=True)
        self.conv3 = _conv_bn(width, planes * self.expansion, 1, relu=False)
        self.downsample = _downsample(in_channels, planes * self.expansion, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + self.downsample(x))


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Projection shortcut where the shape changes, identity otherwise (as torchvision)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return _conv_bn(in_channels, out_channels, 1, stride, relu=False)


# name -> (block type, blocks in layer1..layer3, width_per_group)
_ARCHS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int], int]] = {
    "resnet18": (BasicBlock, (2, 2, 2), 64),
    "wide_resnet50_2": (Bottleneck, (3, 4, 6), 128),
}
RESNET_NAMES = tuple(_ARCHS)


def build_resnet(name: str, *, pretrained: bool, weights: str | os.PathLike | None) -> Backbone:
    """Build ``name`` up to layer3; with ``pretrained`` load the user's torchvision state dict."""
    block, depths, width_per_group = _ARCHS[name]
    stem = OrderedDict(
        stem=_conv_bn(3, _STEM_CHANNELS, 7, 2, relu=True),
        pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    stages = []
    in_channels = _STEM_CHANNELS
    for level, depth in enumerate(depths):
        planes = _STEM_CHANNELS * 2**level
        blocks = OrderedDict(stem if level == 0 else ())
        for index in range(depth):
            stride = 2 if level > 0 and index == 0 else 1
            blocks[str(index)] = block(in_channels, planes, stride, width_per_group)
            in_channels = planes * block.expansion
        stages.append(nn.Sequential(blocks))
    channels = tuple(_STEM_CHANNELS * 2**level * block.expansion for level in range(3))
    backbone = Backbone(stages, channels, mean=_IMAGENET_MEAN, std=_IMAGENET_STD)
    if pretrained:
        if weights is None:
            raise SnladError(
                f"{name} needs its ImageNet weights: give the file with --teacher-weights PATH "
                f"(the expected format is torchvision's {name} ImageNet state dict)"
            )
        load_pretrained(
            backbone,
            read_state_dict(weights),
            path=weights,
            arch=name,
            checkpoint_key=torchvision_key,
            ignored=lambda key: key.startswith(("layer4.", "fc.")),
        )
    return backbone


def torchvision_key(key: str) -> str:
    """torchvision's name for one of our state-dict keys.

    Ours: ``stages.S.stem.{conv,bn}.P`` and ``stages.S.I.{convN,downsample}.{conv,bn}.P``;
    torchvision: ``conv1.P``/``bn1.P`` and ``layer{S+1}.I.{convN,bnN,downsample.0,downsample.1}.P``.
    """
    _, stage, unit, *rest = key.split(".")
    if unit == "stem":
        kind, param = rest
        return f"{'conv1' if kind == 'conv' else 'bn1'}.{param}"
    layer, kind, param = rest
    if layer == "downsample":
        name = "downsample.0" if kind == "conv" else "downsample.1"
    else:
        name = layer if kind == "conv" else layer.replace("conv", "bn")
    return f"layer{int(stage) + 1}.{unit}.{name}.{param}"
