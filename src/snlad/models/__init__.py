"""Models: FD and RD baselines, with SNL's CRAM switchable on each; PatchCore as the memory-bank reference."""

from __future__ import annotations

from collections.abc import Callable

from snlad.backbones import Backbone, build_backbone
from snlad.config import ModelConfig, check_registry
from snlad.models.cram import build_crams
from snlad.models.fd import FeatureDistillation
from snlad.models.patchcore import PatchCore
from snlad.models.rd import ReverseDistillation
from snlad.models.teacher_student import Features, TeacherStudent

__all__ = [
    "BUILDERS",
    "build_model",
    "TeacherStudent",
    "Features",
    "FeatureDistillation",
    "PatchCore",
    "ReverseDistillation",
]


def _feature_distillation(config: ModelConfig, teacher: Backbone) -> TeacherStudent:
    student = build_backbone(config.teacher, pretrained=False)
    return FeatureDistillation(teacher, student, build_crams(config, student.channels))


def _reverse_distillation(config: ModelConfig, teacher: Backbone) -> TeacherStudent:
    return ReverseDistillation(
        teacher,
        build_crams(config, teacher.channels[::-1]),
        tuple(config.decoder_blocks),
        config.bottleneck_dropout,
        config.projection,
    )


def _patchcore(config: ModelConfig, teacher: Backbone) -> TeacherStudent:
    return PatchCore(teacher)  # its memory bank is built by snlad.engine.memory_bank, not trained


BUILDERS: dict[str, Callable[[ModelConfig, Backbone], TeacherStudent]] = {
    "fd": _feature_distillation,
    "rd": _reverse_distillation,
    "patchcore": _patchcore,
}
"""``model.architecture`` -> its builder (from the settings and the frozen teacher); names in ``config.ARCHITECTURES``."""
check_registry(BUILDERS, "model.architecture")


def build_model(config: ModelConfig, pretrained_teacher: bool = True) -> TeacherStudent:
    """Teacher with its real weights (``pretrained_teacher=False`` only when a checkpoint
    will overwrite them anyway) and a freshly initialised student (PatchCore: an empty memory bank)."""
    teacher = build_backbone(config.teacher, pretrained=pretrained_teacher, weights=config.teacher_weights)
    return BUILDERS[config.architecture](config, teacher)
