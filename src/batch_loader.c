/* The pre-training data stream: a seeded permutation per pass over all
 * samples of all shards; a batch reads just its rows, one HDF5 read per
 * dataset and shard with a hyperslab selection made of the rows' runs.
 *
 * Shards are chunked and compressed, so a random row costs the decompression
 * of its whole chunk (hundreds of rows). Each dataset is therefore opened
 * with a chunk cache, the cache budget split over shards and datasets by
 * their row sizes: data that fits stays decompressed in memory after the
 * first pass, larger data gets a proportional share of hits. */
#define _POSIX_C_SOURCE 200809L
#include "batch_loader.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "util.h"

struct BatchLoader {
  char *dir;
  int n_shards;
  Shard **shards;
  size_t *first;   /* [n_shards + 1]: global number of each shard's first sample */
  size_t total;
  int S, P;
  uint64_t seed;
  uint32_t *perm;  /* permutation of pass perm_pass */
  uint64_t perm_pass;
  int have_perm;
  /* scratch for loader_read_samples */
  size_t *want;    /* samples of the batch */
  struct Req { int shard; size_t row; int slot; } *req;
  int32_t *tmp;
  size_t cap_n;
};

typedef struct Req Req;

static void h5ok(herr_t rc, const Shard *s, const char *ds, const char *what) {
  if (rc < 0) die("%s: HDF5 error %s (dataset %s)", s->path, what, ds);
}

static hid_t h5id(hid_t id, const Shard *s, const char *ds, const char *what) {
  if (id < 0) die("%s: HDF5 error %s (dataset %s)", s->path, what, ds);
  return id;
}

static int is_shard_name(const char *name) {
  size_t n = strlen(name);
  return n > 9 && strncmp(name, "shard-", 6) == 0 && strcmp(name + n - 3, ".h5") == 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted shard-*.h5 names of dir. */
static char **list_shards(const char *dir, int *count) {
  DIR *d = opendir(dir);
  if (!d) die("cannot open the shard directory %s: %s", dir, strerror(errno));
  char **names = NULL;
  size_t cap = 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (!is_shard_name(e->d_name)) continue;
    grow((void **)&names, &cap, (size_t)n + 1, sizeof *names);
    names[n++] = xstrdup(e->d_name);
  }
  closedir(d);
  if (n == 0) die("%s: no pre-training shards (shard-*.h5) in this directory; make them with 'bertrain prep'", dir);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  *count = n;
  return names;
}

static void check_shard(const BatchLoader *l, const Shard *s, const Vocab *vocab) {
  const Shard *s0 = l->shards[0];
  if (s->seq_length != s0->seq_length || s->max_predictions != s0->max_predictions)
    die("%s: seq length %d / max predictions %d, but %s has %d / %d: all shards of %s must "
        "agree", s->path, s->seq_length, s->max_predictions, s0->path, s0->seq_length,
        s0->max_predictions, l->dir);
  if (s->n == 0) die("%s: the shard has no rows", s->path);
  if (!s->attrs.present || !vocab) return;
  if (s->attrs.vocab_size != vocab->size)
    die("%s: made with a vocabulary of %lld tokens, but the vocabulary in use (%s) has %d",
        s->path, (long long)s->attrs.vocab_size, vocab->path, vocab->size);
  if (s->attrs.vocab_hash != vocab->hash)
    die("%s: made with a different vocabulary than the one in use (%s): same size %d, "
        "different tokens", s->path, vocab->path, vocab->size);
}

/* Bytes one row of dataset k holds in the file. */
static size_t row_bytes(const Shard *s, int k) {
  hid_t type = H5Dget_type(s->ds[k]);
  if (type < 0) die("%s: HDF5 error reading the type of dataset %s", s->path, SHARD_DATASETS[k]);
  size_t size = H5Tget_size(type);
  if (size == 0 || H5Tclose(type) < 0)
    die("%s: HDF5 error reading the type of dataset %s", s->path, SHARD_DATASETS[k]);
  int width = k < 3 ? s->seq_length : k < 5 ? s->max_predictions : 1;
  return size * (size_t)width;
}

/* Reopens shard i's datasets with a chunk cache of about budget bytes in
 * all. HDF5 shares one cache among all handles of an open dataset, set by
 * the first open, so shard_open's handles are replaced (shard_close closes
 * these). */
static void open_cached(BatchLoader *l, int i, size_t budget) {
  Shard *s = l->shards[i];
  size_t bytes[SHARD_NUM_DATASETS], total = 0;
  for (int k = 0; k < SHARD_NUM_DATASETS; k++) total += bytes[k] = row_bytes(s, k);
  for (int k = 0; k < SHARD_NUM_DATASETS; k++) {
    const char *name = SHARD_DATASETS[k];
    hid_t dcpl = h5id(H5Dget_create_plist(s->ds[k]), s, name, "reading the storage layout");
    int chunked = H5Pget_layout(dcpl) == H5D_CHUNKED;
    hsize_t chunk[2] = {1, 1};
    if (chunked && H5Pget_chunk(dcpl, 2, chunk) < 0)
      die("%s: HDF5 error reading the chunk shape of dataset %s", s->path, name);
    h5ok(H5Pclose(dcpl), s, name, "closing a property list");
    if (!chunked) continue; /* contiguous data is read in place */
    size_t chunk_rows = chunk[0] ? (size_t)chunk[0] : 1;
    size_t chunks = (s->n + chunk_rows - 1) / chunk_rows;
    size_t chunk_bytes = chunk_rows * bytes[k];
    size_t share = (size_t)((double)budget * (double)bytes[k] / (double)total);
    /* whole chunks, the last one (partly beyond the rows) included */
    size_t cache = share < chunks * chunk_bytes ? share : (chunks + 1) * chunk_bytes;
    if (cache < chunk_bytes) cache = chunk_bytes;
    hid_t dapl = h5id(H5Pcreate(H5P_DATASET_ACCESS), s, name, "creating a property list");
    /* One hash slot per chunk, so that chunks never collide; w0 = 0: evict
     * the least recently used chunk, since random rows return to every chunk. */
    h5ok(H5Pset_chunk_cache(dapl, chunks + 1, cache, 0.0), s, name, "setting the chunk cache");
    h5ok(H5Dclose(s->ds[k]), s, name, "closing the dataset");
    s->ds[k] = h5id(H5Dopen2(s->file, name, dapl), s, name, "opening the dataset");
    h5ok(H5Pclose(dapl), s, name, "closing a property list");
  }
}

BatchLoader *loader_open(const char *dir, const Vocab *vocab, uint64_t seed, size_t cache_bytes) {
  BatchLoader *l = xcalloc(1, sizeof *l);
  l->dir = xstrdup(dir);
  l->seed = seed;
  char **names = list_shards(dir, &l->n_shards);
  l->shards = xcalloc((size_t)l->n_shards, sizeof *l->shards);

  l->first = xcalloc((size_t)l->n_shards + 1, sizeof *l->first);
  for (int i = 0; i < l->n_shards; i++) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path)
      die("path too long: %s/%s", dir, names[i]);
    l->shards[i] = shard_open(path);
    check_shard(l, l->shards[i], vocab);
    open_cached(l, i, cache_bytes / (size_t)l->n_shards);
    l->first[i + 1] = l->first[i] + l->shards[i]->n;
    free(names[i]);
  }
  free(names);
  l->total = l->first[l->n_shards];
  if (l->total > UINT32_MAX)
    die("%s: %zu samples; the data order supports at most %u", dir, l->total, UINT32_MAX);
  l->S = l->shards[0]->seq_length;
  l->P = l->shards[0]->max_predictions;
  l->perm = xmalloc(l->total * sizeof *l->perm);
  return l;
}

void loader_close(BatchLoader *l) {
  if (!l) return;
  for (int i = 0; i < l->n_shards; i++) shard_close(l->shards[i]);
  free(l->shards);
  free(l->first);
  free(l->perm);
  free(l->want);
  free(l->req);
  free(l->tmp);
  free(l->dir);
  free(l);
}

size_t loader_samples(const BatchLoader *l) { return l->total; }
int loader_seq_length(const BatchLoader *l) { return l->S; }
int loader_max_predictions(const BatchLoader *l) { return l->P; }
int loader_num_shards(const BatchLoader *l) { return l->n_shards; }
const Shard *loader_shard(const BatchLoader *l, int i) { return l->shards[i]; }

void loaded_batch_alloc(LoadedBatch *b, int max_n, int S, int P) {
  size_t ns = (size_t)max_n * (size_t)S, np = (size_t)max_n * (size_t)P;
  b->n = 0;
  b->S = S;
  b->P = P;
  b->input_ids = xcalloc(ns, sizeof(int32_t));
  b->segment_ids = xcalloc(ns, sizeof(int32_t));
  b->input_mask = xcalloc(ns, sizeof(int32_t));
  b->mlm_positions = xcalloc(np, sizeof(int32_t));
  b->mlm_ids = xcalloc(np, sizeof(int32_t));
  b->nsp_labels = xcalloc((size_t)max_n, sizeof(int32_t));
}

void loaded_batch_free(LoadedBatch *b) {
  free(b->input_ids);
  free(b->segment_ids);
  free(b->input_mask);
  free(b->mlm_positions);
  free(b->mlm_ids);
  free(b->nsp_labels);
  memset(b, 0, sizeof *b);
}

static void make_perm(BatchLoader *l, uint64_t pass) {
  for (size_t i = 0; i < l->total; i++) l->perm[i] = (uint32_t)i;
  Rng r;
  rng_init(&r, l->seed, LOADER_STREAM_ORDER, (uint32_t)pass);
  rng_shuffle(&r, l->perm, l->total, sizeof *l->perm);
  l->perm_pass = pass;
  l->have_perm = 1;
}

size_t loader_sample_at(BatchLoader *l, uint64_t p) {
  uint64_t pass = p / l->total;
  if (!l->have_perm || pass != l->perm_pass) make_perm(l, pass);
  return l->perm[p % l->total];
}

/* ---- reading rows ---- */

static int cmp_req(const void *a, const void *b) {
  const Req *x = a, *y = b;
  if (x->shard != y->shard) return x->shard - y->shard;
  if (x->row != y->row) return x->row < y->row ? -1 : 1;
  return x->slot - y->slot;
}

/* Destination array and row width of dataset k (SHARD_DATASETS order). */
static int32_t *column(LoadedBatch *b, int k, int *width) {
  switch (k) {
  case 0: *width = b->S; return b->input_ids;
  case 1: *width = b->S; return b->input_mask;
  case 2: *width = b->S; return b->segment_ids;
  case 3: *width = b->P; return b->mlm_positions;
  case 4: *width = b->P; return b->mlm_ids;
  default: *width = 1; return b->nsp_labels;
  }
}

/* Reads the sorted, distinct rows of req[0..n) (slots say where each goes;
 * repeated rows share one read) of shard s. */
static void read_rows(BatchLoader *l, int sh, const Req *req, int n, LoadedBatch *b) {
  const Shard *s = l->shards[sh];
  /* distinct rows, as runs of consecutive rows in one selection */
  int distinct = 0;
  for (int i = 0; i < n; i++)
    if (i == 0 || req[i].row != req[i - 1].row) distinct++;
  for (int k = 0; k < SHARD_NUM_DATASETS; k++) {
    const char *name = SHARD_DATASETS[k];
    int width;
    int32_t *dst = column(b, k, &width);
    hid_t fspace = h5id(H5Dget_space(s->ds[k]), s, name, "getting the dataspace");
    int rank = H5Sget_simple_extent_ndims(fspace);
    h5ok(H5Sselect_none(fspace), s, name, "selecting rows");
    for (int i = 0; i < n;) {
      int j = i + 1;
      while (j < n && req[j].row <= req[j - 1].row + 1) j++;
      hsize_t off[2] = {(hsize_t)req[i].row, 0};
      hsize_t cnt[2] = {(hsize_t)(req[j - 1].row - req[i].row + 1), (hsize_t)width};
      h5ok(H5Sselect_hyperslab(fspace, H5S_SELECT_OR, off, NULL, cnt, NULL), s, name,
           "selecting rows");
      i = j;
    }
    hsize_t mdims[2] = {(hsize_t)distinct, (hsize_t)width};
    hid_t mspace = h5id(H5Screate_simple(rank, mdims, NULL), s, name,
                        "creating a memory dataspace");
    char what[128];
    snprintf(what, sizeof what, "reading %d rows", distinct);
    h5ok(H5Dread(s->ds[k], H5T_NATIVE_INT32, mspace, fspace, H5P_DEFAULT, l->tmp), s, name, what);
    h5ok(H5Sclose(mspace), s, name, "closing a dataspace");
    h5ok(H5Sclose(fspace), s, name, "closing a dataspace");
    int u = -1;
    for (int i = 0; i < n; i++) {
      if (i == 0 || req[i].row != req[i - 1].row) u++;
      memcpy(dst + (size_t)req[i].slot * width, l->tmp + (size_t)u * width,
             (size_t)width * sizeof *dst);
    }
  }
}

static int shard_of(const BatchLoader *l, size_t sample) {
  int lo = 0, hi = l->n_shards - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (l->first[mid] <= sample) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

static void reserve(BatchLoader *l, int n) {
  if ((size_t)n <= l->cap_n) return;
  l->cap_n = (size_t)n;
  l->want = xrealloc(l->want, l->cap_n * sizeof *l->want);
  l->req = xrealloc(l->req, l->cap_n * sizeof *l->req);
  int w = l->S > l->P ? l->S : l->P;
  l->tmp = xrealloc(l->tmp, l->cap_n * (size_t)w * sizeof *l->tmp);
}

void loader_read_samples(BatchLoader *l, const size_t *samples, int n, LoadedBatch *b) {
  if (b->S != l->S || b->P != l->P) die("loader: internal error: batch buffers do not fit the shards");
  reserve(l, n);
  b->n = n;
  for (int i = 0; i < n; i++) {
    if (samples[i] >= l->total)
      die("loader: sample %zu is beyond the %zu samples of %s", samples[i], l->total, l->dir);
    int sh = shard_of(l, samples[i]);
    l->req[i] = (Req){sh, samples[i] - l->first[sh], i};
  }
  qsort(l->req, (size_t)n, sizeof *l->req, cmp_req);
  for (int i = 0; i < n;) {
    int j = i;
    while (j < n && l->req[j].shard == l->req[i].shard) j++;
    read_rows(l, l->req[i].shard, l->req + i, j - i, b);
    i = j;
  }
}

void loader_read(BatchLoader *l, uint64_t first, int n, LoadedBatch *b) {
  reserve(l, n);
  for (int i = 0; i < n; i++) l->want[i] = loader_sample_at(l, first + (uint64_t)i);
  loader_read_samples(l, l->want, n, b);
}
