#!/usr/bin/env bash
# Data-parallel training on GPUs: 2 ranks on run.device=cuda sum their
# gradients with NCCL (whole buffer, and in buckets during the backward) and
# train as 1 rank on the CPU does, losses within 1e-3 relative over 20 steps
# (as in test_train_cuda); run.device=auto agrees on one backend across the
# ranks. Any hang is cut off after 120 s (pretrain_in) and fails.
# Needs 2 usable GPUs (NCCL refuses two ranks on one GPU) or the CUDA
# emulator (bertrain-emu, whose NCCL is MPI); skipped (77) otherwise.
set -u
source "$SRC/tests/sh_util.sh"
source "$SRC/tests/dist_fixture.sh"
command -v "${MPIEXEC:-}" >/dev/null || skip "no MPI launcher (MPIEXEC='${MPIEXEC:-}')"
why=$(gpu_usable) || skip "no usable GPU ($why)"
v=$("$BERTRAIN" version | grep '^cuda:')
[[ $v =~ ([0-9]+)\ device ]] && { [ "${BASH_REMATCH[1]}" -ge 2 ] || [[ $v == *emulated* ]]; } ||
  skip "needs 2 GPUs or the CUDA emulator ($v)"

make_dist_data "$T_DIR/data" || { echo "FAIL: could not make the data set" >&2; exit 1; }
CFG=$T_DIR/data/tiny.ini

# max_rel A B: the largest relative difference of the loss column (3) of two
# metrics.csv files, and the number of steps compared.
max_rel() {
  paste -d, <(tail -n +2 "$1" | cut -d, -f3) <(tail -n +2 "$2" | cut -d, -f3) |
    awk -F, '{ d = $1 - $2; if (d < 0) d = -d; m = ($1 < 0 ? -$1 : $1);
      r = d / (m > 1e-6 ? m : 1e-6); if (r > max) max = r; n++ } END { printf "%.3g %d\n", max, n }'
}

pretrain_in cpu1 1 --set run.device=cpu && pass || fail "pretrain on 1 CPU rank: $(tail -3 cpu1/err)"
for run in "cuda2 --set run.device=cuda" \
           "bucket2 --set run.device=cuda --set pretrain.allreduce_bucket_mb=0.008" \
           "auto2 --set run.device=auto"; do
  read -r dir args <<<"$run"
  # shellcheck disable=SC2086
  pretrain_in $dir 2 $args && pass || fail "pretrain $args on 2 ranks: $(tail -3 $dir/err)"
  grep -q "summed with NCCL across 2 ranks" $dir/err && pass ||
    fail "$dir: the log should say the gradients go through NCCL: $(head -5 $dir/err)"
  read -r diff n < <(max_rel cpu1/run/pretrain/metrics.csv $dir/run/pretrain/metrics.csv)
  echo "loss, 1 CPU rank vs $dir: max relative difference $diff over $n steps"
  [ "$n" = 20 ] && awk -v d="$diff" 'BEGIN { exit !(d < 1e-3) }' && pass ||
    fail "$dir: losses differ from the CPU run by $diff (over $n steps; tolerance 1e-3)"
done
grep -q "all-reduce runs in 4 buckets" bucket2/err && pass ||
  fail "bucketed NCCL all-reduce: expected 4 buckets: $(grep bucket bucket2/err)"
finish
