#!/usr/bin/env bash
# Differential test: bertrain tokenize --ids against Hugging Face tokenizers'
# BertWordPieceTokenizer (same vocab, lower-cased and cased) on the first
# 5,000 lines of the sample corpus, the MRPC train strings and some non-ASCII
# lines; the ids must be identical line by line.
#
# Known, deliberate differences from Hugging Face, kept out of the input:
# Google's tokenizer (which bertrain follows) keeps private-use and
# unassigned characters (HF drops every category C*), lower-cases a
# word-final capital sigma to the final form as Python's str.lower() does,
# and splits text spelling a special token ("[SEP]" -> [ sep ]), which HF
# keeps whole.
set -u
. "$SRC/tests/sh_util.sh"

"$PYTHON" -c "import tokenizers" 2>/dev/null \
  || skip "$PYTHON cannot import tokenizers (pip install tokenizers, or run scripts/test.sh)"

xz -dc "$SRC/data/sample/pretrain/corpus.txt.xz" | head -n 5000 > input.txt
xz -dc "$SRC/data/sample/MRPC/train.tsv.xz" | tail -n +2 | cut -f4 >> input.txt
xz -dc "$SRC/data/sample/MRPC/train.tsv.xz" | tail -n +2 | cut -f5 >> input.txt
# Accents, CJK, Hangul, kana, Unicode punctuation and symbols, Zs and other
# whitespace, control and format characters, U+FFFD, combining marks, long words.
{
  printf 'H\xc3\xa9llo na\xc3\xafve caf\xc3\xa9 \xc3\x85ngstr\xc3\xb6m \xc3\x9cBER \xc3\x87a va\n'
  printf 'ah\xe4\xb8\xad\xe5\x9b\xbdzz \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe3\x81\xb2\xe3\x82\x89\xe3\x81\x8c\xe3\x81\xaa \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xef\xa4\x80\n'
  printf '\xc2\xbfQu\xc3\xa9?\xe2\x80\x94s\xc3\xad\xe2\x80\xa6 5\xe2\x82\xac a+b x\xc2\xb1y \xe2\x80\x9cquoted\xe2\x80\x9d \xc2\xabfr\xc2\xbb\n'
  printf 'a\tb\xc2\xa0c\xe3\x80\x80d\xe2\x80\x83e\xe2\x80\xa8f \x01g\x7fh \xe2\x80\x8bi\xef\xbf\xbdj \xc2\xadk\n'
  printf 'e\xcc\x81t\xcc\x88e \xcc\x81 \xce\x91\xce\x98\xce\x97\xce\x9d\xce\x91 \xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0 \xc4\xb0stanbul\n'
  printf '%0100d %0101d %s\n' 0 0 "$(printf 'x%.0s' $(seq 150))"
} >> input.txt
lines=$(wc -l < input.txt)

# A vocabulary of the whole words seen at least 3 times, every character,
# "##" + every character except a few letters (so words with them become
# [UNK]), and some suffixes (so words split into several pieces).
"$PYTHON" - input.txt vocab.txt <<'EOF' || fail "building the vocabulary failed"
import collections, sys
from tokenizers import normalizers, pre_tokenizers
norm = normalizers.BertNormalizer(lowercase=True)
pre = pre_tokenizers.BertPreTokenizer()
counts = collections.Counter()
with open(sys.argv[1], encoding="utf-8", newline="") as f:
    for line in f.read().split("\n"):
        counts.update(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(line)))
chars = sorted({c for w in counts for c in w})
words = sorted(w for w, n in counts.items() if n >= 3 and len(w) > 1)
tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
tokens += ["##" + c for c in chars if c not in "jqxz"]
tokens += ["##ing", "##ed", "##eth", "##est", "##s", "##ness", "##ly"] + words
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.write("\n".join(tokens) + "\n")
EOF

hf_ids() { # LOWERCASE(1|0) OUT
  RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false "$PYTHON" - vocab.txt input.txt "$1" > "$2" <<'EOF'
import sys
from tokenizers import BertWordPieceTokenizer
tok = BertWordPieceTokenizer(sys.argv[1], lowercase=sys.argv[3] == "1")
with open(sys.argv[2], encoding="utf-8", newline="") as f:
    lines = f.read().split("\n")
if lines and lines[-1] == "":
    lines.pop()
for enc in tok.encode_batch(lines, add_special_tokens=False):
    print(" ".join(map(str, enc.ids)))
EOF
}

compare() { # WHAT OURS THEIRS
  local n
  n=$(wc -l < "$2")
  [ "$n" -eq "$lines" ] || { fail "$1: $n output lines for $lines input lines"; return; }
  if cmp -s "$2" "$3"; then
    pass
  else
    local first
    first=$(cmp "$2" "$3" | head -1)
    fail "$1: outputs differ ($first); first differing lines (ours, HF):"$'\n'"$(diff "$2" "$3" | head -8)"
  fi
}

# The comparison only means something if both [UNK] and "##" pieces occur.
hf_ids 1 hf.ids || fail "Hugging Face tokenizers failed"
"$BERTRAIN" tokenize --vocab vocab.txt --ids --input input.txt > ours.ids && pass || fail "tokenize --ids exited $?"
compare "lower-cased" ours.ids hf.ids
"$BERTRAIN" tokenize --vocab vocab.txt --input input.txt > ours.tok && pass || fail "tokenize exited $?"
unk=$(grep -o '\[UNK\]' ours.tok | wc -l)
cont=$(grep -o ' ##' ours.tok | wc -l)
echo "$lines lines, $(wc -w < ours.tok) tokens, $unk [UNK], $cont ## pieces"
[ "$unk" -ge 10 ] && pass || fail "only $unk [UNK] tokens: the test does not exercise unknown words"
[ "$cont" -ge 1000 ] && pass || fail "only $cont ## pieces: the test does not exercise word splitting"

hf_ids 0 hf.cased.ids || fail "Hugging Face tokenizers (cased) failed"
"$BERTRAIN" tokenize --vocab vocab.txt --ids --cased --input input.txt > ours.cased.ids \
  && pass || fail "tokenize --cased exited $?"
compare "cased" ours.cased.ids hf.cased.ids
finish
