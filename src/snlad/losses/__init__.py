"""Training losses: distillation terms (baselines and SNL's structural terms)."""

from snlad.losses.distillation import (
    channel_loss,
    distillation_loss,
    inter_affinity_loss,
    intra_affinity_loss,
    spatial_loss,
    whole_map_loss,
)

__all__ = [
    "channel_loss",
    "whole_map_loss",
    "spatial_loss",
    "intra_affinity_loss",
    "inter_affinity_loss",
    "distillation_loss",
]
