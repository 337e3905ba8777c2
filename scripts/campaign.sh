#!/usr/bin/env bash
# Run an experiment's configurations one at a time, in the file's order, and commit each finished run's results
# (metrics, validation, train log, config; never model files) as it lands, so a campaign spans sessions and machines.
#   scripts/campaign.sh EXPERIMENT.yaml OUT [--seeds 0,1] [--only a,b] [other snlad experiment options]
# Each (configuration, seed) is its own snlad call and its own commit, in the file's configuration order, seed by seed.
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
only=""; seeds=""; modes="*"; rest=()
while [ $# -gt 0 ]; do
  case $1 in
    --only) only=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --modes) modes=$2; rest+=("$1" "$2"); shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
pairs=$("$here/.venv/bin/python" -c "
import sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
only = [n for n in sys.argv[2].split(',') if n]
unknown = [n for n in only if n not in values['configurations']]
if unknown: sys.exit(f'campaign: unknown configuration(s) {unknown} in {sys.argv[1]}')
seeds = [int(s) for s in sys.argv[3].split(',')] if sys.argv[3] else values.get('seeds', [0])
print(' '.join(f'{n}:{s}' for n in values['configurations'] if not only or n in only for s in seeds))
" "$experiment" "$only" "$seeds")
for pair in $pairs; do
  name=${pair%%:*}; seed=${pair##*:}
  code=$(git -C "$here" rev-parse --short HEAD)  # the code this run starts on (the tree may move on meanwhile)
  $snlad --quiet --threads "${THREADS:-1}" experiment --experiment "$experiment" --data "$data" --real-defects "$real" \
    --out "$out" --only "$name" --seeds "$seed" ${rest[@]+"${rest[@]}"} || { echo "campaign: $name seed $seed failed (exit $?)" >&2; continue; }
  if [ "${COMMIT:-1}" = 1 ] && [ -n "$repo" ]; then
    # Only what the runner wrote: this run's folder in the modes it ran (a stopped run of the same name in
    # another mode is left for its own call) and the tables; a hand-edited file in $out (the campaign's
    # README) is not swept into a results commit.
    written=()
    IFS=, read -ra mode_list <<< "$modes"
    for mode in "${mode_list[@]}"; do written+=("$out/$mode/$name/seed$seed/*"); done
    written+=("$out/results-*" "$out/summary-*")
    for try in 1 2 3 4 5; do  # another git command may hold the index for a moment
      git -C "$repo" add -- "${written[@]}" || { sleep 5; continue; }
      git -C "$repo" diff --cached --quiet -- "${written[@]}" && break  # nothing new: every run was already there
      message="campaign $(basename "$out"): $name seed $seed results ($code code)"
      if git -C "$repo" diff --cached --quiet -- "${written[0]}"; then  # the run was there already: tables only
        message="campaign $(basename "$out"): tables rewritten ($code code; $name seed $seed was already done)"
      fi
      if git -C "$repo" commit -q -m "$message" -- "${written[@]}"; then
        break
      fi
      sleep 5
    done
  fi
done
