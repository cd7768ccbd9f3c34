# Sourced by the shell tests: failure bookkeeping and helpers.
# Each test runs in its own scratch directory under the build tree.
T_FAILED=0
T_PASSED=0
T_NAME=$(basename "$0" .sh)
T_DIR=$PWD/scratch-$T_NAME
rm -rf "$T_DIR" && mkdir -p "$T_DIR" && cd "$T_DIR" || exit 2
PYTHON=${BERTRAIN_PYTHON:-python3}

fail() { echo "FAIL: $*" >&2; T_FAILED=$((T_FAILED + 1)); }
pass() { T_PASSED=$((T_PASSED + 1)); }
skip() { echo "SKIP: $*"; exit 77; }

# expect_fail WHAT EXPECTED_STDERR_SUBSTRING CMD...: CMD must exit non-zero
# (within 120 s, so a hang fails) and say the expected text on stderr.
expect_fail() {
  local what=$1 want=$2
  shift 2
  local err rc
  err=$(timeout 120 "$@" 2>&1 >/dev/null)
  rc=$?
  if [ $rc -eq 0 ]; then fail "$what: exited 0"; return; fi
  if [ $rc -eq 124 ]; then fail "$what: timed out (hang?)"; return; fi
  if ! grep -qF -- "$want" <<<"$err"; then fail "$what: stderr lacks '$want': $err"; return; fi
  pass
}

finish() {
  echo "$T_PASSED passed, $T_FAILED failed"
  [ "$T_FAILED" -eq 0 ]
}

# gpu_usable: this bertrain has CUDA built in and sees a GPU; otherwise says
# why on stdout and returns 1.
gpu_usable() {
  local v
  v=$("$BERTRAIN" version 2>&1 | grep '^cuda:')
  [[ $v =~ built\ in\;\ ([1-9][0-9]*)\ device ]] && return 0
  echo "${v:-cuda: not built in}"
  return 1
}

# make_sample_shards DIR DOCS VOCAB SEQ PRED: DIR/corpus.txt (the first DOCS
# documents of the sample corpus), DIR/vocab.txt (VOCAB tokens) and
# DIR/shards (2 shards of SEQ-token sequences, PRED masked positions).
make_sample_shards() {
  local d=$1 docs=$2 vocab=$3 seq=$4 pred=$5
  mkdir -p "$d" || return 1
  xz -dc "$SRC/data/sample/pretrain/corpus.txt.xz" |
    awk -v n="$docs" '/^$/ { if (++docs >= n) exit } { print }' > "$d/corpus.txt" || return 1
  "$BERTRAIN" vocab --corpus "$d/corpus.txt" --size "$vocab" --out "$d/vocab.txt" 2>"$d/vocab.log" ||
    { cat "$d/vocab.log" >&2; return 1; }
  "$BERTRAIN" prep --corpus "$d/corpus.txt" --vocab "$d/vocab.txt" --out "$d/shards" \
    --set data.seq_length="$seq" --set data.max_predictions="$pred" --set data.shards=2 \
    --set data.dupe_factor=1 2>"$d/prep.log" || { cat "$d/prep.log" >&2; return 1; }
}
