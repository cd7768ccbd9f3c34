#!/usr/bin/env bash
# Sets up what is missing, builds bertrain and runs the whole test suite.
# Usage: scripts/test.sh [ctest arguments, e.g. -L unit or -R prep]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
bertrain_install_deps

# Python packages for the differential tests (Hugging Face tokenizers, h5py)
# and the TensorBoard event-file check (tensorboard)
# go into a private venv; a test that cannot import them skips and says why.
if [ ! -x build/py/bin/python ]; then
  mkdir -p build
  python3 -m venv build/py >/dev/null 2>&1 || echo "note: no python venv; tests needing Python packages will skip" >&2
fi
if [ -x build/py/bin/python ]; then
  build/py/bin/python -m pip install -q --disable-pip-version-check tokenizers h5py numpy tensorboard >/dev/null 2>&1 \
    || echo "note: pip install failed; tests needing Python packages will skip" >&2
  export BERTRAIN_PYTHON=$PWD/build/py/bin/python
fi

# With the CUDA kernels whenever nvcc is there (a build/ the demo made
# without them gets them now): the GPU tests' emulated copies need them.
bertrain_build build -DBERTRAIN_CUDA=AUTO
cd build
ctest --output-on-failure --timeout 600 "$@"
