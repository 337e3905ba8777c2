"""Affinity matrices: cosine similarity between every pair of feature positions.

An N x N affinity at stride 4 of a 256 px image has N = 4096, i.e. 16.7 M
entries (67 MB in float32) per image and O(N^2 C) work. We therefore compute
affinities on a grid of at most ``size`` x ``size`` positions (adaptive average
pooling of the features first); at the default 16 that is 256 x 256 per image
for every level. The cost is measured in bench/bench_affinity.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pooled_positions(features: torch.Tensor, size: int) -> torch.Tensor:
    """B x C x H x W -> B x N x C, L2-normalised per position, on a grid of side <= size."""
    height, width = features.shape[-2:]
    if height > size or width > size:
        features = F.adaptive_avg_pool2d(features, (min(height, size), min(width, size)))
    return F.normalize(features.flatten(2).transpose(1, 2), dim=2)


def affinity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Position-normalised B x N x C, B x M x C -> B x N x M cosine similarities."""
    return a @ b.transpose(1, 2)
