"""Distillation terms and CRAM against direct computations; the terms are declared once."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snlad.config import LossConfig, MapConfig, term_weights
from snlad.losses import TERMS, distillation_loss
from snlad.losses.affinity import local_affinity
from snlad.losses.distillation import (
    channel_loss,
    cram_commitment_loss,
    cram_usage_loss,
    cross_level_affinity_loss,
    inter_affinity_loss,
    intra_affinity_loss,
    projection_loss,
    spatial_loss,
)
from snlad.models.cram import CRAM
from snlad.scoring.maps import structural_distance

L1 = LossConfig(affinity_size=8, affinity_distance="l1")
VARIANTS = {
    "spatial kl": LossConfig(spatial_kind="kl", spatial_tau=0.5),
    "local affinities": LossConfig(affinity_mode="local", affinity_window=3),
    "batch inter": LossConfig(inter_kind="batch", affinity_size=4),
}


def test_every_config_term_has_exactly_one_implementation():
    assert list(TERMS) == list(term_weights(LossConfig()))
    assert {f.name for f in dataclasses.fields(LossConfig) if f.metadata.get("term")} == set(TERMS)


def _levels(seed: int, batch: int = 2) -> list[torch.Tensor]:
    """Three levels of features with different channels and sides, like a backbone's."""
    torch.manual_seed(seed)
    return [torch.randn(batch, 6, 8, 8), torch.randn(batch, 5, 4, 4), torch.randn(batch, 4, 2, 2)]


@pytest.mark.parametrize("name", TERMS)
def test_term_is_zero_for_identical_features_and_positive_otherwise(name):
    teacher, student = _levels(0), _levels(1)
    opposite = [-t for t in teacher]  # RD++: projections that agree, far from the anomalous teacher features
    # CRAM: centres that reconstruct their input, all four in equal use / nothing reconstructed, one centre used
    even = [torch.full((t.shape[0], 4, *t.shape[2:]), 0.25) for t in teacher]
    collapsed = [F.one_hot(torch.zeros_like(e[:, 0], dtype=torch.long), 4).permute(0, 3, 1, 2).float() for e in even]
    same = {"cram": [(t, t.clone(), e) for t, e in zip(teacher, even)], "projection": [(teacher, opposite, opposite)]}
    apart = {
        "cram": [(t, s[:, :1].expand_as(t), c) for t, s, c in zip(teacher, _levels(2), collapsed)],
        "projection": [(teacher, student, teacher)],
    }
    assert TERMS[name](teacher, [t.clone() for t in teacher], same, L1).item() == pytest.approx(0.0, abs=1e-6)
    assert TERMS[name](teacher, student, apart, L1).item() > 1e-3


@pytest.mark.parametrize("name", ["spatial", "intra", "inter"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_is_zero_for_identical_features_and_positive_otherwise(name, variant):
    torch.manual_seed(0)
    teacher = torch.randn(3, 6, 8, 8)
    level = TERMS[name].level
    assert level(teacher, teacher.clone(), VARIANTS[variant]).item() == pytest.approx(0.0, abs=1e-6)
    assert level(teacher, torch.randn(3, 6, 8, 8), VARIANTS[variant]).item() > 1e-4


def test_cross_level_affinity_matches_a_direct_computation():
    teacher, student = _levels(3, batch=1), _levels(4, batch=1)
    config = LossConfig(affinity_size=4, affinity_distance="l2")

    def relation(levels, k, side):
        """R(p, q) = mean_r cos(level k at p, at r) * cos(level k+1 at q, at r), both pooled to side x side."""
        a, b = (F.adaptive_avg_pool2d(levels[j], side)[0].flatten(1) for j in (k, k + 1))
        return direct_cosine_affinity(a) @ direct_cosine_affinity(b).T / a.shape[1]

    expected = sum(
        (relation(teacher, k, side) - relation(student, k, side)).pow(2).mean() for k, side in ((0, 4), (1, 2))
    )
    value = cross_level_affinity_loss(teacher, student, {}, config)
    assert value.item() == pytest.approx(float(expected), rel=1e-5)


def test_cram_commitment_is_the_relative_reconstruction_error():
    torch.manual_seed(5)
    pairs = [(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)) for _ in range(2)]
    recorded = [(x, c, torch.softmax(torch.randn(2, 5, 4, 4), dim=1)) for x, c in pairs]
    expected = sum(
        float((x[b, :, i, j] - c[b, :, i, j]).pow(2).sum() / x[b, :, i, j].pow(2).sum())
        for x, c in pairs
        for b in range(2)
        for i in range(4)
        for j in range(4)
    ) / (2 * 2 * 16)
    assert cram_commitment_loss([], [], {"cram": recorded}, LossConfig()).item() == pytest.approx(expected, rel=1e-5)
    teacher = [torch.randn(1, 3, 2, 2)]
    assert cram_commitment_loss(teacher, teacher, {}, LossConfig()).item() == 0.0  # no CRAM, nothing to commit


def _recorded_with(assignment: torch.Tensor) -> dict:
    return {"cram": [(torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2), assignment)]}


def test_cram_usage_is_one_minus_the_normalised_entropy_of_the_batch_mean_assignment():
    teacher = [torch.randn(1, 3, 2, 2)]
    # every position on centre 0: one centre takes everything
    collapsed = torch.zeros(2, 4, 2, 2)
    collapsed[:, 0] = 1
    assert cram_usage_loss(teacher, teacher, _recorded_with(collapsed), LossConfig()).item() == pytest.approx(1.0)
    # each position on one centre, but the batch uses all four equally: no penalty for hard assignments
    spread = torch.zeros(2, 4, 2, 2)
    for b in range(2):
        for i in range(2):
            for j in range(2):
                spread[b, (b + 2 * i + j) % 4, i, j] = 1
    assert cram_usage_loss(teacher, teacher, _recorded_with(spread), LossConfig()).item() == pytest.approx(
        0.0, abs=1e-6
    )
    # a random soft assignment against numpy's entropy of its mean
    torch.manual_seed(3)
    soft = torch.softmax(3 * torch.randn(2, 4, 2, 2), dim=1)
    usage = soft.numpy().mean(axis=(0, 2, 3))
    expected = 1 - float(-(usage * np.log(usage)).sum() / np.log(4))
    assert cram_usage_loss(teacher, teacher, _recorded_with(soft), LossConfig()).item() == pytest.approx(
        expected, rel=1e-5
    )
    assert cram_usage_loss(teacher, teacher, {}, LossConfig()).item() == 0.0  # no CRAM
    single = torch.ones(2, 1, 2, 2)
    assert cram_usage_loss(teacher, teacher, _recorded_with(single), LossConfig()).item() == 0.0  # one centre


def test_spatial_kl_matches_the_definition():
    torch.manual_seed(7)
    teacher, student = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    tau, total = 0.5, 0.0
    for b in range(2):
        for c in range(3):
            p = torch.softmax(teacher[b, c].flatten() / tau, dim=0)
            q = torch.softmax(student[b, c].flatten() / tau, dim=0)
            total += float((p * (p / q).log()).sum())
    expected = total / 6 * tau**2
    assert spatial_loss(teacher, student, LossConfig(spatial_kind="kl", spatial_tau=tau)).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_local_affinities_match_a_direct_loop():
    torch.manual_seed(8)
    teacher, student = torch.randn(1, 4, 5, 5), torch.randn(1, 4, 5, 5)
    local = local_affinity(teacher, student, 3)
    t, s = F.normalize(teacher[0], dim=0), F.normalize(student[0], dim=0)
    for index, (dy, dx) in enumerate((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
        for y in range(5):
            for x in range(5):
                inside = 0 <= y + dy < 5 and 0 <= x + dx < 5
                expected = float(t[:, y, x] @ s[:, y + dy, x + dx]) if inside else 0.0
                assert local[0, index, y, x].item() == pytest.approx(expected, abs=1e-5)
    settings = LossConfig(affinity_mode="local", affinity_window=3, affinity_distance="l2")
    expected = (local_affinity(teacher, teacher, 3) - local_affinity(student, student, 3)).pow(2).mean()
    assert intra_affinity_loss(teacher, student, settings).item() == pytest.approx(expected.item(), rel=1e-5)


def test_batch_inter_affinity_compares_positions_across_images_only():
    torch.manual_seed(9)
    teacher, student = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    t = F.normalize(teacher.flatten(2), dim=1)  # B x C x N
    s = F.normalize(student.flatten(2), dim=1)
    squares = [((t[i].T @ t[j]) - (s[i].T @ s[j])).pow(2).mean() for i in range(3) for j in range(3) if i != j]
    expected = torch.stack(squares).mean()
    settings = LossConfig(inter_kind="batch", affinity_size=2, affinity_distance="l2")
    assert inter_affinity_loss(teacher, student, settings).item() == pytest.approx(expected.item(), rel=1e-5)
    # A batch of one image has no other image to compare with.
    assert inter_affinity_loss(teacher[:1], student[:1], settings).item() == 0.0


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
    l1, l2 = LossConfig(affinity_size=3, affinity_distance="l1"), LossConfig(affinity_size=3, affinity_distance="l2")
    assert intra_affinity_loss(teacher, student, l1).item() == pytest.approx((a_t - a_s).abs().mean().item(), rel=1e-5)
    assert intra_affinity_loss(teacher, student, l2).item() == pytest.approx((a_t - a_s).pow(2).mean().item(), rel=1e-5)
    assert inter_affinity_loss(teacher, student, l1).item() == pytest.approx((a_ts - a_t).abs().mean().item(), rel=1e-5)


def test_structural_map_distance_is_row_mean_of_affinity_difference():
    torch.manual_seed(2)
    teacher, student = torch.randn(1, 5, 4, 4), torch.randn(1, 5, 4, 4)
    a_t, a_s = direct_cosine_affinity(teacher[0].flatten(1)), direct_cosine_affinity(student[0].flatten(1))
    expected = (a_t - a_s).abs().mean(dim=1).view(4, 4)
    assert torch.allclose(
        structural_distance(teacher, student, MapConfig(affinity_size=4, affinity_mode="pooled"))[0],
        expected,
        atol=1e-5,
    )


def test_spatial_and_channel_losses_match_definitions():
    torch.manual_seed(3)
    teacher, student = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    cos = torch.nn.functional.cosine_similarity
    channel = torch.stack(
        [1 - cos(teacher[b, :, i, j], student[b, :, i, j], dim=0) for b in range(2) for i in range(4) for j in range(5)]
    ).mean()
    spatial = torch.stack(
        [1 - cos(teacher[b, c].flatten(), student[b, c].flatten(), dim=0) for b in range(2) for c in range(3)]
    ).mean()
    assert channel_loss(teacher, student, L1).item() == pytest.approx(channel.item(), rel=1e-5)
    assert spatial_loss(teacher, student, L1).item() == pytest.approx(spatial.item(), rel=1e-5)


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


def test_centres_output_starts_as_the_soft_reconstruction_and_kmeans_ties_assignment_to_centres():
    torch.manual_seed(6)
    cram = CRAM(channels=3, num_centres=2, tau=0.5, output="centres").eval()
    cluster = torch.cat([torch.randn(200, 3) * 0.05 + 2.0, torch.randn(200, 3) * 0.05 - 2.0])
    cram.init_from_features(cluster, iterations=10)
    assert sorted(cram.centres[:, 0].tolist()) == pytest.approx([-2.0, 2.0], abs=0.05)
    x = torch.randn(1, 3, 4, 4)
    logits = cram.assign(x) / cram.tau
    distances = ((x.permute(0, 2, 3, 1)[..., None, :] - cram.centres) ** 2).sum(-1).permute(0, 3, 1, 2)
    assert torch.allclose(torch.softmax(logits, 1), torch.softmax(-distances / cram.tau, 1), atol=1e-5)
    reconstruction = torch.einsum("bkhw,kc->bchw", torch.softmax(logits, 1), cram.centres)
    assert torch.allclose(cram(x), reconstruction, atol=1e-6)  # phi starts at zero


def test_soft_kmeans_start_divides_the_logits_by_the_mean_squared_distance_to_the_nearest_centre():
    """At large feature norms plain k-means logits make a one-hot softmax (no gradient to the usage term);
    kmeans-soft's assignment is softmax(-|x - c|^2 / (s tau)) with s computed here independently, so it does
    not depend on the features' scale."""
    torch.manual_seed(8)
    centres_true = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])
    unit_points = torch.cat([c + torch.randn(300, 3) for c in centres_true])  # overlapping clusters
    soft_assignments = []
    for scale_of_features in (1.0, 100.0):
        points = unit_points * scale_of_features
        hard, soft = (CRAM(channels=3, num_centres=3, tau=1.0, output="centres").eval() for _ in range(2))
        hard.init_from_features(points, iterations=10)
        soft.init_from_features(points, iterations=10, soft=True)
        assert torch.equal(hard.centres, soft.centres)
        nearest = torch.stack([((points - c) ** 2).sum(1) for c in soft.centres], 1).min(1).values
        x = points[::100].T.reshape(1, 3, 3, 3)
        distances = ((x.permute(0, 2, 3, 1)[..., None, :] - soft.centres) ** 2).sum(-1).permute(0, 3, 1, 2)
        assignment_soft, _ = soft.soft_assignment(x)
        assignment_hard, _ = hard.soft_assignment(x)
        assert torch.allclose(assignment_soft, torch.softmax(-distances / nearest.mean(), 1), atol=1e-5)
        assert torch.allclose(assignment_hard, torch.softmax(-distances, 1), atol=1e-5)
        soft_assignments.append(assignment_soft)
    assert assignment_hard.max(1).values.min() > 0.999  # at scale 100 one-hot: the losing centres get no gradient
    assert assignment_soft.max(1).values.min() < 0.99  # soft: they do
    assert torch.allclose(soft_assignments[0], soft_assignments[1], atol=1e-4)


def test_cram_is_identity_at_initialisation_and_learns():
    torch.manual_seed(5)
    cram = CRAM(channels=8, num_centres=4).train()
    x = torch.randn(3, 8, 5, 5)
    assert torch.equal(cram(x), x)
    cram(x).pow(2).mean().backward()
    assert cram.project[1].weight.grad.abs().sum() > 0


def test_bottleneck_cram_outputs_only_its_centres_and_records_what_it_did_not_explain():
    torch.manual_seed(7)
    cram = CRAM(channels=4, num_centres=3, output="bottleneck").train()
    x = torch.randn(2, 4, 3, 3)
    assignment, reconstruction = cram.soft_assignment(x)
    assert torch.allclose(cram(x), reconstruction, atol=1e-6)
    assert torch.allclose(cram(x), torch.einsum("bkhw,kc->bchw", assignment, cram.centres), atol=1e-6)
    recorded_x, recorded_centres, recorded_assignment = cram.recorded
    assert recorded_x is x and torch.allclose(recorded_centres, reconstruction)
    assert torch.allclose(recorded_assignment, assignment)
    cram.eval()
    cram(x)
    assert cram.recorded is None  # inference keeps nothing


def test_commitment_term_reaches_the_centres_through_the_models_auxiliary_outputs():
    from snlad.config import ModelConfig
    from snlad.models import build_model

    config = ModelConfig(name="snl-rd", architecture="rd", cram=True, cram_output="bottleneck")
    model = build_model(config, pretrained_teacher=False).train()
    teacher, student = model(torch.rand(2, 3, 64, 64))
    auxiliary = model.auxiliary()
    assert len(auxiliary["cram"]) == 3
    loss, parts = distillation_loss(teacher, student, LossConfig(channel=1.0, cram_commit=1.0), auxiliary)
    loss.backward()
    assert parts["cram_commit"] > 0
    assert all(cram.centres.grad is not None and cram.centres.grad.abs().sum() > 0 for cram in model.crams)


def test_projection_loss_matches_rd_plus_plus_written_with_torchs_own_losses():
    """RD++'s Revisit_RDLoss without its Sinkhorn part (zero: a batch against its own shuffle), level by level."""
    anomalous, projected_anomalous, projected = _levels(1), _levels(2), _levels(3)
    projected[1] = anomalous[1] * 2 + 0.1 * projected[1]  # one level above the contrast margin
    auxiliary = {"projection": [(anomalous, projected_anomalous, projected)]}
    reconstruct = sum(torch.mean(1 - torch.nn.CosineSimilarity()(a, p)) for a, p in zip(projected_anomalous, projected))
    contrast_fn = torch.nn.CosineEmbeddingLoss(margin=0.5)
    contrast = sum(
        contrast_fn(a.view(a.shape[0], -1), p.view(p.shape[0], -1), target=-torch.ones(a.shape[0]))
        for a, p in zip(anomalous, projected)
    )
    assert contrast > 0
    expected = (0.01 * reconstruct + 0.1 * contrast) / 1.11
    value = projection_loss(_levels(0), _levels(0), auxiliary, LossConfig())
    assert torch.allclose(value, expected, atol=1e-6)
    assert projection_loss(_levels(0), _levels(0), {}, LossConfig()) == 0  # no projection, no term


def test_projection_term_reaches_the_projection_through_the_models_auxiliary_outputs():
    from snlad.config import ModelConfig
    from snlad.models import build_model

    model = build_model(ModelConfig(name="rd", architecture="rd", projection=True), pretrained_teacher=False).train()
    teacher, student = model(torch.rand(2, 3, 64, 64))
    loss, parts = distillation_loss(teacher, student, LossConfig(channel=0.0, projection=1.0), model.auxiliary())
    loss.backward()
    assert set(parts) == {"projection"} and parts["projection"] > 0
    assert all(layer[0].weight.grad.abs().sum() > 0 for layer in model.projection.levels)
