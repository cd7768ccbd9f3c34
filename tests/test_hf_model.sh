#!/usr/bin/env bash
# bertrain export and import: Hugging Face model directories both ways.
# A tiny model pre-trained a few steps and fine-tuned on an MRPC sample is
# exported; tests/reference/hf_dir.py reads the directory with json and
# numpy (the format itself, not bertrain's code) and compares it with the
# weights file; imports of it, and of the forms published BERTs come in
# (Google's names, BF16/F16, no heads, tokenizer.json), give back exactly
# the expected tensors; damaged or foreign directories are refused with a
# message naming what is wrong. Needs numpy and h5py in
# ${BERTRAIN_PYTHON:-python3}; skipped (77) without them.
source "$SRC/tests/sh_util.sh"
source "$SRC/tests/train_fixture.sh"

if ! why=$("$PYTHON" -c 'import numpy, h5py' 2>&1); then
  skip "$PYTHON lacks numpy/h5py (set BERTRAIN_PYTHON): $(tail -1 <<<"$why")"
fi
HF="$PYTHON $SRC/tests/reference/hf_dir.py"

make_tiny_data "$T_DIR/data" || { echo "FAIL: could not make the tiny data set" >&2; exit 1; }
CFG=$T_DIR/data/tiny.ini
CKPT=$T_DIR/data/run/checkpoints/final.h5
"$BERTRAIN" pretrain --config "$CFG" --set pretrain.epochs=1 --set pretrain.steps_per_epoch=5 > pretrain.out 2>&1 &&
  pass || fail "pretrain: $(cat pretrain.out)"
mkdir -p mrpc
xz -dc "$SRC/data/sample/MRPC/train.tsv.xz" | head -129 > mrpc/train.tsv
xz -dc "$SRC/data/sample/MRPC/dev.tsv.xz" | head -129 > mrpc/dev.tsv
"$BERTRAIN" finetune --checkpoint "$CKPT" --config "$CFG" --task mrpc --data mrpc --out ft \
  --set finetune.epochs=1 > ft.out 2>&1 && pass || fail "finetune: $(cat ft.out)"

# ---- export ----
for w in pre:$CKPT ft:ft/model.h5; do
  name=${w%%:*} file=${w#*:}
  "$BERTRAIN" export --checkpoint "$file" --out hf-$name > export-$name.out 2>&1 &&
    pass || fail "export $name: $(cat export-$name.out)"
  $HF check hf-$name "$file" && pass || fail "export $name: the directory does not match $file"
done
grep -q "BertForPreTraining, .* written to hf-pre as a Hugging Face model" export-pre.out && pass ||
  fail "export's summary line: $(cat export-pre.out)"
# The tiny vocabulary (1003 words) is not a multiple of 8: the word
# embeddings are stored with padding rows, which must not be exported.
grep -q '"vocab_size": 1003' hf-pre/config.json && pass || fail "config.json vocab_size: $(cat hf-pre/config.json)"

# ---- import: round trips, and the forms published BERTs come in ----
for name in pre ft; do
  "$BERTRAIN" import --from hf-$name --out rt-$name.h5 > import-$name.out 2>&1 &&
    pass || fail "import $name: $(cat import-$name.out)"
done
$HF variant hf-pre same-pre same && $HF expect rt-pre.h5 same-pre/expect.npz && pass || fail "round trip of the pre-trained model"
$HF variant hf-ft same-ft same && $HF expect rt-ft.h5 same-ft/expect.npz && pass || fail "round trip of the fine-tuned model"
# The imported classifier predicts exactly as the original.
for w in orig:ft/model.h5 rt:rt-ft.h5; do
  "$BERTRAIN" predict --checkpoint "${w#*:}" --data mrpc/dev.tsv --task mrpc --set finetune.seq_length=64 \
    2>/dev/null > predict-${w%%:*}.out || fail "predict with ${w#*:}"
done
[ -s predict-orig.out ] && cmp -s predict-orig.out predict-rt.out && pass ||
  fail "predict after the round trip: $(cat predict-rt.out), before: $(cat predict-orig.out)"
h5_attr() {
  "$PYTHON" -c 'import sys, h5py
a = h5py.File(sys.argv[1], "r").attrs[sys.argv[2]]
print(a.decode() if isinstance(a, bytes) else a)' "$@"
}
[ "$(h5_attr rt-pre.h5 vocab_hash)" = "$(h5_attr "$CKPT" vocab_hash)" ] &&
  [ "$(h5_attr rt-pre.h5 architecture)" = BertForPreTraining ] && pass ||
  fail "round trip: vocabulary hash or architecture changed"

for kind in google maskedlm tokjson; do
  $HF variant hf-pre $kind $kind || { fail "could not make variant $kind"; continue; }
  "$BERTRAIN" import --from $kind --out $kind.h5 > import-$kind.out 2>&1 &&
    $HF expect $kind.h5 $kind/expect.npz && pass || fail "import $kind: $(cat import-$kind.out)"
done
[ "$(h5_attr google.h5 architecture)" = BertModel ] && [ "$(h5_attr maskedlm.h5 pretraining_heads)" = 0 ] &&
  pass || fail "google/maskedlm imports should be BertModel without heads"
grep -q "has 5 of the 7 tensors of the pre-training heads; importing the encoder without them" import-maskedlm.out &&
  pass || fail "maskedlm: no note on the dropped heads: $(cat import-maskedlm.out)"
cmp -s tokjson.h5.vocab.txt hf-pre/vocab.txt && [ "$(h5_attr tokjson.h5 vocab_hash)" = "$(h5_attr "$CKPT" vocab_hash)" ] &&
  pass || fail "tokenizer.json's vocabulary should come out as the original vocab.txt"
# An imported BertModel fine-tunes.
"$BERTRAIN" finetune --checkpoint google.h5 --task mrpc --data mrpc --out ft-google --set finetune.epochs=1 \
  --set finetune.seq_length=64 > ft-google.out 2>&1 && [ -s ft-google/model.h5 ] &&
  grep -q "dev accuracy" ft-google.out && pass || fail "finetune from an imported BertModel: $(tail -3 ft-google.out)"

# A decoder bias that is not its tie's: a warning, the tie's values kept.
$HF variant hf-pre untied untied && "$BERTRAIN" import --from untied --out untied.h5 > untied.out 2>&1 &&
  grep -q "cls.predictions.decoder.bias differs from cls.predictions.bias" untied.out &&
  $HF expect untied.h5 untied/expect.npz && pass || fail "untied decoder bias: $(cat untied.out)"

# ---- a new pre-training run from imported weights (pretrain.init_checkpoint) ----
"$BERTRAIN" pretrain --config "$CFG" --set run.dir=$T_DIR/init --set pretrain.init_checkpoint=rt-pre.h5 \
  --set pretrain.epochs=1 --set pretrain.steps_per_epoch=2 --set pretrain.milestone_epochs=1 \
  --set finetune.launcher=inline --set finetune.task=mrpc --set finetune.data=mrpc --set finetune.epochs=1 \
  > init.out 2>&1 && pass || fail "pretrain from rt-pre.h5: $(tail -5 init.out)"
grep -q "a new run from the weights of rt-pre.h5 (pretrain.init_checkpoint)" init.out && pass ||
  fail "pretrain should say where its weights come from: $(head -5 init.out)"
# The epoch-0 checkpoint (the baseline) is exactly the imported weights.
$HF expect init/checkpoints/epoch-0000.h5 same-pre/expect.npz && pass || fail "epoch-0000.h5 differs from rt-pre.h5"
grep -q '^| 0 (initial weights) | 0 |' init/report/Report.md &&
  grep -q "Fine-tuning the weights the run started from (pre-trained epoch 0: rt-pre.h5" init/report/Report.md &&
  pass || fail "the report should call the baseline the initial weights: $(grep -m3 '^| 0\|epoch 0' init/report/Report.md)"
expect_fail "init_checkpoint of another shape" "model.layers is 2 in the file, 3 in use" \
  "$BERTRAIN" pretrain --config "$CFG" --set run.dir=$T_DIR/init3 --set pretrain.init_checkpoint=rt-pre.h5 --set model.layers=3
expect_fail "init_checkpoint without pre-training heads" "google.h5 has no pre-training heads" \
  "$BERTRAIN" pretrain --config "$CFG" --set run.dir=$T_DIR/init4 --set pretrain.init_checkpoint=google.h5

# ---- refused, with the reason ----
while IFS='|' read -r kind want; do
  $HF variant hf-pre bad-$kind $kind || { fail "could not make variant $kind"; continue; }
  expect_fail "import $kind" "$want" "$BERTRAIN" import --from bad-$kind --out bad-$kind.h5
  [ ! -e bad-$kind.h5 ] && pass || fail "import $kind left bad-$kind.h5"
done <<'EOF'
relu|"hidden_act" is "relu"; bertrain imports "gelu" only
vocabsize|vocab_size is 1004 but vocab.txt has 1003 tokens
badshape|tensor bert.encoder.layer.0.attention.self.query.weight has shape [64, 63]; the model of config.json needs [64, 64]
extra|1 tensor that bertrain's BERT does not have: bert.encoder.layer.0.attention.self.rotary.weight
missing|1 tensor of the model missing: bert.encoder.layer.1.output.dense.bias
truncated|(cut short?)
badheader|header length 1099511627776 does not fit the file
pickle|only pytorch_model.bin
EOF
mkdir -p empty
expect_fail "import of a directory without config.json" "no config.json" "$BERTRAIN" import --from empty --out e.h5
expect_fail "import without --out" "pass --out FILE.h5" "$BERTRAIN" import --from hf-pre
expect_fail "export without --out" "pass --out DIR" "$BERTRAIN" export --checkpoint "$CKPT"
expect_fail "export of a non-weights file" "not an HDF5 file" "$BERTRAIN" export --checkpoint mrpc/dev.tsv --out x

finish
