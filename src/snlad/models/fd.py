"""FD: STPM-style feature distillation (Wang et al. 2021).

The student has the teacher's architecture with random weights and sees the
same image; with SNL a CRAM follows each student stage.
"""

from __future__ import annotations

import torch
from torch import nn

from snlad.backbones import Backbone
from snlad.models.cram import maybe_cram
from snlad.models.teacher_student import Features, TeacherStudent


class FeatureDistillation(TeacherStudent):
    def __init__(self, teacher: Backbone, student: Backbone, cram: bool, cram_centres: int) -> None:
        super().__init__(teacher)
        self.student = student
        self.crams = nn.ModuleList(maybe_cram(cram, c, cram_centres) for c in student.channels)

    def student_features(self, images: torch.Tensor, teacher_features: Features) -> Features:
        features = []
        x = self.student.normalize(images)
        for stage, cram in zip(self.student.stages, self.crams):
            x = cram(stage(x))
            features.append(x)
        return features
