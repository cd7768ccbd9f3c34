#!/usr/bin/env bash
# The workstation path: one pre-training run (with its milestone fine-tuning)
# on this machine with mpirun, taking the same arguments as
# slurm/pretrain.sbatch:
#
#   scripts/run-local.sh [-n RANKS] CONFIG [pretrain options: --set KEY=VALUE ...]
#   e.g. scripts/run-local.sh -n 2 configs/demo.ini --set pretrain.epochs=20
#
# RANKS (default: $NP, else 2) MPI ranks, each bound to its share of the
# cores (mpirun --map-by slot:PE=C --bind-to core, C = cores / RANKS, also
# OMP_NUM_THREADS and run.threads' default); with more ranks than cores the
# ranks are not bound and oversubscribe the cores. Runs in the current
# directory; BERTRAIN names the binary (default build/bertrain here, else
# bertrain on PATH). Run it again to continue from the newest checkpoint.
# 'kill -USR1 <mpirun pid>' makes the ranks write latest.h5 and stop (exit
# status 3); Ctrl-C or SIGTERM ends mpirun at once (the next run continues
# from the newest checkpoint).
set -euo pipefail
NP=${NP:-2}
if [ "${1:-}" = -n ]; then
  [ $# -ge 2 ] || { echo "run-local.sh: -n needs a number" >&2; exit 2; }
  NP=$2
  shift 2
fi
if [ $# -lt 1 ] || ! [[ "$NP" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/run-local.sh [-n RANKS] CONFIG [pretrain options: --set KEY=VALUE ...]" >&2
  exit 2
fi
CONFIG=$1
shift
[ -r "$CONFIG" ] || { echo "run-local.sh: cannot read config $CONFIG" >&2; exit 2; }
if [ -z "${BERTRAIN:-}" ]; then
  if [ -x build/bertrain ]; then BERTRAIN=$PWD/build/bertrain; else BERTRAIN=bertrain; fi
fi

CORES=$(nproc)
PER_RANK=$((CORES / NP))
if [ "$PER_RANK" -ge 1 ]; then
  BIND=(--map-by "slot:PE=$PER_RANK" --bind-to core)
else
  PER_RANK=1
  BIND=(--oversubscribe --bind-to none)
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$PER_RANK}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$OMP_NUM_THREADS}
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
echo "run-local.sh: mpirun -np $NP ${BIND[*]} $BERTRAIN pretrain --config $CONFIG $*" >&2
exec mpirun -np "$NP" "${BIND[@]}" "$BERTRAIN" pretrain --config "$CONFIG" "$@"
