"""Inference optimisation: same maps and scores as the plain model, on real images."""

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from snlad.backbones import fold_batchnorm
from snlad.backbones.efficientnet_lite import SameConv2d
from snlad.config import preset
from snlad.data import AnomalyDataset, index_dataset
from snlad.engine.optimise import cpu_micro_batch, optimise_for_inference
from snlad.models import build_model
from snlad.runs.trained import TrainedModel, build_scorer

DEMO = Path(__file__).parents[1] / "data" / "demo"


def demo_images(size: int, count: int = 6) -> torch.Tensor:
    samples = index_dataset(DEMO, "test")[::7][:count]
    dataset = AnomalyDataset(samples, size)
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))])


def trained_with_moved_statistics(name: str, size: int, extra: dict | None = None) -> TrainedModel:
    """A model whose student BatchNorms hold non-trivial statistics, so folding is really tested."""
    config = preset(name)
    config.data.image_size = size
    config.loss.affinity_size = 8
    for key, value in (extra or {}).items():
        setattr(config.map, key, value)
    torch.manual_seed(0)
    model = build_model(config.model)
    for name_, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d) and not name_.startswith("teacher."):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    return TrainedModel(config, model, build_scorer(config, model), ["demo"]).eval()


@pytest.mark.parametrize("name", ["fd", "rd", "snl-fd", "snl-rd"])
def test_optimised_model_gives_the_same_maps_on_real_images(name):
    trained = trained_with_moved_statistics(name, 64)
    fast = optimise_for_inference(trained)
    images = demo_images(64)
    with torch.inference_mode():
        maps, scores = trained.scorer(*trained.model(images))
        fast_maps, fast_scores = fast.scorer(*fast.model(images))
    assert fast_maps.shape == maps.shape == (len(images), 64, 64)
    assert (fast_maps - maps).abs().max() < 1e-4
    assert (fast_scores - scores).abs().max() < 1e-4
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.model.modules())
    assert trained.model.training is False and any(isinstance(m, torch.nn.BatchNorm2d) for m in trained.model.modules())


def test_topk_score_and_no_blur_match_too():
    trained = trained_with_moved_statistics("snl-fd", 64, {"image_score": "topk", "sigma": 0.0})
    fast = optimise_for_inference(trained, channels_last=False)
    images = demo_images(64, 3)
    with torch.inference_mode():
        maps, scores = trained.scorer(*trained.model(images))
        fast_maps, fast_scores = fast.scorer(*fast.model(images))
    assert (fast_maps - maps).abs().max() < 1e-4 and (fast_scores - scores).abs().max() < 1e-4


@pytest.mark.parametrize("kernel,stride", [(3, 2), (5, 2), (3, 1)])
@pytest.mark.parametrize("size", [15, 16, 33, 64])
def test_same_conv_equals_explicit_tensorflow_same_padding(kernel, stride, size):
    """SameConv2d pads by cropping (no padded copy); the reference pads the input asymmetrically, as TensorFlow."""
    torch.manual_seed(0)
    conv = SameConv2d(4, 4, kernel, stride, groups=4, bias=True)
    x = torch.randn(2, 4, size, size)
    pad = max((-(-size // stride) - 1) * stride + kernel - size, 0)  # TensorFlow's total 'same' padding
    reference = F.conv2d(
        F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)), conv.weight, conv.bias, stride, 0, 1, 4
    )
    assert conv(x).shape == reference.shape == (2, 4, -(-size // stride), -(-size // stride))
    assert torch.allclose(conv(x), reference, atol=1e-6)


def test_folding_a_transposed_conv_and_a_grouped_conv_keeps_their_output():
    torch.manual_seed(1)
    block = torch.nn.Sequential(
        torch.nn.ConvTranspose2d(6, 4, 2, stride=2, bias=False),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, padding=1, groups=4),
        torch.nn.BatchNorm2d(4),
    )
    for bn in (block[1], block[4]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    block.eval()
    folded = fold_batchnorm(block)
    x = torch.randn(2, 6, 5, 5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(folded(x), block(x), atol=1e-5)


@pytest.mark.parametrize("name", ["fd", "snl-rd"])
def test_micro_batches_give_the_whole_batch_result(name):
    trained = trained_with_moved_statistics(name, 64)
    images = demo_images(64, 5)
    whole = optimise_for_inference(trained, micro_batch=0)
    split = optimise_for_inference(trained, micro_batch=2)  # 2 + 2 + 1: a remainder too
    passes, networks = [], split.model
    split.model = lambda chunk: (passes.append(len(chunk)), networks(chunk))[1]
    with torch.inference_mode():
        maps, scores = whole.score(images)
        split_maps, split_scores = split.score(images)
    assert passes == [2, 2, 1]  # the batch really went through in micro-batches
    assert split_maps.shape == maps.shape == (5, 64, 64) and split_scores.shape == (5,)
    assert (split_maps - maps).abs().max() < 1e-5 and (split_scores - scores).abs().max() < 1e-5


def test_cpu_micro_batch_keeps_pixels_per_pass_constant():
    assert [cpu_micro_batch(size) for size in (64, 128, 256, 512, 1024)] == [64, 16, 4, 1, 1]
    trained = trained_with_moved_statistics("fd", 128)
    assert optimise_for_inference(trained).micro_batch == 16  # the CPU default
    assert optimise_for_inference(trained, micro_batch=3).micro_batch == 3


@pytest.mark.slow  # 43 s: torch.compile
@pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on a CPU needs a C++ compiler"
)
def test_compiled_model_gives_the_same_maps():
    trained = trained_with_moved_statistics("snl-fd", 64)
    images = demo_images(64, 4)
    plain = optimise_for_inference(trained, micro_batch=2)
    compiled = optimise_for_inference(trained, micro_batch=2, torch_compile=True)
    with torch.inference_mode():
        maps, scores = plain.score(images)
        compiled_maps, compiled_scores = compiled.score(images)
    assert (compiled_maps - maps).abs().max() < 1e-4 and (compiled_scores - scores).abs().max() < 1e-4


def test_a_failing_compile_is_one_clear_error(monkeypatch):
    from snlad.errors import SnladError

    class Broken(torch.nn.Module):
        def forward(self, *args):
            raise RuntimeError("C++ compiler not found\nlong inductor traceback")

    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: Broken())
    trained = trained_with_moved_statistics("fd", 64)
    with pytest.raises(
        SnladError, match=r"torch.compile failed \(RuntimeError: C\+\+ compiler not found\); run without --compile"
    ):
        optimise_for_inference(trained, torch_compile=True)
