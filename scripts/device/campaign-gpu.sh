#!/usr/bin/env bash
# Campaign runs on a lent GPU machine (issue 19) in one call of the device tool, several runs side by side.
#   scripts/device/campaign-gpu.sh QUEUE [PARALLEL] [SECONDS]
# QUEUE: one run per line, "EXPERIMENT.yaml NAME SEED MODE" (# comments allowed), started in order, PARALLEL at a
# time (default 8), each with 2 compute threads; no run starts after SECONDS (default 480) and the ones still going
# are stopped then. The data travel as the lossless 256-px WebP copy .devcarry/data.tar (scripts/device/shrink_data.py,
# webp.py pack, then tar of realad and realad-val: the model sees the same tensors as from ../shared) and the
# teachers as .devpkgs (scripts/device/trim_teachers.py; Lite2 alone fits beside the data). Finished runs (metrics,
# validation, train log; no model files) and every run's log come back in $OUT/runs.tar.gz, refreshed every 30 s,
# so a call cut short still returns what finished; bring them into docs/results with scripts/device/import_runs.py.
# TF32 is off (NVIDIA_TF32_OVERRIDE=0): float32 as on CPU. The whole transfer (working tree + carry) must stay under
# 64 MiB: with the data (about 46 MiB) and one teacher, move docs/results' other folders (interference, realad10,
# device-*), data/demo and docs/*.png aside for the call and back after it; keep patchcore and campaign-* (references).
set -uo pipefail
queue=$1; parallel=${2:-8}; seconds=${3:-480}
out=${OUT:-/tmp/gpu-out}; work=${WORK:-/tmp/gpu-work}
data=$work/data; runs=$work/runs
mkdir -p "$out" "$runs/logs"
export PYTHONUNBUFFERED=1 NVIDIA_TF32_OVERRIDE=0 PYTHONPATH=$PWD/src:$PWD/.devpkgs${PYTHONPATH:+:$PYTHONPATH}
python=${PYTHON:-python3}
# Every experiment file the queue names must load here before any device time goes into data: its references
# (e.g. docs/results/patchcore) have to travel too when the working tree is trimmed to fit the transfer.
for experiment in $(grep -v '^ *#' "$queue" | awk 'NF {print $1}' | sort -u); do
  "$python" -c "import sys; from snlad.runs.experiments import load_experiment; load_experiment(sys.argv[1])" \
    "$experiment" || { echo "cannot load $experiment: nothing run" >&2; exit 1; }
done
mkdir -p "$work/webp"
tar -xf .devcarry/data.tar -C "$work/webp" || exit 1  # one file: the transfer counts each small file's blocks
for root in realad realad-val; do
  [ -d "$data/$root" ] || "$python" scripts/device/webp.py unpack "$work/webp/$root" "$data/$root" || exit 1
done
machine=$("$python" -c "
import os, platform, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'
print(f'{gpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}, TF32 off')")
echo "machine: $machine" | tee "$runs/logs/machine.txt"

pack() {  # atomically, so an interrupted call still returns a whole archive
  (cd "$runs" && tar --exclude=model.pt --exclude=checkpoint.pt --exclude=.lock -czf "$out/runs.tmp.tgz" . &&
    mv "$out/runs.tmp.tgz" "$out/runs.tar.gz")
}
run_one() {  # EXPERIMENT NAME SEED MODE: one run into its own folder (tables of parallel runs never collide)
  local experiment=$1 name=$2 seed=$3 mode=$4 tag folder started
  tag=$(basename "$experiment" .yaml)--$name--$seed--$mode
  folder=$runs/$tag
  started=$(date +%s)
  [ $((deadline - started)) -ge 10 ] || { echo "not started $tag: past the deadline"; return; }
  if timeout --signal=INT --kill-after=20 $((deadline - started)) "$python" -m snlad.cli --quiet --threads 2 experiment \
      --experiment "$experiment" --data "$data/realad" --real-defects "$data/realad-val" --out "$folder" \
      --only "$name" --seeds "$seed" --modes "$mode" > "$runs/logs/$tag.log" 2>&1 &&
      [ -f "$folder/$mode/$name/seed$seed/metrics.json" ]; then
    local seconds_taken=$(($(date +%s) - started))
    printf '%s on %s in %d s\n' "$tag" "$machine" "$seconds_taken" > "$folder/$mode/$name/seed$seed/device.txt"
    echo "$tag" >> "$runs/logs/finished.txt"
    echo "finished $tag in $seconds_taken s"
  else
    echo "stopped or failed $tag after $(($(date +%s) - started)) s: $(tail -1 "$runs/logs/$tag.log")"
  fi
}

deadline=$(($(date +%s) + seconds))
(while sleep 30; do pack; done) & packer=$!
running=0
while read -r experiment name seed mode; do
  case $experiment in ''|'#'*) continue ;; esac
  [ "$(date +%s)" -lt "$deadline" ] || break
  if [ "$running" -ge "$parallel" ]; then wait -n; running=$((running - 1)); fi
  run_one "$experiment" "$name" "$seed" "$mode" & running=$((running + 1))
done < "$queue"
others=$(jobs -p | grep -vx "$packer")
[ -z "$others" ] || wait $others
kill "$packer" 2>/dev/null
pack
echo "finished runs: $(wc -l < "$runs/logs/finished.txt" 2>/dev/null || echo 0)"
