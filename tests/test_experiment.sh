#!/usr/bin/env bash
# The whole experiment through 'mpirun -np 2 bertrain pretrain' itself: the
# coordinator hooked into pre-training fine-tunes the epoch-0 baseline and
# every milestone (inline: on the same ranks, pausing pre-training; process:
# as separate processes while pre-training goes on), then the store and the
# report cover every job. Inline fine-tuning must not change pre-training:
# the final weights equal those of a run without fine-tuning (the config
# text stored with them differs, so root attributes are not compared).
source "$SRC/tests/sh_util.sh"
source "$SRC/tests/dist_fixture.sh"

make_dist_data "$T_DIR/data" || { echo "FAIL: could not make the data set" >&2; exit 1; }
CFG=$T_DIR/data/tiny.ini
mkdir -p mrpc
xz -dc "$SRC/data/sample/MRPC/train.tsv.xz" | head -97 > mrpc/train.tsv
xz -dc "$SRC/data/sample/MRPC/dev.tsv.xz" | head -65 > mrpc/dev.tsv
FT=(--set finetune.data=$T_DIR/mrpc --set finetune.epochs=2 --set finetune.batch_size=16
    --set finetune.seq_length=32 --set finetune.baseline=true)

check_run() { # check_run DIR LAUNCHER
  local run=$1/run e
  for e in 0000 0002 0004; do
    [ -s "$run/checkpoints/epoch-$e.h5" ] && pass || fail "$2: no checkpoint epoch-$e.h5"
    grep -q '^state=done' "$run/finetune/epoch-$e/status" 2>/dev/null && pass ||
      fail "$2: job epoch-$e not done: $(cat "$run/finetune/epoch-$e/status" 2>&1)"
    [ -s "$run/finetune/epoch-$e/model.h5" ] && pass || fail "$2: no model.h5 for epoch-$e"
    grep -q "^launcher=$2" "$run/finetune/epoch-$e/status" 2>/dev/null && pass ||
      fail "$2: status of epoch-$e does not name the launcher"
    local rows
    rows=$(awk -F, -v e=$((10#$e)) '$1 == "mrpc" && $2 == e && $3 == "validation" && $6 == "epoch_accuracy"' \
      "$run/metrics.csv" | wc -l)
    [ "$rows" = 2 ] && pass || fail "$2: metrics.csv has $rows validation accuracy rows for epoch $e, expected 2"
  done
  [ -s "$run/report/Report.md" ] && pass || fail "$2: no report"
  for f in figure_batch_accuracy figure_epoch_accuracy wallclock_accuracy pretrain_loss; do
    [ -s "$run/report/$f.png" ] && pass || fail "$2: no $f.png"
  done
  h5ls -r "$run/metrics.h5" 2>/dev/null | grep -q "/finetune/mrpc/epoch-0004" && pass ||
    fail "$2: metrics.h5 lacks /finetune/mrpc/epoch-0004"
}

pretrain_in inline 2 "${FT[@]}" --set finetune.launcher=inline || { cat inline/err >&2; fail "inline run failed"; }
check_run inline inline
pretrain_in plain 2 || { cat plain/err >&2; fail "run without fine-tuning failed"; }
same_params inline/run/checkpoints/final.h5 plain/run/checkpoints/final.h5 --exclude-attribute / && pass ||
  fail "inline fine-tuning changed the pre-trained weights"

pretrain_in process 2 "${FT[@]}" --set finetune.launcher=process --set finetune.max_parallel=2 ||
  { cat process/err >&2; fail "process run failed"; }
check_run process process
finish
