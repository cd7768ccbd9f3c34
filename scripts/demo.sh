#!/usr/bin/env bash
# The main job on the embedded demo data, from a fresh Debian 12 machine:
# installs what is missing, builds, trains the WordPiece vocabulary, prepares
# the HDF5 pre-training shards, then pre-trains a tiny BERT with 2 MPI ranks
# for 200 epochs, fine-tuning every 20-epoch milestone on the sample SST-2 task
# (configs/demo.ini), and prints where the report is. Outputs go to runs/demo/.
# Usage: scripts/demo.sh [--set section.key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
bertrain_install_deps
# The demo runs on the CPU. Without a GPU, a first build leaves out the CUDA
# kernels, which are most of its time (an existing build/ keeps its setting;
# scripts/test.sh builds them).
cuda=()
if [ ! -e build/CMakeCache.txt ] && ! nvidia-smi -L >/dev/null 2>&1; then
  cuda=(-DBERTRAIN_CUDA=OFF)
  echo "note: no GPU visible: building without the CUDA kernels (the demo runs on the CPU)" >&2
fi
BERTRAIN_TARGETS=bertrain bertrain_build build "${cuda[@]}"  # the program alone: no tests
B=$PWD/build/bertrain
CFG=configs/demo.ini
RUN=runs/demo
export OMPI_MCA_rmaps_base_oversubscribe=1   # 2 ranks even on a 1-core machine

if [ -e "$RUN/checkpoints" ]; then
  echo "note: $RUN already holds a run; it is continued (remove $RUN to start afresh)" >&2
fi
mkdir -p "$RUN"
echo "== 1/4 WordPiece vocabulary from the sample corpus" >&2
[ -s "$RUN/vocab.txt" ] || "$B" vocab --config "$CFG" "$@" --out "$RUN/vocab.txt"

echo "== 2/4 pre-training shards (mpirun -np 2 bertrain prep)" >&2
ls "$RUN"/shards/shard-*.h5 >/dev/null 2>&1 || mpirun -np 2 "$B" prep --config "$CFG" "$@"

echo "== 3/4 the fine-tuning task (finetune.tasks of the config)" >&2
"$B" glue --config "$CFG" "$@"

echo "== 4/4 pre-training with milestone fine-tuning (mpirun -np 2 bertrain pretrain)" >&2
mpirun -np 2 "$B" pretrain --config "$CFG" "$@"

echo >&2
echo "Done. Report: $RUN/report/Report.md (figures beside it); metrics: $RUN/metrics.csv, $RUN/metrics.h5;" >&2
echo "TensorBoard: tensorboard --logdir $RUN/tb" >&2
echo "For PyTorch: build/bertrain export --checkpoint $RUN/checkpoints/final.h5 --out $RUN/hf (then BertForPreTraining.from_pretrained)" >&2
