"""Distillation loss terms, one function each, and their weighted sum.

Every term takes teacher and student features of one level (B x C x H x W),
returns a scalar, is zero when the two are equal and positive otherwise.
Teacher features arrive detached, so gradients reach the student only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from snlad.config import LossConfig
from snlad.losses.affinity import affinity, pooled_positions
from snlad.models.teacher_student import Features


def channel_loss(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Mean over positions of 1 - cos across channels (STPM; SNL channel-wise distillation)."""
    return (1 - F.cosine_similarity(teacher, student, dim=1)).mean()


def whole_map_loss(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """RD4AD: 1 - cos between the flattened feature maps of each image."""
    return (1 - F.cosine_similarity(teacher.flatten(1), student.flatten(1), dim=1)).mean()


def spatial_loss(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Mean over channels of 1 - cos across positions (SNL spatial-wise distillation)."""
    return (1 - F.cosine_similarity(teacher.flatten(2), student.flatten(2), dim=2)).mean()


def _distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    difference = a - b
    return difference.abs().mean() if kind == "l1" else difference.pow(2).mean()


def intra_affinity_loss(teacher: torch.Tensor, student: torch.Tensor, size: int, kind: str) -> torch.Tensor:
    """Distance between A_T = T^T T and A_S = S^T S (position-normalised, pooled grid)."""
    t, s = pooled_positions(teacher, size), pooled_positions(student, size)
    return _distance(affinity(t, t), affinity(s, s), kind)


def inter_affinity_loss(teacher: torch.Tensor, student: torch.Tensor, size: int, kind: str) -> torch.Tensor:
    """Distance between A_TS = T^T S and A_T: the student relates to the teacher as the teacher to itself."""
    t, s = pooled_positions(teacher, size), pooled_positions(student, size)
    return _distance(affinity(t, s), affinity(t, t), kind)


def distillation_loss(teacher: Features, student: Features, config: LossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over levels and terms; also returns each term's value for logging.

    Terms with weight 0 are not computed at all, so an ablation also costs less.
    """
    terms = {
        "channel": lambda t, s: channel_loss(t, s),
        "whole_map": lambda t, s: whole_map_loss(t, s),
        "spatial": lambda t, s: spatial_loss(t, s),
        "intra": lambda t, s: intra_affinity_loss(t, s, config.affinity_size, config.affinity_distance),
        "inter": lambda t, s: inter_affinity_loss(t, s, config.affinity_size, config.affinity_distance),
    }
    total = teacher[0].new_zeros(())
    parts: dict[str, float] = {}
    for name, term in terms.items():
        weight = getattr(config, name)
        if weight == 0:
            continue
        value = sum(term(t, s) for t, s in zip(teacher, student))
        parts[name] = float(value.detach())
        total = total + weight * value
    return total, parts
