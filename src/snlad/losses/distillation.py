"""Distillation loss terms, one function each, and their weighted sum.

Every term takes teacher and student features of one level (B x C x H x W)
and the loss settings, returns a scalar, is zero when the two are equal and
positive otherwise. Teacher features arrive detached, so gradients reach the
student only. :data:`TERMS` implements exactly the terms that
``snlad.config.LossConfig`` declares (checked at import).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from snlad.config import LossConfig, term_weights
from snlad.losses.affinity import affinity, batch_affinity, local_affinity, pooled_positions
from snlad.models.teacher_student import Features

Term = Callable[[torch.Tensor, torch.Tensor, LossConfig], torch.Tensor]


def channel_loss(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """Mean over positions of 1 - cos across channels (STPM; SNL channel-wise distillation)."""
    return (1 - F.cosine_similarity(teacher, student, dim=1)).mean()


def whole_map_loss(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """RD4AD: 1 - cos between the flattened feature maps of each image."""
    return (1 - F.cosine_similarity(teacher.flatten(1), student.flatten(1), dim=1)).mean()


def spatial_loss(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """SNL spatial-wise distillation, per channel over positions (``loss.spatial_kind``).

    "cos": mean over channels of 1 - cos(T[c, :], S[c, :]). "kl": mean over channels
    of KL(P_T || P_S) between softmax distributions over positions with temperature
    tau (channel-wise distillation, Shu et al. 2021; the reading the third-party
    SNL code supports), times tau^2 so the gradient scale does not depend on tau.
    """
    if config.spatial_kind == "cos":
        return (1 - F.cosine_similarity(teacher.flatten(2), student.flatten(2), dim=2)).mean()
    tau = config.spatial_tau
    log_p_teacher = F.log_softmax(teacher.flatten(2).float() / tau, dim=2)
    log_p_student = F.log_softmax(student.flatten(2).float() / tau, dim=2)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=2).mean() * tau**2


def _distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    difference = a - b
    return difference.abs().mean() if kind == "l1" else difference.pow(2).mean()


def _affinity(a: torch.Tensor, b: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """Cosine affinities of a's positions to b's, as ``loss.affinity_mode`` computes them (pooled grid, or local windows)."""
    if config.affinity_mode == "local":
        return local_affinity(a, b, config.affinity_window)
    return affinity(pooled_positions(a, config.affinity_size), pooled_positions(b, config.affinity_size))


def intra_affinity_loss(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """Distance between the teacher's and the student's affinities among positions of one image."""
    return _distance(_affinity(teacher, teacher, config), _affinity(student, student, config), config.affinity_distance)


def inter_affinity_loss(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """SNL inter-affinity distillation (``loss.inter_kind``).

    "cross": the teacher-student cross affinity A_TS pushed towards A_T (the student
    relates to the teacher as the teacher to itself), pooled or local as the intra
    term. "batch": positions of one image against positions of the *other* images of
    the batch (in a multi-class batch, often other products), on the pooled grid: the
    student must relate different images, i.e. different classes, as the teacher does.
    """
    if config.inter_kind == "cross":
        return _distance(
            _affinity(teacher, student, config), _affinity(teacher, teacher, config), config.affinity_distance
        )
    t, s = pooled_positions(teacher, config.affinity_size), pooled_positions(student, config.affinity_size)
    if len(t) < 2:
        return teacher.new_zeros(())
    other = ~torch.eye(len(t), dtype=torch.bool, device=t.device)
    return _distance(batch_affinity(t, t)[other], batch_affinity(s, s)[other], config.affinity_distance)


TERMS: dict[str, Term] = {
    "channel": channel_loss,
    "whole_map": whole_map_loss,
    "spatial": spatial_loss,
    "intra": intra_affinity_loss,
    "inter": inter_affinity_loss,
}
if set(TERMS) != set(term_weights(LossConfig())):
    raise ImportError(
        f"snlad.losses.TERMS {sorted(TERMS)} must implement exactly the LossConfig terms {sorted(term_weights(LossConfig()))}"
    )


def distillation_loss(
    teacher: Features, student: Features, config: LossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over levels and terms; also returns each term's value (summed over levels) for logging.

    Terms with weight 0 are not computed at all, so an ablation also costs less.
    """
    total = teacher[0].new_zeros(())
    parts: dict[str, float] = {}
    for name, weight in term_weights(config).items():
        if weight == 0:
            continue
        value = sum(TERMS[name](t, s, config) for t, s in zip(teacher, student, strict=True))
        parts[name] = float(value.detach())
        total = total + weight * value
    return total, parts
