"""Tabulate finished runs side by side: validation and test means, per-category test metrics, cost.

Each run directory was written by `snlad train` (with `/usr/bin/time -v -o RUN.time` around it for wall time
and peak memory, as scripts/run_realad.sh does), then `snlad test` and `snlad validate`. Writes one Markdown
file: a summary row per run (validation I-AUROC / P-AUROC / AUPRO on held-out normals + cut-paste, test means
with how many categories each covers, epochs, last-epoch loss terms, wall time, peak RSS), per-category
validation (I-AUROC, P-AUROC) and test tables, and each run's settings that differ from its model's preset.

    python scripts/runs_table.py --out docs/results/realad10/summary.md NAME=RUN [NAME=RUN ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path

import yaml

from snlad.config import from_dict, preset

METRICS = (("image_auroc", "I-AUROC"), ("pixel_auroc", "P-AUROC"), ("aupro", "AUPRO"))


def percent(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def time_file(run: Path) -> dict[str, str]:
    """Wall time and peak RSS from `/usr/bin/time -v` output beside the run (RUN.time), when there is one."""
    path = run.with_name(run.name + ".time")
    if not path.is_file():
        return {"wall": "", "rss": ""}
    text = path.read_text()
    wall = re.search(r"Elapsed \(wall clock\) time.*?: ([\d:.]+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"wall": wall.group(1) if wall else "", "rss": f"{int(rss.group(1)) / 2**20:.2f} GiB" if rss else ""}


def last_epoch(run: Path) -> dict[str, str]:
    logs = [run / "train_log.csv"] if (run / "train_log.csv").is_file() else sorted(run.glob("*/train_log.csv"))
    if not logs:
        return {}
    with logs[0].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows[-1] if rows else {}


def changed_settings(run: Path) -> str:
    config = from_dict(yaml.safe_load((run / "config.yaml").read_text()), source=str(run / "config.yaml"))
    defaults = preset(config.model.name).to_dict()
    ignore = {"data.categories", "train.device"}
    changes = [
        f"{section}.{key}={value}"
        for section, values in config.to_dict().items()
        for key, value in values.items()
        if f"{section}.{key}" not in ignore and defaults[section][key] != value
    ]
    return ", ".join(changes) or "preset"


def per_category_table(title: str, results: dict[str, dict], key: str, categories: list[str]) -> list[str]:
    """One Markdown table: a row per run, a column per category plus the mean, of one metric."""
    lines = ["", f"## {title} per category (%)", "", "| run | " + " | ".join(categories) + " | mean |"]
    lines.append("|---" * (len(categories) + 2) + "|")
    for name, result in results.items():
        cells = [percent(result.get(c, {}).get(key)) for c in [*categories, "mean"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="Runs on the ten-category realad")
    args = parser.parse_args()
    runs = {name: Path(path) for name, path in (item.split("=", 1) for item in args.runs)}
    lines = [
        f"# {args.title}",
        "",
        "Validation = held-out normals + cross-class cut-paste (`snlad validate`); test = the test split (`snlad test`).",
        "",
    ]
    lines += [
        "| run | val I-AUROC | val P-AUROC | val AUPRO | test I-AUROC | test P-AUROC | test AUPRO | epochs | last epoch loss | wall | peak RSS |",
        "|---" * 11 + "|",
    ]
    tests = {}
    for name, run in runs.items():
        validation = (
            json.loads((run / "validation.json").read_text())["mean"] if (run / "validation.json").is_file() else {}
        )
        test = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
        tests[name] = test
        mean = test.get("mean", {})
        covered = (
            f" ({mean['pixel_categories']}/{mean['image_categories']})"
            if mean.get("pixel_categories") is not None and mean.get("pixel_categories") != mean.get("image_categories")
            else ""
        )
        epoch = last_epoch(run)
        terms = ", ".join(
            f"{k} {float(v):.3f}" for k, v in epoch.items() if k not in ("epoch", "seconds", "images_per_s")
        )
        cost = time_file(run)
        cells = [percent(validation.get(k)) for k, _ in METRICS] + [
            percent(mean.get("image_auroc")),
            percent(mean.get("pixel_auroc")) + covered,
            percent(mean.get("aupro")) + covered,
        ]
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {epoch.get('epoch', '')} | {terms} | {cost['wall']} | {cost['rss']} |"
        )
    categories = sorted({c for test in tests.values() for c in test if c != "mean"})
    validations = {
        name: json.loads((run / "validation.json").read_text()) if (run / "validation.json").is_file() else {}
        for name, run in runs.items()
    }
    for key, label in METRICS[:2]:
        lines += per_category_table(f"Validation {label}", validations, key, categories)
    for key, label in METRICS:
        lines += per_category_table(f"Test {label}", tests, key, categories)
    lines += ["", "## Settings (differences from each model's preset)", ""]
    lines += [f"- {name}: {changed_settings(run)}" for name, run in runs.items()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
