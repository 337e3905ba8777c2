"""The frozen teacher's features of each training image, computed once and reused every later epoch.

The teacher never changes and nothing random happens to a training image, so
its features are the same in every epoch; computing them again is a third of
FD's forward work and all of RD's encoder. :class:`TeacherFeatureCache` keeps
them (float32, exactly what the teacher returned) for the first images that fit
its budget (EfficientNet-Lite0 at 256 px: 672 KB per image, 639 MB for the 973 training images of the
ten-category realad); a batch whose images are all cached skips the teacher.
"""

from __future__ import annotations

import torch

from snlad.models.teacher_student import Features


class TeacherFeatureCache:
    """Per-level float32 buffers ``capacity x C x H x W``, allocated when the first batch shows the shapes."""

    def __init__(self, size: int, budget_bytes: int) -> None:
        self.size = size
        self.budget_bytes = max(0, budget_bytes)
        self.capacity = 0
        self.levels: list[torch.Tensor] = []
        self.filled = torch.zeros(size, dtype=torch.bool)
        # The layout the teacher returned (channels-last in training): the loss then reduces in the same order.
        self.memory_format = torch.contiguous_format

    def lookup(self, indices: torch.Tensor) -> Features | None:
        """The cached features of a batch (indices into the training set), or None unless every image is cached."""
        if not self.levels or not bool(self.filled[indices].all()):
            return None
        return [level[indices].contiguous(memory_format=self.memory_format) for level in self.levels]

    def store(self, indices: torch.Tensor, features: Features) -> None:
        """Keep the features of the batch's images that fit the budget."""
        if not self.levels:
            per_image = sum(f[0].numel() * 4 for f in features)
            self.capacity = min(self.size, self.budget_bytes // per_image)
            if self.capacity == 0:
                self.budget_bytes = 0  # nothing fits: never try again
                return
            self.levels = [
                torch.empty((self.capacity, *f.shape[1:]), dtype=torch.float32, device=f.device) for f in features
            ]
            if not features[0].is_contiguous() and features[0].is_contiguous(memory_format=torch.channels_last):
                self.memory_format = torch.channels_last
        keep = indices < self.capacity
        if keep.any():
            for level, feature in zip(self.levels, features, strict=True):
                level[indices[keep]] = feature[keep.to(feature.device)].float()
            self.filled[indices[keep]] = True

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0
