#!/usr/bin/env bash
# The RD campaign's remaining order (issue 19), one command for whichever session continues it:
# finished runs are skipped, so rerunning this after an interruption picks up where it stopped.
#   1. the screen's most informative rows next (the weight sweep around the leader, its KL variant, inter-levels);
#   2. stage 2 early for the two leaders by val score (snl-rd-aff10, rd-perpos) and the RD preset (the baseline's
#      other reading, inside the tie band), seeds 1 and 2, so the 3-seed comparison exists as soon as possible;
#   3. the rest of the screen, in the file's order.
# Stage 2's final three SNL-RD settings are chosen on the screen's val score once it is complete (README).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
run() { "$here/scripts/campaign.sh" "$here/configs/experiments/campaign-rd.yaml" "${OUT:-$here/docs/results/campaign-rd}" "$@"; }
run --seeds 0 --only snl-rd-inter-levels,snl-rd-aff10-kl,snl-rd-aff30
run --seeds 1,2 --only rd-perpos,snl-rd-aff10
run --seeds 1,2 --only rd
run --seeds 0
