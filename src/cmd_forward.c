/* bertrain forward: the pre-training heads' outputs for rows of a shard, in
 * eval mode, written to HDF5 for comparison with other implementations. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "model.h"
#include "params.h"
#include "prep.h"
#include "shard.h"
#include "train_util.h"
#include "util.h"
#include "weights_h5.h"

#define FORWARD_BATCH 16

static void parse_rows(const char *s, size_t n, size_t *a, size_t *b, const char *shard) {
  if (!s) {
    *a = 0;
    *b = n;
    return;
  }
  const char *colon = strchr(s, ':');
  char left[64];
  long va, vb;
  if (!colon || (size_t)(colon - s) >= sizeof left) die("forward --rows %s: expected A:B", s);
  memcpy(left, s, (size_t)(colon - s));
  left[colon - s] = '\0';
  if (parse_long(left, &va) != 0 || parse_long(colon + 1, &vb) != 0 || va < 0 || vb <= va)
    die("forward --rows %s: expected A:B with 0 <= A < B (rows A..B-1)", s);
  if ((size_t)vb > n) die("forward --rows %s: %s has only %zu rows", s, shard, n);
  *a = (size_t)va;
  *b = (size_t)vb;
}

static void h5ok(herr_t rc, const char *path, const char *what) {
  if (rc < 0) die("%s: HDF5 error %s", path, what);
}

static hid_t h5id(hid_t id, const char *path, const char *what) {
  if (id < 0) die("%s: HDF5 error %s", path, what);
  return id;
}

static hid_t make_dataset(hid_t f, const char *path, const char *name, int rank,
                          const hsize_t *dims) {
  hid_t space = h5id(rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR), path,
                     "creating a dataspace");
  hid_t ds = h5id(H5Dcreate2(f, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                  path, name);
  h5ok(H5Sclose(space), path, "closing a dataspace");
  return ds;
}

/* Writes rows [row, row + n) of a dataset whose rows hold width floats. */
static void write_rows(hid_t ds, const char *path, size_t row, size_t n, size_t width,
                       const float *x) {
  hid_t fspace = h5id(H5Dget_space(ds), path, "getting a dataspace");
  int rank = H5Sget_simple_extent_ndims(fspace);
  hsize_t off[3] = {row, 0, 0}, cnt[3];
  h5ok(H5Sget_simple_extent_dims(fspace, cnt, NULL), path, "reading a shape");
  cnt[0] = n;
  h5ok(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, cnt, NULL), path, "selecting rows");
  hsize_t mdims[1] = {n * width};
  hid_t mspace = h5id(H5Screate_simple(1, mdims, NULL), path, "creating a dataspace");
  h5ok(H5Dwrite(ds, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, x), path, "writing rows");
  h5ok(H5Sclose(mspace), path, "closing a dataspace");
  h5ok(H5Sclose(fspace), path, "closing a dataspace");
  (void)rank;
}

static void write_scalar(hid_t f, const char *path, const char *name, double v) {
  hid_t ds = make_dataset(f, path, name, 0, NULL);
  float x = (float)v;
  h5ok(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, &x), path, name);
  h5ok(H5Dclose(ds), path, name);
}

static void copy_i8(int32_t *dst, const int8_t *src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

typedef struct Out {
  const char *tmp;
  hid_t f, logits, nsp;
} Out;

static int run(int argc, char **argv) {
  const char *ckpt = NULL, *data = NULL, *rows = NULL, *out = NULL;
  CliOpt opts[] = {
    {"checkpoint", OPT_STRING, &ckpt}, {"data", OPT_STRING, &data},
    {"rows", OPT_STRING, &rows},       {"out", OPT_STRING, &out},
  };
  Config cfg;
  cli_parse(&CMD_FORWARD, argc, argv, opts, (int)ARRAY_LEN(opts), &cfg);
  if (!ckpt) die("forward: no checkpoint: pass --checkpoint FILE.h5");
  if (!data) die("forward: no shard: pass --data SHARD.h5");
  if (!out) die("forward: no output file: pass --out FILE.h5");
  config_free(&cfg);
  train_config_from_checkpoint(ckpt, argc, argv, &cfg);
  const Ops *ops = train_ops(&cfg);
  ModelShape shape;
  weights_read_shape(ckpt, &shape);
  if (!shape.pretraining)
    die("%s: the checkpoint has no pre-training heads (cls.*), so there is nothing to compare",
        ckpt);
  shape.num_labels = 0;
  Vocab *v = train_vocab_for_checkpoint(ckpt, &cfg);

  Shard *s = shard_open(data);
  if (s->seq_length > shape.max_position)
    die("%s: sequences of %d tokens, longer than the checkpoint's max_position %d", data,
        s->seq_length, shape.max_position);
  if (s->attrs.present && s->attrs.vocab_size != v->size)
    die("%s: made with a vocabulary of %lld tokens, but the checkpoint %s has %d", data,
        (long long)s->attrs.vocab_size, ckpt, v->size);
  if (s->attrs.present && s->attrs.vocab_hash != v->hash)
    die("%s: made with a different vocabulary than the checkpoint %s (same size %d, different "
        "tokens)", data, ckpt, v->size);
  size_t a, b;
  parse_rows(rows, s->n, &a, &b, data);
  size_t n = b - a;
  int S = s->seq_length, P = s->max_predictions, V = v->size;

  ParamTable *t = params_build(&shape);
  float *host = params_alloc_host(t);
  weights_load(ckpt, t, host, &cfg, v);
  ModelOpts mo = {MODEL_PRETRAIN, FORWARD_BATCH, S, P, 0.0f, 0.0f, 0, v->pad};
  Model *m = model_new(ops, t, &mo);
  model_params_from_host(m, host);
  free(host);

  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", out) >= (int)sizeof tmp) die("path too long: %s", out);
  tmpfile_register(tmp);
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) die("cannot create %s", tmp);
  hsize_t dl[3] = {n, (hsize_t)P, (hsize_t)V}, dn[2] = {n, 2};
  hid_t ds_logits = make_dataset(f, tmp, "mlm_logits", 3, dl);
  hid_t ds_nsp = make_dataset(f, tmp, "nsp_logits", 2, dn);

  Instances in;
  instances_alloc(&in, FORWARD_BATCH, S, P);
  int32_t *seg = xmalloc((size_t)FORWARD_BATCH * S * sizeof *seg);
  int32_t *mask = xmalloc((size_t)FORWARD_BATCH * S * sizeof *mask);
  int32_t *nsp = xmalloc(FORWARD_BATCH * sizeof *nsp);
  float *logits = xmalloc((size_t)FORWARD_BATCH * P * V * sizeof *logits);
  float *nsp_logits = xmalloc(FORWARD_BATCH * 2 * sizeof *nsp_logits);
  double mlm_sum = 0, nsp_sum = 0;
  long mlm_count = 0, nsp_count = 0, mlm_correct = 0, nsp_correct = 0;
  for (size_t r = a; r < b; r += FORWARD_BATCH) {
    int k = b - r < FORWARD_BATCH ? (int)(b - r) : FORWARD_BATCH;
    shard_read(s, r, (size_t)k, &in);
    copy_i8(seg, in.segment_ids, (size_t)k * S);
    copy_i8(mask, in.input_mask, (size_t)k * S);
    copy_i8(nsp, in.next_sentence_labels, (size_t)k);
    Batch batch = {k, S, P, in.input_ids, seg, mask, in.masked_lm_positions, in.masked_lm_ids, nsp};
    Stats st;
    DropoutCtx d = {0, 0, 0};
    model_forward_backward(m, &batch, 0, d, 1.0f, &st);
    model_mlm_logits(m, logits);
    model_cls_logits(m, nsp_logits);
    write_rows(ds_logits, tmp, r - a, (size_t)k, (size_t)P * V, logits);
    write_rows(ds_nsp, tmp, r - a, (size_t)k, 2, nsp_logits);
    mlm_sum += st.mlm_loss * (double)st.mlm_count;
    nsp_sum += st.cls_loss * (double)st.cls_count;
    mlm_count += st.mlm_count;
    nsp_count += st.cls_count;
    mlm_correct += st.mlm_correct;
    nsp_correct += st.cls_correct;
  }
  double mlm_loss = mlm_count ? mlm_sum / (double)mlm_count : 0;
  double nsp_loss = nsp_count ? nsp_sum / (double)nsp_count : 0;
  h5ok(H5Dclose(ds_logits), tmp, "closing mlm_logits");
  h5ok(H5Dclose(ds_nsp), tmp, "closing nsp_logits");
  write_scalar(f, tmp, "mlm_loss", mlm_loss);
  write_scalar(f, tmp, "nsp_loss", nsp_loss);
  if (H5Fclose(f) < 0) die("cannot finish writing %s", tmp);
  commit_file(tmp, out);
  printf("forward: rows %zu:%zu of %s: mlm_loss %.6f (%ld positions, accuracy %.4f), "
         "nsp_loss %.6f (accuracy %.4f); written to %s\n", a, b, data, mlm_loss, mlm_count,
         mlm_count ? (double)mlm_correct / (double)mlm_count : 0, nsp_loss,
         nsp_count ? (double)nsp_correct / (double)nsp_count : 0, out);

  free(logits);
  free(nsp_logits);
  free(seg);
  free(mask);
  free(nsp);
  instances_free(&in);
  model_free(m);
  params_free(t);
  shard_close(s);
  vocab_free(v);
  config_free(&cfg);
  return 0;
}

const Command CMD_FORWARD = {
  "forward", "run pre-training heads on shard rows in eval mode and save the outputs (HDF5)",
  "usage: bertrain forward --checkpoint FILE.h5 --data SHARD.h5 --out OUT.h5\n"
  "                        [--rows A:B] [--config FILE] [--set KEY=VALUE]...\n\n"
  "Runs the pre-training model of the checkpoint in eval mode (no dropout) on\n"
  "rows A..B-1 (default: all) of a pre-training shard and writes OUT.h5 with\n"
  "  mlm_logits  [n, P, V] float32: logits at the shard's masked_lm_positions\n"
  "              (every one of the P slots, unused ones included)\n"
  "  nsp_logits  [n, 2]\n"
  "  mlm_loss    scalar: mean cross-entropy over the real masked positions\n"
  "  nsp_loss    scalar: mean next-sentence cross-entropy\n"
  "for comparison with other implementations (tests/reference/check_pytorch.py).\n\n"
  "options:\n"
  "  --checkpoint FILE  weights with pre-training heads (pretrain's checkpoints)\n"
  "  --data FILE        an HDF5 shard of 'bertrain prep' (or NVIDIA's layout)\n"
  "  --rows A:B         the rows to run, A included, B excluded\n"
  "  --out FILE         the HDF5 file to write\n"
  "  --config FILE      read settings from an INI file\n"
  "  --set KEY=VALUE    set one setting\n",
  run, 0,
};
