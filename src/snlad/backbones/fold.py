"""Conv + BatchNorm units and folding them into a single biased conv.

Every conv that is followed by a BatchNorm in the backbones is built as a
:class:`ConvBN`, so folding for inference is a structural rewrite instead of a
graph-pattern search.
"""

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
    """Return an eval-mode copy of ``module`` with each ConvBN's BatchNorm merged into its conv.

    Folding bakes in the running statistics, i.e. the eval-mode behaviour, so the
    copy is put in eval mode; ``module`` itself is left untouched.
    """
    folded = copy.deepcopy(module).eval()
    with torch.no_grad():
        for unit in folded.modules():
            if isinstance(unit, ConvBN) and isinstance(unit.bn, nn.BatchNorm2d):
                _fold_into_conv(unit.conv, unit.bn)
                unit.bn = nn.Identity()
    return folded


def _fold_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Rewrite ``conv`` in place so that it computes ``bn(conv(x))`` with eval-mode statistics."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm2d without running statistics")
    # float64 keeps the folded weights within float32 rounding of the unfolded pair.
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    dtype = conv.weight.dtype
    conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype))
    conv.bias = nn.Parameter(
        ((bias - bn.running_mean.double()) * scale + bn.bias.double()).to(dtype),
        requires_grad=conv.weight.requires_grad,
    )
