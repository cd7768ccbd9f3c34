/* The pre-training data stream: every pass is a permutation of all samples
 * of all shards, passes differ, the order depends only on the seed, batches
 * hold exactly the rows the stream names (across shards and passes), and bad
 * shard directories are refused. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch_loader.h"
#include "shard.h"
#include "test_util.h"
#include "util.h"
#include "vocab.h"

enum { S = 8, P = 3 };

/* Row r of a shard whose first sample is global number g: input_ids[0] =
 * 1000 + g identifies it; the other fields are derived from g. */
static void write_shard(const char *path, size_t first, size_t n, int seq, const Vocab *v) {
  Instances in;
  instances_alloc(&in, n, seq, P);
  in.n = n;
  for (size_t r = 0; r < n; r++) {
    size_t g = first + r;
    for (int j = 0; j < seq; j++) {
      in.input_ids[r * seq + j] = j == 0 ? (int32_t)(1000 + g) : (int32_t)(g % 7 + j);
      in.input_mask[r * seq + j] = j < 5 + (int)(g % 3);
      in.segment_ids[r * seq + j] = j >= 3;
    }
    for (int k = 0; k < P; k++) {
      in.masked_lm_positions[r * P + k] = k + 1;
      in.masked_lm_ids[r * P + k] = (int32_t)(g * 10 + (size_t)k);
    }
    in.next_sentence_labels[r] = (int8_t)(g % 2);
  }
  ShardAttrs a = {0};
  a.format_version = SHARD_FORMAT_VERSION;
  a.vocab_size = v->size;
  a.vocab_hash = v->hash;
  a.seq_length = seq;
  a.max_predictions = P;
  a.num_shards = 3;
  shard_write(path, &in, &a);
  instances_free(&in);
}

static char g_dir[256];
static Vocab *g_vocab;

static void make_dir(const char *name, int bad_seq) {
  snprintf(g_dir, sizeof g_dir, "%s", name);
  make_dirs(g_dir);
  const size_t sizes[3] = {5, 7, 4};
  size_t first = 0;
  for (int i = 0; i < 3; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/shard-%05d.h5", g_dir, i);
    write_shard(path, first, sizes[i], bad_seq && i == 2 ? S * 2 : S, g_vocab);
    first += sizes[i];
  }
}

static int is_permutation(BatchLoader *l, uint64_t pass, size_t *order) {
  size_t n = loader_samples(l);
  char *seen = calloc(n, 1);
  int ok = 1;
  for (size_t i = 0; i < n; i++) {
    size_t s = loader_sample_at(l, pass * n + i);
    order[i] = s;
    if (s >= n || seen[s]) ok = 0;
    else seen[s] = 1;
  }
  free(seen);
  return ok;
}

static void test_order(void) {
  BatchLoader *l = loader_open("loader-ok", g_vocab, 7, 1 << 20);
  CHECK_INT(loader_samples(l), 16);
  CHECK_INT(loader_num_shards(l), 3);
  CHECK_INT(loader_seq_length(l), S);
  CHECK_INT(loader_max_predictions(l), P);
  size_t p0[16], p1[16], q0[16];
  CHECK(is_permutation(l, 0, p0));
  CHECK(is_permutation(l, 1, p1));
  CHECK(memcmp(p0, p1, sizeof p0) != 0);
  size_t ident = 0;
  for (int i = 0; i < 16; i++) ident += p0[i] == (size_t)i;
  CHECK(ident < 16);
  loader_close(l);
  l = loader_open("loader-ok", g_vocab, 7, 1 << 20);
  CHECK(is_permutation(l, 0, q0));
  CHECK(memcmp(p0, q0, sizeof p0) == 0);
  loader_close(l);
  l = loader_open("loader-ok", g_vocab, 8, 1 << 20);
  CHECK(is_permutation(l, 0, q0));
  CHECK(memcmp(p0, q0, sizeof p0) != 0);
  loader_close(l);
}

/* A batch across the end of pass 0 holds the rows the stream names. */
static void test_read(void) {
  BatchLoader *l = loader_open("loader-ok", g_vocab, 7, 1 << 20);
  LoadedBatch b;
  loaded_batch_alloc(&b, 10, S, P);
  uint64_t first = 11;
  loader_read(l, first, 10, &b);
  CHECK_INT(b.n, 10);
  int bad = 0;
  for (int i = 0; i < 10; i++) {
    size_t g = loader_sample_at(l, first + (uint64_t)i);
    bad += b.input_ids[i * S] != (int32_t)(1000 + g);
    bad += b.input_ids[i * S + 4] != (int32_t)(g % 7 + 4);
    bad += b.input_mask[i * S + 5] != (5 < 5 + (int)(g % 3));
    bad += b.segment_ids[i * S + 2] != 0 || b.segment_ids[i * S + 3] != 1;
    bad += b.mlm_positions[i * P + 2] != 3;
    bad += b.mlm_ids[i * P + 1] != (int32_t)(g * 10 + 1);
    bad += b.nsp_labels[i] != (int32_t)(g % 2);
  }
  CHECK_INT(bad, 0);
  /* repeated samples and any order */
  size_t want[5] = {15, 0, 15, 6, 5};
  loader_read_samples(l, want, 5, &b);
  for (int i = 0; i < 5; i++) CHECK_INT(b.input_ids[i * S], 1000 + want[i]);
  loaded_batch_free(&b);
  loader_close(l);
}

static void open_dir(void *arg) { loader_open(arg, g_vocab, 1, 0); }

static Vocab *g_other;
static void open_other_vocab(void *arg) { loader_open(arg, g_other, 1, 0); }

int main(void) {
  char tmp[] = "/tmp/test_batch_loader-XXXXXX";
  if (!mkdtemp(tmp) || chdir(tmp) != 0) return 2;
  char *tokens[40];
  for (int i = 0; i < 40; i++) {
    tokens[i] = malloc(16);
    snprintf(tokens[i], 16, "t%d", i);
  }
  g_vocab = vocab_from_tokens(tokens, 40, "test-vocab");
  g_other = vocab_from_tokens(tokens, 39, "other-vocab");
  make_dir("loader-ok", 0);
  test_order();
  test_read();

  make_dir("loader-bad-seq", 1);
  static const char *const agree[] = {"shard-00002.h5", "must agree", NULL};
  CHECK(expect_death("shards of two seq lengths", open_dir, "loader-bad-seq", agree));
  static const char *const vocab_size[] = {"shard-00000.h5", "vocabulary of 40 tokens", "has 39", NULL};
  CHECK(expect_death("a vocab of another size", open_other_vocab, "loader-ok", vocab_size));
  make_dirs("loader-empty");
  static const char *const none[] = {"loader-empty", "no pre-training shards", NULL};
  CHECK(expect_death("no shards", open_dir, "loader-empty", none));
  static const char *const missing[] = {"loader-missing", NULL};
  CHECK(expect_death("no directory", open_dir, "loader-missing", missing));

  vocab_free(g_vocab);
  vocab_free(g_other);
  for (int i = 0; i < 40; i++) free(tokens[i]);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  if (chdir("/") != 0 || system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  return test_finish();
}
