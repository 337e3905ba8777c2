"""CRAM: central residual aggregation module (SNL part 2, reconstruction).

The paper adds a CRAM after every student block to "encapsulate the normal
representation space of the student". Our reading (NetVLAD-like, see
SNL_METHOD.md): K centres, a soft assignment of every position to them, and
the residual to the assigned centres through a zero-initialised projection.
Variants (``model.cram_*``, measured in docs/results):

- ``cram_output`` (:data:`CRAM_OUTPUTS`) "residual": ``y = x + phi(x - sum_k a_k c_k)``,
  the identity at initialisation (the module learns how far to move features);
  "centres": ``y = sum_k a_k c_k + phi(x - sum_k a_k c_k)``, features start as
  their soft reconstruction from the centres, so what no centre explains must
  be learned back through ``phi``; "bottleneck": ``y = sum_k a_k c_k``, nothing
  bypasses the centres (every output is a mix of K centres: the normal space
  the centres span is all the student can say). The ``loss.cram_commit`` term
  pulls centres and inputs together for any of them; alone it collapses every
  position onto one or two centres (docs/results/campaign-rd), which the
  ``loss.cram_usage`` term counters by asking the batch to use every centre.
- ``cram_tau``: temperature of the assignment softmax (small = hard assignment).
- ``cram_init`` "random" or "kmeans": centres (and the assignment, as
  NetVLAD's ``softmax(-|x - c_k|^2 / tau)``) from k-means of the teacher's
  features of the level the CRAM's output is compared with
  (:func:`init_from_features`, called before training starts). "kmeans-soft":
  the same centres, with the assignment's logits divided by the features' mean
  squared distance to their nearest centre. At the teacher's feature norms the
  plain k-means logits differ by far more than 1, the softmax is one-hot and no
  gradient reaches the centres a position did not pick: the usage term stayed
  at its start value through a whole run (docs/results/campaign-rd). Scaled,
  a typical position's logits differ by about 1 and every centre gets gradient:
  with it the usage term fell from 0.18 to 0.04 and 13-16 of 16 centres stayed
  in use, explaining 68-74 % of a feature (scripts/cram_identity.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from snlad.config import ModelConfig, check_registry

CramOutput = Callable[[torch.Tensor, torch.Tensor, nn.Module], torch.Tensor]
"""(input x, centre reconstruction sum_k a_k c_k, projection phi) -> the CRAM's output."""

CRAM_OUTPUTS: dict[str, CramOutput] = {
    "residual": lambda x, aggregated, project: x + project(x - aggregated),
    "centres": lambda x, aggregated, project: aggregated + project(x - aggregated),
    "bottleneck": lambda x, aggregated, project: aggregated,
}
check_registry(CRAM_OUTPUTS, "model.cram_output")


class CRAM(nn.Module):
    """Soft assignment to K centres and a zero-initialised projection of the residual (see module docstring).

    Since the soft assignments sum to one, ``sum_k a_k (x - c_k)`` equals
    ``x - sum_k a_k c_k``; computing it that way avoids a B x K x C x H x W tensor.
    """

    auxiliary_key = "cram"

    def __init__(self, channels: int, num_centres: int, tau: float = 1.0, output: str = "residual") -> None:
        super().__init__()
        self.assign = nn.Conv2d(channels, num_centres, kernel_size=1)
        self.centres = nn.Parameter(torch.randn(num_centres, channels) * 0.1)
        self.project = nn.Sequential(nn.Conv2d(channels, channels, kernel_size=1, bias=False), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.project[1].weight)  # phi = 0 at initialisation
        self.tau = tau
        self.output = output
        # (x, reconstruction, assignment) of the last training pass
        self.recorded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def train(self, mode: bool = True) -> CRAM:
        """Switching mode forgets the last training pass: its tensors are part of a graph, which deepcopy (BatchNorm folding) refuses."""
        self.recorded = None
        return super().train(mode)

    def soft_assignment(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The assignment a (B x K x H x W) of every position to the centres, and its reconstruction sum_k a_k c_k."""
        assignment = torch.softmax(self.assign(x) / self.tau, dim=1)
        return assignment, torch.einsum("bkhw,kc->bchw", assignment, self.centres)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x C x H x W -> B x C x H x W."""
        assignment, aggregated = self.soft_assignment(x)
        # for the loss's cram_commit and cram_usage terms
        self.recorded = (x, aggregated, assignment) if self.training else None
        return CRAM_OUTPUTS[self.output](x, aggregated, self.project)

    @torch.no_grad()
    def init_from_features(
        self, features: torch.Tensor, iterations: int = 20, seed: int = 0, soft: bool = False
    ) -> None:
        """Centres = k-means of ``features`` (N x C positions); assignment = softmax(-|x - c_k|^2 / (s tau)) of them.

        s = 1, or with ``soft`` the mean over ``features`` of the squared distance to the nearest centre (the scale
        lives in the 1x1 conv's weights, so a saved model scores as it trained).
        """
        points = features.float()
        centres = kmeans(points, self.centres.shape[0], iterations, seed)
        self.centres.copy_(centres)
        scale = torch.cdist(points, centres).min(dim=1).values.pow(2).mean().clamp_min(1e-12) if soft else 1.0
        # -|x - c|^2 = 2 c.x - |c|^2 - |x|^2, and |x|^2 is the same for every k: a 1x1 conv computes the rest.
        self.assign.weight.copy_((2 * centres / scale).view(*self.assign.weight.shape))  # forward divides by tau
        self.assign.bias.copy_(-(centres**2).sum(dim=1) / scale)


def kmeans(points: torch.Tensor, k: int, iterations: int, seed: int) -> torch.Tensor:
    """Lloyd's k-means of ``points`` (N x C) from k distinct random points; an emptied cluster keeps its centre."""
    generator = torch.Generator().manual_seed(seed)
    centres = points[torch.randperm(len(points), generator=generator)[:k]].clone()
    for _ in range(iterations):
        nearest = torch.cdist(points, centres).argmin(dim=1)
        for index in range(len(centres)):
            members = points[nearest == index]
            if len(members):
                centres[index] = members.mean(dim=0)
    return centres


def build_crams(config: ModelConfig, channels: Sequence[int]) -> nn.ModuleList:
    """One CRAM per student level where ``model.cram`` switches them on, else identities (same call site for ablations)."""
    return nn.ModuleList(
        CRAM(c, config.cram_centres, config.cram_tau, config.cram_output) if config.cram else nn.Identity()
        for c in channels
    )


KMEANS_POSITIONS = 20_000  # feature positions k-means runs on, per level


@torch.no_grad()
def init_from_kmeans(model: nn.Module, teacher_features: Sequence[torch.Tensor], seed: int, soft: bool = False) -> None:
    """``model.cram_init=kmeans``: each CRAM's centres from k-means of the teacher's features of its compared level
    (``kmeans-soft``: ``soft``, the assignment scaled to those features' distances)."""
    generator = torch.Generator().manual_seed(seed)
    for cram, level in zip(model.crams, model.cram_levels, strict=True):
        features = teacher_features[level]
        positions = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        chosen = torch.randperm(len(positions), generator=generator)[:KMEANS_POSITIONS]
        cram.init_from_features(positions[chosen], seed=seed, soft=soft)


CramInit = Callable[[nn.Module, Sequence[torch.Tensor], int], None]
"""(model with ``crams`` and ``cram_levels``, the teacher's features of a few training images, seed) -> None."""

CRAM_INITS: dict[str, CramInit | None] = {  # None: as constructed
    "random": None,
    "kmeans": init_from_kmeans,
    "kmeans-soft": functools.partial(init_from_kmeans, soft=True),
}
check_registry(CRAM_INITS, "model.cram_init")
