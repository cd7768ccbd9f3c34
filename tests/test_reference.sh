#!/usr/bin/env bash
# bertrain forward against Hugging Face transformers (tests/reference/
# check_pytorch.py): a tiny model pre-trained for a few steps, the same
# shard rows in eval mode, MLM and NSP logits and losses within 1e-4
# relative error, on the CPU and (with a GPU) the CUDA backend; then the
# checkpoint exported (bertrain export) and loaded with from_pretrained, and
# a fine-tuned model's exported classifier and tokenizer predicting the MRPC
# sample's dev set exactly as bertrain predict does. Needs
# torch, transformers, h5py and numpy in ${BERTRAIN_PYTHON:-python3};
# skipped (77) without them.
source "$SRC/tests/sh_util.sh"
source "$SRC/tests/train_fixture.sh"

if ! why=$("$PYTHON" -c 'import torch, transformers, h5py, numpy' 2>&1); then
  skip "$PYTHON lacks torch/transformers/h5py/numpy (set BERTRAIN_PYTHON): $(tail -1 <<<"$why")"
fi

make_tiny_data "$T_DIR/data" || { echo "FAIL: could not make the tiny data set" >&2; exit 1; }
CKPT=$T_DIR/data/run/checkpoints/final.h5
# A few steps, so that no tensor keeps its initial value (LayerNorm 1/0, zero biases).
"$BERTRAIN" pretrain --config "$T_DIR/data/tiny.ini" --set pretrain.epochs=1 --set pretrain.steps_per_epoch=5 > pretrain.out 2>&1 &&
  pass || fail "pretrain: $(cat pretrain.out)"

# Rows with padding (attention mask) and unused masked-LM slots too: a range
# around the first short sequence of the second shard.
pad=$("$PYTHON" -c 'import sys, h5py, numpy as np
m = h5py.File(sys.argv[1], "r")["input_mask"][:].min(axis=1)
r = np.nonzero(m == 0)[0]
print(max(int(r[0]) - 3, 0) if len(r) else 0)' "$T_DIR/data/shards/shard-00001.h5")
# The CPU backend, and the CUDA one too when a GPU is usable.
devices=cpu
if why=$(gpu_usable); then devices="cpu cuda"; else echo "note: CUDA not checked: $why"; fi
for dev_shard_rows in $(for d in $devices; do echo "$d,shard-00000.h5,0:16 $d,shard-00001.h5,$pad:$((pad + 8))"; done); do
  IFS=, read -r dev shard rows <<<"$dev_shard_rows"
  "$BERTRAIN" forward --checkpoint "$CKPT" --data "$T_DIR/data/shards/$shard" --rows "$rows" \
    --set run.device=$dev --out "fwd-$dev-$rows.h5" > forward.out 2>&1 ||
    { fail "forward $shard $rows on $dev: $(cat forward.out)"; continue; }
  echo "== $dev: $shard rows $rows"
  "$PYTHON" "$SRC/tests/reference/check_pytorch.py" --checkpoint "$CKPT" \
    --shard "$T_DIR/data/shards/$shard" --rows "$rows" --forward "fwd-$dev-$rows.h5" --tol 1e-4 \
    | tee check.out
  rc=${PIPESTATUS[0]}
  [ $rc -eq 0 ] && pass || fail "check_pytorch.py on $shard rows $rows ($dev) exited $rc"
  [ "$shard" = shard-00000.h5 ] || grep -q "padded rows [1-9]" check.out && pass ||
    fail "rows $rows of $shard should include a padded sequence"
done

# The same checkpoint through bertrain export and transformers' from_pretrained.
"$BERTRAIN" export --checkpoint "$CKPT" --out hf > export.out 2>&1 && pass || fail "export: $(cat export.out)"
"$BERTRAIN" forward --checkpoint "$CKPT" --data "$T_DIR/data/shards/shard-00000.h5" --rows 0:16 \
  --set run.device=cpu --out fwd-export.h5 > forward.out 2>&1 || fail "forward for the export check: $(cat forward.out)"
"$PYTHON" "$SRC/tests/reference/check_pytorch.py" --checkpoint "$CKPT" --hf-dir hf \
  --shard "$T_DIR/data/shards/shard-00000.h5" --rows 0:16 --forward fwd-export.h5 --tol 1e-4 &&
  pass || fail "check_pytorch.py on the exported directory"
# A fine-tuned model: transformers' tokenizer and classifier predict as bertrain predict does.
mkdir -p mrpc
xz -dc "$SRC/data/sample/MRPC/train.tsv.xz" | head -129 > mrpc/train.tsv
xz -dc "$SRC/data/sample/MRPC/dev.tsv.xz" > mrpc/dev.tsv
"$BERTRAIN" finetune --checkpoint "$CKPT" --config "$T_DIR/data/tiny.ini" --task mrpc --data mrpc --out ft \
  --set finetune.epochs=1 > ft.out 2>&1 &&
  "$BERTRAIN" predict --checkpoint ft/model.h5 --task mrpc --data mrpc/dev.tsv --out ft-pred.txt > pred.out 2>&1 &&
  "$BERTRAIN" export --checkpoint ft/model.h5 --out hf-ft > export-ft.out 2>&1 && pass ||
  fail "finetune, predict or export: $(tail -3 ft.out pred.out export-ft.out)"
"$PYTHON" "$SRC/tests/reference/check_hf_classifier.py" hf-ft mrpc/dev.tsv mrpc 64 ft-pred.txt &&
  pass || fail "check_hf_classifier.py: predictions differ"

finish
