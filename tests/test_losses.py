"""Distillation terms, CRAM and the structural anomaly map against direct computations."""

import pytest
import torch

from snlad.config import LossConfig, MapConfig
from snlad.losses import (
    channel_loss,
    distillation_loss,
    inter_affinity_loss,
    intra_affinity_loss,
    spatial_loss,
    whole_map_loss,
)
from snlad.models.cram import CRAM
from snlad.scoring import AnomalyScorer, GaussianBlur, structural_distance

TERMS = {
    "channel": channel_loss,
    "whole_map": whole_map_loss,
    "spatial": spatial_loss,
    "intra": lambda t, s: intra_affinity_loss(t, s, 8, "l2"),
    "inter": lambda t, s: inter_affinity_loss(t, s, 8, "l1"),
}


@pytest.mark.parametrize("name", TERMS)
def test_term_is_zero_for_identical_features_and_positive_otherwise(name):
    torch.manual_seed(0)
    teacher = torch.randn(2, 6, 8, 8)
    assert TERMS[name](teacher, teacher.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert TERMS[name](teacher, torch.randn(2, 6, 8, 8)).item() > 1e-3


def direct_cosine_affinity(features: torch.Tensor) -> torch.Tensor:
    """C x N -> N x N by a double loop over positions."""
    n = features.shape[1]
    out = torch.empty(n, n)
    for p in range(n):
        for q in range(n):
            a, b = features[:, p], features[:, q]
            out[p, q] = (a @ b) / (a.norm() * b.norm())
    return out


def test_affinity_losses_match_direct_computation():
    torch.manual_seed(1)
    teacher, student = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    t, s = teacher[0].flatten(1), student[0].flatten(1)
    a_t, a_s = direct_cosine_affinity(t), direct_cosine_affinity(s)
    tn, sn = t / t.norm(dim=0), s / s.norm(dim=0)
    a_ts = tn.T @ sn
    assert intra_affinity_loss(teacher, student, 3, "l1").item() == pytest.approx((a_t - a_s).abs().mean().item(), rel=1e-5)
    assert intra_affinity_loss(teacher, student, 3, "l2").item() == pytest.approx((a_t - a_s).pow(2).mean().item(), rel=1e-5)
    assert inter_affinity_loss(teacher, student, 3, "l1").item() == pytest.approx((a_ts - a_t).abs().mean().item(), rel=1e-5)


def test_structural_map_distance_is_row_mean_of_affinity_difference():
    torch.manual_seed(2)
    teacher, student = torch.randn(1, 5, 4, 4), torch.randn(1, 5, 4, 4)
    a_t, a_s = direct_cosine_affinity(teacher[0].flatten(1)), direct_cosine_affinity(student[0].flatten(1))
    expected = (a_t - a_s).abs().mean(dim=1).view(4, 4)
    assert torch.allclose(structural_distance(teacher, student, 4)[0, 0], expected, atol=1e-5)


def test_spatial_and_channel_losses_match_definitions():
    torch.manual_seed(3)
    teacher, student = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    cos = torch.nn.functional.cosine_similarity
    channel = torch.stack([1 - cos(teacher[b, :, i, j], student[b, :, i, j], dim=0) for b in range(2) for i in range(4) for j in range(5)]).mean()
    spatial = torch.stack([1 - cos(teacher[b, c].flatten(), student[b, c].flatten(), dim=0) for b in range(2) for c in range(3)]).mean()
    assert channel_loss(teacher, student).item() == pytest.approx(channel.item(), rel=1e-5)
    assert spatial_loss(teacher, student).item() == pytest.approx(spatial.item(), rel=1e-5)


def test_gradients_reach_the_student_only_and_zero_weights_skip_terms():
    torch.manual_seed(4)
    teacher = [torch.randn(2, 4, 8, 8, requires_grad=True)]
    student = [torch.randn(2, 4, 8, 8, requires_grad=True)]
    config = LossConfig(channel=1.0, spatial=1.0, intra=1.0, inter=1.0, affinity_size=4)
    loss, parts = distillation_loss([teacher[0].detach()], student, config)
    loss.backward()
    assert student[0].grad is not None and student[0].grad.abs().sum() > 0
    assert teacher[0].grad is None
    assert set(parts) == {"channel", "spatial", "intra", "inter"}
    _, parts = distillation_loss(teacher, student, LossConfig(channel=1.0))
    assert set(parts) == {"channel"}


def test_cram_is_identity_at_initialisation_and_learns():
    torch.manual_seed(5)
    cram = CRAM(channels=8, num_centres=4).train()
    x = torch.randn(3, 8, 5, 5)
    assert torch.equal(cram(x), x)
    cram(x).pow(2).mean().backward()
    assert cram.project[1].weight.grad.abs().sum() > 0


def test_scorer_matches_scipy_blur_and_scores_the_max():
    from scipy.ndimage import gaussian_filter

    torch.manual_seed(6)
    maps = torch.rand(1, 1, 64, 64)
    blurred = GaussianBlur(4.0)(maps)[0, 0].numpy()
    # torch 'reflect' excludes the edge pixel, scipy 'mirror' does the same.
    assert abs(blurred - gaussian_filter(maps[0, 0].double().numpy(), 4.0, mode="mirror")).max() < 1e-5
    teacher, student = [torch.randn(2, 4, 16, 16)], [torch.randn(2, 4, 16, 16)]
    scorer = AnomalyScorer(MapConfig(beta=0.5, image_score="max"), image_size=64, affinity_size=8)
    anomaly_maps, scores = scorer(teacher, student)
    assert anomaly_maps.shape == (2, 64, 64)
    assert torch.allclose(scores, anomaly_maps.flatten(1).max(dim=1).values)
    same_maps, same_scores = scorer(teacher, teacher)
    assert same_scores.abs().max() < 1e-5
    topk = AnomalyScorer(MapConfig(beta=0.5, image_score="topk", topk_fraction=0.01), image_size=64, affinity_size=8)
    _, topk_scores = topk(teacher, student)
    expected = anomaly_maps.flatten(1).sort(dim=1, descending=True).values[:, :41].mean(dim=1)  # ceil(1 % of 4096)
    assert torch.allclose(topk_scores, expected, atol=1e-6)
