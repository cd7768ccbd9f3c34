/* Reading and tokenizing the pre-training corpus, shared out over the MPI
 * ranks by document and gathered back so that every rank holds all of it. */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "prep.h"
#include "textio.h"
#include "util.h"

/* Python's str.isspace(): bidirectional class WS, B or S, or category Zs. */
static int py_space(int32_t cp) {
  if (cp < 0x80)
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f);
  const utf8proc_property_t *p = utf8proc_get_property(cp);
  return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
         p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

/* Length of the character starting at s[i] when it is whitespace, else 0. */
static size_t space_at(const char *s, size_t i, size_t len) {
  utf8proc_int32_t cp;
  utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                        (utf8proc_ssize_t)(len - i), &cp);
  return n > 0 && py_space(cp) ? (size_t)n : 0;
}

void py_strip(const char *s, size_t len, size_t *start, size_t *end) {
  size_t a = 0, b = len, n;
  while (a < b && (n = space_at(s, a, b)) > 0) a += n;
  while (b > a) {
    size_t c = b - 1; /* back to the first byte of the last character */
    while (c > a && ((unsigned char)s[c] & 0xc0) == 0x80 && b - c < 4) c--;
    if (space_at(s, c, b) != b - c) break;
    b = c;
  }
  *start = a;
  *end = b;
}

static void mpi_check(int rc, const char *what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, msg, &n);
    die("%s failed: %s", what, msg);
  }
}

unsigned char *allgather_bytes(const void *mine, uint64_t n, uint64_t *counts, size_t chunk) {
  if (!mpi_active() || g_size == 1) {
    counts[0] = n;
    unsigned char *out = xmalloc(n);
    if (n) memcpy(out, mine, n);
    return out;
  }
  if (chunk == 0 || chunk > (size_t)INT_MAX / (size_t)g_size)
    die("internal error: gather chunk %zu too large for %d ranks", chunk, g_size);
  mpi_check(MPI_Allgather(&n, 1, MPI_UINT64_T, counts, 1, MPI_UINT64_T, MPI_COMM_WORLD),
            "MPI_Allgather of the corpus sizes");
  uint64_t total = 0, rounds = 0;
  uint64_t *base = xmalloc((size_t)g_size * sizeof *base);
  for (int q = 0; q < g_size; q++) {
    base[q] = total;
    total += counts[q];
    uint64_t r = (counts[q] + chunk - 1) / chunk;
    if (r > rounds) rounds = r;
  }
  unsigned char *out = xmalloc(total), *tmp = xmalloc((size_t)g_size * chunk);
  int *rc = xmalloc((size_t)g_size * sizeof *rc), *displ = xmalloc((size_t)g_size * sizeof *displ);
  for (uint64_t k = 0; k < rounds; k++) {
    uint64_t off = k * chunk;
    for (int q = 0; q < g_size; q++) {
      uint64_t left = counts[q] > off ? counts[q] - off : 0;
      rc[q] = (int)(left < chunk ? left : chunk);
      displ[q] = (int)((size_t)q * chunk);
    }
    static unsigned char nothing;
    const unsigned char *src = rc[g_rank] ? (const unsigned char *)mine + off : &nothing;
    mpi_check(MPI_Allgatherv(src, rc[g_rank], MPI_BYTE, tmp, rc, displ, MPI_BYTE, MPI_COMM_WORLD),
              "MPI_Allgatherv of the tokenized corpus");
    for (int q = 0; q < g_size; q++)
      if (rc[q]) memcpy(out + base[q] + off, tmp + displ[q], (size_t)rc[q]);
  }
  free(rc);
  free(displ);
  free(tmp);
  free(base);
  return out;
}

/* What one rank tokenized: its documents in order, their sentences, ids. */
typedef struct Local {
  uint32_t *doc_nsent;
  uint32_t *sent_len;
  unsigned char *ids; /* uint16 or int32, by width */
  size_t n_docs, n_sents, n_ids, cap_docs, cap_sents, cap_ids;
  size_t width;
  int32_t *enc;       /* the tokenizer's output for one line */
  size_t cap_enc;
} Local;

static void local_add_doc(Local *l) {
  grow((void **)&l->doc_nsent, &l->cap_docs, l->n_docs + 1, sizeof *l->doc_nsent);
  l->doc_nsent[l->n_docs++] = 0;
}

static void local_add_sentence(Local *l, size_t n, const char *path, long line) {
  if (n > UINT32_MAX) die("%s:%ld: line too long (%zu tokens)", path, line, n);
  if (l->doc_nsent[l->n_docs - 1] == UINT32_MAX) die("%s:%ld: document has too many lines", path, line);
  grow((void **)&l->sent_len, &l->cap_sents, l->n_sents + 1, sizeof *l->sent_len);
  l->sent_len[l->n_sents++] = (uint32_t)n;
  l->doc_nsent[l->n_docs - 1]++;
  grow((void **)&l->ids, &l->cap_ids, l->n_ids + n, l->width);
  if (l->width == 2) {
    uint16_t *d = (uint16_t *)l->ids + l->n_ids;
    for (size_t i = 0; i < n; i++) d[i] = (uint16_t)l->enc[i];
  } else {
    memcpy((int32_t *)l->ids + l->n_ids, l->enc, n * sizeof(int32_t));
  }
  l->n_ids += n;
}

typedef struct Progress {
  double start, last;
  uint64_t bytes;
  size_t docs;
} Progress;

static void progress_tick(Progress *p) {
  double t = now_seconds();
  if (t - p->last < 5.0) return;
  p->last = t;
  info("prep: reading the corpus: %zu documents, %.1f MB, %.1f MB/s", p->docs,
       (double)p->bytes / 1e6, (double)p->bytes / 1e6 / (t - p->start));
}

/* A file start or a blank line begins document number *raw. */
static void start_doc(Local *l, size_t *raw, int *own, Progress *pr) {
  *own = (int)(*raw % (size_t)g_size) == g_rank;
  if (*own) local_add_doc(l);
  (*raw)++;
  pr->docs++;
}

/* Reads one file, tokenizing the lines of the documents this rank owns. */
static void read_file(const char *path, Tokenizer *t, Local *l, size_t *raw, Progress *pr) {
  LineReader *r = lines_open(path);
  size_t len, a, b;
  char *line;
  int own;
  start_doc(l, raw, &own, pr);
  while ((line = lines_next(r, &len))) {
    uint64_t before = pr->bytes;
    pr->bytes += len + 1;
    if ((before >> 22) != (pr->bytes >> 22)) progress_tick(pr);
    py_strip(line, len, &a, &b);
    if (a == b) {
      start_doc(l, raw, &own, pr);
      continue;
    }
    if (!own) continue;
    require_utf8(r, line, len);
    size_t n = tokenizer_encode(t, line + a, b - a, &l->enc, &l->cap_enc, 0);
    if (n) local_add_sentence(l, n, path, lines_number(r));
  }
  lines_close(r);
}

/* Rebuilds the corpus in document order from every rank's gathered part. */
static void assemble(Corpus *c, size_t raw, const uint32_t *nsent, const uint64_t *ndocs,
                     const uint32_t *slen, const uint64_t *nslen, const unsigned char *ids,
                     const uint64_t *nids, size_t width) {
  size_t K = (size_t)g_size;
  uint64_t *doc_cur = xcalloc(K, sizeof *doc_cur), *sent_cur = xcalloc(K, sizeof *sent_cur);
  uint64_t *id_cur = xcalloc(K, sizeof *id_cur);
  uint64_t off_d = 0, off_s = 0, off_i = 0;
  for (size_t q = 0; q < K; q++) {
    size_t expect = raw > q ? (raw - q + K - 1) / K : 0;
    if (ndocs[q] != expect)
      die("rank %zu read %llu documents, expected %zu: do the ranks see the same corpus files?",
          q, (unsigned long long)ndocs[q], expect);
    doc_cur[q] = off_d;
    sent_cur[q] = off_s;
    id_cur[q] = off_i;
    off_d += ndocs[q];
    off_s += nslen[q];
    off_i += nids[q];
  }
  c->n_docs = 0;
  c->n_sents = off_s;
  c->n_tokens = off_i;
  c->doc_sent = xmalloc((raw + 1) * sizeof *c->doc_sent);
  c->sent_tok = xmalloc((off_s + 1) * sizeof *c->sent_tok);
  if (width == 2) c->ids16 = xmalloc(off_i * width);
  else c->ids32 = xmalloc(off_i * width);
  unsigned char *dst = c->ids16 ? (unsigned char *)c->ids16 : (unsigned char *)c->ids32;
  uint64_t s = 0, tok = 0;
  for (size_t d = 0; d < raw; d++) {
    size_t q = d % K;
    uint32_t n = nsent[doc_cur[q]++];
    if (n == 0) continue;
    c->doc_sent[c->n_docs++] = s;
    uint64_t first = tok;
    for (uint32_t k = 0; k < n; k++) {
      c->sent_tok[s++] = tok;
      tok += slen[sent_cur[q]++];
    }
    memcpy(dst + first * width, ids + id_cur[q] * width, (tok - first) * width);
    id_cur[q] += tok - first;
  }
  c->doc_sent[c->n_docs] = s;
  c->sent_tok[s] = tok;
  free(doc_cur);
  free(sent_cur);
  free(id_cur);
}

uint64_t corpus_load(Corpus *c, char *const *files, int n_files, Tokenizer *t, int vocab_size) {
  memset(c, 0, sizeof *c);
  Local l = {0};
  l.width = vocab_size <= 65536 ? 2 : 4;
  Progress pr = {now_seconds(), now_seconds(), 0, 0};
  size_t raw = 0;
  for (int f = 0; f < n_files; f++) read_file(files[f], t, &l, &raw, &pr);
  free(l.enc);

  /* 64 MiB per rank per call keeps MPI's int counts and the buffers small. */
  size_t chunk = (size_t)64 << 20;
  size_t K = (size_t)g_size;
  uint64_t *nd = xmalloc(K * sizeof *nd), *ns = xmalloc(K * sizeof *ns), *ni = xmalloc(K * sizeof *ni);
  unsigned char *docs = allgather_bytes(l.doc_nsent, l.n_docs * sizeof *l.doc_nsent, nd, chunk);
  free(l.doc_nsent);
  unsigned char *sents = allgather_bytes(l.sent_len, l.n_sents * sizeof *l.sent_len, ns, chunk);
  free(l.sent_len);
  unsigned char *ids = allgather_bytes(l.ids, l.n_ids * l.width, ni, chunk);
  free(l.ids);
  for (size_t q = 0; q < K; q++) {
    nd[q] /= sizeof(uint32_t);
    ns[q] /= sizeof(uint32_t);
    ni[q] /= l.width;
  }
  assemble(c, raw, (const uint32_t *)docs, nd, (const uint32_t *)sents, ns, ids, ni, l.width);
  free(docs);
  free(sents);
  free(ids);
  free(nd);
  free(ns);
  free(ni);
  return pr.bytes;
}
