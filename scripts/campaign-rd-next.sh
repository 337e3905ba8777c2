#!/usr/bin/env bash
# The RD campaign's remaining order (issue 19), one command for whichever session continues it:
# finished runs are skipped, so rerunning this after an interruption picks up where it stopped.
#   scripts/campaign-rd-next.sh          # everything below, in order (one process)
#   scripts/campaign-rd-next.sh a & scripts/campaign-rd-next.sh b &   # two lanes at once, one thread each
# The two lanes never share a run, so on a 2-core machine both go on side by side (each run still one commit).
# Lane a: the screen and the one-class runs.
#   1. the screen rows around the leader (bottleneck noise, the weight sweep, the KL spatial term at weight 0.1),
#      seed 0, after the stage-2 seeds of the two leaders by val score (rd-perpos, snl-rd-aff10) and of the RD
#      preset (inside the tie band with rd-perpos: the baseline's other reading gets its seeds too);
#   2. one-class runs (seed 0) of the stage-2 pair (issue 19: SNL-RD must lose less from one-class to
#      multi-class than RD), RD++'s projection on RD and on RD per-position, then seeds 1-2 of rd-perpos-proj
#      (its seed 0 has the best val score of any RD setting: 77.3, against rd-proj's 76.4 and rd-perpos's 75.4),
#      and its one-class run (seed 0: the final RD's one-class to multi-class drop, if it holds at 3 seeds),
#      then the final RD on Lite2 (rd-perpos-proj-lite2: snl-rd-aff10-lite2 led its Lite0 row beyond the band),
#      then the untried hypotheses on the validated pair (stage 1c: a CRAM that holds the normal space, both
#      readings, and RD4AD's decoder depth on snl-rd-aff10, the depth on rd-perpos too; at affinity weights 1 a
#      gain could not reach the leader), then seeds 1-2 of rd-proj (inside the tie band with it: the published
#      RD++ form gets its seeds too). The training length comes before them (rd-e10, rd-e60 on the RD preset,
#      60 epochs on snl-rd-aff10). The screen's affinity-weight-1 rows for CRAM, depth and length (snl-rd-cram-commit,
#      snl-rd-cram-bottleneck, rd-deep, snl-rd-deep, snl-rd-e60) are left out: stage 1c screens the same switches
#      on the validated pair, and at weight 1 SNL-RD is 3.3 val points under it (campaign README).
# Lane b: stage 2 and 3.
#   3. the second and third SNL-RD settings by val score get 3 seeds: snl-rd-aff30 (76.5, 2 seeds) and
#      snl-rd-aff10-noise (77.1 at seed 0, tied with snl-rd-aff10);
#   4. the ablation of the final SNL-RD (snl-rd-aff10), each part removed, seed 0 for all four (RD++'s projection
#      on the leader, snl-rd-aff10-proj, between the second and third), then seeds 1-2. Whether the projection
#      rows get seeds 1-2 on the SNL side is decided on their seed-0 val score (campaign README).
# Then EfficientNet-Lite2 as the teacher of the final pair, seed 0 (rd-perpos-proj, the best validated RD, in lane
# a, snl-rd-aff10 in lane b; rd-perpos too; seeds 1-2 only for a Lite2 row that leads its Lite0 row beyond the band),
# then the FD pair with the RD pair's winning change (configs/experiments/campaign-fd.yaml; issue 19 part 3),
# 3 seeds multi-class and seed 0 one-class each: fd in lane a, snl-fd-aff10 in lane b, the SNL-FD preset last.
# Results go to $RESULTS/campaign-rd and $RESULTS/campaign-fd (default: this checkout's docs/results).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
lane=${1:-all}
case $lane in a|b|all) ;; *) echo "usage: $0 [a|b|all]" >&2; exit 2 ;; esac
results=${RESULTS:-$here/docs/results}
run() { "$here/scripts/campaign.sh" "$here/configs/experiments/$1.yaml" "$results/$1" "${@:2}"; }
a() { [ "$lane" = b ] || run campaign-rd "$@"; }
b() { [ "$lane" = a ] || run campaign-rd "$@"; }
# The ablation of a map term needs no training: the finished runs scored again with another map, test and
# real-defect validation side by side in campaign-rd/ablation/NAME-VARIANT/seedK (reference rows of the tables).
rescore_b() {
  [ "$lane" = a ] && return
  local name=$1 variant=$2 setting=$3 seed src dst
  for seed in 0 1 2; do
    src=$results/campaign-rd/multi-class/$name/seed$seed dst=$results/campaign-rd/ablation/$name-$variant/seed$seed
    [ -f "$dst/validation-real.json" ] && continue
    "$here/.venv/bin/python" -m snlad.cli --quiet --threads 1 test --run "$src" --data "$here/../shared/data/realad" \
      --set "$setting" --out "$dst" --overwrite >/dev/null &&
    "$here/.venv/bin/python" -m snlad.cli --quiet --threads 1 validate --run "$src" \
      --real-defects "$here/../shared/data/realad-val" --set "$setting" --out "$dst" --overwrite &&
    git -C "$results" add -- "$dst" && git -C "$results" commit -q -m "campaign campaign-rd: $name-$variant seed $seed (rescored: $setting)" -- "$dst"
  done
}
fd_a() { [ "$lane" = b ] || run campaign-fd "$@"; }
fd_b() { [ "$lane" = a ] || run campaign-fd "$@"; }
a --seeds 0 --only snl-rd-aff10-kl --modes multi-class
a --seeds 1 --only rd-perpos,snl-rd-aff10 --modes multi-class
a --seeds 2 --only rd-perpos,snl-rd-aff10 --modes multi-class
a --seeds 0 --only snl-rd-aff30 --modes multi-class
a --seeds 1,2 --only rd --modes multi-class
a --seeds 0 --only rd-noise,snl-rd-noise,snl-rd-aff10-noise,snl-rd-aff3,snl-rd-aff10-kl01 --modes multi-class
a --seeds 0 --only rd-perpos,snl-rd-aff10 --modes one-class
a --seeds 0 --only rd-proj,rd-perpos-proj --modes multi-class
a --seeds 1,2 --only rd-perpos-proj --modes multi-class
a --seeds 0 --only rd-perpos-proj --modes one-class
# Lite2 first since snl-rd-aff10-lite2 (seed 0: val 80.2) led its Lite0 row beyond the band: the final RD on Lite2.
a --seeds 0 --only rd-perpos-proj-lite2 --modes multi-class
a --seeds 0 --only snl-rd-aff10-cram-commit,snl-rd-aff10-cram-bottleneck,rd-perpos-deep,snl-rd-aff10-deep --modes multi-class
a --seeds 0 --only rd-e10,rd-e60 --modes multi-class  # snl-rd-aff10-e60: after the Lite2 rows below
b --seeds 1,2 --only snl-rd-aff30,snl-rd-aff10-noise --modes multi-class
rescore_b snl-rd-aff10 no-map-term map.beta=0
b --seeds 0 --only snl-rd-aff10-no-cram,snl-rd-aff10-no-intra --modes multi-class
b --seeds 0 --only snl-rd-aff10-proj --modes multi-class
b --seeds 0 --only snl-rd-aff10-no-inter,snl-rd-aff10-no-spatial --modes multi-class
b --seeds 1,2 --only snl-rd-aff10-no-cram,snl-rd-aff10-no-intra,snl-rd-aff10-no-inter,snl-rd-aff10-no-spatial --modes multi-class
b --seeds 0 --only snl-rd-aff10-lite2 --modes multi-class
b --seeds 1,2 --only snl-rd-aff10-lite2 --modes multi-class  # it led its Lite0 row by 2.5 at seed 0
# 2026-12-04: the device call (scripts/device/queue-2026-12-04.txt) took the Lite2 pair to 3 seeds and one-class,
# fd-lite2 seed 0 and the Lite2 ablation's no-cram and no-intra rows at seed 0. snl-rd-aff10-lite2 is the best
# validated SNL-RD now (80.1 against 77.1 on Lite0), so its ablation is the final one; the FD pair follows on Lite2.
# Lane b first reruns one device run here (snl-rd-aff10-lite2 seed 1, into device-2026-12-04/cpu-check): the same
# run on both machines, and a model file here for cram_identity on the final SNL-RD.
# The rerun gave val 80.0 against the device's 81.4 (test I 72.7 against 75.4): a seed on another machine is
# another draw. So rd-perpos-proj-lite2 seed 0 is rerun here too (lane a, after the 10-epoch seed 1): with
# snl-rd-aff10-lite2's CPU seed 0, the pair is compared on one machine as well.
check() {
  local who=$1; shift
  [ "$lane" = all ] || [ "$lane" = "$who" ] || return 0
  "$here/scripts/campaign.sh" "$here/configs/experiments/campaign-rd.yaml" "$results/device-2026-12-04/cpu-check" "$@"
}
check b --seeds 1 --only snl-rd-aff10-lite2 --modes multi-class
# Ten epochs beat thirty on the RD preset (rd-e10 val 76.5, rd 74.5, rd-e60 73.7): the Lite2 pair at 10 epochs.
a --seeds 0 --only snl-rd-aff10-lite2-e10 --modes multi-class
b --seeds 0 --only rd-perpos-proj-lite2-e10 --modes multi-class
# rd-perpos-proj-lite2-e10 (val 82.2 at seed 0) leads the 30-epoch row's 3-seed mean (80.5) beyond the band: seeds
# 1-2; snl-rd-aff10-lite2-e10 (79.5) does not, but gets them too (10-epoch runs are cheap), so the pair stays paired.
b --seeds 1,2 --only rd-perpos-proj-lite2-e10 --modes multi-class
# At 3 seeds the 10-epoch rows tie their 30-epoch rows on validation (RD 81.4 against 80.5, SNL-RD 80.1 against
# 80.1): by the tie rule the shorter training wins for both, so the final pair is the 10-epoch one and its
# one-class runs come first.
a --seeds 0 --only rd-perpos-proj-lite2-e10 --modes one-class
b --seeds 0 --only snl-rd-aff10-lite2-e10 --modes one-class
# 2026-12-04, third session: the device call (scripts/device/queue-2026-12-04c.txt) took the final ablation, the FD
# pair at the final settings (3 seeds + one-class), cram-usage, the 30-epoch Lite2 ablation's seeds and fd-lite2 seed 1.
# fd-lite2 (30 epochs, 2 seeds: val 82.7) leads fd-lite2-e10 (81.1, 3 seeds) by 1.6, just beyond the band: FD's
# 30-epoch rows come first here, so FD's best validated length is settled at 3 seeds and SNL-FD gets the same length.
# cram-usage is rerun here first (cpu-check) for a model file to read with scripts/cram_identity.py.
check a --seeds 0 --only snl-rd-aff10-lite2-cram-usage --modes multi-class
fd_a --seeds 0 --only snl-fd-aff10-lite2 --modes multi-class
fd_b --seeds 2 --only fd-lite2 --modes multi-class
# cram-usage's centres collapsed with the usage term flat at its start value (softmax saturated): the same with
# the soft k-means start (model.cram_init=kmeans-soft), then scripts/cram_identity.py on it.
a --seeds 0 --only snl-rd-aff10-lite2-cram-usage-soft --modes multi-class
# Its seed 0 is the first CRAM whose centres carry the features and stay in use (cram_identity): seeds 1-2 (lane b,
# after fd-lite2 seed 2; 10-epoch runs fit the rest of a session, a 30-epoch SNL-FD does not).
b --seeds 1,2 --only snl-rd-aff10-lite2-cram-usage-soft --modes multi-class
fd_b --seeds 1 --only snl-fd-aff10-lite2 --modes multi-class
fd_a --seeds 2 --only snl-fd-aff10-lite2 --modes multi-class
# The final pair's ablation (lane a) and the FD pair at the final settings (lane b), ahead of the 30-epoch rows.
a --seeds 0,1,2 --only snl-rd-aff10-lite2-e10-no-cram,snl-rd-aff10-lite2-e10-no-intra,snl-rd-aff10-lite2-e10-no-inter,snl-rd-aff10-lite2-e10-no-spatial --modes multi-class
# The final SNL-RD's fifth ablation row: its own three runs (model files on the machine that trained them: the
# project's CPU VM, 2026-12-04) scored without the map's structural term.
rescore_b snl-rd-aff10-lite2-e10 no-map-term map.beta=0
fd_b --seeds 0,1,2 --only fd-lite2-e10,snl-fd-aff10-lite2-e10 --modes multi-class
fd_b --seeds 0 --only fd-lite2-e10,snl-fd-aff10-lite2-e10 --modes one-class
a --seeds 1 --only snl-rd-aff10-lite2-e10 --modes multi-class
check a --seeds 0 --only rd-perpos-proj-lite2 --modes multi-class
a --seeds 0 --only snl-rd-aff10-lite2-cram-usage --modes multi-class  # then scripts/cram_identity.py on it
a --seeds 2 --only snl-rd-aff10-lite2-e10 --modes multi-class
a --seeds 0 --only snl-rd-aff10-lite2-no-inter,snl-rd-aff10-lite2-no-spatial --modes multi-class
a --seeds 1,2 --only snl-rd-aff10-lite2-no-cram,snl-rd-aff10-lite2-no-intra,snl-rd-aff10-lite2-no-inter,snl-rd-aff10-lite2-no-spatial --modes multi-class
fd_b --seeds 0 --only snl-fd-aff10-lite2 --modes multi-class
fd_b --seeds 1,2 --only fd-lite2,snl-fd-aff10-lite2 --modes multi-class
fd_b --seeds 0 --only fd-lite2,snl-fd-aff10-lite2 --modes one-class
a --seeds 1,2 --only rd-proj --modes multi-class
# 2026-12-04, fourth session: two device calls (queue-2026-12-04d/e.txt) settled SNL-FD's length (30 epochs tie
# 10: 10 stays), ran the affinity grid 32 and the cosine schedule on the final RD pair (3 seeds; neither better) and
# the final four's one-class runs at 3 seeds. The grid's other direction (8) is screened here; seeds 1-2 only if it
# leads the final SNL-RD (80.1) beyond the band. The 30-epoch one-class runs of the RD pair (seed 0 only) lead or tie
# the 10-epoch references on one-class validation: seeds 1-2 of both decide the one-class reference; SNL-FD's
# 30-epoch one-class row (seed 0: val 84.5 against 80.5 at 10 epochs) likewise, last (about 2 h a run here).
b --seeds 0 --only snl-rd-aff10-lite2-e10-aff8 --modes multi-class
# Its seed 0 (80.6) ties the final SNL-RD (80.1 at 3 seeds): a tie with the cheaper grid, which by the tie rule
# would replace the preset's 16 if it held at 3 seeds, so seeds 1-2.
b --seeds 1,2 --only snl-rd-aff10-lite2-e10-aff8 --modes multi-class
# At 3 seeds the grid of 8 ties 16 (81.3 ± 1.0 against 80.1 ± 0.6): the cheaper grid wins the tie, so SNL-RD's
# final setting takes it, and SNL-FD gets the same change (issue 19 part 3) before anything else.
fd_b --seeds 0,1,2 --only snl-fd-aff10-lite2-e10-aff8 --modes multi-class
# The final SNL-RD's ablation again on its final grid (8), 3 seeds; the map term's row is a rescoring (no training).
a --seeds 0,1,2 --only snl-rd-aff10-lite2-e10-aff8-no-cram,snl-rd-aff10-lite2-e10-aff8-no-intra,snl-rd-aff10-lite2-e10-aff8-no-inter,snl-rd-aff10-lite2-e10-aff8-no-spatial --modes multi-class
rescore_b snl-rd-aff10-lite2-e10-aff8 no-map-term map.beta=0
b --seeds 0,1,2 --only snl-rd-aff10-lite2-e10-aff8 --modes one-class  # the final SNL-RD's one-class reference
# SNL-FD's grid 8 tied 16 too: the final SNL-FD's one-class runs, split over both lanes (seed 2 in lane a, after
# the ablation) so the final four's one-class table lands within one session on the 2-core VM (2026-12-04, fifth).
fd_b --seeds 0,1 --only snl-fd-aff10-lite2-e10-aff8 --modes one-class
fd_a --seeds 2 --only snl-fd-aff10-lite2-e10-aff8 --modes one-class
# Issue 19 closed here (2026-12-04, fifth session; campaign-rd/README.md "Outcome"). What follows cannot change the
# final pairs: the 30-epoch one-class references' remaining seeds (not the reference by the tie rule), then rows
# the campaign passed over.
a --seeds 1,2 --only rd-perpos-proj-lite2 --modes one-class
b --seeds 1,2 --only snl-rd-aff10-lite2 --modes one-class
fd_a --seeds 1 --only snl-fd-aff10-lite2 --modes one-class
fd_b --seeds 2 --only snl-fd-aff10-lite2 --modes one-class
a --seeds 0 --only snl-rd-aff10-e60 --modes multi-class
a --seeds 0,1,2 --only rd-perpos-lite2 --modes multi-class
fd_a --seeds 0,1,2 --only fd --modes multi-class
fd_b --seeds 0,1,2 --only snl-fd-aff10 --modes multi-class
fd_a --seeds 0 --only fd --modes one-class
fd_b --seeds 0 --only snl-fd-aff10 --modes one-class
fd_a --seeds 0 --only snl-fd --modes multi-class
