#!/usr/bin/env bash
# Run configs/experiments/gpu.yaml on a GPU machine within a time budget, 4 runs at a time.
# Jobs go in priority order (main models x 3 seeds, then ablations, then one-class);
# whatever is unfinished at the deadline is stopped cleanly (SIGTERM saves a resumable
# checkpoint) and left out of the tables. Usage:
#   DATA=.device_data/realad256 OUT_DIR=runs/exp-gpu BUDGET_S=480 bash scripts/device_experiment.sh
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-.device_data/realad256}
OUT_DIR=${OUT_DIR:-runs/exp-gpu}
BUDGET_S=${BUDGET_S:-480}
PARALLEL=${PARALLEL:-4}
SNLAD=${SNLAD:-python3 -m snlad.cli}
EXP=${EXP:-configs/experiments/gpu.yaml}
export DEADLINE=$(( $(date +%s) + BUDGET_S ))
export DATA OUT_DIR SNLAD EXP
jobs() {
  for seed in 0 1 2; do for m in fd snl-fd rd snl-rd; do echo "multi-class $m $seed"; done; done
  for m in snl-fd-no-spatial snl-fd-no-intra snl-fd-no-inter snl-fd-no-cram snl-fd-no-structural-map \
           snl-rd-no-spatial snl-rd-no-intra snl-rd-no-inter snl-rd-no-cram snl-rd-no-structural-map; do
    echo "multi-class $m 0"; done
  for m in fd snl-fd rd snl-rd; do echo "one-class $m 0"; done
}
run_job() {
  local mode=$1 name=$2 seed=$3 left=$(( DEADLINE - $(date +%s) ))
  if [ "$left" -lt 40 ]; then echo "skip $mode $name $seed (deadline)"; return 0; fi
  local start=$(date +%s)
  timeout -s TERM "$left" $SNLAD --quiet experiment --experiment "$EXP" --data "$DATA" --out "$OUT_DIR" \
    --only "$name" --seeds "$seed" --modes "$mode" >/dev/null 2>"$OUT_DIR/logs/$mode-$name-$seed.err"
  echo "done $mode $name seed $seed rc=$? in $(( $(date +%s) - start )) s"
}
export -f run_job
mkdir -p "$OUT_DIR/logs"
jobs | xargs -P "$PARALLEL" -L 1 bash -c 'run_job $0 $1 $2'
$SNLAD --quiet experiment --experiment "$EXP" --data "$DATA" --out "$OUT_DIR" --tables-only
