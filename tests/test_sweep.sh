#!/usr/bin/env bash
# Sweep files without Slurm: 'bertrain sweep' lists and checks the runs and
# gives each run's arguments; two runs made from them (one process each, the
# tiny model, inline fine-tuning) and a run directory not yet started are
# compared by 'bertrain report --sweep': runs table, sweep.csv, figure data.
source "$SRC/tests/sh_util.sh"
source "$SRC/tests/dist_fixture.sh"

make_dist_data "$T_DIR/data" || { echo "FAIL: could not make the data set" >&2; exit 1; }
CFG=$T_DIR/data/tiny.ini
mkdir -p mrpc
xz -dc "$SRC/data/sample/MRPC/train.tsv.xz" | head -65 > mrpc/train.tsv
xz -dc "$SRC/data/sample/MRPC/dev.tsv.xz" | head -33 > mrpc/dev.tsv
cat > depth.ini <<EOF2
; a comment
[sweep]
base = $CFG
dir = $T_DIR/sw

[one-layer]
model.layers = 1   ; inline comment
finetune.launcher = inline
finetune.data = $T_DIR/mrpc
finetune.epochs = 1
finetune.seq_length = 32
finetune.baseline = true

[b32]
pretrain.batch_size = 32
finetune.launcher = inline
finetune.data = $T_DIR/mrpc
finetune.epochs = 1
finetune.seq_length = 32
finetune.baseline = false
EOF2

"$BERTRAIN" sweep depth.ini > list.out 2>&1 && pass || fail "bertrain sweep: $(cat list.out)"
grep -q "2 runs in $T_DIR/sw/" list.out && grep -q "^   0  one-layer .*$T_DIR/sw/one-layer  model.layers=1 " list.out &&
  grep -q "sbatch --array=0-1 slurm/sweep.sbatch depth.ini" list.out && pass || fail "the listing: $(cat list.out)"
"$BERTRAIN" sweep depth.ini --args 1 > args.out && pass || fail "sweep --args 1"
[ "$(head -1 args.out)" = "$CFG" ] && [ "$(tail -1 args.out)" = "run.dir=$T_DIR/sw/b32" ] &&
  [ "$(grep -c '^--set$' args.out)" = 7 ] && grep -qx "pretrain.batch_size=32" args.out && pass ||
  fail "sweep --args 1: $(cat args.out)"
[ "$("$BERTRAIN" sweep --dir depth.ini)" = "$T_DIR/sw" ] && pass || fail "sweep --dir"

# Bad sweep files: each names the file and line.
printf '[sweep]\nbase = %s\n[a]\nmodel.layrs = 2\n' "$CFG" > bad1.ini
expect_fail "unknown key" "bad1.ini:4: unknown key 'layrs' in [model]" "$BERTRAIN" sweep bad1.ini
printf '[sweep]\nbase = %s\n[a b]\nmodel.layers = 2\n' "$CFG" > bad2.ini
expect_fail "bad run name" "bad2.ini:4: [a b]: a run name" "$BERTRAIN" sweep bad2.ini
printf '[sweep]\nbase = %s\n[a]\nrun.dir = x\n' "$CFG" > bad3.ini
expect_fail "run.dir in a run" "run.dir is set by the sweep" "$BERTRAIN" sweep bad3.ini
printf '[sweep]\ndir = x\n' > bad4.ini
expect_fail "no base" "no [sweep] base" "$BERTRAIN" sweep bad4.ini
expect_fail "index past the runs" "no run 2 (it has runs 0 to 1)" "$BERTRAIN" sweep depth.ini --args 2

# The two runs, as sweep.sbatch would start them (one process each here).
mkdir -p sw && cp depth.ini sw/sweep.ini
for i in 0 1; do
  mapfile -t A < <("$BERTRAIN" sweep depth.ini --args $i)
  timeout 120 "$BERTRAIN" pretrain --config "${A[@]}" > run$i.out 2>&1 && pass ||
    fail "run $i: $(tail -3 run$i.out)"
done
mkdir -p sw/later && cp sw/b32/config.ini sw/later/   # a run directory not started yet
"$BERTRAIN" report --sweep sw > report.out 2>&1 && pass || fail "report --sweep: $(cat report.out)"
R=sw/report/Report.md
grep -q "^| one-layer | model.layers=1, .* | L1/H32/A2/I64 | 16 | step 20 of 20, .* | 3 done, 0 failed, 0 other |" $R &&
  grep -q "^| b32 | pretrain.batch_size=32, .* | L2/H32/A2/I64 | 32 | step 20 of 20, .* | 2 done, 0 failed, 0 other |" $R &&
  grep -q "^| later | - | L2/H32/A2/I64 | 32 | not started | 0 done, 0 failed, 0 other | - |" $R && pass ||
  fail "the runs table: $(grep '^| ' $R | head -5)"
# Runs in sweep.ini's order, then the others by name.
order=$(awk -F' [|] ' '/^## Runs/ { t = 1; next } /^## / { t = 0 } t && /^[|] / && !/^[|] run [|]/ { print substr($1, 3) }' $R | tr '\n' ' ')
[ "$order" = "one-layer b32 later " ] && pass || fail "run order: $order"
[ "$(grep -c '^one-layer,mrpc,\|^b32,mrpc,' sw/report/sweep.csv)" = 5 ] && pass ||
  fail "sweep.csv should have 3 + 2 jobs: $(cat sw/report/sweep.csv)"
acc=$(grep "^validation,.*,epoch_accuracy," sw/b32/finetune/epoch-0004/metrics.csv | tail -1 | cut -d, -f5)
wall=$(sed -n 's/^pretrain_wall_s=//p' sw/b32/finetune/epoch-0004/milestone.txt)
grep -q "^b32,mrpc,4,20,$(printf %.3f "$wall"),$(printf %.6f "$acc"),.*,done$" sw/report/sweep.csv && pass ||
  fail "sweep.csv's b32 epoch-4 row is not the job's (accuracy $acc, wall $wall): $(grep '^b32' sw/report/sweep.csv)"
grep -q "^- For the same pre-training time" $R && pass || fail "no equal-time comparison in the findings"
[ -s sw/one-layer/report/Report.md ] && [ -s sw/b32/metrics.csv ] && pass || fail "the runs' own reports were not rebuilt"
if command -v gnuplot > /dev/null; then
  [ "$(head -c 4 sw/report/sweep_wallclock_accuracy.png | od -An -c | tr -d ' ')" = "211PNG" ] && pass ||
    fail "no sweep figure"
fi
expect_fail "report --sweep on a run directory" "not a sweep directory" "$BERTRAIN" report --sweep sw/b32
finish
