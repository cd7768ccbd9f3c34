# Sourced by the other scripts: make sure the Debian 12 packages bertrain
# needs are installed (apt-get when root; otherwise print the one line to run).
BERTRAIN_APT_PACKAGES="build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-dev
hdf5-tools libopenblas-dev libutf8proc-dev librandom123-dev libinih-dev libjansson-dev liblzma-dev xz-utils
gnuplot-nox python3 python3-venv"

bertrain_missing_packages() {
  local p missing=""
  for p in $BERTRAIN_APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  echo "$missing"
}

bertrain_install_deps() {
  local missing
  missing=$(bertrain_missing_packages)
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "Installing:$missing" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2 \
      || { echo "apt-get install failed" >&2; return 1; }
  else
    echo "Missing packages. Run as root, then try again:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    return 1
  fi
}

# Open MPI refuses to run as root unless told; CI and containers run as root.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# Configure and build into $1 (default build/); extra arguments go to cmake.
# BERTRAIN_TARGETS, when set, builds only those targets (e.g. bertrain).
bertrain_build() {
  local dir=${1:-build}
  shift || true
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log" >&2; echo "cmake configure failed (log above)" >&2; return 1; }
  # shellcheck disable=SC2086
  cmake --build "$dir" -j "$(nproc)" ${BERTRAIN_TARGETS:+--target $BERTRAIN_TARGETS} >&2
}
