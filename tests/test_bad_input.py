"""The bad-input matrix (tests/bad_inputs.py) through the CLI: one clear line, the right exit code, no traceback.

Every case runs in-process through ``snlad.cli.main``; three also run as a
real ``python -m snlad.cli`` subprocess to prove what a user's terminal shows.
The table in docs/bad-input.md is generated from the same cases and must be
up to date.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bad_inputs import CASES, FAST_ARGS, Case, prepare, render, run_case
from snlad.cli import main
from snlad.data import load_mask
from snlad.device import busy_threads_elsewhere, usable_cores
from snlad.errors import SnladError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
BY_NAME = {case.name: case for case in CASES}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def shared(bad_input_shared: Path) -> Path:
    """The bad-input data and run, built once per session (tests/conftest.py); cases copy what they need."""
    return bad_input_shared


@pytest.fixture(scope="module")
def outcomes() -> dict:
    """What each case printed, kept for the docs check so no case runs twice."""
    return {}


def _shared_if_needed(case: Case, request: pytest.FixtureRequest) -> Path | None:
    return request.getfixturevalue("shared") if case.needs_run else None


SLOW_CASES = {"image_odd_modes_train"}  # trains to the end: 6-7 s; the others stop within a batch


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, marks=[pytest.mark.slow] if case.name in SLOW_CASES else []) for case in CASES],
    ids=[case.name for case in CASES],
)
def test_bad_input(case: Case, tmp_path: Path, request: pytest.FixtureRequest, outcomes: dict) -> None:
    argv, outcome = run_case(case, tmp_path, _shared_if_needed(case, request))
    outcomes[case.name] = (case, argv, outcome)
    printed = outcome.stdout + outcome.stderr
    assert outcome.code == case.code, printed
    for fragment in case.expect:
        assert fragment in printed, f"{fragment!r} missing from: {printed}"
    assert "Traceback" not in printed
    lines = outcome.stderr.strip().splitlines()
    if case.code == 2:
        assert lines[-1].startswith("snlad: error: "), lines
        assert all(line.startswith("skipped ") for line in lines[:-1]), lines  # only predict lists files first
    if case.check is not None:
        case.check(tmp_path)


def test_docs_table_is_up_to_date(tmp_path: Path, request: pytest.FixtureRequest, outcomes: dict) -> None:
    rows = []
    for case in CASES:
        if case.name not in outcomes:  # run alone (-k): compute the missing ones here
            outcomes[case.name] = (case, *run_case(case, tmp_path / case.name, _shared_if_needed(case, request)))
        rows.append(outcomes[case.name])
    assert DOCS.read_text() == render(rows), "docs/bad-input.md is stale: run python scripts/bad_input_table.py"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["root_missing", "image_truncated_in_worker", "model_code_pickle"])
def test_real_process_prints_one_line_and_no_traceback(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    case = BY_NAME[name]
    argv = prepare(case, tmp_path, _shared_if_needed(case, request))
    result = subprocess.run(
        [sys.executable, "-m", "snlad.cli", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snlad: error: ") and "Traceback" not in result.stderr, result.stderr
    assert all(fragment in lines[0] for fragment in case.expect)
    if case.check is not None:
        case.check(tmp_path)


SPIN = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end:\n    pass\n"  # bounded even if never killed


@pytest.mark.slow
def test_one_error_line_while_other_processes_keep_every_core_busy(tmp_path: Path) -> None:
    """CI shares its cores: with every core spun by real processes, a bad input still prints exactly one error line.

    One case runs in-process on one thread (as the suite does), one as a real
    process with ``--threads 1`` and no OMP_NUM_THREADS (the user followed the
    oversubscription note): neither has anything to act on, so no note.
    """
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(usable_cores())]
    try:
        for _ in range(50):  # until the scheduler shows them running
            if busy_threads_elsewhere() >= usable_cores():
                break
        case = BY_NAME["image_zero_bytes"]  # fails inside training, after the point where the note is said
        _, outcome = run_case(case, tmp_path / "in-process", None)
        lines = outcome.stderr.strip().splitlines()
        assert outcome.code == 2 and len(lines) == 1 and lines[0].startswith("snlad: error: "), outcome.stderr
        argv = prepare(case, tmp_path / "process", None)
        env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
        result = subprocess.run(
            [sys.executable, "-m", "snlad.cli", "--threads", "1", *argv],
            cwd=tmp_path / "process",
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("snlad: error: "), result.stderr
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@pytest.mark.slow
def test_garbage_omp_num_threads_is_one_note_not_libgomp_noise(tmp_path: Path) -> None:
    """``OMP_NUM_THREADS=abc`` made libgomp print its own line at torch's import (issue 21 item 17): now one snlad note."""
    result = subprocess.run(
        [sys.executable, "-m", "snlad.cli", "train", "--data", "nope", "--out", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "abc"},
    )
    assert result.returncode == 2 and "libgomp" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [
        "snlad: note: OMP_NUM_THREADS='abc' is not a number of threads and is ignored (use --threads N)",
        "snlad: error: dataset root nope does not exist; pass the folder that holds one folder per category",
    ], result.stderr


# A sitecustomize that holds the snlad command at its first import of torch (after ``import snlad`` has set up
# its start-up Ctrl-C, before snlad.cli.main runs), says so on stdout, and waits there for the signal.
AT_TORCH_IMPORT = """
import importlib.abc, signal, sys


class AtTorchImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            print("importing torch", flush=True)
            signal.pause()  # Ctrl-C ends the process here, or raises out of the import
        return None


sys.meta_path.insert(0, AtTorchImport())
"""


@pytest.mark.slow
def test_ctrl_c_while_starting_is_one_line_not_an_import_traceback(tmp_path: Path) -> None:
    """Importing torch and scipy takes seconds on a busy machine; Ctrl-C then printed a traceback (issue 21 item 13).

    The Ctrl-C is sent when the command says (through a start-up hook) that it is importing torch, not after a delay.
    """
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AT_TORCH_IMPORT)
    python_path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "snlad.cli", "train", "--data", "nope", "--out", "out"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": python_path},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background job would ignore Ctrl-C
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "importing torch\n"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130 and stderr == "snlad: interrupted while starting; nothing was done\n", stderr


@pytest.mark.slow
def test_pillow_warnings_are_not_printed(tmp_path: Path, shared: Path) -> None:
    """A JPEG whose EXIF points past its end loads fine, but Pillow warned on stderr (issue 21 item 17): now silent.

    A real process: in-process, pytest would capture the warning before stderr.
    """
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x010E, 2, 100, 1000) + struct.pack("<I", 0)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "exif.jpg", exif=b"Exif\x00\x00" + tiff)
    argv = ["predict", "exif.jpg", "--run", str(shared / "run"), "--out", "pred", "--quiet"]
    result = subprocess.run(
        [sys.executable, "-m", "snlad.cli", *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(SnladError, match="does not exist"):
        main(
            [
                "--debug",
                "--quiet",
                "train",
                "--data",
                str(tmp_path / "nope"),
                "--out",
                str(tmp_path / "out"),
                *FAST_ARGS,
            ]
        )


def test_non_binary_mask_values_count_as_defect(tmp_path: Path) -> None:
    """The documented decision: any nonzero mask value is a defect pixel (not an error)."""
    values = np.array([[0, 1, 127, 128, 254, 255]], np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png", (1, 6)).tolist() == [[False, True, True, True, True, True]]
