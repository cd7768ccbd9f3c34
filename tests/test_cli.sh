#!/usr/bin/env bash
# The command line: help texts, unknown commands and options, config errors.
set -u
. "$SRC/tests/sh_util.sh"

out=$("$BERTRAIN" --help) && pass || fail "--help exited non-zero"
for c in vocab prep tokenize glue version help; do
  grep -q "^  $c " <<<"$out" && pass || fail "--help does not list '$c'"
done
! grep -qi "not written" <<<"$out" && pass || fail "--help lists a command that is not written"

for c in vocab prep tokenize glue version; do
  h=$("$BERTRAIN" help "$c") && pass || fail "help $c exited non-zero"
  grep -q "usage: bertrain $c" <<<"$h" && pass || fail "help $c has no usage line"
  h2=$("$BERTRAIN" "$c" --help) && pass || fail "$c --help exited non-zero"
  [ "$h" = "$h2" ] && pass || fail "help $c and $c --help differ"
done

cfg=$("$BERTRAIN" help config) && pass || fail "help config exited non-zero"
for k in "\[model\]" "\[data\]" "\[finetune\]" "seq_length = 128" "seed = 12345" "task = mrpc"; do
  grep -q "$k" <<<"$cfg" && pass || fail "help config lacks $k"
done
# README.md shows the same list, which must not drift from the program's
readme=$(awk '/`bertrain help config` prints this list:/ { on = 1; next }
  on && /^```/ { if (in_block) exit; in_block = 1; next } in_block' "$SRC/README.md")
[ "$readme" = "$(sed -n '/^\[model\]/,$p' <<<"$cfg")" ] && pass ||
  fail "README.md's config list differs from 'bertrain help config': $(diff <(echo "$readme") \
    <(sed -n '/^\[model\]/,$p' <<<"$cfg") | head -5)"

expect_fail "unknown command" "unknown command 'frobnicate'" "$BERTRAIN" frobnicate
expect_fail "unknown option" "unknown option --nope" "$BERTRAIN" version --nope
expect_fail "help for a non-command" "not a command" "$BERTRAIN" help frobnicate
expect_fail "bad --set" "valid keys:" "$BERTRAIN" version --set data.nope=1
printf '[data]\nseq_length = 64\n[modle]\nx = 1\n' > bad.ini
expect_fail "bad config section" "bad.ini:4: unknown section [modle]" "$BERTRAIN" version --config bad.ini
expect_fail "missing config" "cannot open config" "$BERTRAIN" version --config missing.ini

"$BERTRAIN" version | grep -q "^bertrain " && pass || fail "version prints no version"
"$BERTRAIN" version | grep -q "^cpu: OpenBLAS .*erff/expf" && pass || fail "version names no OpenBLAS or vector math"
finish
