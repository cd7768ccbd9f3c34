#!/usr/bin/env bash
# The coordinator end to end on real checkpoints: a tiny pre-training run
# writes milestone checkpoints, then coord_driver (tests/coord_driver.c)
# drives the coordinator as pre-training does, with the process, inline and
# slurm launchers (Slurm played by stand-in sbatch/squeue/sacct scripts).
# Checks the job directories, status files, metrics store, report and
# figures against each other and against the jobs' own files.
source "$SRC/tests/sh_util.sh"
source "$SRC/tests/train_fixture.sh"

[ -x "${COORD_DRIVER:-}" ] || { echo "FAIL: COORD_DRIVER (the coord_driver program) is not set" >&2; exit 1; }
make_tiny_data "$T_DIR/data" || { echo "FAIL: could not make the tiny data set" >&2; exit 1; }
CFG=$T_DIR/data/tiny.ini
mkdir -p mrpc sst2
xz -dc "$SRC/data/sample/MRPC/train.tsv.xz" | head -257 > mrpc/train.tsv
xz -dc "$SRC/data/sample/MRPC/dev.tsv.xz" | head -129 > mrpc/dev.tsv
xz -dc "$SRC/data/sample/SST-2/train.tsv.xz" | head -257 > sst2/train.tsv
xz -dc "$SRC/data/sample/SST-2/dev.tsv.xz" | head -129 > sst2/dev.tsv

# Milestone checkpoints after epochs 1, 2, 3 (10 steps each), fine-tuning off.
"$BERTRAIN" pretrain --config "$CFG" --set pretrain.milestone_epochs=1 \
  --set finetune.launcher=none --set run.dir=$T_DIR/pre > pre.out 2>&1 ||
  { cat pre.out >&2; echo "FAIL: pretrain" >&2; exit 1; }
for e in 1 2 3; do
  [ -s pre/checkpoints/epoch-000$e.h5 ] || { echo "FAIL: no pre/checkpoints/epoch-000$e.h5" >&2; exit 1; }
done
# --milestone arguments for epochs $@ of run directory $1: CKPT:EPOCH:WALL:STEP.
milestones() {
  local run=$1 e
  shift
  for e in "$@"; do
    local s=$((e * 10))
    local w=$(awk -F, -v s=$s 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "wall_s") c = i }
                               NR > 1 && $1 == s { print $c }' "$run/pretrain/metrics.csv")
    printf -- '--milestone %s:%d:%s:%d ' "$run/checkpoints/epoch-000$e.h5" "$e" "$w" "$s"
  done
}
CMD='{bertrain} finetune --checkpoint {checkpoint} --task {task} --data {data} --out {out} --set run.seed={seed} --set run.threads=1'
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
val() { grep "^$2=" "$1" | cut -d= -f2-; } # val FILE KEY

# ---- process launcher: two tasks, the second with a data path that does not exist ----
cp -r pre run-p
timeout 240 "$COORD_DRIVER" "$CFG" run-p "$BERTRAIN" --set finetune.launcher=process \
  --set finetune.max_parallel=2 --set "finetune.tasks=mrpc:$T_DIR/mrpc,sst2:$T_DIR/missing" \
  --set "finetune.command=$CMD" --baseline $(milestones run-p 1 2 3) > driver-p.out 2> driver-p.err &&
  pass || fail "coord_driver (process) exited non-zero: $(tail -5 driver-p.err)"
cat driver-p.out
running=$(awk '$1 == "max_running" { print $2 }' driver-p.out)
[ "$running" = 2 ] && pass || fail "process launcher: expected at most and at some point 2 jobs at once, saw $running"
awk '$1 == "max_call_s" { exit !($2 < 0.5) }' driver-p.out && pass ||
  fail "coord_milestone/coord_poll blocked: $(grep max_call_s driver-p.out)"
for e in 0 1 2 3; do
  d=run-p/finetune/epoch-000$e
  [ "$(val $d/milestone.txt epoch)" = $e ] && [ "$(val $d/milestone.txt global_step)" = $((e * 10)) ] &&
    pass || fail "$d/milestone.txt: $(cat $d/milestone.txt 2>&1)"
  s=$d/mrpc/status
  [ "$(val $s state)" = done ] && [ "$(val $s exit_code)" = 0 ] && [ "$(val $s seed)" = $((42 + e)) ] &&
    [ "$(val $s log)" = "finetune/epoch-000$e/mrpc/finetune.log" ] && [ "$(val $s launcher)" = process ] &&
    pass || fail "$s: $(cat $s 2>&1)"
  [ -s $d/mrpc/model.h5 ] && [ -s $d/mrpc/metrics.csv ] && [ -s $d/mrpc/finetune.log ] && pass ||
    fail "$d/mrpc lacks model.h5, metrics.csv or finetune.log"
  grep -q "run.seed=$((42 + e))" $d/mrpc/finetune.log && grep -q "^seed = $((42 + e))$" $d/mrpc/config.ini &&
    pass || fail "$d/mrpc was not run with seed $((42 + e))"
  s=$d/sst2/status
  [ "$(val $s state)" = failed ] && [ "$(val $s exit_code)" = 1 ] &&
    [ "$(val $s log)" = "finetune/epoch-000$e/sst2/finetune.log" ] && pass || fail "$s: $(cat $s 2>&1)"
  grep -q "error: .*missing" $d/sst2/finetune.log && pass || fail "$d/sst2/finetune.log does not say what failed"
done
grep -q "sst2 from epoch 3 failed (exit code 1); log .*sst2/finetune.log; pre-training goes on" driver-p.err &&
  pass || fail "the failure was not reported on stderr"

M=run-p/metrics.csv
[ "$(head -1 $M)" = "task,pretrained_epoch,phase,step,epoch,metric,value" ] && pass || fail "$M header: $(head -1 $M)"
# Every row of every job's metrics.csv, in order, under its task and epoch.
for e in 0 1 2 3; do
  cmp -s <(grep "^mrpc,$e,\(train\|validation\)," $M | cut -d, -f3-) \
         <(tail -n +2 run-p/finetune/epoch-000$e/mrpc/metrics.csv) && pass ||
    fail "$M: the rows of mrpc epoch $e differ from its metrics.csv"
  grep -qx "mrpc,$e,milestone,$((e * 10)),$e,global_step,$((e * 10))" $M && pass ||
    fail "$M: no global_step row for mrpc epoch $e"
done
[ "$(grep -c '^sst2,[0-9]*,\(train\|validation\),' $M)" -eq 0 ] && pass || fail "$M has rows of failed jobs"
ncol=$(head -1 run-p/pretrain/metrics.csv | tr ',' '\n' | grep -cvx 'step\|epoch\|wall_s')
[ "$(grep -c '^,,pretrain,' $M)" -eq $((30 * ncol)) ] && pass ||
  fail "$M: expected 30 steps x $ncol pre-training rows, got $(grep -c '^,,pretrain,' $M)"
grep -qx ",,pretrain,30,3,loss,$(awk -F, 'NR == 31 { print $3 }' run-p/pretrain/metrics.csv)" $M && pass ||
  fail "$M: the loss of step 30 differs from pretrain/metrics.csv"

H=run-p/metrics.h5
if command -v h5ls > /dev/null; then
  groups=$(h5ls -r $H | awk '$2 == "Group" { print $1 }' | grep -c '^/finetune/[a-z0-9]*/epoch-000[0-3]$')
  [ "$groups" -eq 8 ] && pass || fail "$H: expected 8 job groups, found $groups"
  h5ls -r $H | grep -q '^/finetune/mrpc/epoch-0002/train/batch_accuracy *Dataset {16}' &&
    h5ls -r $H | grep -q '^/finetune/mrpc/epoch-0002/validation/epoch_accuracy *Dataset {2}' &&
    h5ls -r $H | grep -q '^/pretrain/loss *Dataset {30}' && pass || fail "$H: datasets missing: $(h5ls -r $H)"
  h5dump -a /finetune/sst2/epoch-0001/status $H | grep -q '"failed"' &&
    h5dump -a /finetune/mrpc/epoch-0003/global_step $H | grep -q '(0): 30' && pass ||
    fail "$H: status or global_step attributes wrong"
  last=$(grep "^validation,.*,epoch_accuracy," run-p/finetune/epoch-0002/mrpc/metrics.csv | tail -1 | cut -d, -f5)
  h5dump -d /finetune/mrpc/epoch-0002/validation/epoch_accuracy $H | grep -q "$last" && pass ||
    fail "$H: validation accuracy of epoch 2 is not $last"
else
  echo "note: h5ls not found; metrics.h5 not inspected"
fi

R=run-p/report/Report.md
[ -s $R ] && pass || fail "no $R"
for e in 0 1 2 3; do
  acc=$(grep "^validation,.*,epoch_accuracy," run-p/finetune/epoch-000$e/mrpc/metrics.csv | tail -1 | cut -d, -f5)
  f1=$(grep "^validation,.*,f1," run-p/finetune/epoch-000$e/mrpc/metrics.csv | tail -1 | cut -d, -f5)
  row=$(printf '| %s | %d | .* | %.4f | %.4f | .* | done |' "$e$([ $e = 0 ] && echo ' (random init)')" $((e * 10)) "$acc" "$f1")
  grep -q "^$row" $R && pass || fail "$R: no table row '$row'"
  grep -q "^- Failed: pre-trained epoch $e (\`finetune/epoch-000$e/sst2\`): exit code 1; log \`finetune/epoch-000$e/sst2/finetune.log\`" $R &&
    pass || fail "$R does not list the failed sst2 job of epoch $e"
done
grep -q "^\*\*MRPC\*\* (4 jobs: 3 finished from pre-trained checkpoints plus the epoch-0 baseline, 0 failed" $R &&
  grep -q "^\*\*SST-2\*\* (4 jobs: 0 finished .*, 4 failed" $R && pass || fail "$R: findings do not count the jobs"
grep -q "^## Configuration" $R && grep -q "^milestone_epochs = 1$" $R && grep -q -- "--milestone run-p/" $R &&
  pass || fail "$R lacks the configuration or the command"
for f in figure_batch_accuracy figure_epoch_accuracy wallclock_accuracy pretrain_loss; do
  is_png run-p/report/$f.png && grep -qF "(./$f.png)" $R && pass || fail "no figure $f.png in the report"
done
# The figures' data are the store's.
cmp -s <(awk 'NF == 3 { print $1, $3 }' run-p/report/data/mrpc_epoch_accuracy.dat) \
       <(for e in 0 1 2 3; do grep "^mrpc,$e,validation,.*,epoch_accuracy," $M | awk -F, '{ print $5, $7 }'; done) &&
  pass || fail "figure_epoch_accuracy's data differ from metrics.csv"
[ "$(grep -v '^#' run-p/report/data/wallclock_accuracy.dat | awk 'NF == 3' | wc -l)" -eq 4 ] && pass ||
  fail "wallclock_accuracy should have 4 points (mrpc epochs 0-3)"
[ -s run-p/tb/finetune/epoch-0002/mrpc/train/events.out.tfevents.0000000000.bertrain ] &&
  [ -s run-p/tb/pretrain/events.out.tfevents.0000000000.bertrain ] && pass || fail "no TensorBoard files"

# ---- bertrain report on a copy rebuilds identical files ----
cp -r run-p copy
rm copy/metrics.csv copy/metrics.h5
"$BERTRAIN" report copy > report.out 2> report.err && pass || fail "bertrain report on the copy: $(cat report.err)"
cmp -s run-p/metrics.csv copy/metrics.csv && pass || fail "metrics.csv rebuilt on a copy differs"
cmp -s run-p/metrics.h5 copy/metrics.h5 && pass || fail "metrics.h5 rebuilt on a copy differs"
cmp -s run-p/tb/finetune/epoch-0003/mrpc/train/events.out.tfevents.0000000000.bertrain \
       copy/tb/finetune/epoch-0003/mrpc/train/events.out.tfevents.0000000000.bertrain && pass ||
  fail "TensorBoard file rebuilt on a copy differs"
expect_fail "report on a missing directory" "no such run directory" "$BERTRAIN" report nowhere
mkdir -p empty
expect_fail "report on an empty directory" "not a run directory" "$BERTRAIN" report empty

# ---- inline launcher: one task (jobs directly in epoch-NNNN), run by the driver itself ----
cp -r pre run-i
timeout 240 "$COORD_DRIVER" "$CFG" run-i "$BERTRAIN" --set finetune.launcher=inline \
  --set "finetune.tasks=mrpc:$T_DIR/mrpc" --baseline $(milestones run-i 1 3) > driver-i.out 2> driver-i.err &&
  pass || fail "coord_driver (inline) exited non-zero: $(tail -5 driver-i.err)"
for e in 0 1 3; do
  s=run-i/finetune/epoch-000$e/status
  [ "$(val $s state)" = done ] && [ "$(val $s launcher)" = inline ] && [ -s run-i/finetune/epoch-000$e/model.h5 ] &&
    pass || fail "$s: $(cat $s 2>&1)"
  cmp -s <(grep "^mrpc,$e,\(train\|validation\)," run-i/metrics.csv | cut -d, -f3-) \
         <(tail -n +2 run-i/finetune/epoch-000$e/metrics.csv) && pass || fail "run-i metrics of epoch $e"
done
[ ! -e run-i/finetune/epoch-0002 ] && pass || fail "run-i: a job for epoch 2, which was no milestone"
# Same seed and checkpoint as the process run: the same fine-tuning.
cmp -s run-i/finetune/epoch-0003/metrics.csv run-p/finetune/epoch-0003/mrpc/metrics.csv &&
  [ "$(grep -c . run-i/finetune/epoch-0003/metrics.csv)" -gt 1 ] && pass ||
  fail "inline and process jobs of epoch 3 should have the same rows"

# ---- bad settings die when the coordinator is made ----
expect_fail "unknown placeholder" "unknown placeholder" "$COORD_DRIVER" "$CFG" bad "$BERTRAIN" \
  --set finetune.launcher=process --set "finetune.command={bertrain} {nope}"
expect_fail "unknown task" "sst3" "$COORD_DRIVER" "$CFG" bad "$BERTRAIN" --set finetune.tasks=sst3

# ---- slurm launcher against stand-ins for sbatch, squeue and sacct ----
mkdir -p bin slurm-state
cat > bin/sbatch <<'EOF'
#!/bin/bash
# Records its arguments, prints a job id, and runs the job script in the
# background (after FAKE_SLURM_DELAY seconds, and once the file
# FAKE_SLURM_HOLD exists when that is set, 2 minutes at most) unless the job's name is
# FAKE_SLURM_DROP, which "times out" without running.
echo "$*" >> "$FAKE_SLURM/calls"
n=$(( $(cat "$FAKE_SLURM/next" 2>/dev/null || echo 1000) + 1 ))
echo $n > "$FAKE_SLURM/next"
name= out= exp= parsable=
while [[ $1 == --* ]]; do
  case $1 in
    --job-name=*) name=${1#*=} ;; --output=*) out=${1#*=} ;; --export=*) exp=${1#*=} ;;
    --parsable) parsable=1 ;;
  esac
  shift
done
[ -n "$parsable" ] || { echo "stand-in sbatch: --parsable expected" >&2; exit 1; }
script=$1
shift
if [ "$name" = "${FAKE_SLURM_DROP:-}" ]; then
  echo "TIMEOUT|0:15" > "$FAKE_SLURM/$n.sacct"
  echo "$n"
  exit 0
fi
echo PENDING > "$FAKE_SLURM/$n.state"
(
  sleep "${FAKE_SLURM_DELAY:-0}"
  for i in $(seq 1 600); do [ -z "${FAKE_SLURM_HOLD:-}" ] || [ -e "$FAKE_SLURM_HOLD" ] && break; sleep 0.2; done
  echo RUNNING > "$FAKE_SLURM/$n.state"
  SLURM_JOB_ID=$n BERTRAIN=${exp#ALL,BERTRAIN=} bash "$script" "$@" > "${out//%j/$n}" 2>&1
  rc=$?
  echo "$([ $rc = 0 ] && echo COMPLETED || echo FAILED)|$rc:0" > "$FAKE_SLURM/$n.sacct"
  rm -f "$FAKE_SLURM/$n.state"
) < /dev/null > /dev/null 2>&1 &
echo "$n"
EOF
cat > bin/squeue <<'EOF'
#!/bin/bash
while [ $# -gt 0 ]; do [ "$1" = -j ] && id=$2; shift; done
[ -f "$FAKE_SLURM/$id.state" ] || { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }
cat "$FAKE_SLURM/$id.state"
EOF
cat > bin/sacct <<'EOF'
#!/bin/bash
while [ $# -gt 0 ]; do [ "$1" = -j ] && id=$2; shift; done
cat "$FAKE_SLURM/$id.sacct" 2>/dev/null
exit 0
EOF
chmod +x bin/*
export FAKE_SLURM=$T_DIR/slurm-state
cp -r pre run-s
PATH=$T_DIR/bin:$PATH FAKE_SLURM_DROP=bertrain-ft-e0002-mrpc timeout 240 "$COORD_DRIVER" "$CFG" run-s \
  "$BERTRAIN" --set finetune.launcher=slurm --set "finetune.sbatch=$SRC/slurm/finetune.sbatch" \
  --set "finetune.tasks=mrpc:$T_DIR/mrpc" $(milestones run-s 1 2) --wait 120 > driver-s.out 2> driver-s.err &&
  pass || fail "coord_driver (slurm) exited non-zero: $(tail -5 driver-s.err)"
grep -q "^outstanding_before_finish 0$" driver-s.out && pass || fail "slurm jobs not followed to their end: $(cat driver-s.out)"
call=$(head -1 slurm-state/calls)
[[ $call == "--parsable --job-name=bertrain-ft-e0001-mrpc --output=run-s/finetune/epoch-0001/slurm-%j.out --export=ALL,BERTRAIN=$BERTRAIN $SRC/slurm/finetune.sbatch run-s/checkpoints/epoch-0001.h5 mrpc $T_DIR/mrpc run-s/finetune/epoch-0001 --set run.seed=43" ]] &&
  pass || fail "sbatch arguments: $call"
s=run-s/finetune/epoch-0001/status
[ "$(val $s state)" = done ] && [ "$(val $s job_id)" = 1001 ] && [ "$(val $s launcher)" = slurm ] &&
  [ "$(val $s exit_code)" = 0 ] && [ "$(val $s seed)" = 43 ] && pass || fail "$s: $(cat $s 2>&1)"
grep -q "^finetune.sbatch: job 1001 " run-s/finetune/epoch-0001/slurm-1001.out && pass ||
  fail "the job script's Slurm output is not in slurm-1001.out"
s=run-s/finetune/epoch-0002/status
[ "$(val $s state)" = failed ] && [ "$(val $s job_id)" = 1002 ] && val $s reason | grep -q "TIMEOUT" &&
  pass || fail "$s (a job Slurm ended): $(cat $s 2>&1)"
cmp -s <(grep "^mrpc,1,\(train\|validation\)," run-s/metrics.csv | cut -d, -f3-) \
       <(tail -n +2 run-s/finetune/epoch-0001/metrics.csv) && pass || fail "run-s: the Slurm job's metrics are not in metrics.csv"
grep -q "^| 2 | 20 | .* | failed (exit 143) |" run-s/report/Report.md && pass ||
  fail "run-s report: epoch 2 should be failed (exit 143)"

# A job still in Slurm when pre-training ends: left there, then aggregated by 'bertrain report'.
cp -r pre run-s2
PATH=$T_DIR/bin:$PATH FAKE_SLURM_HOLD=$T_DIR/s2-release timeout 240 "$COORD_DRIVER" "$CFG" run-s2 \
  "$BERTRAIN" --set finetune.launcher=slurm --set "finetune.sbatch=$SRC/slurm/finetune.sbatch" \
  --set "finetune.tasks=mrpc:$T_DIR/mrpc" $(milestones run-s2 3) > driver-s2.out 2> driver-s2.err &&
  pass || fail "coord_driver (slurm, leaving a job) exited non-zero: $(tail -5 driver-s2.err)"
grep -q "1 fine-tuning job(s) still in Slurm (squeue -j 1003); when they have ended, 'bertrain report run-s2'" driver-s2.err &&
  pass || fail "no word on the job left in Slurm: $(cat driver-s2.err)"
touch "$T_DIR/s2-release" # held until pre-training has ended, whatever the machine's load
for i in $(seq 1 120); do [ "$(val run-s2/finetune/epoch-0003/status state)" = done ] && break; sleep 0.5; done
grep -q "^mrpc,3,train," run-s2/metrics.csv && fail "run-s2: metrics of an unfinished job before the report" || pass
"$BERTRAIN" report run-s2 > /dev/null 2>&1 && grep -q "^mrpc,3,validation,.*,epoch_accuracy," run-s2/metrics.csv &&
  grep -q "^| 3 | 30 | .* | done |" run-s2/report/Report.md && pass ||
  fail "bertrain report did not add the job that ended after pre-training"

# A later start of the run (pre-training resumed) reaching the same milestone
# follows the job still in Slurm instead of submitting it again.
cp -r pre run-s4
SL=(--set finetune.launcher=slurm --set "finetune.sbatch=$SRC/slurm/finetune.sbatch"
    --set "finetune.tasks=mrpc:$T_DIR/mrpc" $(milestones run-s4 3))
# The job is held until the second start follows it (a fixed delay raced
# with a loaded machine: the job could end first).
PATH=$T_DIR/bin:$PATH FAKE_SLURM_HOLD=$T_DIR/s4-release timeout 60 "$COORD_DRIVER" "$CFG" run-s4 \
  "$BERTRAIN" "${SL[@]}" > driver-s4.out 2> driver-s4.err ||
  fail "coord_driver (slurm, first start) exited non-zero"
id=$(val run-s4/finetune/epoch-0003/status job_id)
PATH=$T_DIR/bin:$PATH timeout 120 "$COORD_DRIVER" "$CFG" run-s4 "$BERTRAIN" "${SL[@]}" --wait 100 \
  > driver-s4b.out 2> driver-s4b.err &
s4b=$!
for i in $(seq 1 200); do grep -q "following Slurm job" driver-s4b.err && break; sleep 0.3; done
touch "$T_DIR/s4-release"
wait $s4b || fail "coord_driver (slurm, second start) exited non-zero"
grep -q "mrpc from epoch 3: following Slurm job $id again" driver-s4b.err && pass ||
  fail "the second start did not follow job $id: $(cat driver-s4b.err)"
[ "$(grep -c 'job-name=bertrain-ft-e0003-mrpc' slurm-state/calls)" = 2 ] && pass ||
  fail "epoch 3 submitted again: $(grep e0003 slurm-state/calls)"
[ "$(val run-s4/finetune/epoch-0003/status state)" = done ] && grep -q "^mrpc,3,validation," run-s4/metrics.csv &&
  pass || fail "the followed job's end was not recorded: $(cat run-s4/finetune/epoch-0003/status)"

# Without sbatch: the job is recorded as failed, nothing stops.
cp -r pre run-s3
PATH=/usr/bin:/bin timeout 60 "$COORD_DRIVER" "$CFG" run-s3 "$BERTRAIN" --set finetune.launcher=slurm \
  --set "finetune.sbatch=$SRC/slurm/finetune.sbatch" --set "finetune.tasks=mrpc:$T_DIR/mrpc" \
  $(milestones run-s3 1) > driver-s3.out 2> driver-s3.err && pass || fail "coord_driver without sbatch exited non-zero"
s=run-s3/finetune/epoch-0001/status
if command -v sbatch > /dev/null && [ "$(command -v sbatch)" = /usr/bin/sbatch ]; then
  echo "note: a real sbatch is in /usr/bin; the missing-sbatch case is not checked"
else
  [ "$(val $s state)" = failed ] && val $s reason | grep -q "sbatch could not be run" &&
    [ "$(val $s log)" = finetune/epoch-0001/sbatch.log ] && pass || fail "$s (no sbatch): $(cat $s 2>&1)"
fi

finish
