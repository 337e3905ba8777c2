"""Interrupted work: real signals to a real `snlad train` process, a full disk, a read-only run folder.

Every test checks two things: the user gets a clear message and exit code,
and what was saved before the fault is intact and good enough to continue
(``--resume`` reaches exactly the weights of an uninterrupted run).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
import torch

from bad_inputs import make_dataset, save, texture
from snlad.cli import main
from snlad.runs.checkpoint import read_checkpoint

EPOCHS = 4
LONG_EPOCHS = (
    12  # the random-kill test: three faults, each at most a few epochs after a checkpoint, never reach the end
)
SETTINGS = ("data.image_size=64", "train.batch_size=2", "loss.affinity_size=8", f"train.epochs={EPOCHS}")


def train_argv(data: Path, out: Path, workers: int = 0, *extra: str) -> list[str]:
    sets = [x for item in (*SETTINGS, f"data.num_workers={workers}") for x in ("--set", item)]
    return ["--quiet", "train", "--data", str(data), "--out", str(out), "--model", "fd", *sets, *extra]


# One thread everywhere: weights only match bit for bit at the same thread count, and
# on a shared 2-core machine a second OpenMP thread makes an epoch 20x slower.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def spawn(argv: list[str]) -> subprocess.Popen:
    """`python -m snlad.cli` in its own process group, as a shell would start it."""
    command = [sys.executable, "-m", "snlad.cli", *argv]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env=ONE_THREAD
    )


def run_cli(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snlad.cli", *argv], capture_output=True, text=True, timeout=300, env=ONE_THREAD
    )


def wait_for_checkpoint(path: Path, process: subprocess.Popen, newer_than: int | None) -> bool:
    """Wait until ``path`` is (re)written after mtime ``newer_than``; False if the process ended first."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime_ns != newer_than:
                return True
        if process.poll() is not None:
            return False
        time.sleep(0.01)
    raise TimeoutError(f"{path} was not written")


def mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


def model_weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "model.pt")["model"]


def assert_same_weights(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> None:
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.allclose(expected[key].float(), actual[key].float(), atol=1e-6), key


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob(".*.tmp"))


# Every test here works on runs the module trains itself (4-62 s each, measured with --durations): slow.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # tests/conftest.py


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad-input dataset (one category, with a test split) plus 4 more training images: 7 train + 1 held out."""
    root = tmp_path_factory.mktemp("data")
    make_dataset(root)
    for i in range(4, 8):
        save(root / "widget" / "train" / "good" / f"{i}.png", texture(i))
    return root


@pytest.fixture(scope="module")
def straight(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every interrupted one must reproduce (in-process, same seed)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    with contextlib.redirect_stdout(None):
        assert main(train_argv(data, out)) == 0
    return out


# ---------------------------------------------------------------- signals


def test_ctrl_c_saves_a_resumable_checkpoint_and_resume_matches_an_uninterrupted_run(
    data: Path, straight: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    argv = train_argv(data, run, 1)  # a DataLoader worker too: Ctrl-C reaches the whole process group
    process = spawn(argv)
    # Triggered by the first epoch's checkpoint, not by a delay: the signal lands in a later epoch or between
    # epochs, and either way the loop saves and stops (1 <= epoch < EPOCHS below).
    assert wait_for_checkpoint(run / "checkpoint.pt", process, None), process.communicate()
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "continue with the same command plus --resume" in err, err
    state = read_checkpoint(run / "checkpoint.pt")
    assert state["kind"] == "training" and 1 <= state["epoch"] < EPOCHS
    assert not (run / "model.pt").exists() and not leftovers(run)

    saved = (run / "checkpoint.pt").read_bytes()
    assert main(argv) == 2  # an interrupted run is not replaced by a fresh start
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "checkpoint.pt").read_bytes() == saved

    resumed = run_cli([*argv, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(model_weights(straight), model_weights(run))


def _interrupt_at_check(number: int) -> Callable[[], contextlib.AbstractContextManager]:
    """A stand-in for ``deferred_interrupts`` whose flag is raised at its ``number``-th check: an interrupt placed
    by the training loop's own progress, not by timing."""

    @contextlib.contextmanager
    def deferred() -> Iterator[Callable[[], bool]]:
        checks = iter(range(1, 10**9))
        yield lambda: next(checks) >= number

    return deferred


def _log_rows(run: Path) -> list[list[str]]:
    return [line.split(",") for line in (run / "train_log.csv").read_text().splitlines()]


def test_an_interrupt_after_an_epochs_last_batch_ends_that_epoch_first(
    data: Path, straight: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """7 images in batches of 2: checks after batches 1-3 and at the epoch's end; the 4th check is the epoch's end.

    The epoch is logged and saved whole (no empty epoch to resume into, no short row in train_log.csv), and
    a state saved the earlier way (epoch 0, position 7 of 7) resumes without a short row either.
    """
    from snlad.engine import train

    run = tmp_path / "run"
    argv = train_argv(data, run)
    with monkeypatch.context() as patch:
        patch.setattr(train, "deferred_interrupts", _interrupt_at_check(4))
        assert main(argv) == 130
    state = read_checkpoint(run / "checkpoint.pt")
    assert (state["epoch"], state["position"]) == (1, 0)
    assert [row[0] for row in _log_rows(run)] == ["epoch", "1"]

    earlier = tmp_path / "earlier"
    shutil.copytree(run, earlier)
    state.update(epoch=0, position=7)  # what an interrupt after the last batch saved before this fix
    torch.save(state, earlier / "checkpoint.pt")
    for folder in (run, earlier):
        with contextlib.redirect_stdout(None):
            assert main([*train_argv(data, folder), "--resume"]) == 0
        rows = _log_rows(folder)
        assert [row[0] for row in rows] == ["epoch", *(str(e) for e in range(1, EPOCHS + 1))]
        assert {len(row) for row in rows} == {len(rows[0])}
        assert_same_weights(model_weights(straight), model_weights(folder))


def test_sigterm_then_sigkill_at_random_moments_never_break_the_checkpoint(data: Path, tmp_path: Path) -> None:
    """A scheduler's SIGTERM, then kill -9 twice at random points of an epoch; resuming each time.

    After every fault the last checkpoint loads (atomic writes: never half a
    file), and the run finally reaches the uninterrupted run's weights. Each
    fault is sent as soon as the 1st, 2nd or 3rd fresh epoch checkpoint of that
    start appears (drawn at random), never after a delay, so with
    ``LONG_EPOCHS`` epochs every fault interrupts training that has epochs left
    on a machine of any speed; the test checks it.
    """
    long = ("--set", f"train.epochs={LONG_EPOCHS}")
    straight = tmp_path / "straight"
    with contextlib.redirect_stdout(None):
        assert main(train_argv(data, straight, 0, *long)) == 0
    rng = random.Random(2024)
    run = tmp_path / "run"
    for fault in (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL):
        resume = ["--resume"] if (run / "checkpoint.pt").exists() else []
        before = mtime(run / "checkpoint.pt")
        process = spawn([*train_argv(data, run, 0, *long), *resume])
        for _ in range(rng.randint(1, 3)):
            assert wait_for_checkpoint(run / "checkpoint.pt", process, before), process.communicate()
            before = mtime(run / "checkpoint.pt")
        if fault == signal.SIGTERM:
            process.send_signal(signal.SIGTERM)  # to the main process only, as a scheduler does
        else:
            os.killpg(process.pid, signal.SIGKILL)
        _, err = process.communicate(timeout=120)
        if fault == signal.SIGTERM:
            assert process.returncode == 130 and "--resume" in err and "Traceback" not in err, err
        else:
            assert process.returncode == -signal.SIGKILL, err
        state = read_checkpoint(run / "checkpoint.pt")
        assert state["kind"] == "training" and state["epoch"] < LONG_EPOCHS, "the fault came after training had ended"
    with contextlib.redirect_stdout(None):
        assert main([*train_argv(data, run, 0, *long), "--resume"]) == 0
    assert_same_weights(model_weights(straight), model_weights(run))


# ---------------------------------------------------------------- full disk, read-only folder


class _FullDiskFile:
    """A file object whose write stores half the data, then fails like a full disk."""

    def __init__(self, file: object) -> None:
        self.file = file

    def __enter__(self) -> _FullDiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def write(self, data: bytes) -> int:
        self.file.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> object:
        return getattr(self.file, name)


@contextlib.contextmanager
def disk_full(fails: Callable[[str], bool]) -> Iterator[None]:
    """Writes through snlad's atomic writer to a file for which ``fails(name)`` is true hit ENOSPC."""
    real_fdopen = os.fdopen

    def fdopen(fd: int, *args: object, **kwargs: object) -> object:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        file = real_fdopen(fd, *args, **kwargs)
        return _FullDiskFile(file) if fails(name) else file

    with mock.patch.object(os, "fdopen", fdopen):
        yield


def test_full_disk_during_training_keeps_the_last_checkpoint(
    data: Path, straight: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    writes = {"checkpoint": 0}

    def second_checkpoint_onwards(name: str) -> bool:
        if name.startswith(".checkpoint.pt."):
            writes["checkpoint"] += 1
        return writes["checkpoint"] >= 2

    with disk_full(second_checkpoint_onwards):
        assert main(train_argv(data, run)) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"snlad: error: cannot write {run / 'checkpoint.pt'}: No space left on device; earlier files there are unchanged\n"
    )
    assert read_checkpoint(run / "checkpoint.pt")["epoch"] == 1 and not leftovers(run)
    assert main([*train_argv(data, run), "--resume"]) == 0  # space freed: continue
    assert_same_weights(model_weights(straight), model_weights(run))


def test_full_disk_during_predict_leaves_earlier_results(
    straight: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images = data / "widget" / "test" / "good"
    argv = ["--quiet", "predict", str(images), "--run", str(straight), "--out", str(tmp_path / "pred")]
    assert main(argv) == 0
    earlier = {path: path.read_bytes() for path in (tmp_path / "pred").rglob("*") if path.is_file()}
    with disk_full(lambda name: name.endswith(".tmp")):
        assert main([*argv, "--overwrite"]) == 2
    assert "No space left on device; earlier files there are unchanged" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in (tmp_path / "pred").rglob("*") if path.is_file()} == earlier


def test_read_only_run_folder_fails_clearly_and_keeps_the_model(
    straight: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Root ignores chmod, so the read-only file system is simulated with the errno the kernel gives (EROFS)."""
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: object, dir: object = None, **kwargs: object) -> tuple[int, str]:
        if dir is not None and Path(dir) == run:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    with mock.patch.object(tempfile, "mkstemp", mkstemp):
        assert main(["--quiet", "test", "--run", str(run), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"snlad: error: cannot write {run}/") and "Read-only file system" in err and err.count("\n") == 1
    )
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before


@pytest.fixture
def small_disk(tmp_path: Path, straight: Path) -> Iterator[Path]:
    """A real tmpfs with room for one checkpoint but not two (skipped where mounting is not allowed)."""
    size = (straight / "checkpoint.pt").stat().st_size * 3 // 2
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_real_full_disk_keeps_the_last_checkpoint(
    small_disk: Path, data: Path, straight: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = small_disk / "run"
    assert main(train_argv(data, run)) == 2
    err = capsys.readouterr().err
    assert "No space left on device; earlier files there are unchanged" in err and err.count("\n") == 1, err
    assert read_checkpoint(run / "checkpoint.pt")["epoch"] == 1 and not leftovers(run)
    moved = tmp_path / "run"
    shutil.copytree(run, moved)  # the user frees space (here: moves the run to a bigger disk) and resumes
    assert main([*train_argv(data, moved), "--resume"]) == 0
    assert_same_weights(model_weights(straight), model_weights(moved))
