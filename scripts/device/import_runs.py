"""Bring the runs a device call finished (scripts/device/campaign-gpu.sh) into the campaign's results folders.

    python scripts/device/import_runs.py --archive /work/.device/.../runs.tar.gz --results docs/results

Only runs listed in the archive's logs/finished.txt are taken, each to RESULTS/EXPERIMENT/MODE/NAME/seedK with its
device.txt (the machine it ran on); a run whose folder already holds metrics there (finished on a CPU lane, say), or
that a process here is training right now (its .lock held), is left as it is: stop that process first, or let it
finish. Model files never travel in the archive. Prints one line per run: the folder, or why it was skipped;
the tables and the commits are the caller's (snlad experiment --tables-only, one commit per run).
"""

from __future__ import annotations

import argparse
import shutil
import tarfile
import tempfile
from pathlib import Path

from snlad.files import lock_holder


def import_runs(archive: Path, results: Path) -> list[Path]:
    """Copy each finished run from ``archive`` under ``results``; returns the folders written."""
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")  # "data": no absolute paths, links or files outside scratch
        finished = Path(scratch, "logs", "finished.txt")
        tags = finished.read_text().split() if finished.is_file() else []
        for tag in tags:
            experiment, name, seed, mode = tag.split("--")
            source = Path(scratch, tag, mode, name, f"seed{seed}")
            target = results / experiment / mode / name / f"seed{seed}"
            if not (source / "metrics.json").is_file():
                print(f"skipped {tag}: the archive holds no results for it")
                continue
            if (target / "metrics.json").is_file():
                print(f"skipped {tag}: {target} already has results")
                continue
            if target.exists() and (holder := lock_holder(target)) is not None:
                print(f"skipped {tag}: {target} is being trained here right now ({holder})")
                continue
            if target.exists():
                shutil.rmtree(target)  # an unfinished CPU run's leftovers (no metrics): the device run replaces them
            shutil.copytree(source, target)
            written.append(target)
            print(f"imported {tag} -> {target}")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, required=True, help="runs.tar.gz from the device call")
    parser.add_argument("--results", type=Path, default=Path("docs/results"), help="the campaigns' results root")
    args = parser.parse_args()
    import_runs(args.archive, args.results)


if __name__ == "__main__":
    main()
