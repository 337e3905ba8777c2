"""The device call's data path (scripts/device/): the copy a GPU run trains on must give the model the same tensors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from snlad.data.dataset import AnomalyDataset
from snlad.data.layouts import index_dataset
from snlad.files import exclusive_lock

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "device"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"device_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mvtec_root(root: Path) -> Path:
    """One category: a colour and a greyscale training image, a defective test image with its mask, odd sizes."""
    rng = np.random.default_rng(0)
    (root / "part/train/good").mkdir(parents=True)
    (root / "part/test/good").mkdir(parents=True)
    (root / "part/test/crack").mkdir(parents=True)
    (root / "part/ground_truth/crack").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(root / "part/train/good/000.png")
    Image.fromarray(rng.integers(0, 256, (41, 33), dtype=np.uint8), "L").save(root / "part/train/good/001.png")
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(root / "part/test/good/000.png")
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(root / "part/test/crack/000.png")
    mask = np.zeros((50, 70), dtype=np.uint8)
    mask[10:23, 31:47] = 255
    Image.fromarray(mask, "L").save(root / "part/ground_truth/crack/000_mask.png")
    return root


def _items(root: Path, split: str, size: int) -> list[dict]:
    dataset = AnomalyDataset(index_dataset(root, split), image_size=size)
    return [dataset[i] for i in range(len(dataset))]


def test_shrunk_and_webp_carried_copy_gives_the_same_model_inputs(tmp_path: Path) -> None:
    original = _mvtec_root(tmp_path / "original")
    _script("shrink_data").shrink(original, tmp_path / "small", 32)
    webp = _script("webp")
    assert webp.convert(tmp_path / "small", tmp_path / "carried", ".png", ".webp", check=True) == 5
    webp.convert(tmp_path / "carried", tmp_path / "back", ".webp", ".png", check=False)
    for split in ("train", "test"):
        before, after = _items(original, split, 32), _items(tmp_path / "back", split, 32)
        assert [Path(i["path"]).relative_to(original) for i in before] == [
            Path(i["path"]).relative_to(tmp_path / "back") for i in after
        ]
        for old, new in zip(before, after, strict=True):
            assert torch.equal(old["image"], new["image"])
            assert torch.equal(old["mask"], new["mask"])
            assert old["label"] == new["label"]
    masked = [i for i in _items(tmp_path / "back", "test", 32) if i["label"] == 1]
    assert masked[0]["mask"].sum() > 0  # the defect survived the nearest-neighbour squeeze


def test_import_takes_finished_runs_only_and_keeps_existing_results(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for tag, files in {
        "camp--good--1--multi-class": ["metrics.json", "device.txt"],
        "camp--stopped--0--multi-class": ["train_log.csv"],
        "camp--known--0--multi-class": ["metrics.json"],
        "camp--busy--0--multi-class": ["metrics.json"],
    }.items():
        _, name, seed, mode = tag.split("--")
        folder = runs / tag / mode / name / f"seed{seed}"
        folder.mkdir(parents=True)
        for file in files:
            (folder / file).write_text(tag)
    (runs / "logs").mkdir()
    (runs / "logs/finished.txt").write_text(
        "camp--good--1--multi-class\ncamp--known--0--multi-class\ncamp--busy--0--multi-class\n"
    )
    archive = tmp_path / "runs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(runs, arcname=".")
    results = tmp_path / "results"
    (results / "camp/multi-class/known/seed0").mkdir(parents=True)
    (results / "camp/multi-class/known/seed0/metrics.json").write_text("cpu run")

    busy = results / "camp/multi-class/busy/seed0"
    busy.mkdir(parents=True)
    (busy / "train_log.csv").write_text("a CPU lane's run in progress")

    with exclusive_lock(busy, "snlad train"):
        written = _script("import_runs").import_runs(archive, results)

    assert written == [results / "camp/multi-class/good/seed1"]
    assert (busy / "train_log.csv").read_text() == "a CPU lane's run in progress"
    assert not (busy / "metrics.json").exists()
    assert (results / "camp/multi-class/good/seed1/device.txt").read_text() == "camp--good--1--multi-class"
    assert (results / "camp/multi-class/known/seed0/metrics.json").read_text() == "cpu run"
    assert not (results / "camp/multi-class/stopped").exists()


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_webp_round_trip_restores_pixels_and_greyscale(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(1)
    shape = (9, 13) if mode == "L" else (9, 13, 3)
    (tmp_path / "src").mkdir()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(tmp_path / "src/a.png")
    webp = _script("webp")
    webp.convert(tmp_path / "src", tmp_path / "carried", ".png", ".webp", check=True)
    webp.convert(tmp_path / "carried", tmp_path / "back", ".webp", ".png", check=False)
    with Image.open(tmp_path / "src/a.png") as before, Image.open(tmp_path / "back/a.png") as after:
        assert after.mode == mode
        assert np.array_equal(np.asarray(before), np.asarray(after))


def test_campaign_gpu_stops_before_using_the_device_when_an_experiment_file_does_not_load(tmp_path: Path) -> None:
    """A trimmed working tree without an experiment's reference runs cost a whole device call once; now nothing runs."""
    experiment = tmp_path / "broken.yaml"
    experiment.write_text(
        "name: broken\nconfigurations:\n  rd: {model: rd}\nreferences:\n  multi-class:\n    gone: [missing/seed0]\n"
    )
    queue = tmp_path / "queue.txt"
    queue.write_text(f"# a comment\n{experiment} rd 0 multi-class\n")
    result = subprocess.run(
        ["bash", str(SCRIPTS / "campaign-gpu.sh"), str(queue), "1", "5"],
        cwd=SCRIPTS.parents[1],
        env={**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert f"cannot load {experiment}: nothing run" in result.stderr
    assert "holds no finished run" in result.stderr  # the loader's own reason is shown
    assert not (tmp_path / "work" / "webp").exists()  # the data were never unpacked
