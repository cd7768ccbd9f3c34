#!/usr/bin/env bash
# pretrain, finetune, predict and forward end to end on a tiny model and
# tiny data, plus the errors bad inputs must give.
source "$SRC/tests/sh_util.sh"
source "$SRC/tests/train_fixture.sh"

make_tiny_data "$T_DIR/data" || { echo "FAIL: could not make the tiny data set" >&2; exit 1; }
CFG=$T_DIR/data/tiny.ini
RUN=$T_DIR/data/run
CKPT=$RUN/checkpoints/final.h5

# ---- pretrain ----
if "$BERTRAIN" pretrain --config "$CFG" > pretrain.out 2> pretrain.err; then pass
else fail "pretrain exited non-zero: $(cat pretrain.err)"; fi
M=$RUN/pretrain/metrics.csv
[ "$(head -1 "$M")" = "step,epoch,loss,mlm_loss,nsp_loss,mlm_acc,nsp_acc,lr,grad_norm,seq_per_s,wall_s" ] &&
  pass || fail "pretrain metrics header: $(head -1 "$M")"
[ "$(tail -n +2 "$M" | cut -d, -f1 | tr '\n' ' ')" = "$(seq 1 30 | tr '\n' ' ')" ] &&
  pass || fail "pretrain metrics should have one row per step 1..30: $(tail -n +2 "$M" | cut -d, -f1 | tr '\n' ' ')"
[ "$(awk -F, 'NR > 1 && NF != 11' "$M" | wc -l)" -eq 0 ] && pass || fail "metrics rows without 11 fields"
read -r first last < <(awk -F, 'NR > 1 { l[NR - 1] = $3; n = NR - 1 }
  END { for (i = 1; i <= 5; i++) { f += l[i]; t += l[n - 5 + i] } printf "%.4f %.4f\n", f / 5, t / 5 }' "$M")
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f - 0.3) }' &&
  pass || fail "loss should fall by > 0.3 from the first to the last 5 steps: $first -> $last"
echo "pretrain: mean loss of the first 5 steps $first, of the last 5 $last"
grep -q "^step *30 .*seq/s" pretrain.out && pass || fail "no progress line for step 30: $(cat pretrain.out)"
grep "^pretrain:" pretrain.out
[ -s "$CKPT" ] && pass || fail "no checkpoint $CKPT"
[ -s "$RUN/config.ini" ] && grep -q "^epochs = 3$" "$RUN/config.ini" && pass ||
  fail "no resolved config in $RUN/config.ini"
# The learning rate: 3 warm-up steps up to 2e-3, then linear decay.
[ "$(awk -F, 'NR == 2 || NR == 4 || NR == 31 { printf "%s ", $8 }' "$M")" = "0.000666667 0.002 7.40741e-05 " ] &&
  pass || fail "learning rates of steps 1, 3, 30: $(awk -F, 'NR == 2 || NR == 4 || NR == 31 { printf "%s ", $8 }' "$M")"

# Same seed, same run: identical metrics apart from the timing columns.
for r in a b; do
  "$BERTRAIN" pretrain --config "$CFG" --set pretrain.epochs=1 --set pretrain.steps_per_epoch=3 --set run.dir=$T_DIR/det-$r \
    > /dev/null 2>&1 || fail "short pretrain $r exited non-zero"
done
cmp -s <(cut -d, -f1-9 det-a/pretrain/metrics.csv) <(cut -d, -f1-9 det-b/pretrain/metrics.csv) &&
  pass || fail "two runs with the same seed differ"
# The optimizer's moments as configured: another beta2 leaves step 1's loss
# (before any update) and changes step 3's.
"$BERTRAIN" pretrain --config "$CFG" --set pretrain.epochs=1 --set pretrain.steps_per_epoch=3 \
  --set pretrain.adam_beta2=0.98 --set run.dir=$T_DIR/beta2 > /dev/null 2>&1 ||
  fail "pretrain with adam_beta2 exited non-zero"
loss_at() { awk -F, -v s="$2" '$1 == s { print $3 }' "$1/pretrain/metrics.csv"; }
[ "$(loss_at det-a 1)" = "$(loss_at beta2 1)" ] && [ -n "$(loss_at beta2 3)" ] &&
  [ "$(loss_at det-a 3)" != "$(loss_at beta2 3)" ] && pass ||
  fail "adam_beta2 = 0.98: losses of steps 1 and 3 $(loss_at beta2 1) $(loss_at beta2 3), with 0.999 $(loss_at det-a 1) $(loss_at det-a 3)"
# LAMB runs too.
"$BERTRAIN" pretrain --config "$CFG" --set pretrain.epochs=1 --set pretrain.steps_per_epoch=2 --set pretrain.optimizer=lamb \
  --set run.dir=$T_DIR/lamb > /dev/null 2>&1 && [ "$(wc -l < lamb/pretrain/metrics.csv)" -eq 3 ] &&
  pass || fail "pretrain with LAMB"

# ---- finetune ----
mkdir -p mrpc
xz -dc "$SRC/data/sample/MRPC/train.tsv.xz" | head -257 > mrpc/train.tsv
xz -dc "$SRC/data/sample/MRPC/dev.tsv.xz" | head -129 > mrpc/dev.tsv
if "$BERTRAIN" finetune --checkpoint "$CKPT" --config "$CFG" --task mrpc --data mrpc --out ft \
     > finetune.out 2> finetune.err; then pass
else fail "finetune exited non-zero: $(cat finetune.err)"; fi
F=ft/metrics.csv
[ "$(head -1 "$F")" = "phase,step,epoch,metric,value" ] && pass || fail "finetune metrics header: $(head -1 "$F")"
# 256 rows, batch 32: 8 steps per epoch, 2 epochs.
want=$(for s in $(seq 1 16); do e=$(( (s - 1) / 8 + 1 ));
  echo "train,$s,$e,batch_accuracy"; echo "train,$s,$e,loss";
  if [ $((s % 8)) -eq 0 ]; then echo "validation,$s,$e,epoch_accuracy"; echo "validation,$s,$e,f1"; fi; done)
[ "$(tail -n +2 "$F" | cut -d, -f1-4)" = "$want" ] && pass ||
  fail "finetune metrics rows differ from the expected 32 train and 4 validation rows"
[ -s ft/model.h5 ] && [ -s ft/config.ini ] && pass || fail "finetune wrote no model.h5 / config.ini"
cat finetune.out | grep "dev accuracy"
# finetune.adam_beta2 reaches AdamW: step 1's loss as before, step 3's not
"$BERTRAIN" finetune --checkpoint "$CKPT" --config "$CFG" --task mrpc --data mrpc --out ft-b2 \
  --set finetune.adam_beta2=0.98 > /dev/null 2>&1 ||
  fail "finetune with adam_beta2 exited non-zero"
ft_loss() { grep "^train,$2,1,loss," "$1/metrics.csv" | cut -d, -f5; }
[ "$(ft_loss ft 1)" = "$(ft_loss ft-b2 1)" ] && [ -n "$(ft_loss ft-b2 3)" ] &&
  [ "$(ft_loss ft 3)" != "$(ft_loss ft-b2 3)" ] && pass ||
  fail "finetune adam_beta2 = 0.98: losses of steps 1 and 3 $(ft_loss ft-b2 1) $(ft_loss ft-b2 3), with 0.999 $(ft_loss ft 1) $(ft_loss ft 3)"
last_acc=$(grep "^validation,16,2,epoch_accuracy," "$F" | cut -d, -f5)
last_f1=$(grep "^validation,16,2,f1," "$F" | cut -d, -f5)

# ---- predict ----
if "$BERTRAIN" predict --checkpoint ft/model.h5 --task mrpc --data mrpc/dev.tsv --out preds.tsv \
     > predict.out 2> predict.err; then pass
else fail "predict exited non-zero: $(cat predict.err)"; fi
cat predict.out
grep -q "^accuracy $last_acc (" predict.out && pass ||
  fail "predict accuracy should be the last validation accuracy $last_acc: $(cat predict.out)"
grep -q "^f1 $last_f1$" predict.out && pass || fail "predict f1 should be $last_f1: $(cat predict.out)"
last_loss=$(grep "^epoch 2 .*dev loss" finetune.out | sed 's/.*dev loss \([0-9.]*\).*/\1/')
grep -q "^loss $last_loss$" predict.out && pass ||
  fail "predict loss should be the last validation loss $last_loss: $(cat predict.out)"
[ "$(wc -l < preds.tsv)" -eq 128 ] && [ "$(grep -cv '^[01]$' preds.tsv)" -eq 0 ] && pass ||
  fail "preds.tsv should have 128 lines of 0 or 1"
acc_from_file=$(paste <(tail -n +2 mrpc/dev.tsv | cut -f1) preds.tsv | awk '$1 == $2 { c++ } END { print c }')
grep -q "($acc_from_file/128)" predict.out && pass || fail "preds.tsv disagrees with the printed accuracy"
# A GLUE test file (index column, no labels): index + prediction, same predictions.
{ printf 'index\t#1 ID\t#2 ID\t#1 String\t#2 String\n'
  tail -n +2 mrpc/dev.tsv | awk -F'\t' -v OFS='\t' '{ $1 = NR - 1; print }'; } > mrpc/test.tsv
if "$BERTRAIN" predict --checkpoint ft/model.h5 --task mrpc --data mrpc/test.tsv --out test-preds.tsv \
     > predict-test.out 2> predict-test.err; then pass
else fail "predict on a test file exited non-zero: $(cat predict-test.err)"; fi
[ "$(head -1 test-preds.tsv)" = "$(printf 'index\tprediction')" ] &&
  cmp -s <(tail -n +2 test-preds.tsv | cut -f2) preds.tsv &&
  [ "$(tail -n +2 test-preds.tsv | cut -f1 | tr '\n' ' ')" = "$(seq 0 127 | tr '\n' ' ')" ] &&
  pass || fail "test-file predictions should be 'index<TAB>prediction' lines matching preds.tsv"
expect_fail "predict on a test file without --out" "has no labels" \
  "$BERTRAIN" predict --checkpoint ft/model.h5 --data mrpc/test.tsv
expect_fail "predict with a checkpoint without classifier" "no classifier" \
  "$BERTRAIN" predict --checkpoint "$CKPT" --data mrpc/dev.tsv

# ---- forward ----
SHARD=$T_DIR/data/shards/shard-00000.h5
if "$BERTRAIN" forward --checkpoint "$CKPT" --data "$SHARD" --rows 3:8 --out fwd.h5 \
     > forward.out 2> forward.err; then pass
else fail "forward exited non-zero: $(cat forward.err)"; fi
cat forward.out
if command -v h5ls > /dev/null; then
  shapes=$(h5ls fwd.h5 | awk '{ $1 = $1; print }' | sort | tr '\n' ';')
  [ "$shapes" = "mlm_logits Dataset {5, 10, 1003};mlm_loss Dataset {SCALAR};nsp_logits Dataset {5, 2};nsp_loss Dataset {SCALAR};" ] &&
    pass || fail "forward datasets: $shapes"
else
  echo "note: h5ls not found; the shapes of fwd.h5 are checked by test_reference only"
fi
expect_fail "forward rows beyond the shard" "has only" \
  "$BERTRAIN" forward --checkpoint "$CKPT" --data "$SHARD" --rows 0:100000 --out x.h5
expect_fail "forward with a fine-tuned checkpoint" "no pre-training heads" \
  "$BERTRAIN" forward --checkpoint ft/model.h5 --data "$SHARD" --out x.h5

# ---- bad inputs ----
expect_fail "finetune with another hidden size" "model.hidden is 64 in the checkpoint, 128" \
  "$BERTRAIN" finetune --checkpoint "$CKPT" --data mrpc --out bad --set model.hidden=128
head -900 "$T_DIR/data/vocab.txt" > small-vocab.txt
expect_fail "finetune with a vocab of another size" "has 900 tokens but the checkpoint" \
  "$BERTRAIN" finetune --checkpoint "$CKPT" --data mrpc --out bad --set model.vocab=small-vocab.txt
expect_fail "pretrain with a vocab of another size" "made with a vocabulary of 1003 tokens" \
  "$BERTRAIN" pretrain --config "$CFG" --set model.vocab=small-vocab.txt --set run.dir=bad
expect_fail "finetune with a missing checkpoint" "cannot open weights file nope.h5" \
  "$BERTRAIN" finetune --checkpoint nope.h5 --data mrpc --out bad
expect_fail "forward with a missing shard" "nope-shard.h5" \
  "$BERTRAIN" forward --checkpoint "$CKPT" --data nope-shard.h5 --out x.h5
expect_fail "finetune with missing data" "bad-dir" \
  "$BERTRAIN" finetune --checkpoint "$CKPT" --data bad-dir --out bad
expect_fail "pretrain with a batch not divisible" "not a multiple of pretrain.micro_batch" \
  "$BERTRAIN" pretrain --config "$CFG" --set pretrain.micro_batch=12 --set run.dir=bad
expect_fail "pretrain without shards" "no pre-training shards" \
  "$BERTRAIN" pretrain --config "$CFG" --data mrpc --set run.dir=bad
"$BERTRAIN" prep --corpus "$T_DIR/data/corpus.txt" --vocab "$T_DIR/data/vocab.txt" --out shards32 \
  --set data.seq_length=32 --set data.max_predictions=10 --set data.shards=1 \
  --set data.dupe_factor=1 2> /dev/null || fail "prep of 32-token shards"
expect_fail "pretrain on shards of another seq length" "sequences of 32 tokens, but data.seq_length is 64" \
  "$BERTRAIN" pretrain --config "$CFG" --data shards32 --set run.dir=bad
mkdir -p mixed && cp "$T_DIR"/data/shards/shard-0000[01].h5 mixed/ && cp shards32/shard-00000.h5 mixed/shard-00002.h5
expect_fail "pretrain on shards that disagree" "must agree" \
  "$BERTRAIN" pretrain --config "$CFG" --data mixed --set run.dir=bad
expect_fail "run.device not a backend" "run.device" \
  "$BERTRAIN" pretrain --config "$CFG" --set run.device=tpu
if why=$(gpu_usable); then
  echo "note: a GPU is usable here; run.device=cuda without one is not checked"
else
  expect_fail "run.device=cuda without a usable GPU" "device cuda" \
    "$BERTRAIN" pretrain --config "$CFG" --set run.device=cuda
fi
[ ! -e bad/checkpoints/final.h5 ] && pass || fail "a failed run left a checkpoint"

finish
