#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads and writes the tensors' bytes as they are: little-endian hosts only"
#endif

/* The reference implementation refuses larger headers; so do we, rather
 * than allocate whatever a damaged length field says. */
#define ST_MAX_HEADER (100u << 20)

/* ---- writing ---- */

static json_t *int_array(const int64_t *v, int n) {
  json_t *a = json_array();
  for (int i = 0; i < n; i++) json_array_append_new(a, json_integer((json_int_t)v[i]));
  return a;
}

static uint64_t tensor_bytes(const StTensor *t) {
  uint64_t n = 4;
  for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
  return n;
}

/* The header, padded with spaces to a multiple of 8 bytes, as the format
 * allows, so the data section starts aligned. */
static char *header_json(const char *path, const StTensor *t, int n, size_t *len) {
  json_t *root = json_object();
  json_t *meta = json_object();
  json_object_set_new(meta, "format", json_string("pt"));
  json_object_set_new(root, "__metadata__", meta);
  uint64_t at = 0;
  for (int i = 0; i < n; i++) {
    if (t[i].ndim < 1 || t[i].ndim > ST_MAX_DIMS)
      die("%s: tensor %s: bad rank %d", path, t[i].name, t[i].ndim);
    int64_t range[2] = {(int64_t)at, (int64_t)(at + tensor_bytes(&t[i]))};
    json_t *e = json_object();
    json_object_set_new(e, "dtype", json_string("F32"));
    json_object_set_new(e, "shape", int_array(t[i].shape, t[i].ndim));
    json_object_set_new(e, "data_offsets", int_array(range, 2));
    if (json_object_set_new(root, t[i].name, e) != 0)
      die("%s: cannot add tensor %s to the header", path, t[i].name);
    at = (uint64_t)range[1];
  }
  char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(root);
  if (!text) die("%s: cannot format the header", path);
  size_t raw = strlen(text), padded = (raw + 7) / 8 * 8;
  char *out = xmalloc(padded + 1);
  memcpy(out, text, raw);
  memset(out + raw, ' ', padded - raw);
  out[padded] = '\0';
  free(text);
  *len = padded;
  return out;
}

static void put(FILE *f, const char *tmp, const void *data, size_t n) {
  if (n && fwrite(data, 1, n, f) != n) die("cannot write %s: %s", tmp, strerror(errno));
}

void st_write_f32(const char *path, const StTensor *t, int n) {
  size_t hlen;
  char *header = header_json(path, t, n, &hlen);
  char *tmp = xmalloc(strlen(path) + 5);
  sprintf(tmp, "%s.tmp", path);
  tmpfile_register(tmp);
  FILE *f = fopen(tmp, "wb");
  if (!f) die("cannot create %s: %s", tmp, strerror(errno));
  uint64_t len = hlen;
  put(f, tmp, &len, 8);
  put(f, tmp, header, hlen);
  for (int i = 0; i < n; i++) put(f, tmp, t[i].data, (size_t)tensor_bytes(&t[i]));
  if (fflush(f) != 0 || ferror(f) || fclose(f) != 0) die("cannot write %s: %s", tmp, strerror(errno));
  commit_file(tmp, path);
  free(tmp);
  free(header);
}

/* ---- reading ---- */

static int dtype_size(const char *dtype) {
  static const struct { const char *name; int size; } T[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
    {"I8", 1}, {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1},
    {"F8_E4M3", 1}, {"F8_E5M2", 1},
  };
  for (size_t i = 0; i < ARRAY_LEN(T); i++)
    if (strcmp(dtype, T[i].name) == 0) return T[i].size;
  return 0;
}

uint64_t st_count(const StEntry *e) {
  uint64_t n = 1;
  for (int d = 0; d < e->ndim; d++) n *= (uint64_t)e->shape[d];
  return n;
}

static uint64_t get_u64(const char *path, const char *name, const char *what, json_t *v) {
  if (!json_is_integer(v) || json_integer_value(v) < 0)
    die("%s: tensor %s: %s must hold non-negative integers", path, name, what);
  return (uint64_t)json_integer_value(v);
}

static void parse_entry(const char *path, const char *name, json_t *v, StEntry *e) {
  if (!json_is_object(v)) die("%s: header entry %s is not an object", path, name);
  json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
         *range = json_object_get(v, "data_offsets");
  if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(range) ||
      json_array_size(range) != 2)
    die("%s: tensor %s: needs dtype, shape and data_offsets [begin, end]", path, name);
  e->name = xstrdup(name);
  snprintf(e->dtype, sizeof e->dtype, "%s", json_string_value(dtype));
  if (!dtype_size(json_string_value(dtype)))
    die("%s: tensor %s: unknown dtype '%s'", path, name, json_string_value(dtype));
  e->ndim = (int)json_array_size(shape);
  if (e->ndim > ST_MAX_DIMS)
    die("%s: tensor %s: %d dimensions (at most %d)", path, name, e->ndim, ST_MAX_DIMS);
  for (int d = 0; d < e->ndim; d++)
    e->shape[d] = (int64_t)get_u64(path, name, "shape", json_array_get(shape, (size_t)d));
  e->begin = get_u64(path, name, "data_offsets", json_array_get(range, 0));
  e->end = get_u64(path, name, "data_offsets", json_array_get(range, 1));
  if (e->end < e->begin || e->end - e->begin != st_count(e) * (uint64_t)dtype_size(e->dtype))
    die("%s: tensor %s: data_offsets [%llu, %llu] do not hold its %llu elements of %s", path,
        name, (unsigned long long)e->begin, (unsigned long long)e->end,
        (unsigned long long)st_count(e), e->dtype);
}

static int by_begin(const void *a, const void *b) {
  const StEntry *x = *(const StEntry *const *)a, *y = *(const StEntry *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* The byte ranges must follow one another from 0 to the end of the file,
 * as the format requires: a file cut short, or with bytes no tensor owns,
 * is damaged. */
static void check_tiling(const StFile *f, uint64_t data_size) {
  const StEntry **order = xmalloc((size_t)(f->n ? f->n : 1) * sizeof *order);
  for (int i = 0; i < f->n; i++) order[i] = &f->e[i];
  qsort(order, (size_t)f->n, sizeof *order, by_begin);
  uint64_t at = 0;
  for (int i = 0; i < f->n; i++) {
    if (order[i]->begin != at)
      die("%s: tensor %s starts at byte %llu of the data, expected %llu (overlapping or "
          "missing bytes: a damaged file)", f->path, order[i]->name,
          (unsigned long long)order[i]->begin, (unsigned long long)at);
    at = order[i]->end;
  }
  free(order);
  if (at != data_size)
    die("%s: the tensors need %llu bytes of data but the file holds %llu (%s)", f->path,
        (unsigned long long)at, (unsigned long long)data_size,
        at > data_size ? "cut short?" : "trailing bytes");
}

static char *read_header(StFile *f, uint64_t file_size, uint64_t *len) {
  FILE *fp = f->fp;
  if (file_size < 8 || fread(len, 8, 1, fp) != 1)
    die("%s: too short for a safetensors file (%llu bytes)", f->path, (unsigned long long)file_size);
  if (*len > ST_MAX_HEADER || *len > file_size - 8)
    die("%s: header length %llu does not fit the file (%llu bytes): not a safetensors file, or "
        "damaged", f->path, (unsigned long long)*len, (unsigned long long)file_size);
  char *text = xmalloc(*len + 1);
  if (*len && fread(text, 1, *len, fp) != *len) die("cannot read %s: %s", f->path, strerror(errno));
  text[*len] = '\0';
  return text;
}

static void parse_header(StFile *f, const char *text, uint64_t len) {
  json_error_t err;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
  if (!root)
    die("%s: the header is not valid JSON (line %d, column %d): %s", f->path, err.line,
        err.column, err.text);
  if (!json_is_object(root)) die("%s: the header is not a JSON object", f->path);
  f->e = xcalloc(json_object_size(root) + 1, sizeof *f->e);
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (strcmp(key, "__metadata__") == 0) continue;
    parse_entry(f->path, key, v, &f->e[f->n++]);
  }
  json_decref(root);
}

StFile *st_open(const char *path) {
  StFile *f = xcalloc(1, sizeof *f);
  f->path = xstrdup(path);
  FILE *fp = fopen(path, "rb");
  if (!fp) die("cannot open %s: %s", path, strerror(errno));
  f->fp = fp;
  struct stat st;
  if (fstat(fileno(fp), &st) != 0) die("cannot stat %s: %s", path, strerror(errno));
  uint64_t len;
  char *text = read_header(f, (uint64_t)st.st_size, &len);
  parse_header(f, text, len);
  free(text);
  f->data_start = 8 + len;
  check_tiling(f, (uint64_t)st.st_size - f->data_start);
  return f;
}

void st_close(StFile *f) {
  if (!f) return;
  fclose(f->fp);
  for (int i = 0; i < f->n; i++) free(f->e[i].name);
  free(f->e);
  free(f->path);
  free(f);
}

const StEntry *st_find(const StFile *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->e[i].name, name) == 0) return &f->e[i];
  return NULL;
}

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, frac = h & 1023u, bits;
  if (exp == 31) bits = sign | 0x7f800000u | (frac << 13);       /* inf, nan */
  else if (exp) bits = sign | ((exp + 112) << 23) | (frac << 13); /* normal */
  else if (!frac) bits = sign;                                     /* zero */
  else {                                                           /* subnormal */
    int e = -1;
    do { frac <<= 1; e++; } while (!(frac & 1024u));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((frac & 1023u) << 13);
  }
  float x;
  memcpy(&x, &bits, 4);
  return x;
}

static void widen(const StEntry *e, const uint16_t *in, float *out, uint64_t n) {
  int bf16 = strcmp(e->dtype, "BF16") == 0;
  for (uint64_t i = 0; i < n; i++) {
    if (bf16) {
      uint32_t bits = (uint32_t)in[i] << 16;
      memcpy(&out[i], &bits, 4);
    } else {
      out[i] = half_to_float(in[i]);
    }
  }
}

void st_read_f32(const StFile *f, const StEntry *e, float *out) {
  int size = dtype_size(e->dtype);
  if (strcmp(e->dtype, "F32") != 0 && strcmp(e->dtype, "F16") != 0 && strcmp(e->dtype, "BF16") != 0)
    die("%s: tensor %s is %s; bertrain reads F32, F16 and BF16", f->path, e->name, e->dtype);
  uint64_t n = st_count(e);
  void *raw = size == 4 ? (void *)out : xmalloc((size_t)(n ? n : 1) * 2);
  if (fseeko(f->fp, (off_t)(f->data_start + e->begin), SEEK_SET) != 0 ||
      (n && fread(raw, (size_t)size, (size_t)n, f->fp) != n))
    die("%s: cannot read tensor %s: %s", f->path, e->name,
        ferror((FILE *)f->fp) ? strerror(errno) : "file cut short");
  if (size == 2) {
    widen(e, raw, out, n);
    free(raw);
  }
}
