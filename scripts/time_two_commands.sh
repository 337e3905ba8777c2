#!/usr/bin/env bash
# Time the README's two commands on a fresh clone of this repository's HEAD, as a new user runs them:
# `bash scripts/demo.sh` twice in a row (the second replaces the first), then `.venv/bin/python -m pytest`
# while another CPU-heavy process runs (a spinning Python process started here, killed at the end).
# Writes the numbers, the commit, the machine and its load to docs/results/two-commands.md, which the
# README's timing paragraph cites. Costs the demo twice and the suite once: minutes of every core.
# Usage: scripts/time_two_commands.sh [OUT.md]
#   NOTE="..." scripts/time_two_commands.sh   adds a sentence on what else ran on the machine to the file.
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
started="$(date -u +%H:%M)"
demo_first="$(timed bash scripts/demo.sh)"
demo_again="$(timed bash scripts/demo.sh)"
grep -q "demo: replacing the earlier demo in runs/demo" "$work/log.txt"
load_demo="$(cut -d' ' -f1-3 /proc/loadavg)"
python3 -c 'import time
end = time.monotonic() + 3600
while time.monotonic() < end: pass' &
busy=$!
start=$SECONDS  # the suite's outcome is a result too: a failure is recorded, not a reason to write nothing
.venv/bin/python -m pytest -q -p no:cacheprovider >"$work/log.txt" 2>&1 || true
tests=$((SECONDS - start))
summary="$(grep -E '[0-9]+ (passed|failed|errors?)' "$work/log.txt" | tail -1 | tr -d '=' | xargs)"  # not the last line: warnings end with a docs link
failed="$(grep '^FAILED' "$work/log.txt" | cut -c1-160 | sed 's/^/    /' || true)"
load_tests="$(cut -d' ' -f1-3 /proc/loadavg)"
kill "$busy"
busy=""
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
avx512="$(grep -q avx512f /proc/cpuinfo && echo ", AVX-512" || true)"
mem="$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
virt="$(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1)"

cat >"$out" <<TABLE
# The README's two commands, timed

\`scripts/time_two_commands.sh\` on a fresh clone of commit $commit, $(date -u +%Y-%m-%d),
started $started UTC, on $(nproc) cores ($cpu$avx512, $mem${virt:+, a $virt VM}).
Load average (1/5/15 min) before: $load_before; after the two demos: $load_demo; at the end of the
suite: $load_tests (the spinning process adds 1).${NOTE:+ $NOTE}

| command | wall |
|---|---|
| \`bash scripts/demo.sh\` (fresh clone: creates .venv, installs, trains, calibrates, tests, predicts, reports) | $(minutes "$demo_first") |
| \`bash scripts/demo.sh\` again (replaces runs/demo) | $(minutes "$demo_again") |
| \`.venv/bin/python -m pytest\` with a spinning CPU-heavy process alongside | $(minutes "$tests") ($summary) |
TABLE
[ -z "$failed" ] || printf '\nFailed tests:\n\n%s\n' "$failed" >>"$out"
echo "$out"
