"""Export: one graph from images to maps and scores, equal to the PyTorch model on real images."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from snlad import api
from snlad.cli import main
from snlad.deploy.export import read_onnx_metadata
from snlad.runs.run import load_run

DEMO = Path(__file__).parents[1] / "data" / "demo"
SIZE = 64


@pytest.fixture(scope="module")
def run(shared_run):
    """The session's SNL-FD run at 64 px (tests/conftest.py): export only reads it."""
    return shared_run


@pytest.fixture(scope="module")
def reference(shared_reference):
    """The suite's demo images with the shared run's PyTorch maps and scores (tests/conftest.py), as numpy."""
    images, maps, scores = shared_reference
    return images, maps.numpy(), scores.numpy()


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime_and_matches_pytorch(run, reference, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    assert main(["export", "--run", str(run), "--format", "onnx", "--out", str(out), "--category", "bottle"]) == 0
    images, maps, scores = reference
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    onnx_maps, onnx_scores = session.run(["maps", "scores"], {"images": images.numpy()})
    assert onnx_maps.shape == (len(images), SIZE, SIZE) and onnx_scores.shape == (len(images),)
    assert np.abs(onnx_maps - maps).max() < 1e-4
    assert np.abs(onnx_scores - scores).max() < 1e-4
    one_maps, _ = session.run(["maps", "scores"], {"images": images[:1].numpy()})  # batch axis is dynamic
    assert np.abs(one_maps - maps[:1]).max() < 1e-4
    metadata = read_onnx_metadata(out)
    assert metadata["image_size"] == SIZE and metadata["category"] == "bottle"
    assert metadata["cpu_images_per_run"] == round(4 * 256**2 / SIZE**2)
    assert metadata["threshold"] == load_run(run)["bottle"].calibration["bottle"]["threshold"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_export_matches_pytorch(run, reference, tmp_path):
    out = api.export(run=run, fmt="torchscript", out=tmp_path / "model.pt")
    images, maps, scores = reference
    extra = {"snlad.json": ""}
    graph = torch.jit.load(str(out), _extra_files=extra)
    with torch.inference_mode():
        ts_maps, ts_scores = graph(images)
    assert np.abs(ts_maps.numpy() - maps).max() < 1e-4
    assert np.abs(ts_scores.numpy() - scores).max() < 1e-4
    assert json.loads(extra["snlad.json"])["image_size"] == SIZE


def test_export_errors_are_one_line(run, tmp_path, capsys):
    assert (
        main(["export", "--run", str(tmp_path / "missing"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    )
    assert (
        main(
            ["export", "--run", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--category", "zebra"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("snlad: error:") for line in err)


@pytest.mark.slow
def test_rd_with_rd_plus_plus_projection_exports_to_onnx_like_pytorch(one_thread, tmp_path):
    """The projection (instance norm, leaky ReLU) sits between teacher and bottleneck: the graph must keep it."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from snlad.data import AnomalyDataset, index_dataset

    overrides = ["model.projection=true", "loss.projection=0.2", f"data.image_size={SIZE}", "train.epochs=1"]
    config = api.resolve_config(model="rd", overrides=[*overrides, "train.batch_size=4"], categories=["bottle"])
    api.train(config=config, data=DEMO, out=tmp_path / "run")
    out = tmp_path / "model.onnx"
    assert main(["export", "--run", str(tmp_path / "run"), "--format", "onnx", "--out", str(out)]) == 0
    dataset = AnomalyDataset(index_dataset(DEMO, "test", ["bottle"]), SIZE)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    trained = load_run(tmp_path / "run")["bottle"]
    assert trained.model.projection is not None
    with torch.inference_mode():
        maps, scores = trained.scorer(*trained.model(images))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    onnx_maps, onnx_scores = session.run(["maps", "scores"], {"images": images.numpy()})
    assert np.abs(onnx_maps - maps.numpy()).max() < 1e-4 and np.abs(onnx_scores - scores.numpy()).max() < 1e-4
