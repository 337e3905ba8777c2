"""The training loop's parts on their own: one train_step, the teacher cache it reads, interrupts placed by the loop."""

from __future__ import annotations

import pytest
import torch

from snlad.config import preset
from snlad.engine import train
from snlad.engine.feature_cache import TeacherFeatureCache
from snlad.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny(name: str = "fd"):
    config = preset(name)
    config.data.image_size = 32
    config.loss.affinity_size = 4
    torch.manual_seed(0)
    model = build_model(config.model, pretrained_teacher=False).to(memory_format=torch.channels_last)
    return config, model.train()


def test_train_step_moves_the_student_only_and_returns_each_terms_value():
    config, model = tiny("snl-fd")
    optimiser = train.build_optimiser(model, config)
    teacher = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    student = [p.detach().clone() for p in model.student_parameters()]
    batch = {"image": torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)), "index": torch.arange(2)}
    values = train.train_step(model, batch, optimiser, config, torch.device("cpu"))
    assert list(values) == ["loss", "channel", "spatial", "intra", "inter"]  # the train_log.csv columns, in order
    weights = {name: getattr(config.loss, name) for name in ("channel", "spatial", "intra", "inter")}
    assert weights["intra"] != 1.0  # the preset's affinity weights (10): a weight the sum has to apply
    assert values["loss"] == pytest.approx(sum(weights[name] * values[name] for name in weights), rel=1e-5)
    assert all(torch.equal(teacher[k], v) for k, v in model.teacher.state_dict().items())
    assert any(not torch.equal(before, after) for before, after in zip(student, model.student_parameters()))


def test_train_step_reads_the_teachers_features_from_the_cache_once_stored():
    """The second step on the same images is a cache hit: the teacher does not run, and the step is the same."""
    config, model = tiny()
    calls = []
    model.teacher.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    cache = TeacherFeatureCache(4, 2**30)
    batch = {
        "image": torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)),
        "index": torch.tensor([3, 1]),
    }
    optimiser = train.build_optimiser(model, config)
    train.train_step(model, batch, optimiser, config, torch.device("cpu"), cache)
    assert calls == [2] and cache.lookup(batch["index"]) is not None
    with torch.no_grad():
        expected = model.teacher(batch["image"].contiguous(memory_format=torch.channels_last))
    calls.clear()
    hit = cache.lookup(batch["index"])
    assert all(torch.equal(a, b) for a, b in zip(hit, expected, strict=True))
    train.train_step(model, batch, optimiser, config, torch.device("cpu"), cache)
    assert calls == []  # served from the cache
    assert cache.lookup(torch.tensor([0, 1])) is None  # image 0 was never seen: no partial batch from the cache


@pytest.mark.parametrize(("schedule", "done", "expected"), [("constant", 0.5, 1e-3), ("cosine", 0.5, 5e-4)])
def test_schedules_are_a_registry(schedule, done, expected):
    config = preset("fd")
    config.train.schedule = schedule
    assert train.learning_rate(config, done) == pytest.approx(expected)
    assert set(train.SCHEDULES) == {"constant", "cosine"}
