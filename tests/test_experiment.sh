#!/usr/bin/env bash
# The whole experiment through 'mpirun -np 2 bertrain pretrain' itself: the
# coordinator hooked into pre-training fine-tunes the epoch-0 baseline and
# every milestone (inline: on the same ranks, pausing pre-training; process:
# as separate processes while pre-training goes on), then the store and the
# report cover every job. Inline fine-tuning must not change pre-training:
# the final weights equal those of a run without fine-tuning (the config
# text stored with them differs, so root attributes are not compared).
# A run stopped (process) or killed (process, inline) while jobs are
# unfinished runs them when started again, ending orphaned processes first.
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

# ---- stopped or killed while fine-tuning jobs are unfinished: the next start runs them ----
# wait_state FILE STATE: until the status file says STATE (30 s at most).
wait_state() {
  local i
  for i in $(seq 600); do
    grep -q "^state=$2$" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
# process: SIGUSR1 while the baseline job runs (a slow command; one job at a time).
SLOW="sleep 19.75; {bertrain} finetune --checkpoint {checkpoint} --task {task} --data {data} --out {out} --set run.seed={seed}"
mkdir -p pstop
(cd pstop && exec timeout 120 "$MPIEXEC" -np 2 "$BERTRAIN" pretrain --config "$CFG" "${FT[@]}" \
   --set finetune.launcher=process --set "finetune.command=$SLOW" > out 2> err) &
launcher=$!
wait_state pstop/run/finetune/epoch-0000/status running || fail "process: the baseline job never ran"
kill -USR1 $(rank_pids $launcher) 2> /dev/null
wait $launcher
rc=$?
[ $rc -ne 0 ] && cat pstop/out pstop/err | grep -q "stopped by a signal" && pass ||
  fail "process: a stop signal did not stop the run (exit $rc): $(tail -3 pstop/err)"
pgrep -f "sleep 19.75" > /dev/null && fail "process: the running job was not ended" || pass
grep -q '^state=queued' pstop/run/finetune/epoch-0000/status &&
  grep -q '^reason=ended when pre-training stopped' pstop/run/finetune/epoch-0000/status && pass ||
  fail "process: the ended job is not recorded as queued: $(cat pstop/run/finetune/epoch-0000/status)"
cp pstop/err pstop/err.stopped
pretrain_in pstop 2 "${FT[@]}" --set finetune.launcher=process ||
  { cat pstop/err >&2; fail "process: the resumed run failed"; }
check_run pstop process
same_params pstop/run/checkpoints/final.h5 plain/run/checkpoints/final.h5 --exclude-attribute / && pass ||
  fail "process: the stopped and resumed run ended with other weights"

# process: SIGKILL to the ranks while the baseline job runs orphans it (it
# runs on); the next start ends it before running the job again.
mkdir -p pkill
(cd pkill && exec timeout 120 "$MPIEXEC" -np 2 "$BERTRAIN" pretrain --config "$CFG" "${FT[@]}" \
   --set finetune.launcher=process --set "finetune.command=$SLOW" > out 2> err) &
launcher=$!
wait_state pkill/run/finetune/epoch-0000/status running || fail "process (kill): the baseline job never ran"
kill -KILL $(rank_pids $launcher) 2> /dev/null
wait $launcher
pgrep -f "sleep 19.75" > /dev/null && pass || fail "process (kill): expected the job to outlive its coordinator"
grep -q "^pid=[0-9]" pkill/run/finetune/epoch-0000/status && grep -q "^host=$(hostname)$" pkill/run/finetune/epoch-0000/status &&
  pass || fail "process (kill): the running job's status lacks pid/host: $(cat pkill/run/finetune/epoch-0000/status)"
pretrain_in pkill 2 "${FT[@]}" --set finetune.launcher=process ||
  { cat pkill/err >&2; fail "process (kill): the resumed run failed"; }
grep -q "ending the earlier start's job still running for run/finetune/epoch-0000" pkill/err && pass ||
  fail "process (kill): the orphaned job was not ended: $(grep finetune: pkill/err | head -3)"
pgrep -f "sleep 19.75" > /dev/null && fail "process (kill): the orphaned job still runs" || pass
check_run pkill process

# inline: SIGKILL to the ranks while the baseline job runs (made long with 40
# fine-tuning epochs; the next start, from epoch-0000.h5, runs it with the
# usual 2).
mkdir -p ikill
(cd ikill && exec timeout 120 "$MPIEXEC" -np 2 "$BERTRAIN" pretrain --config "$CFG" "${FT[@]}" \
   --set finetune.launcher=inline --set finetune.epochs=40 > out 2> err) &
launcher=$!
wait_state ikill/run/finetune/epoch-0000/status running || fail "inline: the baseline job never ran"
kill -KILL $(rank_pids $launcher) 2> /dev/null
wait $launcher
grep -q '^state=running' ikill/run/finetune/epoch-0000/status && pass ||
  fail "inline: the killed job's status is not 'running': $(cat ikill/run/finetune/epoch-0000/status)"
pretrain_in ikill 2 "${FT[@]}" --set finetune.launcher=inline ||
  { cat ikill/err >&2; fail "inline: the resumed run failed"; }
grep -q "epoch 0 was left running by an earlier start of the run; starting it again" ikill/err && pass ||
  fail "inline: the resumed run did not say it runs the unfinished job: $(grep finetune ikill/err)"
check_run ikill inline
finish
