"""How sure is a difference of test I-AUROC between two configurations? A paired bootstrap over the test images.

Reads each run's ``test_scores.csv`` (written by ``snlad test``), matches the images of all runs by category
and path below the category's ``test/`` folder, and writes a Markdown table: the observed difference of the
mean I-AUROC (mean over seeds of the ten-category mean, as the campaign tables), its 95 % bootstrap interval,
and how often B is ahead, over all categories and with each category left out in turn
(``snlad.scoring.comparison``). Reporting only: nothing is chosen on the test split.

    python scripts/compare_runs.py --out docs/results/campaign-rd/bootstrap-test-iauroc.md \\
        --a rd-perpos=R/rd-perpos/seed0,R/rd-perpos/seed1,R/rd-perpos/seed2 \\
        --b snl-rd-aff10=R/snl-rd-aff10/seed0,R/snl-rd-aff10/seed1,R/snl-rd-aff10/seed2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from snlad.errors import SnladError
from snlad.files import atomic_write_text
from snlad.runs.results import read_test_rows
from snlad.scoring.comparison import CategoryScores, paired_bootstrap


def read_scores(run: Path) -> dict[tuple[str, str], tuple[int, float]]:
    """(category, image path below <category>/test/) -> (label, image score) of one tested run."""
    return {
        (row.category, row.image.split(f"/{row.category}/test/", 1)[-1]): (row.label, row.score)
        for row in read_test_rows(run)
    }


def gather(models: dict[str, list[Path]]) -> dict[str, CategoryScores]:
    """Per category, the labels and every model's scores (seeds x images) on the images all runs share."""
    runs = {name: [read_scores(run) for run in folders] for name, folders in models.items()}
    shared = set.intersection(*(set(scores) for seeds in runs.values() for scores in seeds))
    categories = {}
    for category in sorted({c for c, _ in shared}):
        images = sorted(key for key in shared if key[0] == category)
        labels = np.array([runs[next(iter(runs))][0][key][0] for key in images])
        scores = {name: np.array([[s[key][1] for key in images] for s in seeds]) for name, seeds in runs.items()}
        categories[category] = CategoryScores(labels, scores)
    return categories


def named_runs(text: str) -> tuple[str, list[Path]]:
    name, _, folders = text.partition("=")
    if not name or not folders:
        raise argparse.ArgumentTypeError(f"expected NAME=RUN[,RUN...], got {text!r}")
    return name, [Path(folder) for folder in folders.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--a", type=named_runs, required=True, help="NAME=RUN[,RUN...]: the reference (one run per seed)"
    )
    parser.add_argument("--b", type=named_runs, required=True, help="NAME=RUN[,RUN...]: the one compared with it")
    parser.add_argument("--out", type=Path, required=True, help="Markdown file to write")
    parser.add_argument("--resamples", type=int, default=10000)
    args = parser.parse_args()
    (a, a_runs), (b, b_runs) = args.a, args.b
    categories = gather({a: a_runs, b: b_runs})
    subsets = {"all categories": list(categories)} | {
        f"without {c}": [o for o in categories if o != c] for c in categories
    }
    lines = [
        f"# Test I-AUROC, {b} minus {a}: paired bootstrap over the test images",
        "",
        f"{len(a_runs)} / {len(b_runs)} runs (seeds); {args.resamples} draws of the test images with replacement,"
        " within each category and class; the statistic is the mean over seeds of the mean over categories."
        " Written by:",
        "",
        "```bash",
        f"python scripts/compare_runs.py --out {args.out} --resamples {args.resamples} \\",
        f"    --a {a}={','.join(map(str, a_runs))} \\",
        f"    --b {b}={','.join(map(str, b_runs))}",
        "```",
        "",
        f"| categories | {b} - {a} (points) | 95 % interval | share of draws with {b} ahead |",
        "|---|---|---|---|",
    ]
    for label, names in subsets.items():
        result = paired_bootstrap({n: categories[n] for n in names}, a, b, args.resamples)
        lines.append(
            f"| {label} | {100 * result.observed:+.1f} | [{100 * result.low:+.1f}, {100 * result.high:+.1f}]"
            f" | {100 * result.b_ahead:.0f} % |"
        )
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(args.out)


if __name__ == "__main__":
    try:
        main()
    except SnladError as error:
        raise SystemExit(f"compare_runs: {error}") from None
