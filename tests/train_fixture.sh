# Sourced by the training tests (after sh_util.sh): a tiny pre-training data
# set from the first 200 documents of the sample corpus, and a tiny model.
# make_tiny_data DIR writes DIR/corpus.txt, DIR/vocab.txt (1003 tokens: not
# a multiple of 8, so the MLM decoder runs over the word embeddings' stored
# rows past the vocabulary), DIR/shards (2 shards of 64-token sequences, 10
# masked positions) and DIR/tiny.ini (2 layers, hidden 64, one thread, run
# dir DIR/run).
make_tiny_data() {
  local d=$1
  make_sample_shards "$d" 200 1003 64 10 || return 1
  cat > "$d/tiny.ini" <<EOF
[model]
vocab = $d/vocab.txt
layers = 2
hidden = 64
heads = 2
intermediate = 128
max_position = 128

[data]
dir = $d/shards
seq_length = 64
max_predictions = 10

[pretrain]
epochs = 3
steps_per_epoch = 10
batch_size = 32
micro_batch = 16
lr = 2e-3
warmup_proportion = 0.1
log_every = 10

[finetune]
; the tests run fine-tuning themselves; pre-training launches none
launcher = none
seq_length = 64
lr = 1e-3
batch_size = 32
epochs = 2

[run]
dir = $d/run
threads = 1
EOF
}
