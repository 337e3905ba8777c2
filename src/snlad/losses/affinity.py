"""Affinity matrices: cosine similarity between every pair of feature positions.

An N x N affinity at stride 4 of a 256 px image has N = 4096, i.e. 16.7 M
entries (67 MB in float32) per image and O(N^2 C) work. We therefore compute
affinities on a grid of at most ``size`` x ``size`` positions (average pooling
of the features first); at the default 16 that is 256 x 256 per image for
every level. The cost is measured in bench/bench_affinity.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pooled_positions(features: torch.Tensor, size: int) -> torch.Tensor:
    """B x C x H x W -> B x N x C, L2-normalised per position, on a grid of side <= size.

    Where the grid divides the map, a fixed-window average pool: the same
    windows as adaptive pooling, and it exports to ONNX with a dynamic batch.
    """
    height, width = (int(side) for side in features.shape[-2:])  # plain ints: a traced graph keeps them constant
    grid = (min(height, size), min(width, size))
    if (height, width) != grid:
        if height % grid[0] == 0 and width % grid[1] == 0:
            features = F.avg_pool2d(features, (height // grid[0], width // grid[1]))
        else:
            features = F.adaptive_avg_pool2d(features, grid)
    return F.normalize(features.flatten(2).transpose(1, 2), dim=2)


def affinity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Position-normalised B x N x C, B x M x C -> B x N x M cosine similarities."""
    return a @ b.transpose(1, 2)
