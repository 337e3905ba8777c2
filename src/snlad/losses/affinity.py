"""Affinities: cosine similarity between feature positions, inside one image or across the images of a batch.

Two ways to keep the cost of an N x N affinity (N = 4096 at stride 4 of a
256 px image: 16.7 M entries, 67 MB in float32, per image) affordable on a CPU,
chosen by ``loss.affinity_mode`` (cost measured in bench/bench_affinity.py):

- "pooled": every level average-pooled to a grid of at most ``affinity_size``
  per side first, then all pairs (at 16: 256 x 256 per level); at the coarse
  levels of a 256 px image (16 x 16 at stride 16, 32 x 32 at stride 8 with
  ``affinity_size`` 32) that is the full native affinity, at stride 4 fine
  structure is averaged away;
- "local": every position against its ``affinity_window`` x ``affinity_window``
  neighbourhood at the level's own resolution (k^2 N entries instead of N^2),
  so nothing is pooled and a structural anomaly map stays as sharp as the
  level itself.
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


def local_affinity(a: torch.Tensor, b: torch.Tensor, window: int) -> torch.Tensor:
    """B x C x H x W pair -> B x k^2 x H x W: cos(a_p, b_q) for every q in the k x k window around p.

    Built from k^2 shifted products (no B x C k^2 x N unfold in memory).
    Outside the image the window holds zero vectors, whose cosine is 0 for
    teacher and student alike.
    """
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    radius = window // 2
    height, width = a.shape[-2:]
    padded = F.pad(b, (radius, radius, radius, radius))
    shifts = [
        (a * padded[:, :, dy : dy + height, dx : dx + width]).sum(dim=1) for dy in range(window) for dx in range(window)
    ]
    return torch.stack(shifts, dim=1)


def batch_affinity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Position-normalised B x N x C pair -> B x B x N x N: entry [i, j, p, q] = cos(a_i(p), b_j(q)), across images."""
    return torch.einsum("inc,jmc->ijnm", a, b)
