"""Training losses: distillation terms (baselines and SNL's structural terms)."""

from snlad.losses.distillation import TERMS, distillation_loss

__all__ = ["TERMS", "distillation_loss"]
