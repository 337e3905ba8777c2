"""RD's decoder depth, noisy bottleneck and RD++ projection switches: what they build and when they act."""

import pytest
import torch

from snlad.config import ModelConfig, load_config
from snlad.errors import SnladError
from snlad.models import build_model


def _rd(**settings) -> torch.nn.Module:
    return build_model(ModelConfig(name="rd", architecture="rd", **settings), pretrained_teacher=False)


def test_decoder_blocks_set_the_refine_blocks_of_each_stage_deepest_first():
    model = _rd(decoder_blocks=[3, 4, 6])
    assert [stage.blocks for stage in model.decoder] == [3, 4, 6]
    images = torch.rand(2, 3, 64, 64)
    teacher, student = model.eval()(images)
    assert [s.shape for s in student] == [t.shape for t in teacher]
    default = _rd()
    assert [stage.blocks for stage in default.decoder] == [1, 1, 1]
    assert sum(p.numel() for p in model.student_parameters()) > sum(p.numel() for p in default.student_parameters())


def test_bottleneck_dropout_acts_in_training_only():
    model = _rd(bottleneck_dropout=0.5)
    images = torch.rand(2, 3, 64, 64)
    model.eval()
    first, second = model(images)[1], model(images)[1]
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # inference never drops
    model.train()
    torch.manual_seed(0)
    a = model.student_features(images, model.teacher(images))
    torch.manual_seed(1)
    b = model.student_features(images, model.teacher(images))
    assert not torch.allclose(a[0], b[0])
    embedding = model.bottleneck(model.teacher(images))
    dropped = model.noise(embedding)
    active = embedding != 0  # after the embedding's ReLU
    assert 0.35 < float((dropped[active] == 0).float().mean()) < 0.65  # about half of them dropped


@pytest.mark.parametrize(
    "setting", ["model.decoder_blocks=[3,4,6]", "model.bottleneck_dropout=0.2", "model.projection=true"]
)
def test_decoder_settings_are_refused_for_fd(setting):
    assert load_config("rd", None, [setting]) is not None
    with pytest.raises(SnladError, match="belong to the rd models"):
        load_config("snl-fd", None, [setting])


def test_decoder_blocks_need_three_positive_counts():
    with pytest.raises(SnladError, match="3 block counts"):
        load_config("rd", None, ["model.decoder_blocks=[2,2]"])


def test_a_default_rd_keeps_the_state_dict_layout_of_earlier_model_files():
    """Runs trained before decoder depth was a setting must still load: same keys for one block per stage."""
    keys = {k for k in _rd().state_dict() if k.startswith("decoder.0.")}
    assert keys >= {"decoder.0.refine.0.0.weight", "decoder.0.refine.1.weight", "decoder.0.refine.1.bias"}
    assert not any(".more." in k for k in keys)


def test_a_model_trained_on_a_gpu_loads_on_this_machines_device(tmp_path):
    """load_trained ignores train.device: a run trained with train.device=cuda is used on CPU-only machines."""
    from snlad.runs.trained import TrainedModel, build_scorer, load_trained

    config = load_config("rd", None, ["train.device=cuda", "data.image_size=64"])
    model = build_model(config.model, pretrained_teacher=False)
    TrainedModel(config, model, build_scorer(config, model), ["widget"]).save(tmp_path / "model.pt")
    loaded = load_trained(tmp_path / "model.pt")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert loaded.device.type == expected and loaded.config.train.device == "cuda"
    assert load_trained(tmp_path / "model.pt", "cpu").device.type == "cpu"


@pytest.mark.parametrize("init", ["kmeans", "kmeans-soft"])
def test_kmeans_initialisation_puts_each_crams_centres_on_its_compared_levels_clusters(init: str):
    """CRAM_INITS['kmeans'] reads the teacher level each CRAM is compared with (deepest decoder stage: stride 16);
    kmeans-soft finds the same centres (its logits' scale: tests/test_losses.py)."""
    from snlad.models.cram import CRAM_INITS

    model = build_model(
        ModelConfig(name="snl-rd", architecture="rd", cram=True, cram_centres=2), pretrained_teacher=False
    )
    channels = model.teacher.channels
    torch.manual_seed(0)
    features = []
    for level, c in enumerate(channels):  # level l: two tight clusters at +/- (l + 1)
        signs = torch.tensor([1.0, -1.0]).repeat(8)[:, None, None, None]
        features.append(signs * (level + 1) + 0.01 * torch.randn(16, c, 4, 4))
    CRAM_INITS[init](model, features, 0)
    for cram, level in zip(model.crams, model.cram_levels, strict=True):
        assert sorted(cram.centres[:, 0].tolist()) == pytest.approx([-(level + 1), level + 1], abs=0.05)
    assert CRAM_INITS["random"] is None


def test_the_architecture_is_its_own_setting_and_old_files_read_it_from_the_preset_name():
    from snlad.config import from_dict
    from snlad.models import FeatureDistillation, ReverseDistillation

    assert load_config("snl-rd", None, []).model.architecture == "rd"
    assert load_config("snl-fd", None, []).model.architecture == "fd"
    # An FD-preset run (its loss, its lr) on the RD architecture: a setting, not a new model name.
    mixed = load_config("snl-fd", None, ["model.architecture=rd"])
    assert isinstance(build_model(mixed.model, pretrained_teacher=False), ReverseDistillation)
    assert isinstance(build_model(load_config("fd", None, []).model, pretrained_teacher=False), FeatureDistillation)
    old = load_config("snl-rd", None, []).to_dict()
    del old["model"]["architecture"]  # a config.yaml / model.pt written before the setting existed
    assert from_dict(old, source="old").model.architecture == "rd"
    with pytest.raises(SnladError, match="model.architecture must be one of"):
        load_config("rd", None, ["model.architecture=unet"])


def test_projection_feeds_the_bottleneck_and_records_pseudo_anomalies_in_training_only():
    """RD++: the bottleneck sees the projected teacher features; training also projects a noisy copy of the batch."""
    model = _rd(projection=True)
    images = torch.rand(2, 3, 64, 64)
    model.eval()
    teacher, student = model(images)
    assert model.auxiliary() == {}  # inference records nothing
    with torch.no_grad():
        projected = model.projection(teacher)
        expected = model.bottleneck(projected)
        for stage in model.decoder:
            expected = stage(expected)
    assert torch.allclose(student[0], expected, atol=1e-5)  # the decoder's last stage is the stride-4 level
    model.train()
    torch.manual_seed(0)
    teacher, student = model(images)
    ((anomalous, projected_anomalous, projected),) = model.auxiliary()["projection"]
    assert [a.shape for a in anomalous] == [t.shape for t in teacher]
    assert not torch.allclose(anomalous[0], teacher[0])  # the teacher saw the noisy copy
    for a, p, t in zip(projected_anomalous, projected, teacher):
        assert a.shape == p.shape == t.shape
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(projected, model.projection.project(teacher)))
    assert _rd().state_dict().keys() == {k for k in model.state_dict() if not k.startswith("projection.")}


def test_the_projection_loss_needs_the_projection():
    assert load_config("rd", None, ["model.projection=true", "loss.projection=0.2"]).loss.projection == 0.2
    with pytest.raises(SnladError, match="needs model.projection=true"):
        load_config("rd", None, ["loss.projection=0.2"])
