#!/usr/bin/env bash
# Run an experiment's configurations one at a time, in the file's order, and commit each finished run's results
# (metrics, validation, train log, config; never model files) as it lands, so a campaign spans sessions and machines.
#   scripts/campaign.sh EXPERIMENT.yaml OUT [snlad experiment options, e.g. --seeds 0 --only a,b]
# Environment: THREADS (default 1, leaving the other core free), DATA (../shared/data/realad),
# REAL (../shared/data/realad-val), COMMIT=0 to leave the results uncommitted, SNLAD (the snlad command).
# Runs whose results exist (committed or not) are skipped by the runner itself.
set -euo pipefail
experiment=$1; out=$2; shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
data=${DATA:-$here/../shared/data/realad}
real=${REAL:-$here/../shared/data/realad-val}
snlad=${SNLAD:-$here/.venv/bin/python -m snlad.cli}
repo=$(git -C "$(dirname "$out")" rev-parse --show-toplevel 2>/dev/null || true)
names=$("$here/.venv/bin/python" -c "import sys, yaml; print(' '.join(yaml.safe_load(open(sys.argv[1]))['configurations']))" "$experiment")
for name in $names; do
  code=$(git -C "$here" rev-parse --short HEAD)  # the code this run starts on (the tree may move on meanwhile)
  $snlad --quiet --threads "${THREADS:-1}" experiment --experiment "$experiment" --data "$data" --real-defects "$real" \
    --out "$out" --only "$name" "$@" || { echo "campaign: $name failed (exit $?)" >&2; continue; }
  if [ "${COMMIT:-1}" = 1 ] && [ -n "$repo" ]; then
    for try in 1 2 3 4 5; do  # another git command may hold the index for a moment
      git -C "$repo" add -- "$out" || { sleep 5; continue; }
      git -C "$repo" diff --cached --quiet -- "$out" && break  # nothing new: every run was already there
      if git -C "$repo" commit -q -m "campaign $(basename "$out"): $name results ($code code)" -- "$out"; then
        break
      fi
      sleep 5
    done
  fi
done
