# Sourced by the distributed pre-training tests (after sh_util.sh): a very
# small data set and model, so that many short MPI runs fit in a minute.
# make_dist_data DIR writes DIR/corpus.txt (100 documents), DIR/vocab.txt,
# DIR/shards (2 shards of 32-token sequences, 5 masked positions) and
# DIR/tiny.ini (2 layers, hidden 32, 2 heads, one thread per rank; 4 epochs
# of 5 steps of 16 sequences, milestones every 2 epochs, latest.h5 every 3
# steps). Runs use run.dir = run relative to their own directory, so that
# their resolved configurations, and hence checkpoints, can be compared.
make_dist_data() {
  local d=$1
  make_sample_shards "$d" 100 400 32 5 || return 1
  cat > "$d/tiny.ini" <<EOF
[model]
vocab = $d/vocab.txt
layers = 2
hidden = 32
heads = 2
intermediate = 64
max_position = 64

[data]
dir = $d/shards
seq_length = 32
max_predictions = 5

[pretrain]
epochs = 4
steps_per_epoch = 5
milestone_epochs = 2
batch_size = 16
micro_batch = 4
lr = 2e-3
warmup_proportion = 0.1
log_every = 5

[finetune]
launcher = none

[checkpoint]
every_steps = 3
every_minutes = 0

[run]
dir = run
threads = 1
EOF
}

# pretrain_in DIR NP [args...]: pretrain on NP ranks in directory DIR (made if
# needed), output in DIR/out and DIR/err, 120 s at most; returns its status.
pretrain_in() {
  local dir=$1 np=$2
  shift 2
  mkdir -p "$dir" || return 1
  (cd "$dir" && timeout 120 "$MPIEXEC" -np "$np" "$BERTRAIN" pretrain --config "$CFG" "$@" \
     > out 2> err)
}

# rank_pids PID: the bertrain processes below PID (the MPI ranks).
rank_pids() {
  local p
  for p in $(pgrep -P "$1"); do
    if [ "$(ps -o comm= -p "$p")" = bertrain ]; then echo "$p"; else rank_pids "$p"; fi
  done
}

# wait_for FILE: until FILE exists (30 s at most).
wait_for() {
  local i
  for i in $(seq 600); do
    [ -e "$1" ] && return 0
    sleep 0.05
  done
  return 1
}

# h5_value FILE DATASET: the single value of a dataset.
h5_value() {
  h5dump -d "$2" "$1" 2>/dev/null | sed -n 's/^ *(0): \([-0-9.e+]*\).*/\1/p'
}

# same_params A B [h5diff options]: the datasets of two checkpoints agree
# (bit for bit without options); /train (timings, rank count) is left out.
same_params() {
  local a=$1 b=$2
  shift 2
  h5diff -q "$@" --exclude-path /train "$a" "$b" > /dev/null 2>&1
}
