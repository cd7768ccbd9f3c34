#define _POSIX_C_SOURCE 200809L
#include "textio.h"

#include <errno.h>
#include <lzma.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util.h"

struct LineReader {
  char *path;
  FILE *f;
  int is_xz, at_eof;
  lzma_stream xz;
  uint8_t inbuf[1 << 16];
  /* Decoded bytes not yet returned: data[pos..end). */
  char *data;
  size_t cap, pos, end;
  long lineno;
};

LineReader *lines_open(const char *path) {
  /* Opened before anything is allocated, so that a caller catching die()
   * (util.h) loses nothing when the file cannot be opened. */
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) die("cannot open %s: %s", path, strerror(errno));
  LineReader *r = xcalloc(1, sizeof *r);
  r->path = xstrdup(path);
  r->f = f;
  size_t n = strlen(path);
  r->is_xz = n > 3 && strcmp(path + n - 3, ".xz") == 0;
  if (r->is_xz) {
    lzma_stream init = LZMA_STREAM_INIT;
    r->xz = init;
    if (lzma_stream_decoder(&r->xz, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK)
      die("cannot start xz decoder for %s", path);
  }
  r->cap = 1 << 16;
  r->data = xmalloc(r->cap);
  return r;
}

/* Appends more input to data[end..); returns the number of bytes added. */
static size_t fill_plain(LineReader *r) {
  size_t n = fread(r->data + r->end, 1, r->cap - r->end, r->f);
  if (n == 0 && ferror(r->f)) die("cannot read %s: %s", r->path, strerror(errno));
  return n;
}

static size_t fill_xz(LineReader *r) {
  r->xz.next_out = (uint8_t *)r->data + r->end;
  r->xz.avail_out = r->cap - r->end;
  size_t before = r->xz.avail_out;
  while (r->xz.avail_out == before) {
    lzma_action action = LZMA_RUN;
    if (r->xz.avail_in == 0) {
      size_t n = fread(r->inbuf, 1, sizeof r->inbuf, r->f);
      if (n == 0 && ferror(r->f)) die("cannot read %s: %s", r->path, strerror(errno));
      r->xz.next_in = r->inbuf;
      r->xz.avail_in = n;
      if (n == 0) action = LZMA_FINISH;
    }
    lzma_ret ret = lzma_code(&r->xz, action);
    if (ret == LZMA_STREAM_END) break;
    if (ret != LZMA_OK) die("%s: corrupt or truncated xz data (lzma error %d)", r->path, (int)ret);
  }
  return before - r->xz.avail_out;
}

static size_t fill(LineReader *r) {
  if (r->pos > 0) {
    memmove(r->data, r->data + r->pos, r->end - r->pos);
    r->end -= r->pos;
    r->pos = 0;
  }
  if (r->end + 1 >= r->cap) {
    r->cap *= 2;
    r->data = xrealloc(r->data, r->cap);
  }
  size_t n = r->is_xz ? fill_xz(r) : fill_plain(r);
  r->end += n;
  return n;
}

char *lines_next(LineReader *r, size_t *len) {
  size_t scanned = 0;
  for (;;) {
    char *start = r->data + r->pos;
    size_t avail = r->end - r->pos;
    char *nl = memchr(start + scanned, '\n', avail - scanned);
    if (nl || r->at_eof) {
      if (!nl && avail == 0) return NULL;
      size_t n = nl ? (size_t)(nl - start) : avail;
      r->pos += nl ? n + 1 : n;
      if (n > 0 && start[n - 1] == '\r') n--;
      start[n] = '\0'; /* safe: a '\n' or the spare byte kept by fill() */
      r->lineno++;
      if (len) *len = n;
      return start;
    }
    scanned = avail;
    if (fill(r) == 0) r->at_eof = 1;
    if (r->end == r->cap) { /* keep one spare byte for the terminator */
      r->cap *= 2;
      r->data = xrealloc(r->data, r->cap);
    }
  }
}

long lines_number(const LineReader *r) { return r->lineno; }
const char *lines_path(const LineReader *r) { return r->path; }

void lines_close(LineReader *r) {
  if (!r) return;
  if (r->is_xz) lzma_end(&r->xz);
  if (r->f && r->f != stdin) fclose(r->f);
  free(r->data);
  free(r->path);
  free(r);
}

int utf8_valid(const char *s, size_t len) {
  const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
  size_t i = 0;
  while (i < len) {
    if (p[i] < 0x80) { i++; continue; }
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i), &cp);
    if (n <= 0) return 0;
    i += (size_t)n;
  }
  return 1;
}

void require_utf8(const LineReader *r, const char *line, size_t len) {
  if (!utf8_valid(line, len))
    die("%s:%ld: invalid UTF-8", r->path, r->lineno);
}

char *find_data_file(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 8;
  char *p = xmalloc(n);
  snprintf(p, n, "%s/%s", dir, name);
  if (file_exists(p)) return p;
  snprintf(p, n, "%s/%s.xz", dir, name);
  if (file_exists(p)) return p;
  free(p);
  return NULL;
}
