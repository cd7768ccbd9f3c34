#!/usr/bin/env bash
# bertrain prep under MPI: 1, 2 and 3 ranks write the same shards, byte for
# byte; bad input fails with a clear message on every rank count and leaves
# no shard or temporary file behind.
set -u
. "$SRC/tests/sh_util.sh"
command -v h5diff >/dev/null || skip "h5diff (hdf5-tools) is not installed"
command -v "${MPIEXEC:-}" >/dev/null || skip "no MPI launcher (MPIEXEC='${MPIEXEC:-}')"

# The first 300 documents of the sample corpus, and a vocabulary trained on them.
xz -dc "$SRC/data/sample/pretrain/corpus.txt.xz" | awk '/^$/ { if (++d == 300) exit } { print }' > corpus.txt
if ! "$BERTRAIN" vocab --corpus corpus.txt --size 2000 --out vocab.txt 2>vocab.log; then
  fail "vocab training: $(cat vocab.log)"
  finish
  exit
fi

# ./prep NP DIR CORPUS VOCAB [options...] (a script, so that timeout can run it)
cat > prep <<EOF
#!/usr/bin/env bash
np=\$1 dir=\$2 corpus=\$3 vocab=\$4
shift 4
exec timeout 120 "$MPIEXEC" -np "\$np" "$BERTRAIN" prep --corpus "\$corpus" --vocab "\$vocab" \\
  --out "\$dir" --set data.shards=3 --set data.dupe_factor=2 "\$@"
EOF
chmod +x prep

# No shard-*.h5 or temporary file in DIR.
clean() { ! ls "$1"/shard-*.h5 "$1"/*.tmp >/dev/null 2>&1; }

for np in 1 2 3; do
  if ./prep $np out$np corpus.txt vocab.txt 2>err$np; then pass; else fail "prep -np $np: $(cat err$np)"; fi
  n=$(ls out$np/shard-*.h5 2>/dev/null | wc -l)
  [ "$n" -eq 3 ] && pass || fail "-np $np wrote $n shard files, expected 3"
  [ -s out$np/config.ini ] && [ -s out$np/vocab.txt ] && pass || fail "-np $np: no config.ini or vocab.txt"
done
grep -q "instances, 3 shards" err1 && pass || fail "no summary line: $(cat err1)"
cmp -s vocab.txt out1/vocab.txt && pass || fail "out1/vocab.txt is not a copy of the vocabulary"
grep -q "^seq_length = 128" out1/config.ini && pass || fail "config.ini lacks the settings"

for np in 2 3; do
  for f in out1/shard-*.h5; do
    g=out$np/$(basename "$f")
    h5diff "$f" "$g" >/dev/null 2>&1 && pass || fail "h5diff $f $g: contents differ"
    cmp -s "$f" "$g" && pass || fail "$f and $g differ in bytes"
  done
done

# The shards carry their attributes and split the instances about evenly.
h5dump -a /num_shards out1/shard-00002.h5 | grep -q "(0): 3" && pass || fail "num_shards attribute"
h5dump -a /shard_index out1/shard-00002.h5 | grep -q "(0): 2" && pass || fail "shard_index attribute"
rows() { h5dump -H -d next_sentence_labels "$1" | sed -n 's/.*SIMPLE { ( \([0-9]*\) ).*/\1/p'; }
r0=$(rows out1/shard-00000.h5) r1=$(rows out1/shard-00001.h5) r2=$(rows out1/shard-00002.h5)
total=$((r0 + r1 + r2))
grep -q "prep: 300 documents, $total instances" err1 && pass || fail "shard rows $r0+$r1+$r2 disagree with: $(cat err1)"
for r in $r0 $r1 $r2; do
  [ $((r * 3 * 10)) -ge $((total * 9)) ] && [ $((r * 3 * 10)) -le $((total * 11)) ] && pass ||
    fail "uneven shards: $r0 $r1 $r2"
done

# Existing shards: refused without --force; with --force fewer shards replace them.
cp -r out1 keep
expect_fail "existing shards, -np 1" "pass --force" ./prep 1 out1 corpus.txt vocab.txt
expect_fail "existing shards, -np 2" "pass --force" ./prep 2 out1 corpus.txt vocab.txt
diff -r keep out1 >/dev/null && pass || fail "a refused run changed the shard directory"
if ./prep 2 out1 corpus.txt vocab.txt --force --set data.shards=2 2>err; then pass; else fail "--force: $(cat err)"; fi
./prep 1 fresh2 corpus.txt vocab.txt --set data.shards=2 2>err || fail "prep into fresh2: $(cat err)"
[ "$(ls out1/shard-*.h5 | wc -l)" -eq 2 ] && [ ! -e out1/shard-00002.h5 ] && pass ||
  fail "--force left $(ls out1)"
for f in fresh2/shard-*.h5; do
  cmp -s "$f" "out1/$(basename "$f")" && pass || fail "--force output differs from a fresh run ($f)"
done

# Bad input: a clear message, a non-zero exit, nothing left behind.
printf '\n  \n\n' > empty.txt
printf 'In the beginning.\n\nAnd the earth \xff was.\nVoid.\n' > bad.txt
printf 'one line only\n' > tiny.txt
grep -v '^\[MASK\]$' vocab.txt > nomask.txt
for np in 1 2; do
  d=bad$np
  expect_fail "missing corpus, -np $np" "cannot open corpus file nope.txt" ./prep $np $d nope.txt vocab.txt
  clean $d && pass || fail "missing corpus left files in $d"
  expect_fail "empty corpus, -np $np" "has no documents with tokens" ./prep $np $d empty.txt vocab.txt
  clean $d && pass || fail "empty corpus left files in $d"
  expect_fail "invalid UTF-8, -np $np" "bad.txt:3: invalid UTF-8" ./prep $np $d bad.txt vocab.txt
  clean $d && pass || fail "invalid UTF-8 left files in $d"
  expect_fail "vocab without [MASK], -np $np" "no [MASK] token" ./prep $np $d corpus.txt nomask.txt
  clean $d && pass || fail "vocab without [MASK] left files in $d"
  expect_fail "more shards than instances, -np $np" "fewer than data.shards" ./prep $np $d tiny.txt vocab.txt
  clean $d && pass || fail "too many shards left files in $d"
  expect_fail "seq_length too small, -np $np" "data.seq_length" ./prep $np $d corpus.txt vocab.txt --set data.seq_length=4
  clean $d && pass || fail "small seq_length left files in $d"
done
finish
