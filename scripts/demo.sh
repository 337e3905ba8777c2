#!/usr/bin/env bash
# Set up, then the main job on the bundled demo data: train SNL multi-class,
# evaluate, write the metrics table, the heatmaps and the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
RUN=runs/demo
snlad train --data data/demo --model snl-fd --config configs/demo.yaml --out "$RUN" --overwrite
snlad test --run "$RUN" --data data/demo
snlad predict --run "$RUN" --category bottle data/demo/bottle/test/* --out "$RUN/predictions/bottle"
snlad report --run "$RUN" --data data/demo --out "$RUN/report" --overwrite
echo "metrics: $RUN/metrics.md  heatmaps: $RUN/predictions/bottle/overlays/  report: $RUN/report/index.html"
