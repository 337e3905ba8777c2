"""Backbones: real ImageNet weights, feature shapes, torchvision loading, bad files, BN folding."""

import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data

from snlad.backbones import BACKBONE_NAMES, Backbone, ConvBN, build_backbone, fold_batchnorm
from snlad.backbones.efficientnet_lite import (
    HEAD_CHANNELS,
    SameConv2d,
    build_blocks,
    checkpoint_key,
    default_weights_path,
    first_blocks,
)
from snlad.backbones.fold import ConvBN as Unit
from snlad.backbones.weights import load_pretrained, read_state_dict
from snlad.errors import SnladError

LITE_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CHANNELS = {
    "efficientnet_lite0": (24, 40, 112),
    "efficientnet_lite1": (24, 40, 112),
    "efficientnet_lite2": (24, 48, 120),
    "resnet18": (64, 128, 256),
    "wide_resnet50_2": (256, 512, 1024),
}
IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- pretrained EfficientNet-Lite really is the ImageNet classifier ------------------------


class LiteClassifier(torch.nn.Module):
    """snlad's backbone blocks plus the stride-32 blocks, head conv, pooling and fc: the full ImageNet network.

    Loading the shipped checkpoint into it with no key ignored proves that the
    backbone's architecture and key mapping are exactly the checkpoint's.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.backbone, self.tail = build_blocks(name)
        in_channels = self.tail[-1].project.conv.out_channels
        self.head = Unit(torch.nn.Conv2d(in_channels, HEAD_CHANNELS, 1, bias=False), eps=1e-3, act=torch.nn.ReLU6())
        self.fc = torch.nn.Linear(HEAD_CHANNELS, 1000)
        path = default_weights_path(name)
        first_block = first_blocks(self.backbone)
        load_pretrained(
            self,
            read_state_dict(path),
            path=path,
            arch=name,
            ignored=lambda key: False,
            checkpoint_key=lambda key: checkpoint_key(key.removeprefix("backbone."), first_block),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.tail(self.backbone(x)[-1]))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("name", LITE_NAMES)
def test_shipped_lite_weights_classify_a_cat(name: str) -> None:
    image = Image.fromarray(data.chelsea()).resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)
    classifier = LiteClassifier(name)  # strict: every checkpoint key, head and fc included
    with torch.no_grad():
        top1 = int(classifier.eval()(x).argmax())
    assert top1 in IMAGENET_CATS


# --- shapes, channels, strides -------------------------------------------------------------


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_feature_levels_have_contract_channels_and_strides(name: str) -> None:
    backbone = build_backbone(name, pretrained=name in LITE_NAMES).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = backbone(x)
        chained = backbone.normalize(x)  # stage 0 takes the normalised image, stage i feeds i+1
        manual = []
        for stage in backbone.stages:
            chained = stage(chained)
            manual.append(chained)
    assert isinstance(backbone, Backbone)
    assert len(backbone.stages) == 3
    assert backbone.channels == CHANNELS[name]
    assert [tuple(f.shape) for f in features] == [(2, c, 64 // s, 64 // s) for c, s in zip(CHANNELS[name], (4, 8, 16))]
    for feature, expected in zip(features, manual):
        assert torch.equal(feature, expected)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_odd_input_sizes_round_up_like_same_padding(name: str) -> None:
    backbone = build_backbone(name, pretrained=False).eval()
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 65, 47))
    assert [tuple(f.shape[-2:]) for f in features] == [(17, 12), (9, 6), (5, 3)]


def test_lite_normalisation_is_tensorflow_style() -> None:
    backbone = build_backbone("efficientnet_lite0", pretrained=False)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(backbone.normalize(x), (x * 255 - 127) / 128)


def test_resnet_normalisation_is_imagenet_mean_std() -> None:
    backbone = build_backbone("resnet18", pretrained=False)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(backbone.normalize(x), (x - IMAGENET_MEAN) / IMAGENET_STD)


def test_student_is_randomly_initialised() -> None:
    a = build_backbone("resnet18", pretrained=False)
    b = build_backbone("resnet18", pretrained=False)
    bn = a.stages[0].stem.bn
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))
    assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
    assert not torch.equal(a.stages[0].stem.conv.weight, b.stages[0].stem.conv.weight)


# --- torchvision-format ResNet weights -------------------------------------------------------


def torchvision_state_dict(name: str) -> dict[str, torch.Tensor]:
    """A random state dict with exactly torchvision's keys and shapes for ``name``.

    Written from torchvision's naming, independently of snlad's module layout.
    layer4 and fc get real shapes but zero-stride storage: they must be ignored
    by the loader, so their values do not matter and the file stays small.
    """
    bottleneck = name == "wide_resnet50_2"
    depths = (3, 4, 6, 3) if bottleneck else (2, 2, 2, 2)
    state: dict[str, torch.Tensor] = {}

    def conv(key: str, out: int, inp: int, k: int, layer: int) -> None:
        shape = (out, inp, k, k)
        if layer == 4:
            state[key] = torch.zeros(1).expand(shape)
        else:
            state[key] = torch.randn(shape) * (2 / (inp * k * k)) ** 0.5

    def bn(prefix: str, channels: int) -> None:
        state[f"{prefix}.weight"] = torch.rand(channels) + 0.5
        state[f"{prefix}.bias"] = torch.randn(channels) * 0.1
        state[f"{prefix}.running_mean"] = torch.randn(channels) * 0.1
        state[f"{prefix}.running_var"] = torch.rand(channels) + 0.5
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)

    conv("conv1.weight", 64, 3, 7, 0)
    bn("bn1", 64)
    inp = 64
    for layer, depth in enumerate(depths, start=1):
        planes = 64 * 2 ** (layer - 1)
        out = planes * 4 if bottleneck else planes
        for i in range(depth):
            p = f"layer{layer}.{i}"
            if bottleneck:
                width = planes * 2  # width_per_group 128
                conv(f"{p}.conv1.weight", width, inp, 1, layer)
                bn(f"{p}.bn1", width)
                conv(f"{p}.conv2.weight", width, width, 3, layer)
                bn(f"{p}.bn2", width)
                conv(f"{p}.conv3.weight", out, width, 1, layer)
                bn(f"{p}.bn3", out)
            else:
                conv(f"{p}.conv1.weight", planes, inp, 3, layer)
                bn(f"{p}.bn1", planes)
                conv(f"{p}.conv2.weight", planes, planes, 3, layer)
                bn(f"{p}.bn2", planes)
            if i == 0 and (layer > 1 or bottleneck):
                conv(f"{p}.downsample.0.weight", out, inp, 1, layer)
                bn(f"{p}.downsample.1", out)
            inp = out
    state["fc.weight"] = torch.zeros(1).expand(1000, inp)
    state["fc.bias"] = torch.zeros(1000)
    return state


def reference_features(state: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """torchvision's ResNet forward (v1.5) up to layer3, written with functional ops."""

    def bn(y: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(
            y,
            state[f"{p}.running_mean"],
            state[f"{p}.running_var"],
            state[f"{p}.weight"],
            state[f"{p}.bias"],
            training=False,
            eps=1e-5,
        )

    def conv(y: torch.Tensor, p: str, stride: int = 1) -> torch.Tensor:
        weight = state[f"{p}.weight"]
        return F.conv2d(y, weight, stride=stride, padding=weight.shape[-1] // 2)

    y = (x - IMAGENET_MEAN) / IMAGENET_STD
    y = F.max_pool2d(F.relu(bn(conv(y, "conv1", 2), "bn1")), 3, 2, 1)
    features = []
    for layer in (1, 2, 3):
        i = 0
        while f"layer{layer}.{i}.conv1.weight" in state:
            p = f"layer{layer}.{i}"
            stride = 2 if layer > 1 and i == 0 else 1
            if f"{p}.conv3.weight" in state:
                z = F.relu(bn(conv(y, f"{p}.conv1"), f"{p}.bn1"))
                z = F.relu(bn(conv(z, f"{p}.conv2", stride), f"{p}.bn2"))
                z = bn(conv(z, f"{p}.conv3"), f"{p}.bn3")
            else:
                z = F.relu(bn(conv(y, f"{p}.conv1", stride), f"{p}.bn1"))
                z = bn(conv(z, f"{p}.conv2"), f"{p}.bn2")
            if f"{p}.downsample.0.weight" in state:
                y = bn(conv(y, f"{p}.downsample.0", stride), f"{p}.downsample.1")
            y = F.relu(z + y)
            i += 1
        features.append(y)
    return features


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.manual_seed(1)
    torch.save(torchvision_state_dict("resnet18"), path)
    return path


def test_torchvision_key_lists_are_complete() -> None:
    resnet18 = torchvision_state_dict("resnet18")
    stats = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expected = {"conv1.weight", "fc.weight", "fc.bias", *(f"bn1.{s}" for s in stats)}
    for layer in (1, 2, 3, 4):
        for block in (0, 1):
            for n in (1, 2):
                expected.add(f"layer{layer}.{block}.conv{n}.weight")
                expected.update(f"layer{layer}.{block}.bn{n}.{s}" for s in stats)
        if layer > 1:
            expected.add(f"layer{layer}.0.downsample.0.weight")
            expected.update(f"layer{layer}.0.downsample.1.{s}" for s in stats)
    assert set(resnet18) == expected
    assert len(resnet18) == 122  # len(torchvision.models.resnet18().state_dict())
    assert len(torchvision_state_dict("wide_resnet50_2")) == 320  # same for wide_resnet50_2


@pytest.mark.parametrize("packing", ["plain", "module_prefix", "state_dict", "model"])
def test_resnet18_loads_torchvision_weights(packing: str, tmp_path: Path) -> None:
    state = torchvision_state_dict("resnet18")
    packed: dict = {
        "plain": state,
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": state},
    }[packing]
    path = tmp_path / "resnet18.pth"
    torch.save(packed, path)
    teacher = build_backbone("resnet18", pretrained=True, weights=path).eval()
    assert torch.equal(teacher.get_parameter("stages.0.0.conv1.conv.weight"), state["layer1.0.conv1.weight"])
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for ours, reference in zip(teacher(x), reference_features(state, x)):
            torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_wide_resnet50_2_loads_torchvision_weights(tmp_path: Path) -> None:
    state = torchvision_state_dict("wide_resnet50_2")
    path = tmp_path / "wide_resnet50_2.pth"
    torch.save(state, path)
    teacher = build_backbone("wide_resnet50_2", pretrained=True, weights=path).eval()
    assert teacher.channels == (256, 512, 1024)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        for ours, reference in zip(teacher(x), reference_features(state, x)):
            torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)


def test_weights_without_num_batches_tracked_load(tmp_path: Path) -> None:
    """Older torchvision files lack the BN counters; they are irrelevant for a frozen teacher."""
    state = {k: v for k, v in torchvision_state_dict("resnet18").items() if "num_batches" not in k}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    teacher = build_backbone("resnet18", pretrained=True, weights=path)
    # Loaded, not merely accepted: the file's weights and BatchNorm statistics are the teacher's.
    assert torch.equal(teacher.get_parameter("stages.0.0.conv1.conv.weight"), state["layer1.0.conv1.weight"])
    assert torch.equal(teacher.get_buffer("stages.0.0.conv1.bn.running_mean"), state["layer1.0.bn1.running_mean"])


# --- bad weights -----------------------------------------------------------------------------


def _error(name: str, weights: os.PathLike | None) -> str:
    with pytest.raises(SnladError) as info:
        build_backbone(name, pretrained=True, weights=weights)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_resnet_without_weights_explains_the_flag() -> None:
    message = _error("wide_resnet50_2", None)
    assert "--teacher-weights PATH" in message and "torchvision" in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pth"
    assert str(path) in _error("resnet18", path)


def test_truncated_file(resnet18_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.pth"
    path.write_bytes(resnet18_file.read_bytes()[: resnet18_file.stat().st_size // 2])
    assert str(path) in _error("resnet18", path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    message = _error("resnet18", path)
    assert str(path) in message and "not a state dict" in message


def test_wrong_shapes_and_missing_keys_are_named(tmp_path: Path) -> None:
    state = torchvision_state_dict("resnet18")
    state["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    del state["layer1.0.conv1.weight"]
    state["layer3.9.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    message = _error("resnet18", path)
    assert str(path) in message
    assert "1 missing key (e.g. layer1.0.conv1.weight)" in message
    assert "1 unexpected key (e.g. layer3.9.conv1.weight)" in message
    assert "conv1.weight: file (32, 3, 7, 7) vs model (64, 3, 7, 7)" in message


def test_weights_of_another_architecture(resnet18_file: Path) -> None:
    assert "do not match efficientnet_lite0" in _error("efficientnet_lite0", resnet18_file)
    assert "do not match wide_resnet50_2" in _error("wide_resnet50_2", resnet18_file)


class _Exploit:
    """Unpickling this calls os.system, which weights_only loading must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_without_running(writer: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save({"conv1.weight": _Exploit(marker)}, path)
    else:
        with path.open("wb") as file:
            pickle.dump(_Exploit(marker), file, protocol=2)
    assert str(path) in _error("resnet18", path)
    assert not marker.exists()


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(SnladError, match="wide_resnet50_2"):
        build_backbone("resnet34", pretrained=False)


# --- BN folding and frozen use ---------------------------------------------------------------


def _randomise_bn_statistics(module: torch.nn.Module) -> None:
    """Make BN non-trivial so folding a freshly initialised model is actually tested."""
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0, 0.1)
                bn.running_mean.normal_(0, 0.1)
                bn.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_fold_batchnorm_matches_unfolded_model(name: str) -> None:
    backbone = build_backbone(name, pretrained=name in LITE_NAMES).eval()
    if name == "resnet18":
        _randomise_bn_statistics(backbone)
    folded = fold_batchnorm(backbone)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())  # original intact
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(backbone(x), folded(x)):
            # Relative to the feature scale (up to ~50 here): float32 rounding, not the
            # folding, sets the absolute difference (test_folding_is_exact_in_float64).
            assert (ours - theirs).abs().max() < 1e-5 * ours.abs().max()


@pytest.mark.parametrize("groups", [1, 8])
def test_folding_is_exact_in_float64(groups: int) -> None:
    unit = ConvBN(SameConv2d(8, 16, 3, 2, groups=groups, bias=True), eps=1e-3).double().eval()
    _randomise_bn_statistics(unit)
    x = torch.randn(2, 8, 9, 10, dtype=torch.float64)
    with torch.no_grad():
        assert (unit(x) - fold_batchnorm(unit)(x)).abs().max() < 1e-12


def test_frozen_teacher_is_deterministic() -> None:
    teacher = build_backbone("efficientnet_lite0", pretrained=True).eval().requires_grad_(False)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        first = teacher(x)
        second = teacher(x)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
        assert not a.requires_grad


def test_weights_for_a_random_backbone_are_a_bug(resnet18_file: Path) -> None:
    with pytest.raises(ValueError):
        build_backbone("resnet18", pretrained=False, weights=resnet18_file)
