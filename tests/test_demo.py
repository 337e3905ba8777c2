"""scripts/demo.sh runs twice in a row: its own snlad commands, on one demo category at a tiny size."""

from __future__ import annotations

import glob
import shlex
import shutil
from pathlib import Path

import pytest

from snlad.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["data.image_size=64", "train.batch_size=4", "loss.affinity_size=8", "train.epochs=1"]


def demo_commands(data: Path, run: Path) -> list[list[str]]:
    """The snlad lines of scripts/demo.sh with $RUN, the data root and globs resolved; training made tiny."""
    commands = []
    for line in (ROOT / "scripts" / "demo.sh").read_text().splitlines():
        if not line.startswith("snlad "):
            continue
        words = shlex.split(line.replace("$RUN", str(run)).replace("data/demo", str(data)))[1:]
        argv = [match for word in words for match in (sorted(glob.glob(word)) if "*" in word else [word])]
        if argv[0] == "train":
            argv += [part for setting in FAST for part in ("--set", setting)]
        commands.append(["--quiet", *argv])
    return commands


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_demo_commands_run_twice_in_a_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data" / "demo" / "bottle", data / "bottle")
    monkeypatch.chdir(ROOT)  # demo.sh runs from the repository root (configs/demo.yaml)
    commands = demo_commands(data, tmp_path / "runs" / "demo")
    assert [argv[1] for argv in commands] == ["train", "calibrate", "test", "predict", "report"]
    assert all(str(tmp_path) in argv[argv.index("--out") + 1] for argv in commands if "--out" in argv)
    for attempt in (1, 2):
        for argv in commands:
            assert main(argv) == 0, f"run {attempt}: snlad {' '.join(argv)}"
