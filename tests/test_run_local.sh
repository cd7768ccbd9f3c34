#!/usr/bin/env bash
# scripts/run-local.sh, the workstation path: the same arguments as
# slurm/pretrain.sbatch; the run equals a plain 'mpirun -np 2 bertrain
# pretrain' bit for bit; SIGUSR1 to it stops the ranks with latest.h5 and
# exit status 3, and running it again finishes the run.
source "$SRC/tests/sh_util.sh"
source "$SRC/tests/dist_fixture.sh"

make_dist_data "$T_DIR/data" || { echo "FAIL: could not make the data set" >&2; exit 1; }
CFG=$T_DIR/data/tiny.ini
RL=$SRC/scripts/run-local.sh

expect_fail "no config" "usage: scripts/run-local.sh" "$RL"
expect_fail "bad rank count" "usage: scripts/run-local.sh" "$RL" -n x "$CFG"
expect_fail "missing config" "cannot read config" "$RL" missing.ini

mkdir -p local && (cd local && timeout 120 "$RL" -n 2 "$CFG" > out 2> err) ||
  { cat local/err >&2; fail "run-local.sh -n 2 failed"; }
grep -q "mpirun -np 2 --map-by slot:PE=1 --bind-to core\|mpirun -np 2 --oversubscribe --bind-to none" local/err &&
  pass || fail "run-local.sh did not say its mpirun line: $(head -2 local/err)"
pretrain_in plain 2 || { cat plain/err >&2; fail "plain mpirun run failed"; }
same_params local/run/checkpoints/final.h5 plain/run/checkpoints/final.h5 && pass ||
  fail "run-local.sh's final weights differ from plain mpirun's"

# Stopped by SIGUSR1 (a longer run), then continued to the end.
LONG=(--set pretrain.steps_per_epoch=100 --set checkpoint.every_steps=1000)
mkdir -p stop && cd stop || exit 1
timeout 120 "$RL" -n 2 "$CFG" "${LONG[@]}" > out 2> err &
pid=$!
wait_for run/pretrain/metrics.csv && sleep 1
# run-local.sh execs mpirun: signal it, the child of timeout.
mpirun_pid=$(pgrep -P $pid | head -1)
kill -USR1 "$mpirun_pid"
wait $pid
rc=$?
[ $rc -eq 3 ] && pass || { cat err >&2; fail "SIGUSR1: exit status $rc, expected 3"; }
[ -s run/checkpoints/latest.h5 ] && [ ! -e run/checkpoints/final.h5 ] && pass ||
  fail "SIGUSR1: expected latest.h5 and no final.h5"
timeout 120 "$RL" -n 2 "$CFG" "${LONG[@]}" > out2 2> err2 || { cat err2 >&2; fail "continuing failed"; }
grep -q "resuming from run/checkpoints/latest.h5" err2 && [ -s run/checkpoints/final.h5 ] && pass ||
  fail "the second run did not resume from latest.h5 and finish"
finish
