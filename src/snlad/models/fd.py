"""FD: STPM-style feature distillation (Wang et al. 2021).

The student has the teacher's architecture with random weights and sees the
same image; with SNL a CRAM follows each student stage.
"""

from __future__ import annotations

import torch
from torch import nn

from snlad.backbones import Backbone
from snlad.models.teacher_student import Features, TeacherStudent


class FeatureDistillation(TeacherStudent):
    def __init__(self, teacher: Backbone, student: Backbone, crams: nn.ModuleList) -> None:
        super().__init__(teacher)
        self.student = student
        self.crams = crams  # after student stage i, compared with teacher level i
        self.cram_levels = (0, 1, 2)

    def student_features(self, images: torch.Tensor, teacher_features: Features) -> Features:
        features = []
        x = self.student.normalize(images)
        for stage, cram in zip(self.student.stages, self.crams):
            x = cram(stage(x))
            features.append(x)
        return features
