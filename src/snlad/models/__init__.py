"""Models: FD and RD baselines, with SNL's CRAM switchable on each; PatchCore as the memory-bank reference."""

from __future__ import annotations

from snlad.backbones import build_backbone
from snlad.config import ModelConfig
from snlad.models.cram import build_crams
from snlad.models.fd import FeatureDistillation
from snlad.models.patchcore import PatchCore
from snlad.models.rd import ReverseDistillation
from snlad.models.teacher_student import Features, TeacherStudent

__all__ = ["build_model", "TeacherStudent", "Features", "FeatureDistillation", "PatchCore", "ReverseDistillation"]


def build_model(config: ModelConfig, pretrained_teacher: bool = True) -> TeacherStudent:
    """Teacher with its real weights (``pretrained_teacher=False`` only when a checkpoint
    will overwrite them anyway) and a freshly initialised student (PatchCore: an empty memory bank)."""
    teacher = build_backbone(config.teacher, pretrained=pretrained_teacher, weights=config.teacher_weights)
    if config.name == "patchcore":
        return PatchCore(teacher)  # its memory bank is built by snlad.engine.memory_bank, not trained
    base = config.name.removeprefix("snl-")
    if base == "fd":
        student = build_backbone(config.teacher, pretrained=False)
        return FeatureDistillation(teacher, student, build_crams(config, student.channels))
    return ReverseDistillation(
        teacher, build_crams(config, teacher.channels[::-1]), tuple(config.decoder_blocks), config.bottleneck_dropout
    )
