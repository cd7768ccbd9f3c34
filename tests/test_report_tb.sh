#!/usr/bin/env bash
# bertrain report on a run directory written by hand: long pre-training
# curves (thinned for metrics.csv and TensorBoard, whole in metrics.h5),
# job files with a half-written and a malformed line, and the TensorBoard
# event files read back with TensorBoard's own reader (skipped, saying why,
# when the tensorboard package cannot be imported).
source "$SRC/tests/sh_util.sh"

RUN=$T_DIR/run
mkdir -p $RUN/pretrain $RUN/finetune/epoch-0000 $RUN/finetune/epoch-0020
# 12001 pre-training steps: more than the 5000 kept, so every 3rd and the last.
awk 'BEGIN { print "step,epoch,loss,mlm_loss,nsp_loss,mlm_acc,nsp_acc,lr,grad_norm,seq_per_s,wall_s"
  for (s = 1; s <= 12001; s++)
    printf "%d,%.4f,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.2f,%.3f\n", s, s / 1000, 10 - s / 2000,
      9 - s / 2000, 0.7 - s / 100000, s / 24002, 0.5 + s / 48004, 1e-4 * (1 - s / 12002), 1 + s % 7,
      200 + s % 13, s * 0.05 }' > $RUN/pretrain/metrics.csv
job() { # job DIR EPOCH STEP WALL ACC1 ACC2
  local d=$RUN/finetune/$1
  printf 'epoch=%d\nglobal_step=%d\npretrain_wall_s=%s\ncheckpoint=checkpoints/%s.h5\n' $2 $3 $4 $1 > $d/milestone.txt
  printf 'state=done\nexit_code=0\nlog=finetune/%s/finetune.log\ntask=mrpc\nlauncher=process\nseed=%d\n' $1 $((42 + $2)) > $d/status
  { echo "phase,step,epoch,metric,value"
    for s in 1 2 3 4 5 6; do e=$(( (s + 2) / 3 ))
      echo "train,$s,$e,batch_accuracy,0.$((s + $2 % 7))25"; echo "train,$s,$e,loss,0.$((9 - s))"
      [ $((s % 3)) -eq 0 ] && { [ $e = 1 ] && a=$5 || a=$6; echo "validation,$s,$e,epoch_accuracy,$a"; echo "validation,$s,$e,f1,0.8$e"; }
    done; } > $d/metrics.csv
}
job epoch-0000 0 0 0 0.625 0.6328125
job epoch-0020 20 4000 200.5 0.6875 0.703125
# A malformed row, and a last line still being written (no newline).
sed -i '4a train,x,1,batch_accuracy,0.5' $RUN/finetune/epoch-0020/metrics.csv
printf 'train,7,3,batch_accuracy,0.9' >> $RUN/finetune/epoch-0020/metrics.csv

"$BERTRAIN" report $RUN --no-figures > report.out 2> report.err && pass || fail "bertrain report: $(cat report.err)"
grep -q "epoch-0020/metrics.csv:5: malformed row; skipped" report.err && pass ||
  fail "the malformed row was not reported with FILE:LINE: $(cat report.err)"
M=$RUN/metrics.csv
[ "$(grep -c '^,,pretrain,[0-9]*,[0-9.]*,loss,' $M)" -eq 4001 ] &&
  [ "$(grep '^,,pretrain,[0-9]*,[0-9.]*,loss,' $M | cut -d, -f4 | awk 'NR == 1 || NR == 2 || NR == 4001' | tr '\n' ' ')" = "1 4 12001 " ] &&
  pass || fail "metrics.csv should keep steps 1, 4, 7, ... and the last (12001) of the pre-training curves"
grep -qx ",,pretrain,12001,12.001,wall_s,600.05" $M && fail "wall_s is a time axis, not a metric row" || pass
grep -qx "mrpc,20,milestone,4000,20,pretrain_wall_s,200.5" $M && grep -qx "mrpc,20,milestone,4000,20,global_step,4000" $M &&
  pass || fail "milestone rows from milestone.txt"
[ "$(grep -c '^mrpc,20,train,' $M)" -eq 12 ] && ! grep -q '^mrpc,20,train,7,' $M && pass ||
  fail "epoch-0020: 12 train rows expected, without the half-written step 7"
grep -q "^| 20 | 4000 | 200.5 s | 0.7031 | 0.8200 | 0.7031 (2) | done |" $RUN/report/Report.md && pass ||
  fail "Report.md table row of epoch 20: $(grep '^| 20' $RUN/report/Report.md)"
grep -q "epoch_accuracy.dat\|gnuplot" $RUN/report/data/figure_epoch_accuracy.gp && [ ! -e $RUN/report/figure_epoch_accuracy.png ] &&
  pass || fail "--no-figures: scripts written, no PNG rendered"
if command -v h5ls > /dev/null; then
  h5ls -r $RUN/metrics.h5 | grep -q '^/pretrain/step *Dataset {12001}' && pass || fail "metrics.h5 should hold every pre-training step"
fi

# ---- TensorBoard's reader ----
if ! err=$("$PYTHON" -c 'from tensorboard.backend.event_processing import event_accumulator' 2>&1); then
  [ "$T_FAILED" -eq 0 ] || { finish; exit 1; }
  echo "$T_PASSED passed before the TensorBoard part"
  skip "cannot import tensorboard with $PYTHON (pip install tensorboard): ${err##*$'\n'}"
fi
"$PYTHON" - "$RUN" > tb.out 2>&1 <<'EOF'
import csv, struct, sys
from tensorboard.backend.event_processing import event_accumulator as ea

run = sys.argv[1]
bad = 0
def check(cond, what):
    global bad
    if not cond:
        bad += 1
        print("FAIL:", what)

def f32(x):
    return struct.unpack('f', struct.pack('f', float(x)))[0]

def load(path):
    a = ea.EventAccumulator(path, size_guidance={ea.SCALARS: 0})
    a.Reload()
    return a

# Pre-training: every 3rd step and the last, every column but step, epoch, wall_s.
rows = list(csv.DictReader(open(run + "/pretrain/metrics.csv")))
kept = [r for i, r in enumerate(rows) if i % 3 == 0 or i == len(rows) - 1]
a = load(run + "/tb/pretrain")
tags = sorted(a.Tags()["scalars"])
want = sorted(k for k in rows[0] if k not in ("step", "epoch", "wall_s"))
check(tags == want, "pretrain tags %s, expected %s" % (tags, want))
for tag in ("loss", "mlm_acc", "nsp_acc", "lr", "seq_per_s"):
    ev = a.Scalars(tag) if tag in tags else []
    check([e.step for e in ev] == [int(r["step"]) for r in kept], "pretrain %s steps" % tag)
    check(all(e.value == f32(r[tag]) for e, r in zip(ev, kept)), "pretrain %s values" % tag)
    check(all(abs(e.wall_time - float(r["wall_s"])) < 1e-9 for e, r in zip(ev, kept)), "pretrain %s wall_time" % tag)

# Fine-tuning: train events by step, validation events by fine-tuning epoch.
for job in ("epoch-0000", "epoch-0020"):
    rows = [r for r in csv.DictReader(open("%s/finetune/%s/metrics.csv" % (run, job)))
            if r["step"].isdigit() and r["value"] is not None and r["step"] != "7"]
    for phase, tag_set in (("train", ["batch_accuracy", "loss"]), ("validation", ["epoch_accuracy", "f1"])):
        a = load("%s/tb/finetune/%s/%s" % (run, job, phase))
        check(sorted(a.Tags()["scalars"]) == sorted(tag_set), "%s %s tags %s" % (job, phase, a.Tags()["scalars"]))
        for tag in tag_set:
            want = [(int(r["epoch"] if phase == "validation" else r["step"]), f32(r["value"]))
                    for r in rows if r["phase"] == phase and r["metric"] == tag]
            got = [(e.step, e.value) for e in a.Scalars(tag)]
            check(got == want, "%s %s %s: %s, expected %s" % (job, phase, tag, got, want))
a = load(run + "/tb/finetune/epoch-0020/train")
check(a.Scalars("batch_accuracy")[0].wall_time == 200.5, "fine-tuning events carry the checkpoint's pre-training time")
print("tensorboard checks failed:", bad)
sys.exit(1 if bad else 0)
EOF
rc=$?
cat tb.out
[ $rc -eq 0 ] && pass || fail "TensorBoard's reader disagrees with the metrics"
finish
