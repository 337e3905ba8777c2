"""Choose the anomaly map's beta and image score on held-out normals + synthetic anomalies.

For each run: the validation set of `snlad.selection.synthetic_validation`
(training images only), every (beta, image score) scored with one pass of the
networks. Writes a Markdown table. Test images are never read.

    python scripts/select_map.py --data ../shared/data/realad --out docs/results/selection-map.md RUN...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from snlad.engine.run import load_run
from snlad.files import atomic_write_text
from snlad.selection import map_grid, synthetic_validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--betas", default="0,0.5,1,2")
    args = parser.parse_args()
    betas = [float(b) for b in args.betas.split(",")]
    lines = ["| run | beta | image score | I-AUROC | P-AUROC | AUPRO |", "|---|---|---|---|---|---|"]
    for run in args.runs:
        trained = next(iter(load_run(Path(run)).values()))
        batches = synthetic_validation(args.data, trained.config)
        for row in map_grid(trained, batches, betas, ["max", "topk"]):
            cells = " | ".join(f"{100 * row[k]:.1f}" for k in ("image_auroc", "pixel_auroc", "aupro"))
            lines.append(f"| {run} | {row['beta']} | {row['image_score']} | {cells} |")
            print(lines[-1], flush=True)
    atomic_write_text(Path(args.out), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
