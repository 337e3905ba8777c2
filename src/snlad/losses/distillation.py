"""Distillation loss terms, one function each, registered once, and their weighted sum.

A term is zero when teacher and student agree and positive otherwise; teacher
features arrive detached, so gradients reach the student only. Two kinds
(:class:`Term`):

- a *level* term takes teacher and student features of one level
  (B x C x H x W) and the loss settings; the loss sums it over the levels;
- a *model* term sees every level at once and the model's auxiliary outputs
  (:meth:`snlad.models.TeacherStudent.auxiliary`, e.g. the CRAMs' assignments),
  for what relates levels or concerns a module rather than one level.

Adding a term is its ``LossConfig`` field (``term(weight)``) and one function
registered here with :func:`level_term` or :func:`model_term`; :data:`TERMS`
must implement exactly the declared terms (checked at import).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snlad.config import LossConfig, check_registry, term_weights
from snlad.losses.affinity import affinity, batch_affinity, local_affinity, pooled_positions
from snlad.models.teacher_student import Auxiliary, Features

LevelFn = Callable[[torch.Tensor, torch.Tensor, LossConfig], torch.Tensor]
ModelFn = Callable[[Features, Features, Auxiliary, LossConfig], torch.Tensor]


@dataclass(frozen=True)
class Term:
    """One registered term: ``level`` (summed over levels) or ``model`` (every level and the auxiliary outputs)."""

    level: LevelFn | None = None
    model: ModelFn | None = None

    def __call__(self, teacher: Features, student: Features, auxiliary: Auxiliary, config: LossConfig) -> torch.Tensor:
        if self.model is not None:
            return self.model(teacher, student, auxiliary, config)
        return sum(self.level(t, s, config) for t, s in zip(teacher, student, strict=True))


TERMS: dict[str, Term] = {}


def level_term(name: str) -> Callable[[LevelFn], LevelFn]:
    """Register a function of one level's teacher and student features as the term ``name``."""

    def register(fn: LevelFn) -> LevelFn:
        TERMS[name] = Term(level=fn)
        return fn

    return register


def model_term(name: str) -> Callable[[ModelFn], ModelFn]:
    """Register a function of all levels and the model's auxiliary outputs as the term ``name``."""

    def register(fn: ModelFn) -> ModelFn:
        TERMS[name] = Term(model=fn)
        return fn

    return register


@level_term("channel")
def channel_loss(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """Mean over positions of 1 - cos across channels (STPM; SNL channel-wise distillation)."""
    return (1 - F.cosine_similarity(teacher, student, dim=1)).mean()


@level_term("whole_map")
def whole_map_loss(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """RD4AD: 1 - cos between the flattened feature maps of each image."""
    return (1 - F.cosine_similarity(teacher.flatten(1), student.flatten(1), dim=1)).mean()


def spatial_cos(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """Mean over channels of 1 - cos(T[c, :], S[c, :]) across positions."""
    return (1 - F.cosine_similarity(teacher.flatten(2), student.flatten(2), dim=2)).mean()


def spatial_kl(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """Mean over channels of KL(P_T || P_S) of spatial softmaxes with temperature tau, times tau^2.

    Channel-wise distillation (Shu et al. 2021; the reading the third-party SNL
    code supports); tau^2 keeps the gradient scale independent of tau.
    """
    tau = config.spatial_tau
    log_p_teacher = F.log_softmax(teacher.flatten(2).float() / tau, dim=2)
    log_p_student = F.log_softmax(student.flatten(2).float() / tau, dim=2)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=2).mean() * tau**2


SPATIAL_KINDS: dict[str, LevelFn] = {"cos": spatial_cos, "kl": spatial_kl}
check_registry(SPATIAL_KINDS, "loss.spatial_kind")


@level_term("spatial")
def spatial_loss(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """SNL spatial-wise distillation, per channel over positions, as ``loss.spatial_kind`` (:data:`SPATIAL_KINDS`)."""
    return SPATIAL_KINDS[config.spatial_kind](teacher, student, config)


AFFINITY_DISTANCES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "l1": lambda difference: difference.abs().mean(),
    "l2": lambda difference: difference.pow(2).mean(),
}
"""``loss.affinity_distance``: the mean of a difference of affinity matrices."""
check_registry(AFFINITY_DISTANCES, "loss.affinity_distance")


def _distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    return AFFINITY_DISTANCES[kind](a - b)


AFFINITY_MODES: dict[str, Callable[[torch.Tensor, torch.Tensor, LossConfig], torch.Tensor]] = {
    "pooled": lambda a, b, config: affinity(
        pooled_positions(a, config.affinity_size), pooled_positions(b, config.affinity_size)
    ),
    "local": lambda a, b, config: local_affinity(a, b, config.affinity_window),
}
"""``loss.affinity_mode``: cosine affinities of a's positions to b's on the pooled grid, or in local windows."""
check_registry(AFFINITY_MODES, "loss.affinity_mode")


def _affinity(a: torch.Tensor, b: torch.Tensor, config: LossConfig) -> torch.Tensor:
    return AFFINITY_MODES[config.affinity_mode](a, b, config)


@level_term("intra")
def intra_affinity_loss(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """Distance between the teacher's and the student's affinities among positions of one image."""
    return _distance(_affinity(teacher, teacher, config), _affinity(student, student, config), config.affinity_distance)


def cross_inter(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """The teacher-student cross affinity A_TS pushed towards A_T (the student relates to the teacher as the
    teacher to itself), pooled or local as the intra term."""
    return _distance(_affinity(teacher, student, config), _affinity(teacher, teacher, config), config.affinity_distance)


def batch_inter(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """Positions of one image against positions of the *other* images of the batch, on the pooled grid.

    In a multi-class batch these are often other products: the student must
    relate different images, i.e. different classes, as the teacher does.
    """
    t, s = pooled_positions(teacher, config.affinity_size), pooled_positions(student, config.affinity_size)
    if len(t) < 2:
        return teacher.new_zeros(())
    other = ~torch.eye(len(t), dtype=torch.bool, device=t.device)
    return _distance(batch_affinity(t, t)[other], batch_affinity(s, s)[other], config.affinity_distance)


INTER_KINDS: dict[str, LevelFn] = {"cross": cross_inter, "batch": batch_inter}
check_registry(INTER_KINDS, "loss.inter_kind")


@level_term("inter")
def inter_affinity_loss(teacher: torch.Tensor, student: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """SNL inter-affinity distillation, as ``loss.inter_kind`` (:data:`INTER_KINDS`)."""
    return INTER_KINDS[config.inter_kind](teacher, student, config)


@model_term("inter_levels")
def cross_level_affinity_loss(
    teacher: Features, student: Features, auxiliary: Auxiliary, config: LossConfig
) -> torch.Tensor:
    """Inter-affinity across levels: how positions of level k relate to positions of level k+1 (issue 19's reading).

    Levels have different channels, so positions of two levels are compared
    through their affinities on a common grid (each level pooled to the coarser
    one's side, at most ``loss.affinity_size``): R(p, q) = (1/N) sum_r A_k(p, r)
    A_k+1(q, r), how alike position p of level k and position q of level k+1
    see the rest of the image. The student's R is pushed towards the teacher's
    for every pair of adjacent levels.
    """
    total = teacher[0].new_zeros(())
    for k in range(len(teacher) - 1):
        side = min(config.affinity_size, *teacher[k + 1].shape[-2:])
        relations = []
        for levels in (teacher, student):
            lower, upper = pooled_positions(levels[k], side), pooled_positions(levels[k + 1], side)
            relations.append(affinity(lower, lower) @ affinity(upper, upper).transpose(1, 2) / lower.shape[1])
        total = total + _distance(relations[1], relations[0], config.affinity_distance)
    return total


@model_term("cram_commit")
def cram_commitment_loss(
    teacher: Features, student: Features, auxiliary: Auxiliary, config: LossConfig
) -> torch.Tensor:
    """How much of a CRAM's input its centres do not explain: mean |x - sum_k a_k c_k|^2 / |x|^2 over CRAMs.

    Pulls the centres (and the assignment) onto the features the student makes,
    and the features towards the centres, so the centres carry the normal space
    (VQ-VAE's commitment term, soft and in both directions). Zero without CRAMs.
    """
    recorded = auxiliary.get("cram", [])
    if not recorded:
        return teacher[0].new_zeros(())
    return sum(
        ((x - centres).pow(2).sum(dim=1) / x.pow(2).sum(dim=1).clamp_min(1e-12)).mean() for x, centres, _ in recorded
    ) / len(recorded)


@model_term("cram_usage")
def cram_usage_loss(teacher: Features, student: Features, auxiliary: Auxiliary, config: LossConfig) -> torch.Tensor:
    """How unevenly a batch uses a CRAM's centres: mean over CRAMs of 1 - H(p) / log K.

    p is the soft assignment averaged over the batch's images and positions, H
    its entropy: 0 when every centre takes an equal share, 1 when one centre
    takes everything. With ``cram_commit`` alone the centres collapse onto one
    or two (cram_identity on the stage-1c runs); this term, the batch-entropy
    usage term of discrete-bottleneck models, keeps them all in use while each
    position may still pick one. Zero without CRAMs or with a single centre.
    """
    recorded = auxiliary.get("cram", [])
    if not recorded or recorded[0][2].shape[1] < 2:
        return teacher[0].new_zeros(())
    total = teacher[0].new_zeros(())
    for _, _, assignment in recorded:
        usage = assignment.mean(dim=(0, 2, 3))
        entropy = -(usage * usage.clamp_min(1e-12).log()).sum()
        total = total + 1 - entropy / math.log(len(usage))
    return total / len(recorded)


PROJECTION_MARGIN = 0.5  # RD++'s contrast term: the clean projection kept below this cosine of the anomalous features
PROJECTION_PARTS = (0.01, 0.1)  # RD++'s weights of its reconstruction and contrast terms (its SSOT term: below)


@model_term("projection")
def projection_loss(teacher: Features, student: Features, auxiliary: Auxiliary, config: LossConfig) -> torch.Tensor:
    """RD++'s projection loss: a pseudo-anomalous image's projection onto the clean image's, the clean projection away
    from the anomalous teacher features. Zero without ``model.projection``.

    Reconstruction: mean over positions of 1 - cos across channels between the
    two projections; contrast: max(0, cos - 0.5) between the flattened anomalous
    teacher features and the flattened clean projection (PyTorch's
    CosineEmbeddingLoss with target -1, RD++'s code); summed over levels,
    weighted 0.01 and 0.1 and divided by 1.11 as in RD++. RD++'s third part,
    a debiased Sinkhorn divergence between the batch's clean projections and
    the same projections shuffled, compares a point set with itself and is zero
    by construction: left out.
    """
    recorded = auxiliary.get("projection", [])
    if not recorded:
        return teacher[0].new_zeros(())
    ((anomalous, projected_anomalous, projected),) = recorded
    reconstruction = sum(
        (1 - F.cosine_similarity(a, p, dim=1)).mean() for a, p in zip(projected_anomalous, projected, strict=True)
    )
    contrast = sum(
        (F.cosine_similarity(a.flatten(1), p.flatten(1), dim=1) - PROJECTION_MARGIN).clamp_min(0).mean()
        for a, p in zip(anomalous, projected, strict=True)
    )
    weights = PROJECTION_PARTS
    return (weights[0] * reconstruction + weights[1] * contrast) / (1 + sum(weights))


if set(TERMS) != set(term_weights(LossConfig())):
    raise ImportError(
        f"snlad.losses.TERMS {sorted(TERMS)} must implement exactly the LossConfig terms {sorted(term_weights(LossConfig()))}"
    )


def distillation_loss(
    teacher: Features, student: Features, config: LossConfig, auxiliary: Auxiliary | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over terms (each summed over levels); also returns each term's value for logging.

    ``auxiliary``: the model's auxiliary outputs of this forward pass (model terms read them).
    Terms with weight 0 are not computed at all, so an ablation also costs less.
    """
    total = teacher[0].new_zeros(())
    parts: dict[str, float] = {}
    for name, weight in term_weights(config).items():
        if weight == 0:
            continue
        value = TERMS[name](teacher, student, auxiliary or {}, config)
        parts[name] = float(value.detach())
        total = total + weight * value
    return total, parts
