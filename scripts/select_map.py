"""Choose the anomaly map's settings (map.*) on validation images, without retraining and without test images.

For each run, every combination of the ``--grid`` values is scored with one pass of the networks
(`snlad.engine.selection.map_grid`) on either the real defects of ``--real-defects ROOT`` (e.g.
../shared/data/realad-val, disjoint from the test split) or held-out normals + cut-paste anomalies
(``--data ROOT``, the run's training root). Writes a Markdown table and a CSV beside it; the val
score is the mean of I- and P-AUROC, as in the campaign's tables.

    python scripts/select_map.py --real-defects ../shared/data/realad-val --out docs/results/x.md \\
        --grid beta=0,1 image_score=max,topk topk_fraction=0.01,0.05 sigma=2,4,8 -- RUN...
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import math
from pathlib import Path

from snlad.config import MapConfig
from snlad.engine.selection import map_grid, real_validation, synthetic_validation
from snlad.files import atomic_write_text
from snlad.runs.run import load_run
from snlad.runs.trained import distinct_models

METRICS = ("image_auroc", "pixel_auroc", "aupro")


def parse_grid(items: list[str]) -> list[dict[str, object]]:
    """``["beta=0,1", "image_score=max,topk"]`` -> every combination, typed like MapConfig's defaults.

    A ``topk_fraction`` is dropped from variants scored by the map's ``max`` (it would only repeat them).
    """
    axes: dict[str, list[object]] = {}
    for item in items:
        key, _, values = item.partition("=")
        default = getattr(MapConfig(), key)
        axes[key] = [type(default)(value) if default is not None else value for value in values.split(",")]
    variants: list[dict[str, object]] = []
    for combination in itertools.product(*axes.values()):
        variant = dict(zip(axes, combination, strict=True))
        if variant.get("image_score") == "max":
            variant.pop("topk_fraction", None)
        if variant not in variants:
            variants.append(variant)
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--real-defects", help="a root of real defects disjoint from the test split")
    source.add_argument("--data", help="the run's training root (held-out normals + cut-paste anomalies)")
    parser.add_argument("--out", required=True, help="Markdown table; the CSV goes beside it")
    parser.add_argument("--grid", nargs="+", default=["beta=0,0.5,1,2", "image_score=max,topk"], help="FIELD=V1,V2")
    args = parser.parse_args()
    variants = parse_grid(args.grid)
    keys = list(dict.fromkeys(key for variant in variants for key in variant))
    header = ["run", *keys, "I-AUROC", "P-AUROC", "AUPRO", "val score"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = []
    for run in args.runs:
        models = load_run(Path(run))
        if len(distinct_models(models)) > 1:
            raise SystemExit(f"{run}: one model per category; select_map scores one model (a multi-class run)")
        trained = next(iter(models.values()))
        if args.real_defects:
            batches = real_validation(args.real_defects, list(models), trained.config.data.image_size)
        else:
            batches = synthetic_validation(args.data, trained.config)
        for row in map_grid(trained, batches, variants):
            values = [100 * row[key] for key in METRICS]
            score = math.fsum(values[:2]) / 2
            rows.append([run, *(row.get(key, "") for key in keys), *(f"{v:.1f}" for v in values), f"{score:.1f}"])
            lines.append("| " + " | ".join(str(cell) for cell in rows[-1]) + " |")
            print(lines[-1], flush=True)
    out = Path(args.out)
    atomic_write_text(out, "\n".join(lines) + "\n")
    table = io.StringIO()
    csv.writer(table).writerows([header, *rows])
    atomic_write_text(out.with_suffix(".csv"), table.getvalue())


if __name__ == "__main__":
    main()
