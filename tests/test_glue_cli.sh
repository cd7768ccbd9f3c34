#!/bin/bash
# bertrain glue: statistics of the sample GLUE data, and a malformed file
# failing with FILE:LINE.
set -u
: "${BERTRAIN:?}" "${SRC:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

out=$("$BERTRAIN" glue --data "$SRC/data/sample/MRPC") || fail "glue on the MRPC sample exited $?"
echo "$out"
grep -q '^MRPC train: .*train.tsv.xz$' <<<"$out" || fail "no MRPC train heading"
grep -A1 '^MRPC train' <<<"$out" | grep -Eq 'rows +3418$' || fail "MRPC train rows"
grep -A1 '^MRPC dev' <<<"$out" | grep -Eq 'rows +408$' || fail "MRPC dev rows"
grep -A2 '^MRPC train' <<<"$out" | grep -q '1: 68.0%' || fail "MRPC train balance"
grep -A3 '^MRPC dev' <<<"$out" | grep -q 'majority class  1 (accuracy 0.6789)' || fail "MRPC dev majority"

out=$("$BERTRAIN" glue --task sst2 --set "finetune.data=$SRC/data/sample/SST-2") || fail "glue sst2 exited $?"
grep -A1 '^SST-2 train' <<<"$out" | grep -Eq 'rows +11168$' || fail "SST-2 train rows"
grep -A2 '^SST-2 dev' <<<"$out" | grep -q '0: 50.0%  1: 50.0%' || fail "SST-2 dev balance"

# A malformed train.tsv: wrong column count on line 3.
mkdir "$tmp/bad"
printf 'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\n0\t3\t4\tc\n' >"$tmp/bad/train.tsv"
cp "$tmp/bad/train.tsv" "$tmp/bad/dev.tsv"
if "$BERTRAIN" glue --data "$tmp/bad" >"$tmp/out" 2>"$tmp/err"; then fail "malformed TSV accepted"; fi
grep -q "$tmp/bad/train.tsv:3: expected 5 tab-separated columns, found 4" "$tmp/err" \
  || fail "message lacks file:line: $(cat "$tmp/err")"

# The wrong task for the data says which task the file looks like.
if "$BERTRAIN" glue --task sst2 --data "$SRC/data/sample/MRPC" 2>"$tmp/err" >/dev/null; then
  fail "MRPC data accepted as SST-2"
fi
grep -q 'train.tsv.xz:1: the header is that of an MRPC file, not SST-2' "$tmp/err" \
  || fail "wrong-task message: $(cat "$tmp/err")"

if "$BERTRAIN" glue --task cola 2>"$tmp/err" >/dev/null; then fail "task cola accepted"; fi
grep -q "mrpc, sst2" "$tmp/err" || fail "unknown task message: $(cat "$tmp/err")"

"$BERTRAIN" glue --help | grep -q -- '--vocab FILE' || fail "usage text"

# Token lengths of [CLS] A [SEP] B [SEP], on rows whose lengths are known:
# 2+1+3 = 6 and 70+1+3 = 74 tokens (an unknown word is one [UNK]).
printf '[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nand\n' >"$tmp/vocab.txt"
mkdir "$tmp/len"
long=$(printf 'the %.0s' $(seq 69))
{
  printf 'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n'
  printf '1\t1\t2\tThe and\tzebra\n'
  printf '0\t3\t4\t%sAND\tthe\n' "$long"
} >"$tmp/len/train.tsv"
cp "$tmp/len/train.tsv" "$tmp/len/dev.tsv"
out=$("$BERTRAIN" glue --data "$tmp/len" --set "model.vocab=$tmp/vocab.txt") || fail "glue with vocab exited $?"
echo "$out"
grep -A6 '^MRPC dev' <<<"$out" | grep -q 'tokens          \[CLS\] A \[SEP\] B \[SEP\]: mean 40.0, max 74$' \
  || fail "token length mean/max"
grep -A6 '^MRPC dev' <<<"$out" | grep -q 'over 64 tokens  1 (50.0%)' || fail "over 64 count"
grep -A6 '^MRPC dev' <<<"$out" | grep -q 'over 128 tokens 0 (0.0%)' || fail "over 128 count"
echo "ok"
