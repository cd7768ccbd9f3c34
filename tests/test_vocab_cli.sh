#!/usr/bin/env bash
# bertrain vocab: the sample corpus gives the same file every time, of the
# size asked for, with the specials first; bad input fails clearly and
# leaves no output behind.
set -u
. "$SRC/tests/sh_util.sh"

corpus=$SRC/data/sample/pretrain/corpus.txt.xz

"$BERTRAIN" vocab --corpus "$corpus" --size 2000 --out a.txt 2>a.err && pass \
  || fail "vocab on the sample exited non-zero: $(cat a.err)"
"$BERTRAIN" vocab --corpus "$corpus" --size 2000 --out b.txt 2>/dev/null && pass \
  || fail "second vocab run exited non-zero"
cmp -s a.txt b.txt && pass || fail "two runs on the same corpus differ"
[ "$(wc -l <a.txt)" -eq 2000 ] && pass || fail "a.txt has $(wc -l <a.txt) lines, expected 2000"
[ "$(head -5 a.txt | tr '\n' ' ')" = "[PAD] [UNK] [CLS] [SEP] [MASK] " ] && pass \
  || fail "specials are not lines 1-5: $(head -5 a.txt | tr '\n' ' ')"
[ -z "$(sort a.txt | uniq -d)" ] && pass || fail "duplicate tokens: $(sort a.txt | uniq -d | head)"
! grep -q '[[:space:]]' a.txt && pass || fail "a token holds whitespace"
! tail -n +6 a.txt | grep -q '[A-Z]' && pass || fail "upper case in a lower-cased vocabulary"
grep -qx 'the' a.txt && grep -qx '##s' a.txt && pass || fail "'the' or '##s' missing"
[ ! -e a.txt.tmp ] && pass || fail "a.txt.tmp left behind"
grep -q 'vocab: wrote a.txt: 2000 tokens' a.err && pass || fail "no summary line: $(cat a.err)"

# Defaults from the config; --cased keeps capitals; the same corpus read
# plain gives the same file as read from .xz.
xz -dc "$corpus" >corpus.txt
"$BERTRAIN" vocab --set "data.corpus=corpus.txt" --set data.vocab_size=500 \
  --set model.vocab=c.txt 2>/dev/null && pass || fail "vocab from config keys exited non-zero"
[ "$(wc -l <c.txt)" -eq 500 ] && pass || fail "c.txt has $(wc -l <c.txt) lines, expected 500"
head -500 a.txt | cmp -s - c.txt && pass || fail "a smaller size is not a prefix of the larger"
"$BERTRAIN" vocab --corpus corpus.txt --size 500 --cased --out d.txt 2>/dev/null && pass \
  || fail "--cased exited non-zero"
grep -q '^[A-Z]' d.txt && pass || fail "--cased vocabulary has no capitals"

# Every corpus word splits into pieces of the trained vocabulary: no [UNK].
"$BERTRAIN" tokenize --vocab a.txt --input corpus.txt >tok.txt && pass || fail "tokenize exited non-zero"
[ "$(wc -l <tok.txt)" -eq "$(wc -l <corpus.txt)" ] && pass || fail "tokenize output lines"
! grep -qF '[UNK]' tok.txt && pass || fail "[UNK] in the corpus tokenized with its own vocabulary"
"$BERTRAIN" tokenize --cased --vocab d.txt --input corpus.txt >tok.txt && ! grep -qF '[UNK]' tok.txt \
  && pass || fail "[UNK] with the cased vocabulary"

# A minimum frequency no pair reaches stops at the alphabet, with a warning.
"$BERTRAIN" vocab --corpus corpus.txt --size 500 --min-frequency 100000000 --out e.txt \
  2>e.err && pass || fail "--min-frequency exited non-zero"
grep -q 'stopped at' e.err && pass || fail "no warning when stopping short: $(cat e.err)"

# Too small a size names the minimum, which then works exactly.
expect_fail "size too small" "too small" "$BERTRAIN" vocab --corpus corpus.txt --size 20 --out f.txt
[ ! -e f.txt ] && [ ! -e f.txt.tmp ] && pass || fail "output left after size error"
min=$("$BERTRAIN" vocab --corpus corpus.txt --size 20 --out f.txt 2>&1 | sed -n 's/.*at least \([0-9]*\).*/\1/p')
[ -n "$min" ] && [ "$min" -eq "$(wc -l <e.txt)" ] && pass \
  || fail "minimum '$min' is not the alphabet size $(wc -l <e.txt)"
if [ -n "$min" ]; then
  "$BERTRAIN" vocab --corpus corpus.txt --size "$min" --out g.txt 2>/dev/null && pass \
    || fail "--size $min exited non-zero"
  [ "$(wc -l <g.txt)" -eq "$min" ] && pass || fail "g.txt is not $min lines"
fi

# Errors: each exits non-zero, says why, and writes nothing.
expect_fail "missing corpus" "cannot open nosuch.txt" \
  "$BERTRAIN" vocab --corpus corpus.txt nosuch.txt --size 100 --out h.txt
printf '\n   \n\t\n' >empty.txt
expect_fail "empty corpus" "empty.txt) has no words" \
  "$BERTRAIN" vocab --corpus empty.txt --size 100 --out h.txt
printf 'good line\nbad \xff byte\n' >bad.txt
expect_fail "invalid UTF-8" "bad.txt:2: invalid UTF-8" \
  "$BERTRAIN" vocab --corpus bad.txt --size 100 --out h.txt
expect_fail "no corpus" "no corpus" "$BERTRAIN" vocab --size 100 --out h.txt
expect_fail "unwritable output" "cannot write nodir/h.txt" \
  "$BERTRAIN" vocab --corpus corpus.txt --size 100 --out nodir/h.txt
expect_fail "zero size" "--size must be positive" \
  "$BERTRAIN" vocab --corpus corpus.txt --size 0 --out h.txt
[ ! -e h.txt ] && [ ! -e h.txt.tmp ] && pass || fail "output left after an error"
# A failing run leaves an existing vocabulary as it was.
cp a.txt keep.txt
expect_fail "error keeps old file" "has no words" \
  "$BERTRAIN" vocab --corpus empty.txt --size 100 --out keep.txt
cmp -s a.txt keep.txt && pass || fail "a failed run changed the existing output"

finish
