"""PatchCore: coreset and nearest-neighbour search against direct computations, a bank on real demo images, export parity."""

import contextlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from snlad import api
from snlad.backbones import build_backbone
from snlad.config import load_config
from snlad.data import AnomalyDataset, index_dataset
from snlad.deploy.export import export
from snlad.engine import train as training
from snlad.errors import SnladError
from snlad.models import patchcore
from snlad.models.coreset import coreset_size, greedy_coreset, k_centre_greedy
from snlad.models.patchcore import PatchCore, nearest_indices
from snlad.runs.run import load_run
from snlad.runs.trained import build_scorer, load_trained
from snlad.scoring.maps import euclidean_distance

DEMO = Path(__file__).parents[1] / "data" / "demo"
CATEGORIES = ["bottle", "metal_nut"]
SIZE = 256  # PatchCore's stride-8 patches need the full size to see the demo's small defects (128 px misses some)
OVERRIDES = [f"data.image_size={SIZE}", "data.num_workers=0", "train.batch_size=4"]
ONNX_TOLERANCE = 1e-4
"""Largest ONNX-vs-PyTorch difference allowed, relative to the map's largest value (float32 rounding, BatchNorm folded)."""


def direct_greedy(points: np.ndarray, count: int, first: int) -> list[int]:
    """Greedy k-centre from the full distance matrix: each next point maximises its distance to the nearest chosen one."""
    distances = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    chosen = [first]
    while len(chosen) < count:
        cover = distances[:, chosen].min(axis=1)
        cover[chosen] = -1
        chosen.append(int(cover.argmax()))
    return chosen


def test_k_centre_greedy_matches_the_direct_computation():
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(80, 6, generator=generator, dtype=torch.float64)
    chosen = k_centre_greedy(points, 20, first=7)
    assert chosen.tolist() == direct_greedy(points.numpy(), 20, 7)


def test_greedy_coreset_is_the_greedy_order_of_its_projection_seeded_and_sized():
    features = torch.randn(300, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    unprojected = greedy_coreset(features, 0.1, projection=10, seed=3)  # projection >= C: the features themselves
    assert len(unprojected) == coreset_size(300, 0.1) == 30
    assert unprojected.tolist() == direct_greedy(features.numpy(), 30, int(unprojected[0]))
    projected = greedy_coreset(features, 0.1, projection=4, seed=3)
    assert torch.equal(projected, greedy_coreset(features, 0.1, projection=4, seed=3))  # the seed fixes it
    assert len(set(projected.tolist())) == 30
    assert torch.equal(greedy_coreset(features, 1.0, projection=4, seed=3), torch.arange(300))
    duplicates = torch.zeros(5, 3)  # all points equal: still 5 distinct indices
    assert sorted(k_centre_greedy(duplicates, 5, first=2).tolist()) == [0, 1, 2, 3, 4]


def test_nearest_neighbour_map_matches_brute_force(monkeypatch):
    torch.manual_seed(0)
    model = PatchCore(build_backbone("efficientnet_lite0", pretrained=False)).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        patches = model.patch_features(model.teacher(images))
        flat = patches.permute(0, 2, 3, 1).reshape(-1, patches.shape[1])
        model.set_bank(flat[torch.randperm(len(flat))[:50]] + 0.1 * torch.randn(50, flat.shape[1]))
        brute = torch.cdist(flat.double(), model.bank.double()).min(dim=1)
        # Bank chunks of 7 rows: the running best across chunks must find the same neighbours as one pass.
        monkeypatch.setattr(patchcore, "SEARCH_CHUNK_ELEMENTS", 7 * len(flat))
        assert torch.equal(nearest_indices(flat, model.bank), brute.indices)
        features, nearest = model(images)
        distances = euclidean_distance(features[0], nearest[0])
    assert torch.allclose(distances.flatten().double(), brute.values, rtol=1e-5, atol=1e-5)
    config = load_config("patchcore", overrides=["data.image_size=64"])
    scorer = build_scorer(config, model)
    maps, _ = scorer(features, nearest)
    expected = scorer.project(brute.values.float().view(2, 8, 8))
    assert torch.allclose(maps, expected, rtol=1e-5, atol=1e-5)


def test_patchcore_config():
    config = load_config("patchcore")
    assert config.map.distance == "euclidean" and config.model.coreset_fraction == 0.1
    with pytest.raises(SnladError, match="model.cram"):
        load_config("patchcore", overrides=["model.cram=true"])
    with pytest.raises(SnladError, match="coreset_fraction"):
        load_config("patchcore", overrides=["model.coreset_fraction=0"])
    with pytest.raises(SnladError, match="map.distance"):
        load_config("fd", overrides=["map.distance=manhattan"])


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("patchcore") / "run"
    api.train(
        config=api.resolve_config(model="patchcore", overrides=OVERRIDES, categories=CATEGORIES), data=DEMO, out=out
    )
    return out


@pytest.mark.slow
def test_bank_on_real_images_ranks_real_defects_above_good_images(run):
    model_file = run / "model.pt"
    payload = torch.load(model_file, weights_only=True)  # the bank is a plain tensor in the state dict
    bank = payload["model"]["bank"]
    patches = sum(len(index_dataset(DEMO, "train", [c])) for c in CATEGORIES) * (SIZE // 8) ** 2
    assert bank.shape[1] == 40 + 112  # EfficientNet-Lite0's stride-8 and stride-16 channels
    assert math.ceil(0.1 * 0.8 * patches) <= bank.shape[0] <= math.ceil(0.1 * patches)  # held-out normals excluded
    metrics = api.test(run=run, data=DEMO)
    for category in CATEGORIES:
        assert metrics[category]["image_auroc"] >= 0.9, (category, metrics[category])
        assert metrics[category]["pixel_auroc"] >= 0.9, (category, metrics[category])


@pytest.mark.slow
def test_onnx_map_equals_pytorch_map(run, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    trained = load_run(run)["bottle"]
    dataset = AnomalyDataset(index_dataset(DEMO, "test", CATEGORIES), SIZE)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    with torch.inference_mode():
        maps, scores = trained.score(images)
    out = export(trained, "onnx", tmp_path / "patchcore.onnx", "bottle")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    onnx_maps, onnx_scores = session.run(["maps", "scores"], {"images": images.numpy()})
    scale = maps.abs().max().item()
    assert np.abs(onnx_maps - maps.numpy()).max() <= ONNX_TOLERANCE * scale
    assert np.abs(onnx_scores - scores.numpy()).max() <= ONNX_TOLERANCE * scale


@pytest.mark.slow
def test_a_model_file_with_an_emptied_bank_is_one_error(run, tmp_path):
    payload = torch.load(run / "model.pt", weights_only=True)
    payload["model"]["bank"] = payload["model"]["bank"][:0]
    torch.save(payload, tmp_path / "model.pt")
    trained = load_trained(tmp_path / "model.pt")
    with pytest.raises(SnladError, match="memory bank is empty"):
        trained.score(torch.rand(1, 3, SIZE, SIZE))


@pytest.mark.slow
def test_interrupted_build_resumes_to_the_same_bank(tmp_path, monkeypatch, one_thread):
    small = ["data.image_size=64", "data.num_workers=0", "train.batch_size=4"]
    config = api.resolve_config(model="patchcore", overrides=small, categories=["bottle"])
    straight = tmp_path / "straight"
    api.train(config=config, data=DEMO, out=straight)
    interrupted = tmp_path / "interrupted"
    monkeypatch.setattr(training, "deferred_interrupts", interrupted_at_once)
    with pytest.raises(training.TrainingInterrupted, match="--resume"):
        api.train(
            config=api.resolve_config(model="patchcore", overrides=small, categories=["bottle"]),
            data=DEMO,
            out=interrupted,
        )
    assert not (interrupted / "model.pt").exists() and (interrupted / "checkpoint.pt").exists()
    monkeypatch.undo()
    config, _ = api.resume_config(run=interrupted)
    api.train(config=config, data=DEMO, out=interrupted, resume=True)
    expected = torch.load(straight / "model.pt", weights_only=True)["model"]["bank"]
    assert torch.equal(torch.load(interrupted / "model.pt", weights_only=True)["model"]["bank"], expected)


@contextlib.contextmanager
def interrupted_at_once():
    """Stands in for ``deferred_interrupts``: a Ctrl-C that arrived before the first batch."""
    yield lambda: True
