"""Anomaly maps and image scores, one implementation for every model.

Per level: the local distance ``1 - cos(T[:, p], S[:, p])`` plus, for SNL,
``beta`` times the structural distance ``mean_q |A_T(p, q) - A_S(p, q)|`` (the
row of the intra-affinity difference, computed on the same pooled grid as the
training loss). Levels are upsampled bilinearly to the input size, summed and
Gaussian-smoothed; the image score is the map's max or the mean of its top-k
pixels. An ``nn.Module`` so export puts the whole scoring into the graph.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from snlad.config import MapConfig
from snlad.losses.affinity import affinity, pooled_positions
from snlad.models.teacher_student import Features


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian, truncated at 4 sigma like scipy.ndimage.gaussian_filter."""
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


class GaussianBlur(nn.Module):
    """Separable Gaussian blur; equals scipy.ndimage.gaussian_filter(mode="mirror") (tested).

    Written in torch, not scipy, so it runs batched and is part of an exported graph.
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma
        self.register_buffer("kernel", gaussian_kernel1d(sigma) if sigma > 0 else torch.ones(1), persistent=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """maps: B x 1 x H x W."""
        if self.sigma == 0:
            return maps
        radius = self.kernel.numel() // 2
        kernel = self.kernel.to(maps.dtype)
        maps = F.pad(maps, (radius, radius, 0, 0), mode="reflect")
        maps = F.conv2d(maps, kernel.view(1, 1, 1, -1))
        maps = F.pad(maps, (0, 0, radius, radius), mode="reflect")
        return F.conv2d(maps, kernel.view(1, 1, -1, 1))


def local_distance(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """B x C x H x W pair -> B x 1 x H x W, 1 - cos across channels."""
    return (1 - F.cosine_similarity(teacher, student, dim=1)).unsqueeze(1)


def structural_distance(teacher: torch.Tensor, student: torch.Tensor, affinity_size: int) -> torch.Tensor:
    """B x C x H x W pair -> B x 1 x h x w, mean_q |A_T(p, q) - A_S(p, q)| on the pooled grid."""
    height, width = teacher.shape[-2:]
    grid = (min(height, affinity_size), min(width, affinity_size))
    t, s = pooled_positions(teacher, affinity_size), pooled_positions(student, affinity_size)
    difference = (affinity(t, t) - affinity(s, s)).abs().mean(dim=2)  # B x N
    return difference.view(-1, 1, *grid)


class AnomalyScorer(nn.Module):
    """Teacher/student features -> (maps B x S x S, image scores B)."""

    def __init__(self, config: MapConfig, image_size: int, affinity_size: int) -> None:
        super().__init__()
        self.beta = config.beta
        self.image_size = image_size
        self.affinity_size = affinity_size
        self.topk = 1 if config.image_score == "max" else max(1, math.ceil(config.topk_fraction * image_size**2))
        self.blur = GaussianBlur(config.sigma)

    def level_map(self, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        size = (self.image_size, self.image_size)
        level = F.interpolate(local_distance(teacher, student), size=size, mode="bilinear", align_corners=False)
        if self.beta > 0:
            structural = structural_distance(teacher, student, self.affinity_size)
            level = level + self.beta * F.interpolate(structural, size=size, mode="bilinear", align_corners=False)
        return level

    def forward(self, teacher: Features, student: Features) -> tuple[torch.Tensor, torch.Tensor]:
        maps = sum(self.level_map(t, s) for t, s in zip(teacher, student))
        maps = self.blur(maps).squeeze(1)
        flat = maps.flatten(1)
        scores = flat.max(dim=1).values if self.topk == 1 else flat.topk(self.topk, dim=1).values.mean(dim=1)
        return maps, scores
