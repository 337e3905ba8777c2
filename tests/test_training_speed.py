"""The training speed levers change speed, not results: decoded-image cache, teacher-feature cache, LR schedule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from snlad import api
from snlad.data import AnomalyDataset, index_dataset
from snlad.data.cache import TrainingImages
from snlad.engine.feature_cache import TeacherFeatureCache
from snlad.engine.train import learning_rate
from snlad.runs.checkpoint import read_checkpoint

DEMO = Path(__file__).parents[1] / "data" / "demo"
FAST = ["data.image_size=64", "train.batch_size=4", "data.num_workers=0", "loss.affinity_size=8", "train.epochs=3"]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_cached_images_equal_the_streamed_ones_and_the_budget_bounds_the_cache():
    samples = index_dataset(DEMO, "train", ["bottle", "casting"])
    stream = AnomalyDataset(samples, 64)
    per_image = 3 * 64 * 64
    partial = TrainingImages(samples, 64, budget_bytes=5 * per_image + 10, num_workers=1)
    assert partial.cached == 5 and not partial.fully_cached
    full = TrainingImages(samples, 64, budget_bytes=10**9)
    assert full.fully_cached and full.pixels.dtype == torch.uint8
    for index in range(len(samples)):
        expected = stream[index]["image"]
        assert torch.equal(partial[index]["image"], expected) and torch.equal(full[index]["image"], expected)
        assert full[index]["index"] == index
    assert TrainingImages(samples, 64, budget_bytes=0).cached == 0


def test_teacher_cache_serves_a_batch_only_when_every_image_is_cached():
    cache = TeacherFeatureCache(size=6, budget_bytes=4 * (2 * 3 * 3 + 4 * 2 * 2) * 4)  # room for 4 images
    features = [torch.randn(3, 2, 3, 3), torch.randn(3, 4, 2, 2)]
    indices = torch.tensor([5, 0, 2])
    assert cache.lookup(indices) is None
    cache.store(indices, features)
    assert cache.capacity == 4 and cache.lookup(indices) is None  # image 5 does not fit
    served = cache.lookup(torch.tensor([2, 0]))
    assert (
        served is not None
        and torch.equal(served[0], features[0][[2, 1]])
        and torch.equal(served[1], features[1][[2, 1]])
    )
    assert not TeacherFeatureCache(6, 0).enabled


def test_cosine_schedule_warms_up_then_decays_to_zero():
    config = api.resolve_config(
        model="fd", overrides=["train.epochs=10", "train.schedule=cosine", "train.warmup_epochs=1", "train.lr=0.002"]
    )
    assert learning_rate(config, 0.05) == pytest.approx(0.001)  # half-way through the one warm-up epoch
    assert learning_rate(config, 0.1) == pytest.approx(0.002)
    assert learning_rate(config, 0.55) == pytest.approx(0.001)  # half-way through the decay
    assert learning_rate(config, 1.0) == pytest.approx(0.0, abs=1e-12)
    constant = api.resolve_config(model="fd", overrides=["train.lr=0.002"])
    assert learning_rate(constant, 0.7) == 0.002
    assert math.isclose(learning_rate(config, 0.3), 0.001 * (1 + math.cos(math.pi * 0.2 / 0.9)))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["snl-fd", "rd"])
def test_caches_on_or_off_train_the_same_weights(tmp_path, model, monkeypatch):
    """Both caches hold exactly what would be recomputed, so the weights agree to float rounding.

    Equal weights alone would also hold with the caches never used: the test records that
    with the caches on every training image is decoded once and the teacher's features
    serve the later epochs' batches (hits), and that with them off nothing is cached.
    """
    lookups: list[bool] = []
    lookup = TeacherFeatureCache.lookup

    def recording_lookup(self, indices):
        served = lookup(self, indices)
        lookups.append(served is not None)
        return served

    decoded: list[TrainingImages] = []
    init = TrainingImages.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        decoded.append(self)

    monkeypatch.setattr(TeacherFeatureCache, "lookup", recording_lookup)
    monkeypatch.setattr(TrainingImages, "__init__", recording_init)
    weights, hits = {}, {}
    for name, caches in (("off", ["data.cache_mb=0", "train.teacher_cache_mb=0"]), ("on", [])):
        lookups.clear()
        decoded.clear()
        config = api.resolve_config(model=model, overrides=[*FAST, *caches], categories=["bottle", "casting"])
        api.train(config=config, data=DEMO, out=tmp_path / name)
        weights[name] = read_checkpoint(tmp_path / name / "model.pt")["model"]
        hits[name] = (sum(lookups), len(lookups), [(images.cached, images.fully_cached) for images in decoded])
    assert hits["off"][0] == 0 and hits["off"][2] == [(0, False)], hits
    steps = hits["on"][1]  # 3 epochs: the first fills the cache, the other two are served from it
    assert steps > 0 and hits["on"][0] >= 2 * steps // 3 and hits["on"][2][0][1], hits
    for key, value in weights["off"].items():
        assert torch.allclose(value.float(), weights["on"][key].float(), atol=1e-5), key


@pytest.mark.slow
def test_resume_with_a_cosine_schedule_reaches_the_uninterrupted_weights(tmp_path, monkeypatch):
    from snlad.engine import train as train_module

    settings = [*FAST, "train.schedule=cosine", "train.warmup_epochs=1"]
    config = api.resolve_config(model="fd", overrides=settings, categories=["bottle"])
    api.train(config=config, data=DEMO, out=tmp_path / "straight")
    original, steps = train_module.distillation_loss, []

    def interrupting_loss(*args, **kwargs):
        steps.append(1)
        if len(steps) == 4:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "distillation_loss", interrupting_loss)
    with pytest.raises(train_module.TrainingInterrupted):
        api.train(
            config=api.resolve_config(model="fd", overrides=settings, categories=["bottle"]),
            data=DEMO,
            out=tmp_path / "resumed",
        )
    monkeypatch.setattr(train_module, "distillation_loss", original)
    api.train(
        config=api.resolve_config(model="fd", overrides=settings, categories=["bottle"]),
        data=DEMO,
        out=tmp_path / "resumed",
        resume=True,
    )
    straight = read_checkpoint(tmp_path / "straight" / "model.pt")["model"]
    resumed = read_checkpoint(tmp_path / "resumed" / "model.pt")["model"]
    for key in straight:
        assert torch.allclose(straight[key].float(), resumed[key].float(), atol=1e-6), key
