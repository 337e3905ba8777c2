#!/usr/bin/env bash
# Time the README's two commands on a fresh clone of this repository's HEAD, as a new user runs them:
# `bash scripts/demo.sh` twice in a row (the second replaces the first), then `.venv/bin/python -m pytest`
# while another CPU-heavy process runs (a spinning Python process started here, killed at the end).
# Writes the numbers, the commit, the machine and its load to docs/results/two-commands.md, which the
# README's timing paragraph cites. Costs the demo twice and the suite once: minutes of every core.
# Usage: scripts/time_two_commands.sh [OUT.md]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$repo/docs/results/two-commands.md}")"
work="$(mktemp -d)"
busy=""
trap '[ -n "$busy" ] && kill "$busy" 2>/dev/null; rm -rf "$work"' EXIT
git clone -q "$repo" "$work/snlad"
cd "$work/snlad"
commit="$(git rev-parse --short HEAD)"

timed() {  # run "$@" with its output in $work/log.txt; print its wall seconds, or its log tail and stop
    local start=$SECONDS
    "$@" >"$work/log.txt" 2>&1 || { tail -30 "$work/log.txt" >&2; exit 1; }
    echo $((SECONDS - start))
}
minutes() { printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
demo_first="$(timed bash scripts/demo.sh)"
demo_again="$(timed bash scripts/demo.sh)"
grep -q "demo: replacing the earlier demo in runs/demo" "$work/log.txt"
python3 -c 'import time
end = time.monotonic() + 3600
while time.monotonic() < end: pass' &
busy=$!
start=$SECONDS  # the suite's outcome is a result too: a failure is recorded, not a reason to write nothing
.venv/bin/python -m pytest -q -p no:cacheprovider >"$work/log.txt" 2>&1 || true
tests=$((SECONDS - start))
summary="$(tail -1 "$work/log.txt" | tr -d '=' | xargs)"
kill "$busy"
busy=""

cat >"$out" <<TABLE
# The README's two commands, timed

\`scripts/time_two_commands.sh\` on a fresh clone of commit $commit, $(date -u +%Y-%m-%d),
on $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)); load average before: $load_before
(other jobs on the machine: see the load).

| command | wall |
|---|---|
| \`bash scripts/demo.sh\` (fresh clone: creates .venv, installs, trains, calibrates, tests, predicts, reports) | $(minutes "$demo_first") |
| \`bash scripts/demo.sh\` again (replaces runs/demo) | $(minutes "$demo_again") |
| \`.venv/bin/python -m pytest\` with a spinning CPU-heavy process alongside | $(minutes "$tests") ($summary) |
TABLE
echo "$out"
