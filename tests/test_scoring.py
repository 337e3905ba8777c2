"""The one anomaly scorer against an independent computation: interpolate, sum, scipy blur, max / top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from snlad.config import LossConfig, MapConfig
from snlad.scoring import AnomalyScorer, bilinear_matrix, blur_matrix, structural_distance


def reference_maps(teacher, student, image_size: int, beta: float, sigma: float, affinity_size: int) -> np.ndarray:
    """RD4AD's recipe spelled out: per-level 1 - cos (+ beta x structural), bilinear upsampling, sum, scipy Gaussian."""
    total = torch.zeros(teacher[0].shape[0], 1, image_size, image_size, dtype=torch.float64)
    for t, s in zip(teacher, student, strict=True):
        level = (1 - F.cosine_similarity(t, s, dim=1)).unsqueeze(1).double()
        total += F.interpolate(level, size=(image_size, image_size), mode="bilinear", align_corners=False)
        if beta:
            structural = structural_distance(t, s, LossConfig(affinity_size=affinity_size)).unsqueeze(1).double()
            total += beta * F.interpolate(
                structural, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
    maps = total[:, 0].numpy()
    return np.stack([gaussian_filter(m, sigma, mode="mirror", truncate=4.0) for m in maps]) if sigma else maps


@pytest.mark.parametrize("beta,sigma", [(0.0, 4.0), (1.5, 4.0), (2.0, 0.0)])
def test_scorer_equals_interpolate_sum_and_scipy_blur(beta, sigma):
    torch.manual_seed(0)
    sides = (16, 8, 4)
    teacher = [torch.randn(2, 5, side, side) for side in sides]
    student = [torch.randn(2, 5, side, side) for side in sides]
    scorer = AnomalyScorer(
        MapConfig(beta=beta, sigma=sigma, image_score="max"),
        image_size=64,
        affinity=LossConfig(affinity_size=8),
        level_sides=sides,
    )
    maps, scores = scorer(teacher, student)
    expected = reference_maps(teacher, student, 64, beta, sigma, 8)
    assert maps.shape == (2, 64, 64)
    assert np.abs(maps.double().numpy() - expected).max() < 1e-5
    assert torch.allclose(scores, maps.flatten(1).max(dim=1).values)


def test_topk_score_is_the_mean_of_the_top_one_percent():
    torch.manual_seed(1)
    features = [torch.randn(3, 4, 16, 16), torch.randn(3, 4, 8, 8), torch.randn(3, 4, 4, 4)]
    other = [f + 0.3 * torch.randn_like(f) for f in features]
    scorer = AnomalyScorer(
        MapConfig(beta=0.5, image_score="topk", topk_fraction=0.01), 64, LossConfig(affinity_size=8), (16, 8, 4)
    )
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
    scorer = AnomalyScorer(MapConfig(), 64, LossConfig(affinity_size=8), (16, 8, 4))
    features = [torch.rand(1, 8, 40, 40)] * 3
    with pytest.raises(ValueError, match="no 40-wide level"):
        scorer(features, features)


def test_local_structural_map_is_the_window_mean_of_the_affinity_difference_at_native_resolution():
    torch.manual_seed(3)
    teacher, student = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    settings = LossConfig(affinity_mode="local", affinity_window=3)
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
    scorer = AnomalyScorer(MapConfig(beta=1.0), 24, settings, (6, 3, 2))
    maps, _ = scorer(
        [teacher, teacher[..., ::2, ::2], teacher[..., ::3, ::3]],
        [student, student[..., ::2, ::2], student[..., ::3, ::3]],
    )
    assert maps.shape == (1, 24, 24)
