#!/usr/bin/env bash
# Distributed pre-training when things go wrong: damaged checkpoints are
# reported and the previous one used (and nothing is overwritten when none
# is usable); a kill during a checkpoint write leaves the previous one
# readable; a second job on a run directory in use is refused; bad settings and bad shards fail on 2 and 4 ranks with one clear
# message and no hang; non-finite losses stop the run or are skipped; bench
# splits the step into compute, all-reduce and data wait.
set -u
source "$SRC/tests/sh_util.sh"
source "$SRC/tests/dist_fixture.sh"
command -v h5diff >/dev/null || skip "h5diff (hdf5-tools) is not installed"
command -v "${MPIEXEC:-}" >/dev/null || skip "no MPI launcher (MPIEXEC='${MPIEXEC:-}')"
command -v "$PYTHON" >/dev/null || skip "no $PYTHON (to damage a checkpoint on purpose)"

make_dist_data "$T_DIR/data" || { echo "FAIL: could not make the data set" >&2; exit 1; }
CFG=$T_DIR/data/tiny.ini
MPI=(timeout 120 "$MPIEXEC")

# ---- damaged checkpoints ----
pretrain_in full 1 && pass || fail "pretrain: $(cat full/err)"
FINAL=full/run/checkpoints/final.h5
# A run that got to step 18: latest.h5 (step 18) and epoch-0002.h5 (step 10).
mkdir -p part && cp -r full/run part/ && rm part/run/checkpoints/{final,epoch-0004}.h5
# trunc: latest.h5 cut in half; flip: one byte of a weight changed.
for k in trunc flip; do cp -r part $k; done
L=trunc/run/checkpoints/latest.h5
truncate -s $(($(stat -c %s $L) / 2)) $L
L=flip/run/checkpoints/latest.h5
h5dump -b LE -d /bert.embeddings.word_embeddings.weight -o words.bin $L > /dev/null
"$PYTHON" - "$L" words.bin <<'EOF'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
words = open(sys.argv[2], "rb").read()
at = data.find(words[:256])
assert at > 0 and data.find(words[:256], at + 1) < 0, "the weights are not found once in the file"
data[at + 1000] ^= 0x40
open(sys.argv[1], "wb").write(data)
EOF
for k in trunc flip; do
  pretrain_in $k 1 && pass || fail "$k: resuming past a damaged latest.h5: $(cat $k/err)"
  grep -q "run/checkpoints/latest.h5 is damaged and is not used" $k/err && pass ||
    fail "$k: the damage is not reported: $(cat $k/err)"
  grep -q "resuming from run/checkpoints/epoch-0002.h5" $k/err && pass ||
    fail "$k: should resume from epoch-0002.h5: $(cat $k/err)"
  same_params "$FINAL" $k/run/checkpoints/final.h5 && pass ||
    fail "$k: resumed from epoch-0002.h5, the end is not bit-identical to the uninterrupted run"
done
grep -q "checksum" flip/err && pass || fail "flip: the message should name the checksum: $(cat flip/err)"
grep -q "bert.embeddings.word_embeddings.weight" flip/err && pass ||
  fail "flip: the message should name the dataset: $(cat flip/err)"
# Nothing usable: an error, and the files stay as they are.
cp -r part none
for f in none/run/checkpoints/*.h5; do truncate -s 3000 $f; done
sum_before=$(cat none/run/checkpoints/* | md5sum)
expect_fail "no usable checkpoint" "none is usable" "${MPI[@]}" -np 2 "$BERTRAIN" pretrain --config "$CFG" \
  --set run.dir=none/run
[ "$(cat none/run/checkpoints/* | md5sum)" = "$sum_before" ] && pass ||
  fail "a run without a usable checkpoint changed the checkpoints"
expect_fail "--resume with a damaged file" "cannot use this checkpoint" \
  "$BERTRAIN" pretrain --config "$CFG" --set run.dir=x --resume none/run/checkpoints/latest.h5
expect_fail "resuming with other settings" "pretrain.lr is 0.002 in the checkpoint, 0.001 now" \
  "$BERTRAIN" pretrain --config "$CFG" --set run.dir=part/run --set pretrain.lr=1e-3
expect_fail "--resume never on a directory with checkpoints" "already holds checkpoints" \
  "$BERTRAIN" pretrain --config "$CFG" --set run.dir=part/run --resume never

# ---- a kill while latest.h5 is being written ----
mkdir -p cut
(cd cut && BERTRAIN_TEST_CKPT_PAUSE=1 exec timeout 120 "$BERTRAIN" pretrain --config "$CFG" > out 2> err) &
bg=$!
wait_for cut/run/checkpoints/latest.h5 && wait_for cut/run/checkpoints/latest.h5.tmp ||
  fail "no second checkpoint write started"
# While it runs, a second job on the same run directory is refused.
expect_fail "a second job on a run directory in use" \
  "cut/run is in use by another bertrain pretrain (pid $(rank_pids $bg) on $(hostname) since" \
  "$BERTRAIN" pretrain --config "$CFG" --set run.dir=cut/run
kill -KILL $(rank_pids $bg)
{ wait $bg; } 2>/dev/null
[ "$(h5_value cut/run/checkpoints/latest.h5 /train/step)" = 3 ] && pass ||
  fail "latest.h5 after a kill during the next write should still hold step 3"
[ -e cut/run/checkpoints/latest.h5.tmp ] && pass || fail "the cut-short write left no latest.h5.tmp"
pretrain_in cut 1 && pass || fail "restarting after a kill during a write: $(cat cut/err)"
grep -q "removing run/checkpoints/latest.h5.tmp" cut/err && grep -q "continuing after step 3 " cut/err &&
  pass || fail "restart after the cut-short write: $(cat cut/err)"
same_params "$FINAL" cut/run/checkpoints/final.h5 && pass ||
  fail "restarted after a kill during a write: not bit-identical to the uninterrupted run"
# A lock held from another machine (a crashed node's lives on at the file
# server for a while) is waited for, and the run goes ahead once it is free.
mkdir -p far/run
"$PYTHON" -c 'import fcntl, os, sys, time
fd = os.open("far/run/pretrain.lock", os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.write(fd, b"pid 4242 on crashed-node since 2026-01-01 00:00:00\n")
open("far/held", "w").close()
time.sleep(2)' &
wait_for far/held || fail "the lock holder did not start"
pretrain_in far 2 && pass || fail "pretrain after a lock from another machine was released: $(cat far/err)"
grep -q "run is locked by pid 4242 on crashed-node since 2026-01-01 00:00:00; waiting up to 180 s" far/err &&
  pass || fail "no note of the wait for the other machine's lock: $(head -3 far/err)"
wait

# ---- bad input: one clear message, non-zero exit, no hang ----
# expect_once WHAT TEXT CMD...: expect_fail, and TEXT printed exactly once.
expect_once() {
  local what=$1 want=$2
  shift 2
  expect_fail "$what" "$want" "$@"
  local n
  n=$(timeout 120 "$@" 2>&1 >/dev/null | grep -cF -- "$want")
  [ "$n" -eq 1 ] && pass || fail "$what: the message appears $n times"
}
expect_once "4 ranks for a batch of 8 in micro-batches of 4" "more ranks than the batch allows" \
  "${MPI[@]}" -np 4 "$BERTRAIN" pretrain --config "$CFG" --set pretrain.batch_size=8 --set run.dir=bad
expect_once "a batch that does not split over 2 ranks" "pretrain.batch_size 16 or pretrain.batch_size 24" \
  "${MPI[@]}" -np 2 "$BERTRAIN" pretrain --config "$CFG" --set pretrain.batch_size=20 --set run.dir=bad
"$BERTRAIN" prep --corpus "$T_DIR/data/corpus.txt" --vocab "$T_DIR/data/vocab.txt" --out shards64 \
  --set data.seq_length=64 --set data.max_predictions=5 --set data.shards=1 \
  --set data.dupe_factor=1 2> /dev/null || fail "prep of 64-token shards"
mkdir -p mixed && cp "$T_DIR"/data/shards/shard-0000[01].h5 mixed/ && cp shards64/shard-00000.h5 mixed/shard-00002.h5
expect_once "shards with different sequence lengths" "must agree" \
  "${MPI[@]}" -np 2 "$BERTRAIN" pretrain --config "$CFG" --data mixed --set run.dir=bad
mkdir -p holed && cp "$T_DIR"/data/shards/shard-00000.h5 holed/
for ds in input_ids input_mask segment_ids masked_lm_positions masked_lm_ids; do
  h5copy -i "$T_DIR/data/shards/shard-00001.h5" -o holed/shard-00001.h5 -s $ds -d $ds || fail "h5copy $ds"
done
expect_once "a shard without next_sentence_labels" "holed/shard-00001.h5: dataset next_sentence_labels is missing" \
  "${MPI[@]}" -np 2 "$BERTRAIN" pretrain --config "$CFG" --data holed --set run.dir=bad
[ ! -e bad/checkpoints/latest.h5 ] && [ ! -e bad/pretrain/metrics.csv ] && pass ||
  fail "a failed start left training outputs"

# ---- non-finite losses (BERTRAIN_TEST_NAN_STEP makes the last rank's loss NaN) ----
BERTRAIN_TEST_NAN_STEP=7 expect_once "a NaN loss on rank 1" "not finite" \
  "${MPI[@]}" -np 2 "$BERTRAIN" pretrain --config "$CFG" --set run.dir=nan/run
err=$(BERTRAIN_TEST_NAN_STEP=7 timeout 120 "$MPIEXEC" -np 2 "$BERTRAIN" pretrain --config "$CFG" \
  --set run.dir=nan2/run 2>&1 >/dev/null)
grep -q "at step 7;" <<<"$err" && pass || fail "the NaN error should name step 7: $err"
[ "$(h5_value nan2/run/checkpoints/latest.h5 /train/step)" = 6 ] && pass ||
  fail "after the NaN at step 7 latest.h5 should still hold step 6"
BERTRAIN_TEST_NAN_STEP=7 pretrain_in skip 2 --set pretrain.skip_nonfinite=true && pass ||
  fail "skip_nonfinite: $(cat skip/err)"
grep -q "step 7 skipped" skip/out && pass || fail "skip_nonfinite: no 'step 7 skipped': $(cat skip/out)"
grep -q "step 7 skipped" skip/run/pretrain/log.txt &&
  [ "$(h5_value skip/run/checkpoints/final.h5 /train/opt_step)" = 19 ] && pass ||
  fail "skip_nonfinite: the skip in pretrain/log.txt and 19 updates expected"

# ---- bench: the step split into its parts, on 2 ranks from the shards ----
if "${MPI[@]}" -np 2 "$BERTRAIN" bench --config "$CFG" --data "$T_DIR/data/shards" --batch 4 \
     --steps 3 --warmup 1 > bench.out 2> bench.err; then pass; else fail "bench: $(cat bench.err)"; fi
cat bench.out
grep -q "sequences/s over 2 ranks" bench.out && grep -q "in the all-reduce" bench.out &&
  grep -q "waiting for data" bench.out && pass || fail "bench output lacks the split: $(cat bench.out)"

# ---- bench --profile: per op and shape, the products' TFLOP/s and every op's GB/s ----
"$BERTRAIN" bench --config "$CFG" --batch 4 --steps 2 --warmup 1 --profile > prof.out 2> prof.err &&
  pass || fail "bench --profile: $(cat prof.err)"
# a product: ms, share, calls, a TFLOP/s figure and a positive GB/s; the total line last
awk '/^profile: .* linear_fwd / && $5 ~ /^[0-9.]+$/ && $6 > 0 { ok = 1 } END { exit !ok }' prof.out &&
  grep -q "^profile: .* all ops$" prof.out && pass ||
  fail "bench --profile lacks a product's TFLOP/s and GB/s: $(grep profile: prof.out | head -5)"

finish
