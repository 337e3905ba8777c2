#!/usr/bin/env bash
# One experiment run on the ten-category realad: train (wall time and peak RSS in OUT.time), test, validate.
#   scripts/run_realad.sh OUT MODEL [--set section.key=value ...]
# Results: OUT/metrics.{md,json,csv}, OUT/validation.{md,json}, OUT/train_log.csv, OUT.time, OUT.log.
# Tabulate several with scripts/runs_table.py. DATA defaults to ../shared/data/realad.
set -euo pipefail
out=$1; model=$2; shift 2
data=${DATA:-../shared/data/realad}
cd "$(dirname "$0")/.."
mkdir -p "$(dirname "$out")"
/usr/bin/time -v -o "$out.time" .venv/bin/python -m snlad.cli --quiet train --data "$data" --model "$model" --out "$out" --overwrite "$@" > "$out.log" 2>&1
.venv/bin/python -m snlad.cli --quiet test --run "$out" --data "$data" >> "$out.log" 2>&1
.venv/bin/python -m snlad.cli --quiet validate --run "$out" --data "$data" >> "$out.log" 2>&1
