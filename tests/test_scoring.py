"""The one anomaly scorer against an independent computation: interpolate, sum, scipy blur, max / top-k."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from snlad.config import Config, LossConfig, MapConfig, effective_map, map_weight
from snlad.scoring.maps import MAP_TERMS, AnomalyScorer, MapTerm, bilinear_matrix, blur_matrix, structural_distance


def pooled(**values: object) -> MapConfig:
    """Map settings with the structural term's affinities on a grid of at most 8 (set, as the scorer needs them)."""
    return MapConfig(**{"affinity_size": 8, "affinity_mode": "pooled", "affinity_window": 7, **values})


def direct_structural(t: torch.Tensor, s: torch.Tensor, grid: int) -> torch.Tensor:
    """B x C x H x W pair -> B x h x w: mean over q of |cos(T_p, T_q) - cos(S_p, S_q)| on the average-pooled grid, spelled out."""
    side = min(grid, t.shape[-1])
    rows = []
    for features in (t, s):
        pooled = F.adaptive_avg_pool2d(features.double(), side).flatten(2)  # B x C x N
        unit = pooled / pooled.norm(dim=1, keepdim=True)
        rows.append(unit.transpose(1, 2) @ unit)  # B x N x N
    return (rows[0] - rows[1]).abs().mean(dim=2).view(-1, side, side)


def upsampled_sum(levels, image_size: int, sigma: float) -> np.ndarray:
    """Per-level maps (B x h x w) bilinearly upsampled, summed, scipy-blurred: RD4AD's recipe."""
    total = sum(
        F.interpolate(level.unsqueeze(1).double(), size=(image_size, image_size), mode="bilinear", align_corners=False)
        for level in levels
    )[:, 0].numpy()
    return np.stack([gaussian_filter(m, sigma, mode="mirror", truncate=4.0) for m in total]) if sigma else total


def reference_maps(teacher, student, image_size: int, beta: float, sigma: float, affinity_size: int) -> np.ndarray:
    """Per-level 1 - cos (+ beta x structural), upsampled, summed and blurred, without snlad's scoring code."""
    levels = [1 - F.cosine_similarity(t.double(), s.double(), dim=1) for t, s in zip(teacher, student, strict=True)]
    if beta:
        levels += [beta * direct_structural(t, s, affinity_size) for t, s in zip(teacher, student, strict=True)]
    return upsampled_sum(levels, image_size, sigma)


@pytest.mark.parametrize("beta,sigma", [(0.0, 4.0), (1.5, 4.0), (2.0, 0.0)])
def test_scorer_equals_interpolate_sum_and_scipy_blur(beta, sigma):
    torch.manual_seed(0)
    sides = (16, 8, 4)
    teacher = [torch.randn(2, 5, side, side) for side in sides]
    student = [torch.randn(2, 5, side, side) for side in sides]
    scorer = AnomalyScorer(pooled(beta=beta, sigma=sigma, image_score="max"), image_size=64, level_sides=sides)
    maps, scores = scorer(teacher, student)
    expected = reference_maps(teacher, student, 64, beta, sigma, 8)
    assert maps.shape == (2, 64, 64)
    assert np.abs(maps.double().numpy() - expected).max() < 1e-5
    assert torch.allclose(scores, maps.flatten(1).max(dim=1).values)


def test_topk_score_is_the_mean_of_the_top_one_percent():
    torch.manual_seed(1)
    features = [torch.randn(3, 4, 16, 16), torch.randn(3, 4, 8, 8), torch.randn(3, 4, 4, 4)]
    other = [f + 0.3 * torch.randn_like(f) for f in features]
    scorer = AnomalyScorer(pooled(beta=0.5, image_score="topk", topk_fraction=0.01), 64, (16, 8, 4))
    maps, scores = scorer(features, other)
    expected = np.sort(maps.flatten(1).numpy(), axis=1)[:, ::-1][:, :41].mean(axis=1)  # ceil(1 % of 4096) pixels
    assert np.allclose(scores.numpy(), expected, atol=1e-6)
    _, same = scorer(features, [f.clone() for f in features])
    assert same.abs().max() < 1e-5


def test_matrices_reproduce_interpolation_and_mirror_blur():
    x = torch.rand(3, 1, 16, 16, dtype=torch.float64)
    up = torch.from_numpy(bilinear_matrix(16, 64))
    reference = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(up @ x[:, 0] @ up.T, reference, atol=1e-12)
    for size, sigma in ((64, 4.0), (32, 4.0), (9, 1.5)):  # radius 16 of a 32-pixel side: the reflection wraps
        y = np.random.default_rng(size).random((size, size))
        g = blur_matrix(size, sigma)
        assert np.abs(g @ y @ g.T - gaussian_filter(y, sigma, mode="mirror", truncate=4.0)).max() < 1e-12


def test_scorer_refuses_a_level_it_was_not_built_for():
    scorer = AnomalyScorer(pooled(), 64, (16, 8, 4))
    features = [torch.rand(1, 8, 40, 40)] * 3
    with pytest.raises(ValueError, match="no 40-wide level"):
        scorer(features, features)


def test_local_structural_map_is_the_window_mean_of_the_affinity_difference_at_native_resolution():
    torch.manual_seed(3)
    teacher, student = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    settings = pooled(beta=1.0, affinity_mode="local", affinity_window=3)
    got = structural_distance(teacher, student, settings)[0]
    t, s = F.normalize(teacher[0], dim=0), F.normalize(student[0], dim=0)
    expected = torch.zeros(6, 6)
    for y in range(6):
        for x in range(6):
            total = 0.0
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < 6 and 0 <= xx < 6:  # outside: zero vectors, cosine 0 for both
                        total += abs(float(t[:, y, x] @ t[:, yy, xx]) - float(s[:, y, x] @ s[:, yy, xx]))
            expected[y, x] = total / 9
    assert got.shape == (6, 6) and torch.allclose(got, expected, atol=1e-5)
    scorer = AnomalyScorer(settings, 24, (6, 3, 2))
    maps, _ = scorer(
        [teacher, teacher[..., ::2, ::2], teacher[..., ::3, ::3]],
        [student, student[..., ::2, ::2], student[..., ::3, ::3]],
    )
    assert maps.shape == (1, 24, 24)


@dataclasses.dataclass
class ToyMapConfig(MapConfig):
    """The map settings plus one more term's weight, as a new term's field in MapConfig would add it."""

    toy: float = map_weight("toy", 0.5)


def test_a_registered_map_term_adds_its_weighted_projected_map(monkeypatch):
    """Adding a map term is a function and its registration: the map gains weight x its upsampled, blurred map."""

    def toy_distance(teacher: torch.Tensor, student: torch.Tensor, config: MapConfig) -> torch.Tensor:
        return (teacher - student).abs().mean(dim=1)  # B x C x H x W -> B x H x W

    monkeypatch.setitem(MAP_TERMS, "toy", MapTerm(toy_distance))
    torch.manual_seed(4)
    sides = (16, 8, 4)
    teacher = [torch.randn(2, 5, side, side) for side in sides]
    student = [torch.randn(2, 5, side, side) for side in sides]
    structural = {"beta": 1.0, "affinity_size": 8, "affinity_mode": "pooled", "affinity_window": 7}
    plain, _ = AnomalyScorer(MapConfig(**structural), 64, sides)(teacher, student)
    with_toy, _ = AnomalyScorer(ToyMapConfig(**structural), 64, sides)(teacher, student)
    toy_levels = [0.5 * (t - s).double().abs().mean(dim=1) for t, s in zip(teacher, student, strict=True)]
    expected = upsampled_sum(toy_levels, 64, 4.0)
    assert np.abs((with_toy - plain).double().numpy() - expected).max() < 1e-5
    assert np.abs(expected).max() > 0.1  # the term moved the map: the comparison above could fail


def test_map_terms_with_weight_zero_are_not_computed(monkeypatch):
    def refuse(teacher: torch.Tensor, student: torch.Tensor, config: MapConfig) -> torch.Tensor:
        raise AssertionError("a term of weight 0 was computed")

    monkeypatch.setitem(MAP_TERMS, "structural", MapTerm(refuse))
    features = [torch.randn(1, 3, 8, 8)]
    maps, _ = AnomalyScorer(MapConfig(beta=0.0), 32, (8,))(features, [f + 1 for f in features])
    assert maps.shape == (1, 32, 32)


def test_the_scorer_refuses_unset_settings_of_a_term_it_computes():
    """MapConfig leaves the structural settings to the loss's; a scorer is built from the settings as used."""
    features = [torch.randn(1, 3, 8, 8)]
    AnomalyScorer(MapConfig(beta=0.0), 32, (8,))  # the structural term is off: its settings are not needed
    with pytest.raises(ValueError, match="map.affinity_size, map.affinity_mode, map.affinity_window unset"):
        AnomalyScorer(MapConfig(beta=1.0), 32, (8,))
    config = Config(loss=LossConfig(affinity_size=4), map=MapConfig(beta=1.0))
    maps, _ = AnomalyScorer(effective_map(config), 32, (8,))(features, [f + 1 for f in features])
    assert maps.shape == (1, 32, 32)
