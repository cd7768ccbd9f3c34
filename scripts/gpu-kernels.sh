#!/usr/bin/env bash
# Where a training step's device time goes, kernel by kernel (Nsight Compute),
# on a machine with a GPU and ncu:
#   scripts/gpu-kernels.sh BERTRAIN CONFIG [bench options...]
#   e.g. scripts/gpu-kernels.sh .gpu/bin/bertrain configs/bert-base.ini --precision bf16
# Runs one step of `bertrain bench` (batch 64 x 128, 20 predictions unless the
# options say otherwise) under ncu with the kernel-duration metric alone (one
# replay pass each, clocks left as they are) and prints the kernels by total
# time: calls, mean, min and max, block and grid. cuBLAS's kernels are named
# by their base function (cutlass wrappers show as Kernel2). The one step
# includes first-step work (the weights' bf16 copy, attention's pointer
# arrays). About a minute for BERT-base on an H100. Where `bench --profile`
# times ops (host gaps included), this times the kernels alone.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: scripts/gpu-kernels.sh BERTRAIN CONFIG [bench options...]" >&2; exit 2; }
BIN=$1 CFG=$2
shift 2
command -v ncu > /dev/null || { echo "gpu-kernels.sh: ncu (Nsight Compute) is not installed" >&2; exit 1; }
CSV=$(mktemp)
trap 'rm -f "$CSV"' EXIT
ncu --metrics gpu__time_duration.sum --clock-control none --print-kernel-base function \
  --print-summary per-kernel --csv "$BIN" bench --device cuda --config "$CFG" --batch 64 \
  --seq 128 --pred 20 "$@" --steps 1 --warmup 0 > "$CSV"
python3 "$(dirname "$0")/ncu_summary.py" "$CSV"
