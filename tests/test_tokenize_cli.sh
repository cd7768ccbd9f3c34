#!/usr/bin/env bash
# bertrain tokenize: tokens and ids per line, --cased, config keys, xz input,
# and the errors (invalid UTF-8 with its line, missing vocab, no [UNK]).
set -u
. "$SRC/tests/sh_util.sh"
VOCAB=$SRC/tests/data/vocab-small.txt

# check WHAT EXPECTED_FILE ACTUAL_FILE
check() {
  if cmp -s "$2" "$3"; then pass; else fail "$1: got"$'\n'"$(cat "$3")"$'\n'"expected"$'\n'"$(cat "$2")"; fi
}

printf 'H\xc3\xa9llo na\xc3\xafve caf\xc3\xa9\n\nDon'"'"'t stop, unwanted running!\n  \t \n\xe4\xb8\xad\xe5\x9b\xbd\xe4\xba\xba\n' > in.txt
printf 'hello naive cafe\n\ndon '"'"' t stop , un ##want ##ed runn ##ing !\n\n\xe4\xb8\xad \xe5\x9b\xbd [UNK]\n' > want.tok
printf '6 7 8\n\n14 15 16 17 19 27 29 30 32 34 20\n\n39 40 1\n' > want.ids

"$BERTRAIN" tokenize --vocab "$VOCAB" < in.txt > got.tok && pass || fail "tokenize exited $?"
check "tokens" want.tok got.tok
"$BERTRAIN" tokenize --vocab "$VOCAB" --ids < in.txt > got.ids && pass || fail "tokenize --ids exited $?"
check "ids" want.ids got.ids

# --input, plain and xz; CRLF line ends are read as LF.
sed 's/$/\r/' in.txt > crlf.txt
"$BERTRAIN" tokenize --vocab "$VOCAB" --ids --input crlf.txt > got.ids && pass || fail "--input exited $?"
check "--input with CRLF" want.ids got.ids
xz -c in.txt > in.txt.xz
"$BERTRAIN" tokenize --vocab "$VOCAB" --input in.txt.xz > got.tok && pass || fail "--input .xz exited $?"
check "--input .xz" want.tok got.tok

# Cased keeps case and accents; the config key does the same; model.vocab works.
printf 'H\xc3\xa9llo na\xc3\xafve caf\xc3\xa9 Don\n' > cased.txt
printf 'H ##\xc3\xa9 ##llo [UNK] caf ##\xc3\xa9 [UNK]\n' > want.cased
"$BERTRAIN" tokenize --vocab "$VOCAB" --cased < cased.txt > got.cased && pass || fail "--cased exited $?"
check "--cased" want.cased got.cased
"$BERTRAIN" tokenize --set "model.vocab=$VOCAB" --set model.lowercase=false < cased.txt > got.cased \
  && pass || fail "model.vocab + model.lowercase=false exited $?"
check "model.lowercase=false" want.cased got.cased
printf 'hello naive [UNK]\n' > want.short
printf 'hello naive running\n' | "$BERTRAIN" tokenize --vocab "$VOCAB" --set model.max_word_chars=5 > got.short \
  && pass || fail "max_word_chars exited $?"
check "model.max_word_chars=5" want.short got.short

# Errors.
printf 'fine\nalso fine\nbad \xff byte\n' > bad.txt
expect_fail "invalid UTF-8 on stdin" "<stdin>:3: invalid UTF-8" "$BERTRAIN" tokenize --vocab "$VOCAB" --input - < bad.txt
expect_fail "invalid UTF-8 in a file" "bad.txt:3: invalid UTF-8" "$BERTRAIN" tokenize --vocab "$VOCAB" --input bad.txt
expect_fail "missing vocab" "cannot open $PWD/missing-vocab.txt" \
  "$BERTRAIN" tokenize --vocab "$PWD/missing-vocab.txt" < in.txt
printf '[PAD]\nhello\n' > nounk.txt
expect_fail "vocab without [UNK]" "nounk.txt: vocabulary has no [UNK] token" "$BERTRAIN" tokenize --vocab nounk.txt < in.txt
expect_fail "no vocab" "no vocabulary given" "$BERTRAIN" tokenize < in.txt
expect_fail "missing input" "cannot open nope.txt" "$BERTRAIN" tokenize --vocab "$VOCAB" --input nope.txt
expect_fail "stray argument" "unexpected argument 'in.txt'" "$BERTRAIN" tokenize --vocab "$VOCAB" in.txt

"$BERTRAIN" help tokenize | grep -q -- "--ids" && pass || fail "help tokenize does not describe --ids"
finish
