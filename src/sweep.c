#define _POSIX_C_SOURCE 200809L
#include "sweep.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "run_files.h"
#include "util.h"

typedef struct Reader {
  FILE *f;
  int line;
  Sweep *s;
  size_t cap;
} Reader;

static char *read_line(char *str, int num, void *stream) {
  Reader *r = stream;
  char *got = fgets(str, num, r->f);
  if (got) r->line++;
  return got;
}

static int valid_name(const char *name) {
  if (!name[0] || strlen(name) >= sizeof ((SweepRun *)0)->name) return 0;
  for (const char *p = name; *p; p++)
    if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') ||
          *p == '-' || *p == '_' || *p == '.'))
      return 0;
  return strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && strcmp(name, "report") != 0;
}

/* The run of section, added when it is new (sections may not repeat). */
static SweepRun *run_of(Reader *r, const char *section) {
  Sweep *s = r->s;
  if (s->nruns > 0 && strcmp(s->runs[s->nruns - 1].name, section) == 0) return &s->runs[s->nruns - 1];
  for (int i = 0; i < s->nruns; i++)
    if (strcmp(s->runs[i].name, section) == 0)
      die("%s:%d: run [%s] appears twice", s->path, r->line, section);
  if (!valid_name(section))
    die("%s:%d: [%s]: a run name is 1-63 of A-Z a-z 0-9 . _ - (it names the run's directory), "
        "and not 'report'", s->path, r->line, section);
  grow((void **)&s->runs, &r->cap, (size_t)s->nruns + 1, sizeof *s->runs);
  SweepRun *run = &s->runs[s->nruns++];
  memset(run, 0, sizeof *run);
  path_fmt(run->name, sizeof run->name, "%s", section);
  return run;
}

static int on_value(void *user, const char *section, const char *name, const char *value) {
  Reader *r = user;
  Sweep *s = r->s;
  if (strcmp(section, "sweep") == 0) {
    if (strcmp(name, "base") == 0) path_fmt(s->base, sizeof s->base, "%s", value);
    else if (strcmp(name, "dir") == 0) path_fmt(s->dir, sizeof s->dir, "%s", value);
    else die("%s:%d: [sweep] has 'base' and 'dir', not '%s'", s->path, r->line, name);
    return 1;
  }
  if (!section[0]) die("%s:%d: '%s' outside any section", s->path, r->line, name);
  const char *dot = strchr(name, '.');
  if (!dot || dot == name || !dot[1])
    die("%s:%d: [%s] %s: an override is section.key = value (e.g. model.layers = 3)", s->path,
        r->line, section, name);
  if (strcmp(name, "run.dir") == 0)
    die("%s:%d: [%s]: run.dir is set by the sweep (its dir/%s); set [sweep] dir instead", s->path,
        r->line, section, section);
  SweepRun *run = run_of(r, section);
  run->sets = xrealloc(run->sets, (size_t)(run->nsets + 1) * sizeof *run->sets);
  run->lines = xrealloc(run->lines, (size_t)(run->nsets + 1) * sizeof *run->lines);
  run->lines[run->nsets] = r->line;
  size_t n = strlen(name) + strlen(value) + 2;
  run->sets[run->nsets] = xmalloc(n);
  snprintf(run->sets[run->nsets++], n, "%s=%s", name, value);
  return 1;
}

/* Every run's overrides applied to the base: bad keys and values die here,
 * naming the sweep file, rather than in the array task. */
static void check_runs(const Sweep *s) {
  for (int i = 0; i < s->nruns; i++) {
    Config c;
    config_defaults(&c);
    config_load_file(&c, s->base);
    for (int k = 0; k < s->runs[i].nsets; k++) {
      char section[128], key[128];
      const char *set = s->runs[i].sets[k], *dot = strchr(set, '.'), *eq = strchr(set, '=');
      path_fmt(section, sizeof section, "%.*s", (int)(dot - set), set);
      path_fmt(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
      config_set_at(&c, s->path, s->runs[i].lines[k], section, key, eq + 1);
    }
    config_free(&c);
  }
}

Sweep *sweep_load(const char *path) {
  Sweep *s = xcalloc(1, sizeof *s);
  path_fmt(s->path, sizeof s->path, "%s", path);
  Reader r = {fopen(path, "r"), 0, s, 0};
  if (!r.f) die("cannot open sweep file %s: %s", path, strerror(errno));
  int err = ini_parse_stream(read_line, &r, on_value, &r);
  fclose(r.f);
  if (err > 0) die("%s:%d: syntax error (expected [section] or key = value)", path, err);
  if (err < 0) die("cannot read sweep file %s", path);
  if (!s->base[0]) die("%s: no [sweep] base = CONFIG (the config every run starts from)", path);
  if (s->nruns == 0) die("%s: no runs (a [NAME] section per run, with its overrides)", path);
  if (!s->dir[0]) {
    char name[256];
    path_stem(name, sizeof name, path);
    path_fmt(s->dir, sizeof s->dir, "runs/sweeps/%s", name);
  }
  for (int i = 0; i < s->nruns; i++)
    path_fmt(s->runs[i].dir, sizeof s->runs[i].dir, "%s/%s", s->dir, s->runs[i].name);
  check_runs(s);
  return s;
}

void sweep_free(Sweep *s) {
  if (!s) return;
  for (int i = 0; i < s->nruns; i++) {
    for (int k = 0; k < s->runs[i].nsets; k++) free(s->runs[i].sets[k]);
    free(s->runs[i].sets);
    free(s->runs[i].lines);
  }
  free(s->runs);
  free(s);
}
