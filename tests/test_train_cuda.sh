#!/usr/bin/env bash
# The CUDA backend trains the same model as the CPU one: the tiny model for
# 20 steps (2 epochs of 10, dropout on) from the same seed and data on
# run.device=cpu and run.device=cuda; the per-step losses agree within 1e-3
# relative (fp32: every op agrees to about 1e-6, which 20 Adam steps
# amplify), and a checkpoint written on the GPU (epoch-0001.h5) resumes on
# the CPU and continues as the CPU run does, and the other way round; a
# bf16 run (run.precision) stays within 5e-2 of the fp32 losses.
# Needs a GPU: skipped (77) without one. BERTRAIN_TEST_ARGS adds options to
# every run (the CUDA emulator's copy of this test takes a smaller batch).
source "$SRC/tests/sh_util.sh"
source "$SRC/tests/train_fixture.sh"

why=$(gpu_usable) || skip "no usable GPU ($why)"
make_tiny_data "$T_DIR/data" || { echo "FAIL: could not make the tiny data set" >&2; exit 1; }
RUN=(--config "$T_DIR/data/tiny.ini" --set pretrain.epochs=2 --set pretrain.steps_per_epoch=10
     --set pretrain.milestone_epochs=1)
# shellcheck disable=SC2206
RUN+=(${BERTRAIN_TEST_ARGS:-})

# max_rel A B: the largest relative difference of the loss column (3) of two
# metrics.csv files over the steps both have, from step $3 on.
max_rel() {
  join -t, <(tail -n +2 "$1" | cut -d, -f1,3 | sort -t, -k1,1) \
           <(tail -n +2 "$2" | cut -d, -f1,3 | sort -t, -k1,1) |
    awk -F, -v from="${3:-1}" '$1 >= from { d = $2 - $3; if (d < 0) d = -d; m = ($2 < 0 ? -$2 : $2);
      r = d / (m > 1e-6 ? m : 1e-6); if (r > max) max = r; n++ }
      END { printf "%.3g %d\n", max, n }'
}

for dev in cpu cuda; do
  "$BERTRAIN" pretrain "${RUN[@]}" --set run.device=$dev --set run.dir=$T_DIR/$dev > $dev.out 2>&1 &&
    pass || fail "pretrain on $dev: $(tail -3 $dev.out)"
done
read -r diff n < <(max_rel cpu/pretrain/metrics.csv cuda/pretrain/metrics.csv)
echo "loss, cpu vs cuda: max relative difference $diff over $n steps"
[ "$n" = 20 ] && awk -v d="$diff" 'BEGIN { exit !(d < 1e-3) }' && pass ||
  fail "cpu and cuda losses differ by $diff (over $n steps; tolerance 1e-3)"

# bf16 products (run.precision = bf16): the same run within 5e-2 (bf16
# inputs carry 8 mantissa bits; the loss stays close, not equal).
"$BERTRAIN" pretrain "${RUN[@]}" --set run.device=cuda --set run.precision=bf16 \
  --set run.dir=$T_DIR/bf16 > bf16.out 2>&1 && pass || fail "pretrain with bf16: $(tail -3 bf16.out)"
read -r diff n < <(max_rel cpu/pretrain/metrics.csv bf16/pretrain/metrics.csv)
echo "loss, cpu fp32 vs cuda bf16: max relative difference $diff over $n steps"
[ "$n" = 20 ] && awk -v d="$diff" 'BEGIN { exit !(d < 5e-2) }' && pass ||
  fail "cpu fp32 and cuda bf16 losses differ by $diff (over $n steps; tolerance 5e-2)"

# Checkpoints cross over: GPU -> CPU and CPU -> GPU, from epoch 1 (step 10).
for pair in "cuda cpu" "cpu cuda"; do
  read -r from to <<<"$pair"
  "$BERTRAIN" pretrain "${RUN[@]}" --set run.device=$to --set run.dir=$T_DIR/$from-$to \
    --resume $T_DIR/$from/checkpoints/epoch-0001.h5 > $from-$to.out 2>&1 &&
    pass || fail "resume on $to from the $from checkpoint: $(tail -3 $from-$to.out)"
  read -r diff n < <(max_rel $from-$to/pretrain/metrics.csv $to/pretrain/metrics.csv 11)
  echo "loss after resuming on $to from $from's step 10: max relative difference $diff over $n steps"
  [ "$n" = 10 ] && awk -v d="$diff" 'BEGIN { exit !(d < 1e-3) }' && pass ||
    fail "resumed on $to from $from: losses differ by $diff from the $to run (over $n steps)"
done
finish
