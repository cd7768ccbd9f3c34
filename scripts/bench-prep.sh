#!/usr/bin/env bash
# Throughput of the data-preparation steps on the sample corpus, one thread.
#
# Tokenization: `bertrain tokenize --ids` against Hugging Face tokenizers'
# BertWordPieceTokenizer (RAYON_NUM_THREADS=1) on the same text and vocab.
# The corpus is decompressed to a temporary file first, so bertrain's time
# is the whole run (start, vocab load, reading plain text, tokenizing,
# writing the ids) without xz; Hugging Face's is encode_batch alone (the
# lines already in memory), which favours it. Each is the fastest of 3
# runs; cpu_s (user + system) shows how much a busy machine slowed it.
#
# Usage: scripts/bench-prep.sh [BERTRAIN] [--vocab FILE]
#   BERTRAIN      the bertrain binary (default: build/bertrain)
#   --vocab FILE  the WordPiece vocabulary (default: one of 8,192 tokens
#                 trained on the corpus with `bertrain vocab`)
set -euo pipefail
cd "$(dirname "$0")/.."

B=build/bertrain
VOCAB=
while [ $# -gt 0 ]; do
  case $1 in
    --vocab) VOCAB=${2:?--vocab needs a file}; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench-prep: unknown option $1" >&2; exit 2 ;;
    *) B=$1; shift ;;
  esac
done
[ -x "$B" ] || { echo "bench-prep: no bertrain binary at $B (build first, or pass its path)" >&2; exit 1; }
PYTHON=${BERTRAIN_PYTHON:-python3}
CORPUS_XZ=data/sample/pretrain/corpus.txt.xz
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

xz -dc "$CORPUS_XZ" > "$TMP/corpus.txt"
BYTES=$(wc -c < "$TMP/corpus.txt")
LINES=$(wc -l < "$TMP/corpus.txt")

if [ -z "$VOCAB" ]; then
  VOCAB=$TMP/vocab.txt
  echo "training an 8,192-token vocabulary on $CORPUS_XZ (bertrain vocab) ..." >&2
  if ! "$B" vocab --corpus "$TMP/corpus.txt" --size 8192 --out "$VOCAB" > /dev/null 2> "$TMP/vocab.err"; then
    echo "bench-prep: 'bertrain vocab' failed, so there is no vocabulary to benchmark with:" >&2
    tail -3 "$TMP/vocab.err" >&2
    echo "bench-prep: pass one with --vocab FILE (a BERT vocab.txt)" >&2
    exit 1
  fi
fi
[ -r "$VOCAB" ] || { echo "bench-prep: cannot read vocabulary $VOCAB" >&2; exit 1; }

# Prints "WALL CPU" seconds of the fastest (by wall time) of 3 runs.
best_of_3() {
  local best= t
  for _ in 1 2 3; do
    t=$( { TIMEFORMAT='%R %U %S'; time "$@" > /dev/null; } 2>&1 | awk '{ print $1, $2 + $3 }')
    if [ -z "$best" ] || awk -v a="${t% *}" -v b="${best% *}" 'BEGIN { exit !(a < b) }'; then best=$t; fi
  done
  echo "$best"
}

row() { # NAME WALL CPU TOKENS
  awk -v n="$1" -v s="$2" -v c="$3" -v t="$4" -v b="$BYTES" \
    'BEGIN { printf "%-50s %7.3f %7.3f %8.2f %11.0f\n", n, s, c, b / 1e6 / s, t / s }'
}

"$B" tokenize --vocab "$VOCAB" --ids --input "$TMP/corpus.txt" > "$TMP/ours.ids"
TOKENS=$(wc -w < "$TMP/ours.ids")
OURS=$(best_of_3 "$B" tokenize --vocab "$VOCAB" --ids --input "$TMP/corpus.txt")

echo "== tokenization: $CORPUS_XZ ($((BYTES / 1000)) kB, $LINES lines, $TOKENS tokens), vocab $VOCAB ($(wc -l < "$VOCAB") tokens), one thread"
printf '%-50s %7s %7s %8s %11s\n' "" wall_s cpu_s MB/s tokens/s
row "bertrain tokenize --ids (whole run, plain input)" $OURS "$TOKENS"

if "$PYTHON" -c "import tokenizers" 2> /dev/null; then
  RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "$PYTHON" - "$VOCAB" "$TMP/corpus.txt" "$TMP/hf.ids" > "$TMP/hf.txt" <<'EOF'
import sys, time
import tokenizers
from tokenizers import BertWordPieceTokenizer
tok = BertWordPieceTokenizer(sys.argv[1], lowercase=True)
with open(sys.argv[2], encoding="utf-8", newline="") as f:
    lines = f.read().split("\n")
if lines and lines[-1] == "":
    lines.pop()
def best(fn):
    times = []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(lines, add_special_tokens=False)
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(times), out
(t, c), encs = best(tok.encode_batch)
print("encode_batch", t, c, sum(len(e.ids) for e in encs), tokenizers.__version__)
with open(sys.argv[3], "w") as f:
    for e in encs:
        f.write(" ".join(map(str, e.ids)) + "\n")
fast = getattr(tok._tokenizer, "encode_batch_fast", None)  # no offsets: HF's fastest path
if fast:
    (t, c), encs = best(fast)
    print("encode_batch_fast", t, c, sum(len(e.ids) for e in encs), tokenizers.__version__)
EOF
  while read -r how secs cpu toks version; do
    row "HF tokenizers $version $how (in memory)" "$secs" "$cpu" "$toks"
  done < "$TMP/hf.txt"
  if cmp -s "$TMP/ours.ids" "$TMP/hf.ids"; then
    echo "ids: identical to Hugging Face's on every line"
  else
    echo "ids: DIFFER from Hugging Face's ($(cmp "$TMP/ours.ids" "$TMP/hf.ids" | head -1))"
  fi
else
  echo "(Hugging Face tokenizers not importable by $PYTHON: 'pip install tokenizers', or set"
  echo " BERTRAIN_PYTHON to a python that has it, e.g. build/py/bin/python made by scripts/test.sh)"
fi

# --- prep ---
# Whole sample corpus, seq 128, dupe_factor 5, 4 shards, with 1 and 2 ranks;
# the shard files of both runs must be byte-identical.
export OMPI_MCA_rmaps_base_oversubscribe=1
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo
echo "== prep: $CORPUS_XZ -> HDF5 shards (seq 128, dupe_factor 5, 4 shards)"
for np in 1 2; do
  start=$(date +%s.%N)
  mpirun -np $np "$B" prep --corpus "$CORPUS_XZ" --vocab "$VOCAB" --out "$TMP/np$np" \
    --set data.seq_length=128 --set data.dupe_factor=5 --set data.shards=4 2> "$TMP/prep$np.err" \
    || { cat "$TMP/prep$np.err" >&2; exit 1; }
  end=$(date +%s.%N)
  summary=$(grep -E 'instances' "$TMP/prep$np.err" | tail -1)
  n=$(grep -oE '[0-9,]+ instances' <<<"$summary" | head -1 | tr -d ', instances')
  awk -v np="$np" -v s="$start" -v e="$end" -v n="$n" \
    'BEGIN { printf "mpirun -np %d: %7.2f s wall (incl. mpirun start), %s instances, %.0f instances/s\n", np, e - s, n, n / (e - s) }'
  echo "   bertrain: $summary"
done
same=yes
for f in "$TMP"/np1/shard-*.h5; do cmp -s "$f" "$TMP/np2/$(basename "$f")" || same=no; done
echo "shards identical with 1 and 2 ranks: $same"
