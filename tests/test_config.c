/* Config: defaults, INI files, --set overrides, and the errors users see. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "run_files.h"
#include "test_util.h"
#include "train_util.h"

static char tmpdir[] = "/tmp/bertrain-test-config-XXXXXX";

static const char *write_ini(const char *name, const char *text) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  return path;
}

static void load(void *path) {
  Config c;
  config_defaults(&c);
  config_load_file(&c, path);
}

static void set(void *assignment) {
  Config c;
  config_defaults(&c);
  config_set(&c, assignment);
}

static void test_defaults_and_overrides(void) {
  Config c;
  config_defaults(&c);
  CHECK_INT(c.data.seq_length, 128);
  CHECK_INT(c.data.seed, 12345);
  CHECK(c.model.lowercase == 1);
  CHECK(c.pretrain.adam_beta1 == 0.9 && c.pretrain.adam_beta2 == 0.999);
  CHECK(c.pretrain.adam_epsilon == 1e-6 && c.finetune.adam_beta2 == 0.999);
  const char *p = write_ini("ok.ini", "; comment\n[data]\nseq_length = 64\ncorpus = a.txt, b.txt\n"
                                      "[model]\nlowercase = false\n");
  config_load_file(&c, p);
  CHECK_INT(c.data.seq_length, 64);
  CHECK(c.model.lowercase == 0);
  config_set(&c, "data.seq_length=32");
  CHECK_INT(c.data.seq_length, 32);
  config_set(&c, "data.masked_lm_prob=0.2");
  CHECK(c.data.masked_lm_prob == 0.2);
  int n = 0;
  char **items = split_list(c.data.corpus, &n);
  CHECK_INT(n, 2);
  CHECK_STR(items[0], "a.txt");
  CHECK_STR(items[1], "b.txt");
  free_list(items);
  config_free(&c);
}

static void test_written_config_reads_back(void) {
  Config a, b;
  config_defaults(&a);
  config_set(&a, "data.short_seq_prob=0.123456789");
  config_set(&a, "finetune.task=sst2");
  config_write_to_dir(&a, tmpdir);
  char path[512];
  snprintf(path, sizeof path, "%s/config.ini", tmpdir);
  config_defaults(&b);
  config_load_file(&b, path);
  CHECK(b.data.short_seq_prob == 0.123456789);
  CHECK_STR(b.finetune.task, "sst2");
  config_free(&a);
  config_free(&b);
}

static void test_errors(void) {
  const char *p = write_ini("badkey.ini", "[data]\nseq_length = 64\nseq_lenght = 3\n");
  expect_death("unknown key", load, (void *)p,
               (const char *const[]){"badkey.ini:3", "seq_lenght", "valid keys:", "seq_length", NULL});
  p = write_ini("badsec.ini", "[dta]\nx = 1\n");
  expect_death("unknown section", load, (void *)p,
               (const char *const[]){"badsec.ini:2", "[dta]", "[data]", NULL});
  p = write_ini("badval.ini", "[data]\n\nshards = many\n");
  expect_death("malformed value", load, (void *)p,
               (const char *const[]){"badval.ini:3", "many", "integer", NULL});
  p = write_ini("range.ini", "[data]\nmasked_lm_prob = 1.5\n");
  expect_death("out of range", load, (void *)p, (const char *const[]){"range.ini:2", "range", NULL});
  p = write_ini("syntax.ini", "[data]\nthis line has no equals\n");
  expect_death("syntax", load, (void *)p, (const char *const[]){"syntax.ini:2", NULL});
  expect_death("missing file", load, (void *)"/nonexistent/x.ini",
               (const char *const[]){"/nonexistent/x.ini", NULL});
  expect_death("--set unknown key", set, (void *)"data.nope=1",
               (const char *const[]){"--set data.nope=1", "valid keys:", NULL});
  expect_death("--set malformed", set, (void *)"data-seq=1",
               (const char *const[]){"section.key=value", NULL});
  expect_death("--set bad choice", set, (void *)"finetune.task=cola",
               (const char *const[]){"mrpc|sst2", NULL});
  expect_death("--set bad bool", set, (void *)"model.lowercase=maybe",
               (const char *const[]){"true or false", NULL});
  expect_death("--set beta2 of 1", set, (void *)"pretrain.adam_beta2=1",
               (const char *const[]){"adam_beta2", "out of range", NULL});
}

/* The run folder a config's file name gives (runs/STEM), and run.dir. */
static void test_run_dir(void) {
  char buf[256];
  path_stem(buf, sizeof buf, "configs/bert-mini.ini");
  CHECK_STR(buf, "bert-mini");
  path_stem(buf, sizeof buf, "a.b/sweep.v2.ini");
  CHECK_STR(buf, "sweep.v2");
  path_stem(buf, sizeof buf, "dir/.hidden");
  CHECK_STR(buf, ".hidden");
  path_stem(buf, sizeof buf, "plain");
  CHECK_STR(buf, "plain");
  Config c;
  config_defaults(&c);
  char *argv[] = {"bertrain", "--config", "x/one.ini", "--config", "y/two.ini", NULL};
  CHECK_STR(train_run_dir(&c, 5, argv, buf, sizeof buf), "runs/two");
  CHECK_STR(train_run_dir(&c, 1, argv, buf, sizeof buf), "runs/default");
  config_set(&c, "run.dir=elsewhere");
  CHECK_STR(train_run_dir(&c, 5, argv, buf, sizeof buf), "elsewhere");
}

int main(void) {
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
  test_defaults_and_overrides();
  test_written_config_reads_back();
  test_errors();
  test_run_dir();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return test_finish();
}
