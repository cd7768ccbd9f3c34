/* The tokenizer against outputs worked out by hand from Google's algorithm
 * (tokenization.py) and cross-checked with Hugging Face's BertWordPieceTokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "tokenizer.h"
#include "util.h"
#include "vocab.h"

static char joined[8192];

static void add_word(const char *word, size_t len, void *user) {
  (void)user;
  size_t n = strlen(joined);
  if (n) joined[n++] = '|';
  if (n + len + 1 > sizeof joined) len = sizeof joined - n - 1;
  memcpy(joined + n, word, len);
  joined[n + len] = '\0';
}

/* The basic tokenizer's words joined with '|'. */
static const char *basic_n(const char *text, size_t len, int lowercase) {
  joined[0] = '\0';
  basic_tokenize(text, len, lowercase, add_word, NULL);
  return joined;
}
static const char *basic(const char *text, int lowercase) {
  return basic_n(text, strlen(text), lowercase);
}

/* The WordPiece tokens joined with ' '. */
static const char *pieces(Tokenizer *t, const char *text) {
  static int32_t *ids;
  static size_t cap;
  size_t n = tokenizer_encode(t, text, strlen(text), &ids, &cap, 0);
  const Vocab *v = tokenizer_vocab(t);
  joined[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (i) strcat(joined, " ");
    CHECK(ids[i] >= 0 && ids[i] < v->size);
    if (strlen(joined) + strlen(v->tokens[ids[i]]) + 2 > sizeof joined) break;
    strcat(joined, v->tokens[ids[i]]);
  }
  return joined;
}

static void test_basic_lower_and_cased(void) {
  const char *s = "\t Good MORNING!what\n  IS thIs? ";
  CHECK_STR(basic(s, 1), "good|morning|!|what|is|this|?");
  CHECK_STR(basic(s, 0), "Good|MORNING|!|what|IS|thIs|?");
  CHECK_STR(basic("", 1), "");
  CHECK_STR(basic("  \t \n", 1), "");
}

static void test_accents(void) {
  const char *s = "H\u00e9llo na\u00efve caf\u00e9";
  CHECK_STR(basic(s, 1), "hello|naive|cafe");
  CHECK_STR(basic(s, 0), "H\u00e9llo|na\u00efve|caf\u00e9");
  /* Already decomposed input: the combining acute (Mn) goes when lower-casing,
   * and stays inside the word otherwise. */
  CHECK_STR(basic("He\u0301llo cafe\u0301", 1), "hello|cafe");
  CHECK_STR(basic("He\u0301llo cafe\u0301", 0), "He\u0301llo|cafe\u0301");
  /* A lone combining mark is a token that stripping empties: it vanishes. */
  CHECK_STR(basic("a \u0301 b", 1), "a|b");
  CHECK_STR(basic("a \u0301 b", 0), "a|\u0301|b");
  /* NFD also splits kana voicing marks (Mn) and Hangul syllables into jamo. */
  CHECK_STR(basic("\u3072\u3089\u304c\u306a", 1), "\u3072\u3089\u304b\u306a");
  CHECK_STR(basic("\ud55c", 1), "\u1112\u1161\u11ab");
  CHECK_STR(basic("\ud55c", 0), "\ud55c");
  /* Python's lower(): dotted capital I, and the final form of sigma. */
  CHECK_STR(basic("\u0130stanbul", 1), "istanbul");
  CHECK_STR(basic("\u039f\u0394\u039f\u03a3 \u039f\u0394\u039f\u03a3. "
                  "\u0391\u03a3\u0391 \u03a3", 1),
            "\u03bf\u03b4\u03bf\u03c2|\u03bf\u03b4\u03bf\u03c2|.|\u03b1\u03c3\u03b1|\u03c3");
  /* U+1FEF GREEK VARIA decomposes to '`', which is then punctuation. */
  CHECK_STR(basic("a\u1fefb", 1), "a|`|b");
  CHECK_STR(basic("a\u1fefb", 0), "a\u1fefb");
}

static void test_punctuation(void) {
  CHECK_STR(basic("Don't stop.", 1), "don|'|t|stop|.");
  CHECK_STR(basic("Don't stop.", 0), "Don|'|t|stop|.");
  /* Unicode P* categories split; symbols (Sc, Sm) do not, except the ASCII
   * ones Google counts as punctuation. */
  CHECK_STR(basic("\u00bfQu\u00e9?\u2014s\u00ed\u2026", 1), "\u00bf|que|?|\u2014|si|\u2026");
  CHECK_STR(basic("5\u20ac a+b x\u00b1y $5", 1), "5\u20ac|a|+|b|x\u00b1y|$|5");
  CHECK_STR(basic("##a [UNK]", 0), "#|#|a|[|UNK|]");
}

static void test_cjk(void) {
  CHECK_STR(basic("ah\u4e2d\u56fdzz", 1), "ah|\u4e2d|\u56fd|zz");
  CHECK_STR(basic("\u65e5\u672c\u8a9e \u3072\u3089\u304c\u306a \ud55c\uad6d", 0),
            "\u65e5|\u672c|\u8a9e|\u3072\u3089\u304c\u306a|\ud55c\uad6d");
  CHECK_STR(basic("x\U00020000y", 0), "x|\U00020000|y");
  /* A compatibility ideograph is split, and NFD maps it to its unified form. */
  CHECK_STR(basic("a\uf900b", 1), "a|\u8c48|b");
  CHECK_STR(basic("a\uf900b", 0), "a|\uf900|b");
}

static void test_cleaning(void) {
  /* Control and format characters and U+FFFD vanish without splitting. */
  CHECK_STR(basic("he\x01llo\x7f wor\u200bld\ufffd", 1), "hello|world");
  CHECK_STR(basic("a\x0b" "b\x0c" "c the\u00adthe", 1), "abc|thethe");
  CHECK_STR(basic_n("a\0b", 3, 1), "ab");
  /* Tab, newline, CR, Zs (no-break space, ideographic and em space) and the
   * line separator all separate words. */
  CHECK_STR(basic("a\tb\nc\rd\u00a0e\u3000f\u2028g\u2003h", 0), "a|b|c|d|e|f|g|h");
}

static void test_wordpiece(Tokenizer *lower, Tokenizer *cased) {
  CHECK_STR(pieces(lower, "unwanted running"), "un ##want ##ed runn ##ing");
  CHECK_STR(pieces(lower, "UNwant\u00e9d,running"), "un ##want ##ed , runn ##ing");
  /* Greedy longest match takes "runn" even though "run ##ning" would also do. */
  CHECK_STR(pieces(lower, "running"), "runn ##ing");
  CHECK_STR(pieces(lower, "unwantedX running"), "[UNK] runn ##ing");
  CHECK_STR(pieces(lower, "wantwant ahb"), "want ##want a ##h ##b");
  CHECK_STR(pieces(lower, "ah\u4e2d\u56fd\u4eba"), "a ##h \u4e2d \u56fd [UNK]");
  CHECK_STR(pieces(lower, "H\u00e9llo na\u00efve caf\u00e9"), "hello naive cafe");
  CHECK_STR(pieces(cased, "H\u00e9llo na\u00efve caf\u00e9"),
            "H ##\u00e9 ##llo [UNK] caf ##\u00e9");
  CHECK_STR(pieces(lower, "Don't stop."), "don ' t stop .");
  CHECK_STR(pieces(cased, "Don't stop."), "[UNK] ' t stop .");
  CHECK_STR(pieces(lower, "\t Good MORNING!what\n  IS thIs? "), "good morning ! what is this ?");
  CHECK_STR(pieces(lower, "\u00bfQu\u00e9?\u2014s\u00ed\u2026 5\u20ac $5"),
            "\u00bf que ? \u2014 si \u2026 5 ##\u20ac $ 5");
  CHECK_STR(pieces(lower, "\u0130stanbul"), "istanbul");
  CHECK_STR(pieces(cased, "\u0130stanbul"), "[UNK]");
  CHECK_STR(pieces(lower, "a\u1fefb"), "a ` b");
  CHECK_STR(pieces(lower, "[UNK]"), "[UNK] [UNK] [UNK]"); /* "[", "unk", "]": none in the vocab */
  CHECK_STR(pieces(lower, ""), "");
}

static void test_word_length(Tokenizer *lower, Tokenizer *cased) {
  /* 100 characters split into a ##a ##a ...; 101 are [UNK] whatever the pieces. */
  char word[1024], want[4096], want_a[1024];
  memset(word, 'a', 100);
  word[100] = '\0';
  strcpy(want_a, "a");
  for (int i = 1; i < 100; i++) strcat(want_a, " ##a");
  CHECK_STR(pieces(lower, word), want_a);
  strcat(word, "a");
  CHECK_STR(pieces(lower, word), "[UNK]");
  /* The limit counts characters, not bytes: 100 x "\u00e9" (200 bytes) is fine. */
  word[0] = '\0';
  strcpy(want, "\u00e9");
  for (int i = 0; i < 100; i++) strcat(word, "\u00e9");
  for (int i = 1; i < 100; i++) strcat(want, " ##\u00e9");
  CHECK_STR(pieces(cased, word), want);
  strcat(word, "\u00e9");
  CHECK_STR(pieces(cased, word), "[UNK]");
  /* The limit applies to each basic token, after punctuation splitting. */
  memset(word, 'a', 100);
  word[100] = '.';
  memset(word + 101, 'a', 100);
  word[201] = '\0';
  snprintf(want, sizeof want, "%s . %s", want_a, want_a);
  CHECK_STR(pieces(lower, word), want);
}

static void test_encode_appends(Tokenizer *lower) {
  int32_t *ids = NULL;
  size_t cap = 0;
  grow((void **)&ids, &cap, 2, sizeof *ids);
  ids[0] = 77;
  ids[1] = 88;
  size_t n = tokenizer_encode(lower, "the stop", 8, &ids, &cap, 2);
  CHECK_INT(n, 4);
  CHECK_INT(ids[0], 77);
  CHECK_INT(ids[1], 88);
  CHECK_INT(ids[2], 5);  /* "the": line 6 of vocab-small.txt */
  CHECK_INT(ids[3], 17); /* "stop" */
  /* Many tokens force the array to grow. */
  char text[3000] = "";
  for (int i = 0; i < 500; i++) strcat(text, "a, ");
  n = tokenizer_encode(lower, text, strlen(text), &ids, &cap, 0);
  CHECK_INT(n, 1000);
  CHECK(cap >= 1000);
  CHECK_INT(ids[998], 35); /* "a" */
  CHECK_INT(ids[999], 19); /* "," */
  free(ids);
}

static void test_vocab_details(void) {
  /* A repeated token maps to its last line, as Google's load_vocab does. */
  char *tokens[] = {"[UNK]", "ab", "x", "ab", "##c"};
  Vocab *v = vocab_from_tokens(tokens, 5, "dup");
  Tokenizer *t = tokenizer_new(v, 1, 3);
  int32_t *ids = NULL;
  size_t cap = 0;
  const char *text = "ab abc abx x abcd";
  size_t n = tokenizer_encode(t, text, strlen(text), &ids, &cap, 0);
  /* "abx" has no piece for "x" after "ab"; "abcd" has 4 characters, over
   * this tokenizer's limit of 3, although "ab ##c" would match a prefix. */
  int32_t want[] = {3, 3, 4, 0, 2, 0};
  CHECK_INT(n, ARRAY_LEN(want));
  for (size_t i = 0; i < n && i < ARRAY_LEN(want); i++) CHECK_INT(ids[i], want[i]);
  free(ids);
  tokenizer_free(t);
  vocab_free(v);
}

static void new_without_unk(void *arg) {
  (void)arg;
  char *tokens[] = {"[PAD]", "a", "b"};
  Vocab *v = vocab_from_tokens(tokens, 3, "nounk.txt");
  tokenizer_new(v, 1, 100);
}

int main(void) {
  test_basic_lower_and_cased();
  test_accents();
  test_punctuation();
  test_cjk();
  test_cleaning();
  Vocab *v = vocab_load(src_path("tests/data/vocab-small.txt"));
  CHECK_INT(v->unk, 1);
  Tokenizer *lower = tokenizer_new(v, 1, 100), *cased = tokenizer_new(v, 0, 100);
  CHECK(tokenizer_vocab(lower) == v);
  test_wordpiece(lower, cased);
  test_word_length(lower, cased);
  test_encode_appends(lower);
  tokenizer_free(lower);
  tokenizer_free(cased);
  vocab_free(v);
  test_vocab_details();
  expect_death("vocab without [UNK]", new_without_unk, NULL,
               (const char *const[]){"nounk.txt", "[UNK]", NULL});
  return test_finish();
}
