#!/usr/bin/env bash
# Prepares a GPU check to run on another machine (e.g. a lent H100 without
# Open MPI or HDF5 installed): builds bertrain with CUDA for one
# architecture into .gpu/build, copies what the checks run into .gpu/bin
# (bertrain, tests/test_ops_cuda: a few MB, where the build folder is much
# more), and bundles the libraries they need that such a machine may lack
# (scripts/gpu-bundle.sh) into .gpu/rt.tar.gz. Then, on the GPU machine, in a
# copy of this checkout that has .gpu/bin and .gpu/rt.tar.gz:
#   tar xzf .gpu/rt.tar.gz -C .gpu && source .gpu/rt/env.sh && scripts/gpu-check.sh .gpu/bin "$OUT"
# Usage: scripts/gpu-prepare.sh [CUDA_ARCH]   (default 90: H100/H200)
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-90}
grep -qxF "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
mkdir -p .gpu
cmake -S . -B .gpu/build -DBERTRAIN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
  -DBERTRAIN_CUDA_EMU=OFF -DCMAKE_BUILD_TYPE=Release > .gpu/cmake.log
cmake --build .gpu/build -j"$(nproc)" --target bertrain test_ops_cuda > .gpu/build.log 2>&1 ||
  { tail -20 .gpu/build.log; exit 1; }
rm -rf .gpu/bin && mkdir -p .gpu/bin/tests
cp .gpu/build/bertrain .gpu/bin/ && cp .gpu/build/tests/test_ops_cuda .gpu/bin/tests/
scripts/gpu-bundle.sh .gpu/rt .gpu/bin/bertrain .gpu/bin/tests/test_ops_cuda > .gpu/bundle.log 2>&1 ||
  { tail -20 .gpu/bundle.log; exit 1; }
rm -rf .gpu/rt
du -sh .gpu/bin .gpu/rt.tar.gz
echo "carry: .gpu/bin .gpu/rt.tar.gz; on the GPU machine:"
echo "  tar xzf .gpu/rt.tar.gz -C .gpu && source .gpu/rt/env.sh && scripts/gpu-check.sh .gpu/bin \$OUT"
