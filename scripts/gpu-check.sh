#!/usr/bin/env bash
# The GPU checks in one run, for a machine with a GPU (e.g. the lent H100):
#   scripts/gpu-check.sh BUILD_DIR LOG_DIR [--no-hf] [--kernels]
# 1. bertrain version (sees the GPU?)       2. tests/test_ops_cuda: every op vs the CPU
# 3. tests/test_train_cuda.sh: 20 training steps cpu vs cuda, checkpoints crossing over
# 4. bertrain bench --device cuda, BERT-mini and BERT-base, batch 64 x 128, 20 predictions,
#    fp32, TF32 and bf16
# 5. bertrain bench --profile, bf16, both models: the time of every op and shape
# 6. scripts/hf_baseline.py, the Hugging Face anchors on the same card (unless --no-hf);
#    then BERT-base bf16 again with each fused kernel's A/B switch off
#    (BERTRAIN_ATTN_FUSED, BERTRAIN_GELU_BIAS_FUSED, BERTRAIN_LN_COLS_FUSED = 0)
# 7. tests/test_reference.sh: forward vs Hugging Face on cpu and cuda (needs torch);
#    tests/test_nccl.sh: 2 ranks with NCCL (needs 2 GPUs; skipped on one)
# 8. tests/test_ops_cuda again under compute-sanitizer memcheck, when it is installed
# 9. with --kernels: scripts/gpu-kernels.sh for BERT-base bf16 (device time per kernel,
#    Nsight Compute; about a minute more)
# Full logs go to LOG_DIR/NAME.log; a table of the outcomes is printed last. Each
# step has its own time limit, so one hang costs only its own. Exit status 1 when a
# check failed. BUILD_DIR is a CUDA build (cmake -DBERTRAIN_CUDA=ON) made for this
# machine's GPU architecture (CMAKE_CUDA_ARCHITECTURES, default 80;90), or the
# .gpu/bin that scripts/gpu-prepare.sh makes: bertrain and tests/test_ops_cuda.
set -u
USAGE="usage: scripts/gpu-check.sh BUILD_DIR LOG_DIR [--no-hf] [--kernels]"
[ $# -ge 2 ] || { echo "$USAGE" >&2; exit 2; }
cd "$(dirname "$0")/.."
BUILD=$(cd "$1" && pwd)
LOG=$2
shift 2
HF=1 KERNELS=0
for a in "$@"; do
  case $a in --no-hf) HF=0 ;; --kernels) KERNELS=1 ;; *) echo "$USAGE" >&2; exit 2 ;; esac
done
mkdir -p "$LOG/work"
LOG=$(cd "$LOG" && pwd)
export SRC=$PWD BERTRAIN=$BUILD/bertrain BERTRAIN_PYTHON=${BERTRAIN_PYTHON:-python3}
export MPIEXEC=${MPIEXEC:-$(command -v mpirun.openmpi || command -v mpirun || echo mpirun)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# the bundled Open MPI next to a machine's own PMIx warns about a compression plug-in
export PMIX_MCA_pcompress_base_silence_warning=1
ROWS=()
FAILED=0

# step NAME SECONDS COMMAND...: runs it with a time limit, its output in LOG/NAME.log.
step() {
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "== $name: $*" >&2
  timeout "$limit" "$@" > "$LOG/$name.log" 2>&1
  rc=$?
  local verdict=ok
  case $rc in 0) ;; 77) verdict=skipped ;; 124) verdict="TIMED OUT (${limit} s)"; FAILED=1 ;;
    *) verdict="FAILED (exit $rc)"; FAILED=1 ;; esac
  ROWS+=("$(printf '%-14s %-22s %5d s' "$name" "$verdict" $((SECONDS - t0)))")
  tail -3 "$LOG/$name.log" >&2
}

step version 60 "$BERTRAIN" version
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader > "$LOG/gpu.txt" 2>&1
# Cheap and essential first, the sanitizer last: a device call has a hard limit,
# and what it cuts off should be the slowest check, not the figures.
step ops 120 env BERTRAIN_CUDA_SYNC=1 bash -c "cd '$SRC/tests' && exec '$BUILD/tests/test_ops_cuda'"
step train 150 bash -c "cd '$LOG/work' && exec bash '$SRC/tests/test_train_cuda.sh'"
for m in mini base; do
  step bench-$m 90 "$BERTRAIN" bench --device cuda --config configs/bert-$m.ini --batch 64 \
    --seq 128 --pred 20 --steps 20 --warmup 3
  step bench-$m-tf32 90 "$BERTRAIN" bench --device cuda --config configs/bert-$m.ini --batch 64 \
    --seq 128 --pred 20 --steps 20 --warmup 3 --tf32
  step bench-$m-bf16 90 "$BERTRAIN" bench --device cuda --config configs/bert-$m.ini --batch 64 \
    --seq 128 --pred 20 --steps 20 --warmup 3 --precision bf16
done
for m in mini base; do
  step profile-$m 90 "$BERTRAIN" bench --device cuda --config configs/bert-$m.ini --batch 64 \
    --seq 128 --pred 20 --steps 5 --warmup 2 --precision bf16 --profile
done
[ $HF = 1 ] && step hf-baseline 240 "$BERTRAIN_PYTHON" scripts/hf_baseline.py
AB=(attn:BERTRAIN_ATTN_FUSED gelu:BERTRAIN_GELU_BIAS_FUSED lncols:BERTRAIN_LN_COLS_FUSED)
for ab in "${AB[@]}"; do
  step "ab-${ab%%:*}" 90 env "${ab#*:}=0" "$BERTRAIN" bench --device cuda --config configs/bert-base.ini \
    --batch 64 --seq 128 --pred 20 --steps 20 --warmup 3 --precision bf16
done
step reference 150 bash -c "cd '$LOG/work' && exec bash '$SRC/tests/test_reference.sh'"
step nccl 60 bash -c "cd '$LOG/work' && exec bash '$SRC/tests/test_nccl.sh'"
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
[ -n "$SAN" ] && step memcheck 150 bash -c "cd '$SRC/tests' && exec '$SAN' --tool memcheck --error-exitcode 9 '$BUILD/tests/test_ops_cuda'"
[ $KERNELS = 1 ] && step kernels-base 150 scripts/gpu-kernels.sh "$BERTRAIN" configs/bert-base.ini \
  --precision bf16

echo
echo "GPU: $(cat "$LOG/gpu.txt" 2>/dev/null || echo '?')"
printf '%s\n' "${ROWS[@]}"
for f in ops memcheck train reference; do grep -h "max relative\|FAIL\|SKIP\|ERROR SUMMARY" "$LOG/$f.log" 2>/dev/null | head -5; done
# cuBLASLt refusing an epilogue: results stay right, the fused bias is lost
grep -h "cuBLASLt has no" "$LOG"/*.log 2>/dev/null | sed 's/^bertrain: //' | sort -u | head -5
# sequences/s from the mean step; the median step is steadier where the host
# stalls now and then (a shared VM)
echo "throughput, batch 64 x 128 (sequences/s):"
for m in mini base; do
  for v in fp32 tf32 bf16; do
    f=$LOG/bench-$m$([ $v != fp32 ] && echo -$v).log
    printf '  bertrain bert-%-5s %-5s %s (%s ms/step); %s; %s\n' $m $v \
      "$(grep -o '[0-9.]* sequences/s' "$f" 2>/dev/null || echo '-')" \
      "$(grep -o 'median [0-9.]*' "$f" 2>/dev/null || echo 'median -')" \
      "$(grep -o 'MFU [0-9.]*%' "$f" 2>/dev/null || echo 'MFU -')" \
      "$(grep -o 'peak device memory [0-9.]* MiB' "$f" 2>/dev/null || echo '')"
  done
done
echo "A/B, bert-base bf16 with one fused path off (sequences/s, median step):"
for ab in "${AB[@]}"; do
  f=$LOG/ab-${ab%%:*}.log
  printf '  %-26s %s (%s ms/step)\n' "${ab#*:}=0" \
    "$(grep -o '[0-9.]* sequences/s' "$f" 2>/dev/null || echo '-')" \
    "$(grep -o 'median [0-9.]*' "$f" 2>/dev/null || echo 'median -')"
done
for m in mini base; do
  echo "where bert-$m bf16 spends its time (profile-$m.log):"
  grep '^profile:' "$LOG/profile-$m.log" 2>/dev/null | sed -n 3,15p
done
[ $KERNELS = 1 ] && { echo "bert-base bf16, kernels by device time (kernels-base.log):";
  sed -n 1,14p "$LOG/kernels-base.log"; }
grep "B=64 " "$LOG/hf-baseline.log" 2>/dev/null | awk '{ printf "  hf       %-10s %-5s %s\n", $1, $2, $8 }'
exit $FAILED
