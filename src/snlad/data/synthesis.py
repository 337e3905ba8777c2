"""Synthetic anomalies from normal images: mixup blends and cut-paste patches (probes, calibration, selection).

Everything random is drawn once from a seeded numpy ``Generator``, with places
stored as fractions of the image side, and only then rendered at a model's
input size. Runs with different image sizes therefore see the same image pairs
and the same patch places, and a seed reproduces a probe exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from snlad.errors import SnladError

DEFAULT_LAMBDAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # mixup sweep: weak to strong blends

Images = torch.Tensor | Sequence[torch.Tensor] | Mapping[int, torch.Tensor]
"""3 x S x S images by index: a stacked N x 3 x S x S tensor, a list, or a dict of the ones needed."""

PATCH_FRACTION = 0.15  # a pasted square's side, of the image side: 2 % of the area, the scale of MVTec's small defects

# Where a patch is cut: its centre lies in the central half of the source image.
# Object categories (bottle, metal_nut, capsule) sit centred on a plain
# background; a patch of empty background carries nothing of the other class.
_SOURCE_CENTRE_RANGE = (0.25, 0.75)


@dataclass(frozen=True)
class Paste:
    """One cut-paste anomaly: which images, and where (top-left corners, fractions of the side)."""

    target: int
    source: int
    source_corner: tuple[float, float]
    target_corner: tuple[float, float]


def pair_plan(n_base: int, n_other: int, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``count`` distinct (base, other) index pairs in grid order; every pair when there are fewer."""
    total = n_base * n_other
    if total == 0:
        raise SnladError("mixup needs at least one normal image of each category")
    chosen = np.arange(total) if count >= total else np.sort(rng.choice(total, size=count, replace=False))
    return [(int(k) // n_other, int(k) % n_other) for k in chosen]


def mix(base: torch.Tensor, other: torch.Tensor, lam: float) -> torch.Tensor:
    """``(1 - lam) * base + lam * other``; ``lam = 0`` returns the base image unchanged."""
    if not 0.0 <= lam <= 1.0:
        raise SnladError(f"mixup ratio lambda must be in [0, 1], got {lam}")
    return base.clone() if lam == 0.0 else torch.lerp(base, other, lam)


def check_patch_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise SnladError(f"patch size must be a fraction of the image side in (0, 1), got {fraction}")


def paste_plan(n_target: int, n_source: int, count: int, fraction: float, rng: np.random.Generator) -> list[Paste]:
    """``count`` pastes; target images are used in turn, sources and places drawn at random."""
    check_patch_fraction(fraction)
    if n_target == 0 or n_source == 0:
        raise SnladError("cut-paste needs at least one normal image of the source and of the target category")
    low, high = _SOURCE_CENTRE_RANGE
    plan = []
    for index in range(count):
        centre = rng.uniform(low, high, size=2)
        source_corner = np.clip(centre - fraction / 2, 0.0, 1.0 - fraction)
        target_corner = rng.uniform(0.0, 1.0 - fraction, size=2)
        source = int(rng.integers(n_source))
        plan.append(Paste(index % n_target, source, _pair(source_corner), _pair(target_corner)))
    return plan


def patch_side(size: int, fraction: float) -> int:
    return max(1, round(fraction * size))


def cut_paste(
    target: torch.Tensor, source: torch.Tensor, paste: Paste, fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy a square of ``source`` into a copy of ``target`` (both 3 x S x S).

    Returns the new image and its ground truth, S x S bool: exactly the pasted square.
    """
    size = target.shape[-1]
    side = patch_side(size, fraction)
    (sy, sx), (ty, tx) = _corner(paste.source_corner, size, side), _corner(paste.target_corner, size, side)
    image = target.clone()
    image[:, ty : ty + side, tx : tx + side] = source[:, sy : sy + side, sx : sx + side]
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[ty : ty + side, tx : tx + side] = True
    return image, mask


def paste_all(
    targets: Images, sources: Images, plan: Sequence[Paste], fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every paste of ``plan`` made (3 x S x S images indexed as the plan does): images P x 3 x S x S, masks P x S x S.

    ``sources`` may hold only the images the plan draws (a dict by index), so the rest need not be decoded.
    """
    made = [cut_paste(targets[p.target], sources[p.source], p, fraction) for p in plan]
    return torch.stack([image for image, _ in made]), torch.stack([mask for _, mask in made])


def _corner(corner: tuple[float, float], size: int, side: int) -> tuple[int, int]:
    return tuple(min(max(round(f * size), 0), size - side) for f in corner)


def _pair(values: np.ndarray) -> tuple[float, float]:
    return float(values[0]), float(values[1])
