"""Anomaly maps and image scores: one implementation for training, test, predict, calibration, selection, probes and export.

Per level, a weighted sum of *map terms* (:data:`MAP_TERMS`, weights and
settings in ``MapConfig``): ``local`` (``map.local``), the per-position
distance ``1 - cos(T[:, p], S[:, p])`` (PatchCore: the L2 distance of a patch
to its nearest memory-bank patch, ``map.distance``), and for SNL ``structural``
(``map.beta``), ``mean_q |A_T(p, q) - A_S(p, q)|``, the row of the
intra-affinity difference (on its pooled grid, or over each position's local
window: ``map.affinity_*``, the loss's where unset). Levels are upsampled bilinearly to the input size, summed and
Gaussian-smoothed (sigma 4 at 256 px, as RD4AD; truncated at 4 sigma with
mirror borders, as ``scipy.ndimage.gaussian_filter``); the image score is the
map's max or the mean of its top-k pixels (:data:`IMAGE_SCORES`).

Upsampling and blurring are linear along each image axis, so
``blur(sum_l up(D_l)) = sum_l K_l D_l K_l^T`` with ``K_l = G U_l`` (S x h_l)
precomputed per level side: a few small matmuls instead of full-resolution
interpolations and a 33-tap convolution over every map. An ``nn.Module``, so
export puts the whole scoring into the graph.

Adding a map term is one function registered here with :func:`map_term` and
its weight in ``MapConfig`` (``map_weight``), with any settings it needs beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from snlad.config import MAP_SETTINGS_FROM_LOSS, MapConfig, check_registry, map_term_weights
from snlad.losses.affinity import affinity, local_affinity, pooled_positions
from snlad.models.teacher_student import Features


def gaussian_kernel1d(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian, truncated at 4 sigma like scipy.ndimage.gaussian_filter."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def blur_matrix(size: int, sigma: float) -> np.ndarray:
    """size x size matrix G with ``G @ x`` = the 1-D Gaussian blur of x, mirror borders (``d c b | a b c d | c b a``)."""
    if sigma == 0:
        return np.eye(size)
    kernel = gaussian_kernel1d(sigma)
    radius = len(kernel) // 2
    period = 2 * (size - 1) if size > 1 else 1
    matrix = np.zeros((size, size))
    for row in range(size):
        for offset, weight in enumerate(kernel):
            index = (row + offset - radius) % period
            matrix[row, index if index < size else period - index] += weight
    return matrix


def bilinear_matrix(source: int, target: int) -> np.ndarray:
    """target x source matrix U with ``U @ x`` = 1-D bilinear resizing of x (``align_corners=False``, edges clamped)."""
    centres = (np.arange(target) + 0.5) * source / target - 0.5
    centres = np.clip(centres, 0.0, source - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, source - 1)
    fraction = centres - low
    matrix = np.zeros((target, source))
    matrix[np.arange(target), low] += 1 - fraction
    matrix[np.arange(target), high] += fraction
    return matrix


def local_distance(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """B x C x H x W pair -> B x H x W, 1 - cos across channels."""
    return 1 - F.cosine_similarity(teacher, student, dim=1)


def euclidean_distance(features: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
    """B x C x H x W pair -> B x H x W, the L2 distance across channels (PatchCore's patch score).

    Recomputed from the two features rather than kept from the search's
    ``|a|^2 - 2ab + |b|^2``, which loses precision to cancellation for close pairs.
    """
    return (features - nearest).square().sum(dim=1).sqrt()


DISTANCES = {"cosine": local_distance, "euclidean": euclidean_distance}
"""``map.distance``: how the local term compares a position's two features."""
check_registry(DISTANCES, "map.distance")

MapFn = Callable[[torch.Tensor, torch.Tensor, MapConfig], torch.Tensor]
"""(teacher, student features of one level, B x C x H x W; the map settings) -> B x h x w distances."""


def same_side(side: int, config: MapConfig) -> int:
    """A term whose map has the level's own resolution."""
    return side


@dataclass(frozen=True)
class MapTerm:
    """One registered map term: its distance map, the side of that map for a level of a given side, its settings."""

    distance: MapFn
    side: Callable[[int, MapConfig], int] = same_side
    settings: tuple[str, ...] = ()  # the MapConfig fields it reads


MAP_TERMS: dict[str, MapTerm] = {}


def map_term(
    name: str, side: Callable[[int, MapConfig], int] = same_side, settings: tuple[str, ...] = ()
) -> Callable[[MapFn], MapFn]:
    """Register a per-level distance map as the map term ``name`` (its weight: the MapConfig field ``map_weight(name)``).

    ``side`` gives the side of the term's map for a level of that side (a term
    on a coarser grid), so the scorer can precompute its upsampling;
    ``settings`` names the MapConfig fields the term reads.
    """

    def register(fn: MapFn) -> MapFn:
        MAP_TERMS[name] = MapTerm(fn, side, settings)
        return fn

    return register


@map_term("local", settings=("distance",))
def local_term(teacher: torch.Tensor, student: torch.Tensor, config: MapConfig) -> torch.Tensor:
    """B x C x H x W pair -> B x H x W: ``map.distance`` between the two features at each position."""
    return DISTANCES[config.distance](teacher, student)


def pooled_structural(teacher: torch.Tensor, student: torch.Tensor, config: MapConfig) -> torch.Tensor:
    """B x C x H x W pair -> B x h x w: mean over all q of the pooled grid (h, w <= affinity_size)."""
    height, width = teacher.shape[-2:]
    size = config.affinity_size
    t, s = pooled_positions(teacher, size), pooled_positions(student, size)
    difference = (affinity(t, t) - affinity(s, s)).abs().mean(dim=2)  # B x N
    return difference.view(-1, min(height, size), min(width, size))


def local_structural(teacher: torch.Tensor, student: torch.Tensor, config: MapConfig) -> torch.Tensor:
    """B x C x H x W pair -> B x H x W: mean over the k x k window around p, at the level's own resolution."""
    window = config.affinity_window
    return (local_affinity(teacher, teacher, window) - local_affinity(student, student, window)).abs().mean(dim=1)


STRUCTURAL_MODES = {
    "pooled": MapTerm(pooled_structural, lambda side, config: min(side, config.affinity_size)),
    "local": MapTerm(local_structural),
}
"""``map.affinity_mode``: how the structural term compares positions (the training loss's ``loss.affinity_mode``)."""
check_registry(STRUCTURAL_MODES, "map.affinity_mode")


@map_term(
    "structural",
    side=lambda side, config: STRUCTURAL_MODES[config.affinity_mode].side(side, config),
    settings=MAP_SETTINGS_FROM_LOSS,
)
def structural_distance(teacher: torch.Tensor, student: torch.Tensor, config: MapConfig) -> torch.Tensor:
    """B x C x H x W pair -> B x h x w, mean_q |A_T(p, q) - A_S(p, q)|, the affinities of the training loss."""
    return STRUCTURAL_MODES[config.affinity_mode].distance(teacher, student, config)


if set(MAP_TERMS) != set(map_term_weights(MapConfig())):
    raise ImportError(
        f"snlad.scoring.maps.MAP_TERMS {sorted(MAP_TERMS)} must implement exactly the MapConfig terms "
        f"{sorted(map_term_weights(MapConfig()))}"
    )

IMAGE_SCORES: dict[str, Callable[[MapConfig, int], int]] = {
    "max": lambda config, pixels: 1,
    "topk": lambda config, pixels: max(1, math.ceil(config.topk_fraction * pixels)),
}
"""``map.image_score``: how many of a map's highest pixels the image score averages, of ``pixels``."""
check_registry(IMAGE_SCORES, "map.image_score")


class AnomalyScorer(nn.Module):
    """Teacher/student features -> (maps B x S x S, image scores B), for square S x S inputs.

    ``level_sides`` are the sides of the model's feature maps at image size S
    (``Backbone.level_sides``); one projection ``K = G U`` is precomputed for
    each side a map term's map has at those levels.
    """

    def __init__(self, config: MapConfig, image_size: int, level_sides: Sequence[int]) -> None:
        super().__init__()
        self.config = config
        self.terms = [(MAP_TERMS[name], weight) for name, weight in map_term_weights(config).items() if weight > 0]
        unset = [key for term, _ in self.terms for key in term.settings if getattr(config, key) is None]
        if unset:
            raise ValueError(
                f"map.{', map.'.join(unset)} unset: build the scorer from snlad.config.effective_map(config)"
            )
        self.image_size = image_size
        self.topk = IMAGE_SCORES[config.image_score](config, image_size**2)
        blur = blur_matrix(image_size, config.sigma)
        sides = {term.side(side, config) for term, _ in self.terms for side in level_sides}
        for side in sorted(sides):
            projection = torch.from_numpy(blur @ bilinear_matrix(side, image_size)).float()
            self.register_buffer(f"k{side}", projection, persistent=False)

    def project(self, maps: torch.Tensor) -> torch.Tensor:
        """B x h x w level maps -> B x S x S: bilinear upsampling then blur, as K_h D K_w^T."""
        height, width = maps.shape[-2:]
        for side in (height, width):
            if not hasattr(self, f"k{side}"):
                raise ValueError(
                    f"this scorer for {self.image_size} px has no {side}-wide level (another image size or model?)"
                )
        return getattr(self, f"k{height}") @ maps @ getattr(self, f"k{width}").T

    def level_map(self, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
        """One level's contribution to the smoothed map, B x S x S: the weighted sum of the terms' projected maps."""
        level = None
        for term, weight in self.terms:
            part = weight * self.project(term.distance(teacher, student, self.config))
            level = part if level is None else level + part
        return level

    def forward(self, teacher: Features, student: Features) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.level_map(teacher[0], student[0])
        for t, s in zip(teacher[1:], student[1:], strict=True):
            maps = maps + self.level_map(t, s)
        flat = maps.flatten(1)
        scores = flat.max(dim=1).values if self.topk == 1 else flat.topk(self.topk, dim=1).values.mean(dim=1)
        return maps, scores
