"""Graph runtimes: ONNX Runtime and OpenVINO score like PyTorch on real demo images; errors are one line.

Tolerances: fp32 maps and scores within 1e-4 of the PyTorch model's (float
rounding: the graphs are the same ops). bf16 and int8 change the numbers by
design, checked here on a one-epoch 64 px model whose maps span little: bf16
and mixed (bf16 but the teacher's first stage and the scoring in fp32) within
5 % of the fp32 maps' range (the tolerance stated before measuring; mixed
measured 0.6 % on realad, bf16 7 %); the mixed graph's cut into three parts
computes exactly the uncut graph when every part runs at fp32; int8 (calibrated on the demo's held-out
normals) correlated with fp32 at > 0.95 per pixel (measured on a 2-category
run: 0.99, max difference 14 % of the range). Whether a precision is *kept* is decided on
realad metrics in docs/results/bench-inference.md, not here.
"""

import builtins
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from snlad import api
from snlad.cli import main
from snlad.deploy.deployed import deployed
from snlad.deploy.export_openvino import read_openvino_metadata
from snlad.runs.run import load_run

DEMO = Path(__file__).parents[1] / "data" / "demo"
SIZE = 64
FP32 = 1e-4
BF16 = 0.05  # of the fp32 map's range (max - min over the images)
INT8_CORRELATION = 0.95


@pytest.fixture(scope="module")
def run(shared_run):
    """The suite's shared SNL-FD run (64 px, one epoch; tests/conftest.py): nothing here writes into it."""
    return shared_run


def _scored(run, runtime, exported=None, precision="fp32"):
    """The run's bottle model in ``runtime``, 3 images per call: the demo's batch splits unevenly."""
    return deployed(load_run(run)["bottle"], runtime, exported, precision, micro_batch=3)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "openvino"])
def test_every_runtime_maps_like_pytorch_at_fp32(run, shared_reference, runtime):
    pytest.importorskip(runtime)
    images, maps, scores = shared_reference
    with torch.inference_mode():
        runtime_maps, runtime_scores = _scored(run, runtime).score(images)
    assert runtime_maps.shape == maps.shape and runtime_scores.shape == scores.shape
    assert (runtime_maps - maps).abs().max() < FP32
    assert (runtime_scores - scores).abs().max() < FP32


@pytest.mark.parametrize("precision", ["bf16", "mixed"])
def test_openvino_bf16_stays_near_fp32(run, shared_reference, precision):
    pytest.importorskip("openvino")
    images, maps, scores = shared_reference
    with torch.inference_mode():
        bf16_maps, bf16_scores = _scored(run, "openvino", precision=precision).score(images)
    assert bf16_maps.shape == maps.shape and bf16_scores.shape == scores.shape
    assert (bf16_maps - maps).abs().max() < BF16 * (maps.max() - maps.min())


def test_mixed_precision_cut_computes_the_uncut_graph(run, shared_reference):
    ov = pytest.importorskip("openvino")
    from snlad.deploy.export import export_metadata, onnx_bytes
    from snlad.deploy.runtime import split_graph, split_session

    trained = load_run(run)["bottle"]
    graph = onnx_bytes(trained, export_metadata(trained, None))
    core = ov.Core()
    parts = split_graph(core.read_model(graph, b""))
    assert [part.index for part in parts] == [0, 1, 2]  # teacher's first stage, the rest of the networks, scorer
    # (the ONNX exporter names the student's stages /model/stages.N: FeatureDistillation loops over them)
    names = [{op.get_friendly_name() for op in part.model.get_ops()} for part in parts]
    assert any(name.startswith("/model/teacher/stages.0/") for name in names[0])
    assert not any(name.startswith(("/model/teacher/stages.0/", "/scorer/")) for name in names[1])
    for scope in ("/model/teacher/stages.2/", "/model/stages.0/"):  # the teacher's last stage, the student's first
        assert any(name.startswith(scope) for name in names[1])
    assert any(name.startswith("/scorer/") for name in names[2])
    session = split_session(core, core.read_model(graph, b""), 1, ("f32", "f32", "f32"))
    images, maps, scores = shared_reference
    for chunk in (slice(0, 1), slice(1, None)):  # batch 1 and the rest: the parts keep a dynamic batch
        cut_maps, cut_scores = session(np.ascontiguousarray(images[chunk].numpy()))
        assert np.abs(cut_maps - maps[chunk].numpy()).max() < FP32
        assert np.abs(cut_scores - scores[chunk].numpy()).max() < FP32


def test_int8_openvino_export_round_trips_and_predicts(run, shared_reference, tmp_path):
    pytest.importorskip("nncf")
    out = tmp_path / "model-int8.xml"
    args = ["export", "--run", str(run), "--format", "openvino", "--precision", "int8", "--data", str(DEMO)]
    assert main([*args, "--out", str(out), "--category", "bottle"]) == 0
    assert out.with_suffix(".bin").is_file()
    metadata = read_openvino_metadata(out)
    calibration = load_run(run)["bottle"].calibration["bottle"]
    assert metadata["precision"] == "int8" and metadata["image_size"] == SIZE and metadata["category"] == "bottle"
    assert metadata["threshold"] == calibration["threshold"]
    assert metadata["pixel_threshold"] == calibration["pixel_threshold"]
    images, maps, _ = shared_reference
    with torch.inference_mode():
        int8_maps, _ = _scored(run, "openvino", exported=out).score(images)
    assert np.corrcoef(int8_maps.flatten(), maps.flatten())[0, 1] > INT8_CORRELATION


def test_openvino_fp32_export_metadata_round_trip(run, tmp_path):
    pytest.importorskip("openvino")
    out = api.export(run=run, fmt="openvino", out=tmp_path / "model.xml")
    metadata = read_openvino_metadata(out)
    assert metadata["precision"] == "fp32" and metadata["model"] == "snl-fd" and metadata["category"] is None
    assert metadata["cpu_images_per_run"] == round(4 * 256**2 / SIZE**2)


def test_predict_with_a_runtime_writes_what_torch_writes(run, tmp_path):
    pytest.importorskip("onnxruntime")
    inputs = [str(DEMO / "bottle" / "test" / defect) for defect in ("good", "broken_large")]
    common = ["predict", *inputs, "--run", str(run), "--category", "bottle", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "torch")]) == 0
    assert main([*common, "--out", str(tmp_path / "ort"), "--runtime", "onnxruntime"]) == 0
    written = {p.relative_to(tmp_path / "torch") for p in (tmp_path / "torch").rglob("*") if p.is_file()}
    assert written == {p.relative_to(tmp_path / "ort") for p in (tmp_path / "ort").rglob("*") if p.is_file()}
    assert any(p.parts[0] == "masks" for p in written) and any(p.parts[0] == "overlays" for p in written)
    for npy in (p for p in written if p.suffix == ".npy"):
        assert np.abs(np.load(tmp_path / "torch" / npy) - np.load(tmp_path / "ort" / npy)).max() < FP32


def test_a_missing_runtime_is_one_line_naming_pip(run, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "openvino", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_openvino)
    image = str(DEMO / "bottle" / "test" / "good")
    assert main(["predict", image, "--run", str(run), "--out", str(tmp_path / "p"), "--runtime", "openvino"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("snlad: error:") and "pip install openvino" in err[0]


def test_exported_file_of_another_model_is_refused(run, tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    exported = api.export(run=run, fmt="onnx", out=tmp_path / "model.onnx", category="bottle")
    proto = onnx.load(str(exported))
    next(p for p in proto.metadata_props if p.key == "snlad.image_size").value = "128"
    onnx.save(proto, str(exported))
    args = ["predict", str(DEMO / "bottle" / "test" / "good"), "--run", str(run), "--out", str(tmp_path / "p")]
    assert main([*args, "--runtime", "onnxruntime", "--exported", str(exported)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exported from another model" in err[0]


def test_test_with_a_runtime_reports_torch_metrics(run, tmp_path):
    pytest.importorskip("openvino")
    torch_metrics = api.test(run=run, data=DEMO, out=tmp_path / "torch")
    scoring = api.ScoringOptions(runtime="openvino")
    openvino_metrics = api.test(run=run, data=DEMO, out=tmp_path / "openvino", scoring=scoring)
    for key in ("image_auroc", "pixel_auroc", "aupro"):
        assert abs(openvino_metrics["mean"][key] - torch_metrics["mean"][key]) < 1e-6
