"""The backbone contract: three feature levels of a CNN, and how a student starts from scratch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

LEVEL_STRIDES = (4, 8, 16)  # STPM and RD4AD distil these three stages; nothing deeper is built


class Backbone(nn.Module):
    """Feature extractor returning the outputs of ``stages[0..2]`` (strides :data:`LEVEL_STRIDES`).

    ``stages`` is public so a student can place a module between two levels;
    stage 0 includes the stem and takes the normalised image. ``forward`` takes
    RGB in [0, 1] and normalises it itself, so callers never need to know what
    input statistics the pretrained weights were trained with.
    """

    strides = LEVEL_STRIDES

    def __init__(
        self,
        stages: Sequence[nn.Module],
        channels: tuple[int, int, int],
        *,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.channels = channels
        # Not persistent: they are constants of the architecture, not weights,
        # and must not show up in (or be required from) checkpoints.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        init_weights(self)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map an RGB batch in [0, 1] to the input range the network was trained on."""
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = self.normalize(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def level_sides(self, image_size: int) -> tuple[int, ...]:
        """Side of each level's square feature map for a square input (TensorFlow "same" padding rounds up)."""
        return tuple(-(-image_size // stride) for stride in self.strides)


def init_weights(module: nn.Module) -> None:
    """Kaiming (fan-out) convs and identity BatchNorm: the usual from-scratch start for a student."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
