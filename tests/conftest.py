"""Fixtures shared by several test modules.

Trained runs are built once per session: ``shared_run`` for tests that only
need *a* run (test, predict, calibrate, export, report, probes, validation),
``bad_input_shared`` for the bad-input matrix, the fuzzers and the long-run
tests. Neither may be changed by a test: a test that writes into a run
(``snlad test`` without ``--out``, ``calibrate --overwrite``, ``validate``)
takes ``run_copy``. The session checks at the end that both are unchanged.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
SHARED_SIZE = 64
SHARED_CATEGORIES = ["bottle", "casting", "kolektor_sdd", "metal_nut"]  # casting: image-level labels only
SHARED_SETTINGS = [
    f"data.image_size={SHARED_SIZE}",
    "train.batch_size=4",
    "data.num_workers=0",
    "loss.affinity_size=8",
    "train.epochs=1",
    # Lite0, as in docs/scaling.md's deployment measurements the runtime tolerances follow (with the snl-fd preset's
    # Lite2 and affinity weights 10 this 1-epoch run's OpenVINO bf16 maps were 5.2 % of their range off, past
    # test_runtime's 5 %; bf16 is opt-in, docs/scaling.md measures 7.2 % on a trained Lite0 model).
    "model.teacher=efficientnet_lite0",
    "data.holdout_fraction=0.25",  # 2 held-out normals per 8-image category, 1 for metal_nut
    "map.image_score=max",  # image score = map max: image and pixel thresholds can be compared
]
REFERENCE_CATEGORIES = ["bottle", "metal_nut"]  # the images exported graphs are checked on


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """A second OpenMP thread on a busy 2-core machine makes training steps many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One SNL-FD run on four demo categories (``SHARED_SETTINGS``), trained and tested once; do not change it.

    Holds model.pt, checkpoint.pt, config.yaml, run.json, train_log.csv and the
    test's metrics.json / test_scores.csv.
    """
    from snlad import api

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("shared-run") / "run"
        config = api.resolve_config(model="snl-fd", overrides=SHARED_SETTINGS, categories=SHARED_CATEGORIES)
        api.train(config=config, data=DEMO, out=out)
        api.test(run=out, data=DEMO)
    finally:
        torch.set_num_threads(threads)
    before = _files(out)
    yield out
    assert _files(out) == before, "a test changed the shared run: use the run_copy fixture to write into a run"


@pytest.fixture(scope="session")
def shared_reference(shared_run: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real demo test images (``REFERENCE_CATEGORIES``) and the shared run's bottle model's unoptimised
    PyTorch maps and scores for them: what every exported or deployed graph is held against."""
    from snlad.data import AnomalyDataset, index_dataset
    from snlad.runs.run import load_run

    dataset = AnomalyDataset(index_dataset(DEMO, "test", REFERENCE_CATEGORIES), SHARED_SIZE)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    trained = load_run(shared_run)["bottle"]
    with torch.inference_mode():
        maps, scores = trained.scorer(*trained.model(images))
    return images, maps, scores


@pytest.fixture
def run_copy(shared_run: Path, tmp_path: Path) -> Path:
    """A copy of ``shared_run`` this test may change."""
    return Path(shutil.copytree(shared_run, tmp_path / "run"))


@pytest.fixture(scope="session")
def bad_input_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``data`` (textures, one category ``widget``) and ``run`` (fd, 1 epoch, 64 px) of tests/bad_inputs.py."""
    from bad_inputs import build_shared

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        shared = build_shared(tmp_path_factory.mktemp("bad-input-shared"))
    finally:
        torch.set_num_threads(threads)
    before = _files(shared)
    yield shared
    assert _files(shared) == before, "a test changed the shared bad-input run: copy it first (bad_inputs.prepare does)"
