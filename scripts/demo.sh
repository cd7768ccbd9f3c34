#!/usr/bin/env bash
# The main job on the embedded demo data, from a fresh Debian 12 machine:
# installs what is missing, builds, trains the WordPiece vocabulary and
# prepares the HDF5 pre-training shards with 2 MPI ranks, then checks the
# fine-tuning task. Outputs go to runs/demo/.
# Usage: scripts/demo.sh [--set section.key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
bertrain_install_deps
bertrain_build build
B=$PWD/build/bertrain
RUN=runs/demo
mkdir -p "$RUN"
export OMPI_MCA_rmaps_base_oversubscribe=1   # 2 ranks even on a 1-core machine

echo "== 1. WordPiece vocabulary from the sample corpus" >&2
"$B" vocab --config configs/demo.ini "$@" --out "$RUN/vocab.txt"

echo "== 2. Pre-training shards (mpirun -np 2 bertrain prep)" >&2
mpirun -np 2 "$B" prep --config configs/demo.ini "$@" --force

echo "== 3. The fine-tuning task (sample MRPC)" >&2
"$B" glue --config configs/demo.ini "$@"

echo >&2
echo "Done. Vocabulary: $RUN/vocab.txt; shards: $RUN/shards/ (resolved config in $RUN/shards/config.ini)." >&2
ls -l "$RUN/shards" >&2
