"""What every snlad model is: a frozen teacher and a trainable student.

All models share one contract so one training loop, one evaluation loop, one
loss and one anomaly map serve them all: ``forward(images)`` returns the
teacher's and the student's features at the same three levels.
"""

from __future__ import annotations

import torch
from torch import nn

from snlad.backbones import Backbone

Features = list[torch.Tensor]
Auxiliary = dict[str, list[tuple]]
"""What a training forward pass leaves besides features, for the loss's model terms, by the recording module's
``auxiliary_key``: ``"cram"``: (input, centre reconstruction, assignment) per CRAM; ``"projection"``: (pseudo-anomalous teacher
features, their projection, the clean projection) of RD++'s projection."""


class TeacherStudent(nn.Module):
    """Base class: holds the frozen teacher; subclasses define ``student_features``."""

    def __init__(self, teacher: Backbone) -> None:
        super().__init__()
        self.teacher = teacher
        self.teacher.requires_grad_(False)
        self.teacher.eval()

    def train(self, mode: bool = True) -> TeacherStudent:
        """Train the student only: the teacher's BatchNorm statistics must never move."""
        super().train(mode)
        self.teacher.eval()
        return self

    cram_levels: tuple[int, ...] = ()
    """The teacher level each entry of ``crams`` (where a model has them) is compared with."""

    def auxiliary(self) -> Auxiliary:
        """The auxiliary outputs of the last training forward pass (``snlad.losses`` model terms read them)."""
        auxiliary: Auxiliary = {}
        for module in self.modules():
            if getattr(module, "recorded", None) is not None:
                auxiliary.setdefault(module.auxiliary_key, []).append(module.recorded)
        return auxiliary

    def student_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("teacher.")]

    def student_features(self, images: torch.Tensor, teacher_features: Features) -> Features:
        raise NotImplementedError

    def forward(self, images: torch.Tensor, teacher_features: Features | None = None) -> tuple[Features, Features]:
        """images: B x 3 x S x S in [0, 1] -> (teacher, student) features at strides 4, 8, 16.

        ``teacher_features`` already computed for these images (training reuses them
        from epoch to epoch, ``snlad.engine.feature_cache``) skip the teacher.
        """
        if teacher_features is None:
            with torch.no_grad():
                teacher_features = [f.detach() for f in self.teacher(images)]
        return teacher_features, self.student_features(images, teacher_features)
