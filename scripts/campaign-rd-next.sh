#!/usr/bin/env bash
# The RD campaign's remaining order (issue 19), one command for whichever session continues it:
# finished runs are skipped, so rerunning this after an interruption picks up where it stopped.
#   1. snl-rd-aff10-kl (the screen row running when this order was last changed);
#   2. stage 2 early for the two leaders by val score (rd-perpos, snl-rd-aff10), seed by seed, so the 3-seed
#      comparison exists as soon as possible (the 2-core machine trains one SNL-RD run in 20-60 min);
#   3. the weight sweep's snl-rd-aff30, then seeds 1 and 2 of the RD preset rd (inside the tie band with
#      rd-perpos: the baseline's other reading gets its seeds too);
#   4. bottleneck noise (both models, and on the leader snl-rd-aff10), the weight sweep's aff3 and the KL spatial
#      term at weight 0.1 with affinity weights 10;
#   5. one-class runs (seed 0) of the stage-2 pair, rd-perpos and snl-rd-aff10 (issue 19: SNL-RD must lose less
#      from one-class to multi-class than RD), then the rest of the screen in the file's order (multi-class only).
# Stage 2's final three SNL-RD settings are chosen on the screen's val score once it is complete (README).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
run() { "$here/scripts/campaign.sh" "$here/configs/experiments/campaign-rd.yaml" "${OUT:-$here/docs/results/campaign-rd}" "$@"; }
run --seeds 0 --only snl-rd-aff10-kl --modes multi-class
run --seeds 1 --only rd-perpos,snl-rd-aff10 --modes multi-class
run --seeds 2 --only rd-perpos,snl-rd-aff10 --modes multi-class
run --seeds 0 --only snl-rd-aff30 --modes multi-class
run --seeds 1,2 --only rd --modes multi-class
run --seeds 0 --only rd-noise,snl-rd-noise,snl-rd-aff10-noise,snl-rd-aff3,snl-rd-aff10-kl01 --modes multi-class
run --seeds 0 --only rd-perpos,snl-rd-aff10 --modes one-class
run --seeds 0 --modes multi-class
