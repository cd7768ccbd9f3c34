/* GLUE TSV readers: parsing of MRPC and SST-2 files (train/dev and test
 * forms), every error naming file and line, and the shipped sample data. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "glue.h"
#include "test_util.h"
#include "util.h"

static char g_dir[] = "/tmp/test_glue_XXXXXX";

/* Writes text to g_dir/name and returns the path (static buffer, one per name). */
static const char *write_tsv(const char *name, const char *text) {
  static char paths[64][512];
  static int next;
  char *p = paths[next++ % 64];
  snprintf(p, 512, "%s/%s", g_dir, name);
  if (strchr(name, '/')) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", p);
    *strrchr(dir, '/') = '\0';
    make_dirs(dir);
  }
  FILE *f = fopen(p, "wb");
  if (!f || fwrite(text, 1, strlen(text), f) != strlen(text) || fclose(f) != 0) {
    perror(p);
    exit(2);
  }
  return p;
}

#define MRPC_HEAD "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
#define SST2_HEAD "sentence\tlabel\n"

static void test_mrpc_bom_quotes_crlf(void) {
  const char *p = write_tsv("mrpc.tsv",
                            "\xEF\xBB\xBFQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n"
                            "1\t10\t11\t\"Hello,\" he said.\tHe said \"hello\r\n"
                            "0\t12\t13\tCaf\xC3\xA9 au lait\t\"\r\n"
                            "1\t14\t15\ta\tb\n"
                            "\r\n\n");
  GlueSet *s = glue_load(GLUE_MRPC, p);
  CHECK_INT(s->n, 3);
  CHECK_INT(s->num_labels, 2);
  CHECK_INT(s->labelled, 1);
  CHECK(s->text_b != NULL);
  CHECK(s->index == NULL);
  CHECK_STR(s->text_a[0], "\"Hello,\" he said.");
  CHECK_STR(s->text_b[0], "He said \"hello");
  CHECK_STR(s->text_a[1], "Caf\xC3\xA9 au lait");
  CHECK_STR(s->text_b[1], "\"");
  CHECK_STR(s->text_a[2], "a");
  CHECK_STR(s->text_b[2], "b");
  CHECK_INT(s->label[0], 1);
  CHECK_INT(s->label[1], 0);
  CHECK_INT(s->label[2], 1);
  CHECK_STR(s->path, p);
  CHECK(s->task == GLUE_MRPC);
  glue_free(s);
}

static void test_sst2(void) {
  const char *p = write_tsv("sst2.tsv", SST2_HEAD
                            "\"Quoted\" start, and a \"stray quote\t1\n"
                            "plain sentence\t0");  /* no final newline */
  GlueSet *s = glue_load(GLUE_SST2, p);
  CHECK_INT(s->n, 2);
  CHECK(s->text_b == NULL);
  CHECK_STR(s->text_a[0], "\"Quoted\" start, and a \"stray quote");
  CHECK_STR(s->text_a[1], "plain sentence");
  CHECK_INT(s->label[0], 1);
  CHECK_INT(s->label[1], 0);
  glue_free(s);
}

static void test_test_sets(void) {
  write_tsv("sst2test/test.tsv", "index\tsentence\n0\tfirst one\n7\tsecond\n");
  char dir[600];
  snprintf(dir, sizeof dir, "%s/sst2test", g_dir);
  GlueSet *s = glue_load_split(GLUE_SST2, dir, "test");
  CHECK_INT(s->n, 2);
  CHECK_INT(s->labelled, 0);
  CHECK_INT(s->label[0], -1);
  CHECK_INT(s->label[1], -1);
  CHECK(s->index != NULL && s->index[0] == 0 && s->index[1] == 7);
  CHECK_STR(s->text_a[1], "second");
  glue_free(s);

  const char *p = write_tsv("mrpctest.tsv", "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                                "0\t1\t2\tone\ttwo\n1\t3\t4\t\"three\tfour\n");
  s = glue_load(GLUE_MRPC, p);
  CHECK_INT(s->n, 2);
  CHECK_INT(s->labelled, 0);
  CHECK_INT(s->label[1], -1);
  CHECK_INT(s->index[1], 1);
  CHECK_STR(s->text_a[1], "\"three");
  CHECK_STR(s->text_b[1], "four");
  glue_free(s);
}

static void test_task_parse(void) {
  CHECK(glue_task_parse("mrpc") == GLUE_MRPC);
  CHECK(glue_task_parse("MRPC") == GLUE_MRPC);
  CHECK(glue_task_parse("sst2") == GLUE_SST2);
  CHECK(glue_task_parse("SST-2") == GLUE_SST2);
  CHECK_STR(glue_task_name(GLUE_SST2), "SST-2");
  CHECK_INT(glue_task_is_pair(GLUE_MRPC), 1);
  CHECK_INT(glue_task_is_pair(GLUE_SST2), 0);
}

/* ---- errors ---- */

typedef struct Load { GlueTask task; const char *path, *split; } Load;

static void do_load(void *arg) {
  const Load *l = arg;
  if (l->split) glue_load_split(l->task, l->path, l->split);
  else glue_load(l->task, l->path);
}

static void do_parse(void *arg) { glue_task_parse(arg); }

/* The file is written as name; the message must hold "PATH:LINE:" and more. */
static void expect_error(GlueTask task, const char *name, const char *text, long line,
                         const char *more) {
  const char *p = write_tsv(name, text);
  char where[600];
  if (line > 0) snprintf(where, sizeof where, "%s:%ld:", p, line);
  else snprintf(where, sizeof where, "%s", p);
  Load l = {task, p, NULL};
  const char *expect[] = {"bertrain: error:", where, more, NULL};
  expect_death(name, do_load, &l, expect);
}

static void test_errors(void) {
  expect_error(GLUE_MRPC, "cols4.tsv", MRPC_HEAD "1\t1\t2\ta\tb\n0\t3\t4\tc\n", 3,
               "expected 5 tab-separated columns, found 4");
  expect_error(GLUE_MRPC, "cols6.tsv", MRPC_HEAD "1\t1\t2\ta\tb\tc\n", 2, "found 6");
  expect_error(GLUE_SST2, "sstcols.tsv", SST2_HEAD "no label here\n", 2, "expected 2");
  expect_error(GLUE_MRPC, "label2.tsv", MRPC_HEAD "1\t1\t2\ta\tb\n2\t3\t4\tc\td\n", 3,
               "label \"2\" is not 0 or 1");
  expect_error(GLUE_SST2, "labelx.tsv", SST2_HEAD "fine\t0\nbad\tx\n", 3, "label \"x\"");
  expect_error(GLUE_SST2, "nolabel.tsv", SST2_HEAD "fine\t0\nbad\t\n", 3, "missing label");
  expect_error(GLUE_MRPC, "sst_as_mrpc.tsv", SST2_HEAD "a\t1\n", 1, "SST-2 file, not MRPC");
  expect_error(GLUE_SST2, "mrpc_as_sst.tsv", MRPC_HEAD "1\t1\t2\ta\tb\n", 1,
               "MRPC file, not SST-2");
  expect_error(GLUE_SST2, "mrpctest_as_sst.tsv", "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n",
               1, "MRPC file");
  expect_error(GLUE_MRPC, "qnli.tsv", "index\tquestion\tsentence\tlabel\n0\ta\tb\tentailment\n", 1,
               "GLUE QNLI file");
  expect_error(GLUE_MRPC, "noheader.tsv", "1\t1\t2\ta\tb\n", 1, "not an MRPC header");
  expect_error(GLUE_SST2, "utf8.tsv", SST2_HEAD "ok\t1\nbad \xC3\x28 byte\t0\n", 3,
               "invalid UTF-8");
  expect_error(GLUE_MRPC, "utf8head.tsv", "Quality\xFF\n", 1, "invalid UTF-8");
  expect_error(GLUE_SST2, "blank.tsv", SST2_HEAD "a\t1\n\nb\t0\n", 3, "empty line");
  expect_error(GLUE_MRPC, "emptytext.tsv", MRPC_HEAD "1\t1\t2\ta\t\n", 2, "empty sentence");
  expect_error(GLUE_SST2, "badindex.tsv", "index\tsentence\nx1\ta\n", 2, "index \"x1\"");
  expect_error(GLUE_SST2, "headonly.tsv", SST2_HEAD "\n", 0, "no rows");
  expect_error(GLUE_SST2, "empty.tsv", "", 0, "empty file");

  char missing[600];
  snprintf(missing, sizeof missing, "%s/missing.tsv", g_dir);
  Load l = {GLUE_MRPC, missing, NULL};
  const char *e1[] = {"cannot open", missing, NULL};
  expect_death("missing file", do_load, &l, e1);

  Load l2 = {GLUE_MRPC, missing, "train"};
  const char *e2[] = {"no train.tsv or train.tsv.xz in", missing, NULL};
  expect_death("missing split", do_load, &l2, e2);

  write_tsv("unlabelled/dev.tsv", "index\tsentence\n0\ta\n");
  char dir[600];
  snprintf(dir, sizeof dir, "%s/unlabelled", g_dir);
  Load l3 = {GLUE_SST2, dir, "dev"};
  const char *e3[] = {"dev.tsv", "has no labels", NULL};
  expect_death("dev without labels", do_load, &l3, e3);

  const char *e4[] = {"unknown GLUE task 'cola'", "mrpc, sst2", NULL};
  expect_death("unknown task", do_parse, "cola", e4);
}

/* ---- the sample data shipped with the project ---- */

static double positive(const GlueSet *s) {
  long pos = 0;
  for (long i = 0; i < s->n; i++) pos += s->label[i] == 1;
  return (double)pos / s->n;
}

static void check_sample(GlueTask task, const char *dir, const char *split, long rows,
                         double frac) {
  char d[4096];
  snprintf(d, sizeof d, "%s", src_path(dir));
  GlueSet *s = glue_load_split(task, d, split);
  CHECK_INT(s->n, rows);
  CHECK_INT(lround(positive(s) * 1000), lround(frac * 1000));
  CHECK(strstr(s->path, ".tsv.xz") != NULL);
  for (long i = 0; i < s->n; i++)
    if (!s->text_a[i][0] || (s->label[i] != 0 && s->label[i] != 1)) {
      CHECK(0);
      break;
    }
  glue_free(s);
}

static void test_sample(void) {
  check_sample(GLUE_MRPC, "data/sample/MRPC", "train", 3418, 0.680);
  check_sample(GLUE_MRPC, "data/sample/MRPC", "dev", 408, 0.679);
  check_sample(GLUE_SST2, "data/sample/SST-2", "train", 11168, 0.500);
  check_sample(GLUE_SST2, "data/sample/SST-2", "dev", 1572, 0.500);

  /* Some sample strings begin with a double quote; they must survive verbatim. */
  char d[4096];
  snprintf(d, sizeof d, "%s", src_path("data/sample/MRPC"));
  GlueSet *s = glue_load_split(GLUE_MRPC, d, "dev");
  long quoted = 0;
  for (long i = 0; i < s->n; i++) quoted += s->text_a[i][0] == '"' || s->text_b[i][0] == '"';
  CHECK(quoted > 0);
  CHECK(strncmp(s->text_a[0], "And Caleb said, He that smiteth Kirjathsepher", 45) == 0);
  CHECK(strncmp(s->text_b[0], "Sepher said, \"I will give Achsah", 32) == 0);
  glue_free(s);
}

static void cleanup(void) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

int main(void) {
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 2;
  }
  test_mrpc_bom_quotes_crlf();
  test_sst2();
  test_test_sets();
  test_task_parse();
  test_errors();
  test_sample();
  cleanup();
  return test_finish();
}
