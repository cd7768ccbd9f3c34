#!/usr/bin/env bash
# slurm/pretrain.sbatch against a real single-node Slurm (scripts/local-slurm.sh,
# brought up here and brought down at the end, pass or fail), 2 tasks on the CPU:
#  (a) configs/demo.ini scaled down: the job completes; milestone
#      checkpoints, the inline fine-tuning jobs and the report exist;
#  (b) with finetune.launcher=slurm, the rank-0 coordinator submits
#      slurm/finetune.sbatch from inside the job: one Slurm job per
#      milestone, ids in the status files, their metrics aggregated;
#  (c) pre-emption: a job with a 1-minute limit and --signal=B:USR1@25
#      checkpoints on USR1, requeues itself, resumes from latest.h5 and ends
#      with the same final weights as an uninterrupted run (mpirun);
#  (d) a two-run sweep file as a job array (slurm/sweep.sbatch): both runs
#      complete in their directories and 'bertrain report --sweep' gives the
#      sweep figure and table.
# Skips (77) when not root or when Slurm cannot be installed or started.
source "$SRC/tests/sh_util.sh"
source "$SRC/tests/dist_fixture.sh"

[ "$(id -u)" -eq 0 ] || skip "needs root to start slurmd (scripts/local-slurm.sh up)"

# A cluster of our own: own directory and a free port, so that a cluster
# started by hand or by another test is left alone.
export LOCAL_SLURM_DIR=/tmp/bertrain-slurm-test.$$
export LOCAL_SLURM_CPUS=8   # room for the 2-task job and a 4-CPU fine-tuning job beside it
for port in 6817 6827 6837 6847 6857; do
  (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null || (echo > "/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null ||
    break
done
export LOCAL_SLURM_PORT=$port

cluster_down() {
  "$SRC/scripts/local-slurm.sh" down >> "$T_DIR/cluster.log" 2>&1
  rm -rf "$LOCAL_SLURM_DIR"
}
t0=$SECONDS
if ! "$SRC/scripts/local-slurm.sh" up > cluster.env 2> cluster.log; then
  tail -5 cluster.log
  cluster_down
  skip "Slurm cannot start here (scripts/local-slurm.sh up failed; log above)"
fi
trap cluster_down EXIT
source cluster.env
echo "cluster up in $((SECONDS - t0)) s ($LOCAL_SLURM_DIR, port $port)"

make_dist_data "$T_DIR/data" || { echo "FAIL: could not make the data set" >&2; exit 1; }
CFG=$T_DIR/data/tiny.ini
mkdir -p mrpc
xz -dc "$SRC/data/sample/MRPC/train.tsv.xz" | head -97 > mrpc/train.tsv
xz -dc "$SRC/data/sample/MRPC/dev.tsv.xz" | head -65 > mrpc/dev.tsv
FT=(--set "finetune.data=$T_DIR/mrpc" --set finetune.epochs=2 --set finetune.batch_size=16
    --set finetune.seq_length=32 --set finetune.baseline=true)
# The scripts' --signal=B:USR1@600 would signal a 5-minute job at once.
SB=(--parsable --ntasks-per-node=2 --cpus-per-task=1 --signal=B:USR1@30)

job_field() { # job_field ID FIELD: from 'scontrol show job' (ended jobs are kept)
  scontrol show job "$1" 2>/dev/null | grep -o "\b$2=[^ ]*" | head -1 | cut -d= -f2
}

# wait_jobs SECONDS ID...: until none of the jobs is in the queue; on time-out
# cancels them and returns 1.
wait_jobs() {
  local limit=$1 end=$((SECONDS + $1))
  shift
  while [ -n "$(squeue -h -j "$(IFS=,; echo "$*")" -o %i 2>/dev/null)" ]; do
    if [ $SECONDS -ge $end ]; then
      scancel "$@" 2>/dev/null
      fail "jobs $* still in the queue after $limit s (cancelled)"
      return 1
    fi
    sleep 0.5
  done
}

# submit DIR [sbatch options] -- [pretrain.sbatch arguments]: prints the job id.
submit() {
  local dir=$1 opts=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  mkdir -p "$dir" && (cd "$dir" && sbatch "${SB[@]}" "${opts[@]}" "$SRC/slurm/pretrain.sbatch" "${SUBMIT_CFG:-$CFG}" "$@")
}

check_job_ok() { # check_job_ok WHAT ID DIR
  local st ec
  st=$(job_field "$2" JobState) ec=$(job_field "$2" ExitCode)
  if [ "$st" = COMPLETED ] && [ "$ec" = 0:0 ]; then pass; else
    fail "$1: job $2 ended as $st, exit code $ec"; cat "$3"/slurm-*.out >&2; fi
}

check_finetuned() { # check_finetuned WHAT RUN_DIR LAUNCHER
  local run=$2 e rows
  for e in 0000 0002 0004; do
    [ -s "$run/checkpoints/epoch-$e.h5" ] && pass || fail "$1: no checkpoint epoch-$e.h5"
    grep -q '^state=done' "$run/finetune/epoch-$e/status" 2>/dev/null && pass ||
      fail "$1: job epoch-$e not done: $(cat "$run/finetune/epoch-$e/status" 2>&1)"
    grep -q "^launcher=$3" "$run/finetune/epoch-$e/status" 2>/dev/null && pass ||
      fail "$1: status of epoch-$e does not name launcher $3"
    [ -s "$run/finetune/epoch-$e/model.h5" ] && pass || fail "$1: no model.h5 for epoch-$e"
    rows=$(awk -F, -v e=$((10#$e)) '$1 == "mrpc" && $2 == e && $3 == "validation" && $6 == "epoch_accuracy"' \
      "$run/metrics.csv" 2>/dev/null | wc -l)
    [ "$rows" = 2 ] && pass || fail "$1: metrics.csv has $rows validation accuracy rows for epoch $e, expected 2"
  done
  [ -s "$run/checkpoints/final.h5" ] && pass || fail "$1: no final.h5"
  [ -s "$run/report/Report.md" ] && pass || fail "$1: no report"
}

# (c)'s reference: the same run uninterrupted, with mpirun, in the background meanwhile.
LONG=(--set pretrain.steps_per_epoch=340 --set checkpoint.every_steps=1000)
pretrain_in ref 2 "${LONG[@]}" &
ref_pid=$!

# --- (a) inline fine-tuning inside the job: the demo config, scaled down to
# the test's data (20 steps of 16 sequences, milestones every 2 epochs)
t0=$SECONDS
DEMO=(--set model.vocab=$T_DIR/data/vocab.txt --set data.dir=$T_DIR/data/shards
      --set data.seq_length=32 --set data.max_predictions=5 --set pretrain.epochs=4
      --set pretrain.steps_per_epoch=5 --set pretrain.milestone_epochs=2 --set pretrain.batch_size=16
      --set pretrain.micro_batch=4 --set checkpoint.every_steps=3 --set finetune.task=mrpc
      --set run.dir=run)
id_a=$(SUBMIT_CFG=$SRC/configs/demo.ini submit a --time=5 -- "${DEMO[@]}" "${FT[@]}" \
       --set finetune.launcher=inline) || fail "(a) sbatch failed"
if [ -n "$id_a" ] && wait_jobs 90 "$id_a"; then
  check_job_ok "(a)" "$id_a" a
  check_finetuned "(a)" a/run inline
  grep -q "^pretrain.sbatch: job $id_a (restart 0)" a/slurm-bertrain-pretrain-"$id_a".out && pass ||
    fail "(a) no job output file a/slurm-bertrain-pretrain-$id_a.out with the script's header"
fi
echo "(a) inline: $((SECONDS - t0)) s"

# --- (b) fine-tuning as separate Slurm jobs submitted from inside the job
t0=$SECONDS
id_b=$(submit b --time=5 -- "${FT[@]}" --set finetune.launcher=slurm \
       --set finetune.sbatch="$SRC/slurm/finetune.sbatch") || fail "(b) sbatch failed"
if [ -n "$id_b" ] && wait_jobs 90 "$id_b"; then
  check_job_ok "(b)" "$id_b" b
  ft_ids=$(sed -n 's/^job_id=//p' b/run/finetune/epoch-*/status 2>/dev/null | sort -un)
  [ "$(echo $ft_ids | wc -w)" = 3 ] && pass || fail "(b) expected 3 fine-tuning job ids in the status files, got '$ft_ids'"
  wait_jobs 120 $ft_ids
  for j in $ft_ids; do
    [ "$j" != "$id_b" ] && [ "$(job_field "$j" JobName)" != bertrain-pretrain ] &&
      [ "$(job_field "$j" JobState)" = COMPLETED ] && pass ||
      fail "(b) fine-tuning job $j: $(job_field "$j" JobName) $(job_field "$j" JobState)"
  done
  # The pre-training job may end before its fine-tuning jobs: aggregate now.
  "$BERTRAIN" report b/run > b/report.log 2>&1 || fail "(b) bertrain report failed: $(cat b/report.log)"
  check_finetuned "(b)" b/run slurm
fi
echo "(b) slurm launcher: $((SECONDS - t0)) s"

# --- (d) a two-run sweep as a job array (slurm/sweep.sbatch), then its report
t0=$SECONDS
{
  echo "[sweep]"; echo "base = $CFG"; echo "dir = $T_DIR/sweep"
  for run in "[L1]" "model.layers = 1" "[L2-b32]" "pretrain.batch_size = 32"; do
    echo "$run"
    case $run in \[*) ;; *)
      printf '%s\n' "finetune.launcher = inline" "finetune.data = $T_DIR/mrpc" "finetune.epochs = 2" \
        "finetune.batch_size = 16" "finetune.seq_length = 32" "finetune.baseline = true" ;;
    esac
  done
} > sweep.ini
mkdir -p d
id_d=$(cd d && sbatch "${SB[@]}" --time=5 --array=0-1 --export=ALL,BERTRAIN_SLURM_DIR=$SRC/slurm \
       "$SRC/slurm/sweep.sbatch" "$T_DIR/sweep.ini") || fail "(d) sbatch --array failed"
if [ -n "$id_d" ] && wait_jobs 120 "$id_d"; then
  for i in 0 1; do
    check_job_ok "(d) array task $i" "${id_d}_$i" d
    [ -s d/slurm-bertrain-sweep-${id_d}_$i.out ] && pass || fail "(d) no output file for array task $i"
  done
  check_finetuned "(d) L1" sweep/L1 inline
  check_finetuned "(d) L2-b32" sweep/L2-b32 inline
  grep -q "^layers = 1$" sweep/L1/config.ini && grep -q "^batch_size = 32$" sweep/L2-b32/config.ini &&
    pass || fail "(d) the runs' overrides are not in their config.ini"
  cmp -s sweep.ini sweep/sweep.ini && pass || fail "(d) sweep.ini not copied into the sweep directory"
  "$BERTRAIN" report --sweep sweep > d/report.log 2>&1 || fail "(d) bertrain report --sweep failed: $(cat d/report.log)"
  R=sweep/report/Report.md
  grep -q "^| L1 | model.layers=1, .* | L1/H32/A2/I64 | 16 | step 20 of 20, " $R &&
    grep -q "^| L2-b32 | pretrain.batch_size=32, .* | L2/H32/A2/I64 | 32 | step 20 of 20, " $R && pass ||
    fail "(d) the sweep report's runs table: $(grep '^| L' $R)"
  [ "$(grep -c '^L1,mrpc,\|^L2-b32,mrpc,' sweep/report/sweep.csv)" = 6 ] && pass ||
    fail "(d) sweep.csv should have 3 milestones x 2 runs: $(cat sweep/report/sweep.csv)"
  acc=$(grep "^validation,.*,epoch_accuracy," sweep/L2-b32/finetune/epoch-0004/metrics.csv | tail -1 | cut -d, -f5)
  grep -q "^L2-b32,mrpc,4,20,[0-9.]*,$(printf %.6f "$acc")," sweep/report/sweep.csv && pass ||
    fail "(d) sweep.csv's L2-b32 epoch-4 accuracy is not the job's $acc"
  [ "$(head -c 4 sweep/report/sweep_wallclock_accuracy.png | od -An -c | tr -d ' ')" = "211PNG" ] &&
    grep -qF "(./sweep_wallclock_accuracy.png)" $R && pass || fail "(d) no sweep figure"
  [ "$(grep -c '^# L[12].* mrpc:' sweep/report/data/sweep_wallclock_accuracy.dat)" = 2 ] &&
    [ "$(grep -cv '^#\|^$' sweep/report/data/sweep_wallclock_accuracy.dat)" = 6 ] && pass ||
    fail "(d) the sweep figure's data should be 2 runs x 3 points"
fi
echo "(d) sweep array: $((SECONDS - t0)) s"

# --- (c) pre-emption: time limit 1 minute, USR1 to the batch shell 25 s
# before it. Slurm checks time limits every 30 s, so the signal comes between
# 5 and 35 s after the start; the run takes 8 to 45 s here, depending on the
# load. Should the run get to step 200 of 1360 without it, the test sends the
# same signal to the batch shell itself (scancel --batch), so that the stop
# comes well before the end (at step 500 it sometimes came after the end,
# with the test's polls slowed by the other tests). Once the job is requeued, its
# limit is raised to 5 minutes so that the resumed run is not pre-empted
# again (that would only repeat the same path, at random, taking longer).
wait $ref_pid || { cat ref/err >&2; fail "(c) the uninterrupted reference run failed"; }
t0=$SECONDS
id_c=$(submit c --time=1 --signal=B:USR1@25 -- "${LONG[@]}") || fail "(c) sbatch failed"
nudged=0 raised=0
if [ -n "$id_c" ]; then
  end=$((SECONDS + 180))
  while [ -n "$(squeue -h -j "$id_c" -o %i 2>/dev/null)" ] && [ $SECONDS -lt $end ]; do
    steps=$(($(wc -l 2>/dev/null < c/run/pretrain/metrics.csv || echo 1) - 1))
    restarts=$(job_field "$id_c" Restarts)
    if [ $nudged = 0 ] && [ "$restarts" = 0 ] && [ "$steps" -ge 200 ] &&
       ! grep -q "^pretrain.sbatch: SIGUSR1" c/slurm-*.out; then
      scancel --batch --signal=USR1 "$id_c" && nudged=1
    fi
    if [ $raised = 0 ] && [ "${restarts:-0}" -ge 1 ]; then
      scontrol update JobId="$id_c" TimeLimit=5 && raised=1
    fi
    sleep 0.5
  done
  wait_jobs 1 "$id_c"
  check_job_ok "(c)" "$id_c" c
  restarts=$(job_field "$id_c" Restarts)
  [ "${restarts:-0}" -ge 1 ] && pass || fail "(c) the job was not requeued (Restarts=$restarts)"
  out=c/slurm-bertrain-pretrain-$id_c.out
  n_usr1=$(grep -c "^pretrain.sbatch: SIGUSR1" "$out")
  n_requeue=$(grep -c "^pretrain.sbatch: checkpointed (latest.h5); requeueing" "$out")
  [ "$n_requeue" -ge 1 ] && [ "$n_requeue" = "$restarts" ] && pass ||
    fail "(c) $n_requeue requeue lines in $out for $restarts restarts"
  grep -q "^pretrain.sbatch: job $id_c (restart 1)" "$out" && pass ||
    fail "(c) the requeued run did not append to $out"
  grep -q "^pretrain: resuming from .*latest.h5" "$out" && pass || fail "(c) the requeued run did not resume from latest.h5"
  same_params c/run/checkpoints/final.h5 ref/run/checkpoints/final.h5 --exclude-attribute / && pass ||
    fail "(c) the pre-empted run's final weights differ from the uninterrupted run's"
  echo "(c) pre-emption: $((SECONDS - t0)) s, $restarts restart(s), $n_usr1 SIGUSR1" \
       "($((n_usr1 - nudged)) from the time limit, $nudged sent by the test)"
fi
finish
