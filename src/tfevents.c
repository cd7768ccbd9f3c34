#define _POSIX_C_SOURCE 200809L
#include "tfevents.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run_files.h"
#include "util.h"

#define TF_FILE_NAME "events.out.tfevents.0000000000.bertrain"
#define TF_MAX_TAG 200

static uint32_t g_crc_table[256];

static void crc_table_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    g_crc_table[i] = c;
  }
}

uint32_t crc32c(const void *data, size_t n) {
  if (!g_crc_table[1]) crc_table_init();
  const uint8_t *p = data;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) c = g_crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t crc32c_masked(const void *data, size_t n) {
  uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ---- protobuf wire format ---- */

static size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

static size_t put_le(uint8_t *p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
  return (size_t)bytes;
}

/* Field number f, wire type t. */
static size_t put_key(uint8_t *p, unsigned f, unsigned t) { return put_varint(p, (f << 3) | t); }

static size_t put_bytes(uint8_t *p, unsigned f, const void *s, size_t n) {
  size_t k = put_key(p, f, 2);
  k += put_varint(p + k, n);
  memcpy(p + k, s, n);
  return k + n;
}

size_t tf_encode_event(uint8_t *buf, double wall_time, int64_t step, const char *version,
                       const char *tag, float value) {
  uint64_t wbits;
  memcpy(&wbits, &wall_time, sizeof wbits);
  size_t n = put_key(buf, 1, 1);
  n += put_le(buf + n, wbits, 8);
  if (step != 0) {
    n += put_key(buf + n, 2, 0);
    n += put_varint(buf + n, (uint64_t)step);
  }
  if (version) return n + put_bytes(buf + n, 3, version, strlen(version));
  size_t tag_len = strlen(tag);
  if (tag_len > TF_MAX_TAG) die("TensorBoard tag too long (%zu bytes): %.40s...", tag_len, tag);
  uint8_t val[TF_MAX_TAG + 16], sum[TF_MAX_TAG + 32];
  uint32_t fbits;
  memcpy(&fbits, &value, sizeof fbits);
  size_t nv = put_bytes(val, 1, tag, tag_len);
  nv += put_key(val + nv, 2, 5);
  nv += put_le(val + nv, fbits, 4);
  size_t ns = put_bytes(sum, 1, val, nv);
  return n + put_bytes(buf + n, 5, sum, ns);
}

size_t tf_frame_record(uint8_t *out, const uint8_t *payload, size_t n) {
  put_le(out, n, 8);
  put_le(out + 8, crc32c_masked(out, 8), 4);
  memcpy(out + 12, payload, n);
  put_le(out + 12 + n, crc32c_masked(payload, n), 4);
  return n + 16;
}

/* ---- files ---- */

struct TfWriter {
  FILE *f;
  char path[PATH_MAX], tmp[PATH_MAX];
};

static void write_event(TfWriter *w, const uint8_t *ev, size_t n) {
  uint8_t rec[TF_EVENT_MAX + 16];
  size_t len = tf_frame_record(rec, ev, n);
  if (fwrite(rec, 1, len, w->f) != len) die("cannot write %s: %s", w->tmp, strerror(errno));
}

TfWriter *tf_open(const char *dir, double wall_time) {
  TfWriter *w = xcalloc(1, sizeof *w);
  make_dirs(dir);
  path_fmt(w->path, sizeof w->path, "%s/" TF_FILE_NAME, dir);
  /* No "tfevents" in the temporary name, so TensorBoard never reads it half-written. */
  path_fmt(w->tmp, sizeof w->tmp, "%s/.tmp-events-%ld", dir, (long)getpid());
  tmpfile_register(w->tmp);
  w->f = fopen(w->tmp, "wb");
  if (!w->f) die("cannot create %s: %s", w->tmp, strerror(errno));
  uint8_t ev[TF_EVENT_MAX];
  write_event(w, ev, tf_encode_event(ev, wall_time, 0, "brain.Event:2", NULL, 0));
  return w;
}

void tf_scalar(TfWriter *w, const char *tag, int64_t step, double wall_time, float value) {
  uint8_t ev[TF_EVENT_MAX];
  write_event(w, ev, tf_encode_event(ev, wall_time, step, NULL, tag, value));
}

void tf_close(TfWriter *w) {
  if (fflush(w->f) != 0 || ferror(w->f) || fclose(w->f) != 0)
    die("cannot write %s: %s", w->tmp, strerror(errno));
  commit_file(w->tmp, w->path);
  free(w);
}
