"""PatchCore (Roth et al., CVPR 2022) in the teacher-student contract: no student, a memory bank of normal patches.

A patch feature is the teacher's stride-8 and stride-16 levels, each averaged
over its 3 x 3 neighbourhood ("locally aware": a little context, still
local), the stride-16 one upsampled to stride 8, concatenated. The memory
bank holds a greedy k-centre coreset of every training patch
(:mod:`snlad.models.coreset`); a test patch scores its distance to the nearest
bank patch. ``forward`` returns the patch features as the "teacher" level and
each position's nearest bank patch as the "student" level, so the one
:class:`~snlad.scoring.maps.AnomalyScorer` (``map.distance=euclidean``) makes the
map, and test, predict, calibration, probes and export need nothing of their own.

The bank is a buffer: it travels in ``model.pt`` (read with ``weights_only=True``)
and its size is taken from the file when loading.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from snlad.backbones import Backbone
from snlad.errors import SnladError
from snlad.models.teacher_student import Features, TeacherStudent

PATCH_LEVELS = (1, 2)  # the teacher's stride-8 and stride-16 levels (PatchCore's ResNet layer2 + layer3)
SEARCH_CHUNK_ELEMENTS = 2**20
"""Query-bank distances held at once by the nearest-neighbour search: 4 MB of float32, whatever the bank's size.
Cache-sized; with the fused addmm, 113 ms per image against 196 ms for unfused 2^24-element chunks (a 10k bank,
4 images' queries, one thread of the project's VM; 2^18-2^24 fused: 112-123 ms)."""


def nearest_indices(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Index (Q) of each query's (Q x C) nearest row of ``bank`` (M x C) in L2 distance.

    Exhaustive: a matmul and a min per chunk of bank rows, the running best
    kept across chunks, so memory stays at :data:`SEARCH_CHUNK_ELEMENTS` for
    any bank; ``|q|^2`` is left out (the same for every bank row), and
    ``|b|^2 - 2 q.b`` is one fused addmm. Traced into an exported graph as
    Gemm + ArgMin (+ Min and Where to merge chunks) per chunk.
    """
    rows = max(1, SEARCH_CHUNK_ELEMENTS // max(1, len(queries)))
    best, best_index = None, None
    for start in range(0, len(bank), rows):
        chunk = bank[start : start + rows]
        distances = torch.addmm(chunk.square().sum(dim=1), queries, chunk.T, alpha=-2)  # Q x m: |b|^2 - 2 q.b
        value, index = distances.min(dim=1)
        if best is None:
            best, best_index = value, index
        else:
            better = value < best
            best = torch.where(better, value, best)
            best_index = torch.where(better, index + start, best_index)
    return best_index


class PatchCore(TeacherStudent):
    """Teacher patch features against their nearest neighbours in a memory bank (M x C buffer, empty until built)."""

    def __init__(self, teacher: Backbone) -> None:
        super().__init__(teacher)
        channels = sum(teacher.channels[level] for level in PATCH_LEVELS)
        self.register_buffer("bank", torch.empty(0, channels))

    def patch_features(self, levels: Features) -> torch.Tensor:
        """The teacher's three levels -> B x C x h x w locally aware patch features at the stride-8 resolution.

        The 3 x 3 average ignores the zero padding (``count_include_pad=False``), so a border patch is
        the mean of its real neighbours rather than darkened towards zero (our choice; PatchCore pads).
        """
        middle, deep = (
            F.avg_pool2d(levels[level], 3, stride=1, padding=1, count_include_pad=False) for level in PATCH_LEVELS
        )
        deep = F.interpolate(deep, size=middle.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([middle, deep], dim=1)

    def set_bank(self, bank: torch.Tensor) -> None:
        """Install a built memory bank (M x C patch features)."""
        if bank.ndim != 2 or bank.shape[1] != self.bank.shape[1] or len(bank) == 0:
            raise ValueError(f"a memory bank must be M x {self.bank.shape[1]} with M >= 1, got {tuple(bank.shape)}")
        self.bank = bank.to(self.bank.device, self.bank.dtype).contiguous()

    def nearest(self, patches: torch.Tensor) -> torch.Tensor:
        """B x C x h x w patch features -> the nearest bank patch of each, B x C x h x w."""
        if len(self.bank) == 0:
            raise SnladError(
                "this PatchCore's memory bank is empty (an altered model file?): train it again with --model patchcore"
            )
        batch, channels, height, width = patches.shape
        queries = patches.permute(0, 2, 3, 1).reshape(-1, channels)
        found = self.bank[nearest_indices(queries, self.bank)]
        return found.view(batch, height, width, channels).permute(0, 3, 1, 2)

    def forward(self, images: torch.Tensor, teacher_features: Features | None = None) -> tuple[Features, Features]:
        """images: B x 3 x S x S in [0, 1] -> ([patch features], [nearest bank patches]), one level at stride 8."""
        if teacher_features is None:
            with torch.no_grad():
                teacher_features = self.teacher(images)
        patches = self.patch_features(teacher_features)
        return [patches], [self.nearest(patches)]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Take the bank's size from the file (it depends on the training set, not on the config)."""
        stored = state_dict.get(prefix + "bank")
        if isinstance(stored, torch.Tensor) and stored.ndim == 2 and stored.shape[1] == self.bank.shape[1]:
            self.bank = torch.empty_like(stored, device=self.bank.device, dtype=self.bank.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
