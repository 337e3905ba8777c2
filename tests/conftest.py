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
SHARED_CATEGORIES = ["bottle", "casting", "kolektor_sdd", "metal_nut"]  # casting: image-level labels only
SHARED_SETTINGS = [
    "data.image_size=64",
    "train.batch_size=4",
    "data.num_workers=0",
    "loss.affinity_size=8",
    "train.epochs=1",
    "data.holdout_fraction=0.25",  # 2 held-out normals per 8-image category, 1 for metal_nut
    "map.image_score=max",  # image score = map max: image and pixel thresholds can be compared
]


# Slow tests (see pyproject.toml's markers) in modules another change owns at the moment: marked here
# rather than in the files; each may move to an @pytest.mark.slow in its module. Every test of
# test_interrupt.py works on runs the module trains itself (five of them 4-62 s, measured with --durations).
SLOW_MODULES = {"test_interrupt.py"}
SLOW_TESTS = {("test_optimise.py", "test_compiled_model_gives_the_same_maps")}  # 43 s: torch.compile


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = getattr(item, "originalname", item.name)
        if item.path.name in SLOW_MODULES or (item.path.name, name) in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


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
