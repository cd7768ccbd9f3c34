#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const CliOpt *find_opt(const CliOpt *opts, int nopts, const char *name) {
  for (int i = 0; i < nopts; i++)
    if (strcmp(opts[i].name, name) == 0) return &opts[i];
  return NULL;
}

static const char *need_value(const Command *cmd, int argc, char **argv, int i) {
  if (i + 1 >= argc) die("%s %s: missing value (see 'bertrain help %s')", cmd->name, argv[i], cmd->name);
  return argv[i + 1];
}

/* Consumes one option at argv[i]; returns how many arguments it used. */
static int take_opt(const Command *cmd, const CliOpt *o, int argc, char **argv, int i) {
  long v;
  switch (o->kind) {
  case OPT_FLAG: *(int *)o->target = 1; return 1;
  case OPT_STRING: *(const char **)o->target = need_value(cmd, argc, argv, i); return 2;
  case OPT_INT:
    if (parse_long(need_value(cmd, argc, argv, i), &v) != 0 || v < -2147483647L || v > 2147483647L)
      die("%s %s: expected an integer, got '%s'", cmd->name, argv[i], argv[i + 1]);
    *(int *)o->target = (int)v;
    return 2;
  case OPT_LIST: {
    StrList *l = o->target;
    int n = 1;
    while (i + n < argc && strncmp(argv[i + n], "--", 2) != 0) {
      l->items = xrealloc(l->items, (size_t)(l->count + 1) * sizeof *l->items);
      l->items[l->count++] = argv[i + n];
      n++;
    }
    if (n == 1) die("%s %s: missing value (see 'bertrain help %s')", cmd->name, argv[i], cmd->name);
    return n;
  }
  }
  return 1;
}

int cli_parse(const Command *cmd, int argc, char **argv, const CliOpt *opts, int nopts,
              Config *cfg) {
  config_defaults(cfg);
  /* The config file comes first so that --set always wins, wherever it stands. */
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "--config") == 0) config_load_file(cfg, need_value(cmd, argc, argv, i++));
  }
  int i = 1;
  while (i < argc) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) return i + 1;
    if (strncmp(a, "--", 2) != 0) return i;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(cmd->usage, stdout);
      exit(0);
    }
    if (strcmp(a, "--config") == 0) { i += 2; continue; }
    if (strcmp(a, "--set") == 0) {
      config_set(cfg, need_value(cmd, argc, argv, i));
      i += 2;
      continue;
    }
    const CliOpt *o = find_opt(opts, nopts, a + 2);
    if (!o) die("%s: unknown option %s (see 'bertrain help %s')", cmd->name, a, cmd->name);
    i += take_opt(cmd, o, argc, argv, i);
  }
  return i;
}

void strlist_free(StrList *l) {
  free(l->items);
  l->items = NULL;
  l->count = 0;
}

static int takes_value(const char *arg, const CliOpt *opts, int nopts) {
  if (strcmp(arg, "--config") == 0 || strcmp(arg, "--set") == 0) return 1;
  for (int k = 0; k < nopts; k++)
    if (strcmp(arg + 2, opts[k].name) == 0) return opts[k].kind != OPT_FLAG;
  return 0;
}

char **cli_options_first(int argc, char **argv, const CliOpt *opts, int nopts) {
  char **out = xcalloc((size_t)argc + 1, sizeof *out);
  int n = 0;
  out[n++] = argv[0];
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 1; i < argc; i++) {
      int option = strncmp(argv[i], "--", 2) == 0;
      int takes = option && takes_value(argv[i], opts, nopts);
      if (option == (pass == 0)) {
        out[n++] = argv[i];
        if (takes && i + 1 < argc && pass == 0) out[n++] = argv[i + 1];
      }
      if (takes) i++;
    }
  }
  return out;
}
