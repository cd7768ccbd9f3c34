/* HDF5 shard files: writing (chunked; byte shuffle + deflate + fletcher32,
 * filters every HDF5 reader has) and reading rows
 * by hyperslab. */
#include "shard.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

const char *const SHARD_DATASETS[SHARD_NUM_DATASETS] = {
  "input_ids", "input_mask", "segment_ids",
  "masked_lm_positions", "masked_lm_ids", "next_sentence_labels",
};

enum { DS_IDS, DS_MASK, DS_SEG, DS_POS, DS_LMIDS, DS_NSP };

/* HDF5 prints its own error stack by default; our messages name the file
 * and dataset instead. */
static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static hid_t h5(hid_t id, const char *path, const char *what) {
  if (id < 0) die("%s: HDF5 error: %s", path, what);
  return id;
}

static void h5ok(herr_t rc, const char *path, const char *what) {
  if (rc < 0) die("%s: HDF5 error: %s", path, what);
}

/* The dataset's buffer, memory type and second dimension (0: one dimension). */
static const void *column(const Instances *in, int k, hid_t *mem, hsize_t *width) {
  hsize_t S = (hsize_t)in->seq_length, P = (hsize_t)in->max_predictions;
  switch (k) {
  case DS_IDS: *mem = H5T_NATIVE_INT32; *width = S; return in->input_ids;
  case DS_MASK: *mem = H5T_NATIVE_INT8; *width = S; return in->input_mask;
  case DS_SEG: *mem = H5T_NATIVE_INT8; *width = S; return in->segment_ids;
  case DS_POS: *mem = H5T_NATIVE_INT32; *width = P; return in->masked_lm_positions;
  case DS_LMIDS: *mem = H5T_NATIVE_INT32; *width = P; return in->masked_lm_ids;
  default: *mem = H5T_NATIVE_INT8; *width = 0; return in->next_sentence_labels;
  }
}

static void write_dataset(hid_t file, const char *path, const Instances *in, int k) {
  const char *name = SHARD_DATASETS[k];
  char what[256];
  hid_t mem;
  hsize_t width;
  const void *buf = column(in, k, &mem, &width);
  hsize_t dims[2] = {(hsize_t)in->n, width}, chunk[2];
  int rank = width ? 2 : 1;
  /* About 64 K values per chunk: small enough for reading a few rows,
   * large enough to compress well. */
  hsize_t rows = 65536 / (width ? width : 1);
  chunk[0] = rows < dims[0] ? rows : dims[0];
  if (chunk[0] == 0) chunk[0] = 1;
  chunk[1] = width;
  hid_t file_type = mem == H5T_NATIVE_INT32 ? H5T_STD_I32LE : H5T_STD_I8LE;

  snprintf(what, sizeof what, "creating dataset %s", name);
  hid_t space = h5(H5Screate_simple(rank, dims, NULL), path, what);
  hid_t dcpl = h5(H5Pcreate(H5P_DATASET_CREATE), path, what);
  h5ok(H5Pset_chunk(dcpl, rank, chunk), path, what);
  /* Byte shuffle then fast deflate: smaller and about twice as fast as
   * deflate level 4 alone on token ids. */
  h5ok(H5Pset_shuffle(dcpl), path, what);
  h5ok(H5Pset_deflate(dcpl, 1), path, what);
  h5ok(H5Pset_fletcher32(dcpl), path, what);
  /* No time stamps, so the same instances always make the same bytes. */
  h5ok(H5Pset_obj_track_times(dcpl, 0), path, what);
  hid_t ds = h5(H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), path, what);
  snprintf(what, sizeof what, "writing dataset %s", name);
  if (in->n) h5ok(H5Dwrite(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), path, what);
  snprintf(what, sizeof what, "closing dataset %s", name);
  h5ok(H5Dclose(ds), path, what);
  h5ok(H5Pclose(dcpl), path, what);
  h5ok(H5Sclose(space), path, what);
}

static void write_attr(hid_t file, const char *path, const char *name, hid_t file_type,
                       hid_t mem, const void *value) {
  char what[256];
  snprintf(what, sizeof what, "writing attribute %s", name);
  hid_t space = h5(H5Screate(H5S_SCALAR), path, what);
  hid_t at = h5(H5Acreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT), path, what);
  h5ok(H5Awrite(at, mem, value), path, what);
  h5ok(H5Aclose(at), path, what);
  h5ok(H5Sclose(space), path, what);
}

static void write_attrs(hid_t file, const char *path, const ShardAttrs *a) {
  const struct { const char *name; const int64_t *v; } ints[] = {
    {"format_version", &a->format_version}, {"vocab_size", &a->vocab_size},
    {"seq_length", &a->seq_length}, {"max_predictions", &a->max_predictions},
    {"seed", &a->seed}, {"dupe_factor", &a->dupe_factor},
    {"whole_word_mask", &a->whole_word_mask}, {"shard_index", &a->shard_index},
    {"num_shards", &a->num_shards},
  };
  for (size_t i = 0; i < ARRAY_LEN(ints); i++)
    write_attr(file, path, ints[i].name, H5T_STD_I64LE, H5T_NATIVE_INT64, ints[i].v);
  write_attr(file, path, "vocab_hash", H5T_STD_U64LE, H5T_NATIVE_UINT64, &a->vocab_hash);
  write_attr(file, path, "masked_lm_prob", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &a->masked_lm_prob);
  write_attr(file, path, "short_seq_prob", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &a->short_seq_prob);
}

void shard_write(const char *path, const Instances *in, const ShardAttrs *a) {
  quiet_hdf5();
  if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0 || H5Zfilter_avail(H5Z_FILTER_SHUFFLE) <= 0 ||
      H5Zfilter_avail(H5Z_FILTER_FLETCHER32) <= 0)
    die("%s: this HDF5 library lacks the deflate, shuffle or fletcher32 filter", path);
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) die("path too long: %s", path);
  tmpfile_register(tmp);
  hid_t fcpl = h5(H5Pcreate(H5P_FILE_CREATE), tmp, "creating the file");
  h5ok(H5Pset_obj_track_times(fcpl, 0), tmp, "creating the file");
  hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
  if (file < 0) die("%s: cannot create HDF5 file (is the directory writable?)", tmp);
  h5ok(H5Pclose(fcpl), tmp, "creating the file");
  for (int k = 0; k < SHARD_NUM_DATASETS; k++) write_dataset(file, tmp, in, k);
  write_attrs(file, tmp, a);
  h5ok(H5Fclose(file), tmp, "closing the file");
  commit_file(tmp, path);
}

/* ---- reading ---- */

static void read_attr(hid_t file, const char *path, const char *name, hid_t mem, void *out) {
  char what[256];
  snprintf(what, sizeof what, "reading attribute %s", name);
  htri_t e = H5Aexists(file, name);
  if (e < 0) die("%s: HDF5 error: %s", path, what);
  if (e == 0) die("%s: attribute %s is missing (the file has bertrain's format_version)", path, name);
  hid_t at = h5(H5Aopen(file, name, H5P_DEFAULT), path, what);
  h5ok(H5Aread(at, mem, out), path, what);
  h5ok(H5Aclose(at), path, what);
}

static int64_t read_int_attr(hid_t file, const char *path, const char *name) {
  int64_t v = 0;
  read_attr(file, path, name, H5T_NATIVE_INT64, &v);
  return v;
}

static void read_attrs(Shard *s) {
  ShardAttrs *a = &s->attrs;
  htri_t e = H5Aexists(s->file, "format_version");
  if (e < 0) die("%s: HDF5 error: looking for attribute format_version", s->path);
  if (e == 0) return; /* e.g. a shard made by NVIDIA's scripts */
  a->present = 1;
  a->format_version = read_int_attr(s->file, s->path, "format_version");
  if (a->format_version < 1 || a->format_version > SHARD_FORMAT_VERSION)
    die("%s: shard format_version %lld is not supported (this bertrain reads up to %d)", s->path,
        (long long)a->format_version, SHARD_FORMAT_VERSION);
  a->vocab_size = read_int_attr(s->file, s->path, "vocab_size");
  a->seq_length = read_int_attr(s->file, s->path, "seq_length");
  a->max_predictions = read_int_attr(s->file, s->path, "max_predictions");
  a->seed = read_int_attr(s->file, s->path, "seed");
  a->dupe_factor = read_int_attr(s->file, s->path, "dupe_factor");
  a->whole_word_mask = read_int_attr(s->file, s->path, "whole_word_mask");
  a->shard_index = read_int_attr(s->file, s->path, "shard_index");
  a->num_shards = read_int_attr(s->file, s->path, "num_shards");
  read_attr(s->file, s->path, "vocab_hash", H5T_NATIVE_UINT64, &a->vocab_hash);
  read_attr(s->file, s->path, "masked_lm_prob", H5T_NATIVE_DOUBLE, &a->masked_lm_prob);
  read_attr(s->file, s->path, "short_seq_prob", H5T_NATIVE_DOUBLE, &a->short_seq_prob);
}

/* Opens dataset k, checks it holds integers, returns its rank and dims. */
static int open_dataset(Shard *s, int k, hsize_t dims[2]) {
  const char *name = SHARD_DATASETS[k];
  char what[256];
  snprintf(what, sizeof what, "opening dataset %s", name);
  htri_t e = H5Lexists(s->file, name, H5P_DEFAULT);
  if (e < 0) die("%s: HDF5 error: %s", s->path, what);
  if (e == 0) die("%s: dataset %s is missing (not a pre-training shard?)", s->path, name);
  s->ds[k] = h5(H5Dopen2(s->file, name, H5P_DEFAULT), s->path, what);
  hid_t type = h5(H5Dget_type(s->ds[k]), s->path, what);
  H5T_class_t cls = H5Tget_class(type);
  h5ok(H5Tclose(type), s->path, what);
  if (cls != H5T_INTEGER) die("%s: dataset %s does not hold integers", s->path, name);
  hid_t space = h5(H5Dget_space(s->ds[k]), s->path, what);
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 1 || rank > 2) die("%s: dataset %s has %d dimensions, expected 1 or 2", s->path, name, rank);
  dims[1] = 0;
  h5ok(H5Sget_simple_extent_dims(space, dims, NULL), s->path, what);
  h5ok(H5Sclose(space), s->path, what);
  return rank;
}

static void expect_shape(const Shard *s, int k, int rank, const hsize_t *dims, hsize_t width,
                         const char *like) {
  int ok = dims[0] == (hsize_t)s->n &&
           (width ? rank == 2 && dims[1] == width : rank == 1 || dims[1] == 1);
  if (!ok)
    die("%s: dataset %s has shape [%llu%s%llu], expected [%zu, %llu] as %s", s->path,
        SHARD_DATASETS[k], (unsigned long long)dims[0], rank == 2 ? ", " : "",
        rank == 2 ? (unsigned long long)dims[1] : 0ULL, s->n,
        (unsigned long long)(width ? width : 1), like);
}

Shard *shard_open(const char *path) {
  quiet_hdf5();
  Shard *s = xcalloc(1, sizeof *s);
  s->path = xstrdup(path);
  for (int k = 0; k < SHARD_NUM_DATASETS; k++) s->ds[k] = H5I_INVALID_HID;
  htri_t is = H5Fis_hdf5(path);
  if (is <= 0) die("%s: %s", path, access(path, R_OK) == 0 ? "not an HDF5 file" : "cannot open");
  s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (s->file < 0) die("%s: cannot open HDF5 file", path);
  hsize_t dims[SHARD_NUM_DATASETS][2];
  int rank[SHARD_NUM_DATASETS];
  for (int k = 0; k < SHARD_NUM_DATASETS; k++) rank[k] = open_dataset(s, k, dims[k]);
  if (rank[DS_IDS] != 2) die("%s: dataset input_ids has %d dimension(s), expected 2", path, rank[DS_IDS]);
  if (rank[DS_POS] != 2)
    die("%s: dataset masked_lm_positions has %d dimension(s), expected 2", path, rank[DS_POS]);
  if (dims[DS_IDS][1] < 1 || dims[DS_IDS][1] > INT_MAX || dims[DS_POS][1] > INT_MAX)
    die("%s: dataset input_ids has an unusable shape", path);
  s->n = (size_t)dims[DS_IDS][0];
  s->seq_length = (int)dims[DS_IDS][1];
  s->max_predictions = (int)dims[DS_POS][1];
  hsize_t S = (hsize_t)s->seq_length, P = (hsize_t)s->max_predictions;
  expect_shape(s, DS_MASK, rank[DS_MASK], dims[DS_MASK], S, "input_ids");
  expect_shape(s, DS_SEG, rank[DS_SEG], dims[DS_SEG], S, "input_ids");
  expect_shape(s, DS_POS, rank[DS_POS], dims[DS_POS], P, "input_ids' rows");
  expect_shape(s, DS_LMIDS, rank[DS_LMIDS], dims[DS_LMIDS], P, "masked_lm_positions");
  expect_shape(s, DS_NSP, rank[DS_NSP], dims[DS_NSP], 0, "input_ids' rows");
  read_attrs(s);
  if (s->attrs.present &&
      (s->attrs.seq_length != s->seq_length || s->attrs.max_predictions != s->max_predictions))
    die("%s: attributes seq_length %lld / max_predictions %lld disagree with the datasets' [%zu, %d] / [%zu, %d]",
        path, (long long)s->attrs.seq_length, (long long)s->attrs.max_predictions, s->n,
        s->seq_length, s->n, s->max_predictions);
  return s;
}

void shard_read(const Shard *s, size_t start, size_t count, Instances *out) {
  if (start > s->n || count > s->n - start)
    die("%s: rows [%zu, %zu) are outside the shard's %zu rows", s->path, start, start + count, s->n);
  if (out->seq_length != s->seq_length || out->max_predictions != s->max_predictions || out->n < count)
    die("%s: internal error: read buffer does not fit the shard", s->path);
  if (count == 0) return;
  for (int k = 0; k < SHARD_NUM_DATASETS; k++) {
    const char *name = SHARD_DATASETS[k];
    char what[256];
    snprintf(what, sizeof what, "reading rows %zu..%zu of dataset %s", start, start + count, name);
    hid_t mem;
    hsize_t width;
    void *buf = (void *)column(out, k, &mem, &width);
    hid_t fspace = h5(H5Dget_space(s->ds[k]), s->path, what);
    hsize_t off[2] = {(hsize_t)start, 0}, cnt[2] = {(hsize_t)count, width ? width : 1};
    h5ok(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, off, NULL, cnt, NULL), s->path, what);
    hsize_t mdims[2] = {(hsize_t)count, width};
    hid_t mspace = h5(H5Screate_simple(width ? 2 : 1, mdims, NULL), s->path, what);
    h5ok(H5Dread(s->ds[k], mem, mspace, fspace, H5P_DEFAULT, buf), s->path, what);
    h5ok(H5Sclose(mspace), s->path, what);
    h5ok(H5Sclose(fspace), s->path, what);
  }
}

void shard_close(Shard *s) {
  if (!s) return;
  for (int k = 0; k < SHARD_NUM_DATASETS; k++)
    if (s->ds[k] >= 0) h5ok(H5Dclose(s->ds[k]), s->path, "closing a dataset");
  if (s->file >= 0) h5ok(H5Fclose(s->file), s->path, "closing the file");
  free(s->path);
  free(s);
}
