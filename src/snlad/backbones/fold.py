"""Conv + BatchNorm units, and folding every BatchNorm of a model into the conv before it.

Backbone convs are built as :class:`ConvBN` units; the RD bottleneck and
decoder and CRAM's projection are ``nn.Sequential``s whose conv (or transposed
conv) is directly followed by its BatchNorm. :func:`fold_batchnorm` merges
both kinds, so an inference copy of any snlad model has no BatchNorm left.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ConvBN(nn.Module):
    """``act(bn(conv(x)))`` as one unit; :func:`fold_batchnorm` turns ``bn`` into Identity."""

    def __init__(self, conv: nn.Conv2d, *, eps: float, act: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = conv
        self.bn: nn.Module = nn.BatchNorm2d(conv.out_channels, eps=eps)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` with every BatchNorm merged into the conv before it.

    Folding bakes in the running statistics, i.e. the eval-mode behaviour, so
    the copy is put in eval mode; ``module`` itself is left untouched.
    """
    folded = copy.deepcopy(module).eval()
    with torch.no_grad():
        for unit in folded.modules():
            if isinstance(unit, ConvBN) and isinstance(unit.bn, nn.BatchNorm2d):
                _fold_into_conv(unit.conv, unit.bn)
                unit.bn = nn.Identity()
            elif isinstance(unit, nn.Sequential):
                names = list(unit._modules)
                for first, second in zip(names, names[1:], strict=False):
                    conv, bn = unit._modules[first], unit._modules[second]
                    if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                        _fold_into_conv(conv, bn)
                        unit._modules[second] = nn.Identity()
    return folded


def _fold_into_conv(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    """Rewrite ``conv`` in place so that it computes ``bn(conv(x))`` with eval-mode statistics."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm2d without running statistics")
    if isinstance(conv, nn.ConvTranspose2d) and conv.groups != 1:
        raise ValueError("folding into a grouped ConvTranspose2d is not supported")
    # float64 keeps the folded weights within float32 rounding of the unfolded pair.
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    # Output channels are dim 0 of a Conv2d weight, dim 1 of a ConvTranspose2d weight.
    shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
    dtype = conv.weight.dtype
    conv.weight.copy_((conv.weight.double() * scale.view(shape)).to(dtype))
    conv.bias = nn.Parameter(
        ((bias - bn.running_mean.double()) * scale + bn.bias.double()).to(dtype),
        requires_grad=conv.weight.requires_grad,
    )
