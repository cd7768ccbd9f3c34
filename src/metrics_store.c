#define _POSIX_C_SOURCE 200809L
#include "metrics_store.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <ini.h>

#include "config.h"
#include "util.h"

/* ---- CSV ---- */

#define MAX_FIELDS 64

/* Splits line at commas in place; returns the number of fields. */
static int split_csv(char *line, char **f, int max) {
  int n = 0;
  char *p = line;
  for (;;) {
    if (n == max) return max + 1;
    f[n++] = p;
    char *c = strchr(p, ',');
    if (!c) return n;
    *c = '\0';
    p = c + 1;
  }
}

typedef void (*RowFn)(void *ctx, const char *path, long line, char **f, int nf);

/* Calls fn for each complete line after the header; returns 0 when path
 * cannot be opened. *header gets the header line (free it). A last line
 * without its newline is still being written, and is left out. */
static int read_csv(const char *path, char **header, RowFn fn, void *ctx) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  long no = 0;
  *header = NULL;
  char *fields[MAX_FIELDS + 1];
  while ((len = getline(&line, &cap, f)) > 0) {
    no++;
    if (line[len - 1] != '\n') break;
    line[--len] = '\0';
    if (len && line[len - 1] == '\r') line[--len] = '\0';
    if (no == 1) {
      *header = xstrdup(line);
      continue;
    }
    if (!len) continue;
    int nf = split_csv(line, fields, MAX_FIELDS);
    fn(ctx, path, no, fields, nf);
  }
  if (ferror(f)) warn("%s: read error: %s", path, strerror(errno));
  free(line);
  fclose(f);
  if (!*header) *header = xstrdup("");
  return 1;
}

/* ---- pre-training curves ---- */

int pretrain_col(const Pretrain *p, const char *name) {
  for (int i = 0; i < p->ncols; i++)
    if (strcmp(p->cols[i], name) == 0) return i;
  return -1;
}

size_t pretrain_stride(const Pretrain *p) {
  return p->n <= STORE_PRETRAIN_ROWS ? 1 : (p->n + STORE_PRETRAIN_ROWS - 1) / STORE_PRETRAIN_ROWS;
}

int pretrain_row_kept(const Pretrain *p, size_t i) {
  return i % pretrain_stride(p) == 0 || i + 1 == p->n;
}

static void pretrain_row(void *ctx, const char *path, long line, char **f, int nf) {
  Pretrain *p = ctx;
  if (nf != p->ncols) {
    warn("%s:%ld: %d fields where the header has %d; row skipped", path, line, nf, p->ncols);
    return;
  }
  grow((void **)&p->v, &p->cap, (p->n + 1) * (size_t)p->ncols, sizeof *p->v);
  double *row = p->v + p->n * (size_t)p->ncols;
  for (int i = 0; i < nf; i++) {
    if (parse_double(f[i], &row[i]) != 0) {
      warn("%s:%ld: '%s' in column %s is not a number; row skipped", path, line, f[i], p->cols[i]);
      return;
    }
  }
  p->n++;
}

static void load_pretrain(RunData *d) {
  char path[PATH_MAX], *header;
  path_fmt(path, sizeof path, "%s/pretrain/metrics.csv", d->run_dir);
  FILE *probe = fopen(path, "r");
  if (!probe) return;
  /* The header decides the columns before any row is read. */
  char *line = NULL;
  size_t cap = 0;
  ssize_t len = getline(&line, &cap, probe);
  fclose(probe);
  if (len <= 0 || line[len - 1] != '\n') {
    free(line);
    return;
  }
  line[strcspn(line, "\r\n")] = '\0';
  d->pre.cols = split_list(line, &d->pre.ncols);
  free(line);
  if (pretrain_col(&d->pre, "step") < 0) {
    warn("%s: no 'step' column in the header; pre-training curves left out", path);
    free_list(d->pre.cols);
    d->pre.cols = NULL;
    d->pre.ncols = 0;
    return;
  }
  read_csv(path, &header, pretrain_row, &d->pre);
  free(header);
}

/* ---- one job ---- */

static int series_find(Job *j, const char *phase, const char *metric) {
  for (int i = 0; i < j->nseries; i++)
    if (strcmp(j->series[i].phase, phase) == 0 && strcmp(j->series[i].metric, metric) == 0)
      return i;
  j->series = xrealloc(j->series, (size_t)(j->nseries + 1) * sizeof *j->series);
  Series *s = &j->series[j->nseries];
  memset(s, 0, sizeof *s);
  s->phase = xstrdup(phase);
  s->metric = xstrdup(metric);
  return j->nseries++;
}

const Series *job_series(const Job *j, const char *phase, const char *metric) {
  for (int i = 0; i < j->nseries; i++)
    if (strcmp(j->series[i].phase, phase) == 0 && strcmp(j->series[i].metric, metric) == 0)
      return &j->series[i];
  return NULL;
}

static int name_ok(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_' || *s == '-'))
      return 0;
  return 1;
}

static void job_row(void *ctx, const char *path, long line, char **f, int nf) {
  Job *j = ctx;
  long step, epoch;
  double value;
  if (nf != 5) {
    warn("%s:%ld: %d fields, expected phase,step,epoch,metric,value; row skipped", path, line, nf);
    return;
  }
  if (!name_ok(f[0]) || !name_ok(f[3]) || parse_long(f[1], &step) != 0 ||
      parse_long(f[2], &epoch) != 0 || parse_double(f[4], &value) != 0) {
    warn("%s:%ld: malformed row; skipped", path, line);
    return;
  }
  int si = series_find(j, f[0], f[3]);
  Series *s = &j->series[si];
  size_t need = s->n + 1, cap = s->cap;
  grow((void **)&s->step, &cap, need, sizeof *s->step);
  cap = s->cap;
  grow((void **)&s->epoch, &cap, need, sizeof *s->epoch);
  grow((void **)&s->value, &s->cap, need, sizeof *s->value);
  s->step[s->n] = step;
  s->epoch[s->n] = (int)epoch;
  s->value[s->n] = value;
  grow((void **)&j->rows, &j->rows_cap, j->nrows + 1, sizeof *j->rows);
  j->rows[j->nrows++] = (RowRef){si, s->n};
  s->n++;
}

static double mtime(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  return (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
}

/* The task a job directory's config.ini names under [finetune]. */
static int task_from_config(const char *dir, char *task, size_t n) {
  char path[PATH_MAX], line[512];
  path_fmt(path, sizeof path, "%s/config.ini", dir);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  int in_ft = 0, found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '[') in_ft = strcmp(line, "[finetune]") == 0;
    else if (in_ft && strncmp(line, "task = ", 7) == 0) {
      path_fmt(task, n, "%s", line + 7);
      found = 1;
    }
  }
  fclose(f);
  return found;
}

static void job_state(Job *j, const char *abs) {
  char path[PATH_MAX], model[PATH_MAX];
  path_fmt(model, sizeof model, "%s/model.h5", abs);
  path_fmt(path, sizeof path, "%s/" JOB_STATUS_FILE, abs);
  int have_model = file_exists(model);
  if (!j->status.state[0]) {
    path_fmt(j->status.state, sizeof j->status.state, "%s", have_model ? "done" : "unknown");
  } else if (strcmp(j->status.state, "failed") == 0 && have_model && mtime(model) > mtime(path)) {
    path_fmt(j->status.state, sizeof j->status.state, "done");
    path_fmt(j->status.reason, sizeof j->status.reason, "re-run after failing with exit code %d",
             j->status.exit_code);
    j->status.exit_code = 0;
  }
}

static void job_finals(Job *j) {
  const Series *a = job_series(j, "validation", "epoch_accuracy");
  const Series *f = job_series(j, "validation", "f1");
  j->final_acc = a && a->n ? a->value[a->n - 1] : NAN;
  j->final_epoch = a && a->n ? a->epoch[a->n - 1] : 0;
  j->final_f1 = f && f->n ? f->value[f->n - 1] : NAN;
}

/* /train/<name> of a checkpoint as one double, if it is there. */
static int ckpt_value(hid_t f, const char *name, double *out) {
  char path[64];
  path_fmt(path, sizeof path, "/train/%s", name);
  if (H5Lexists(f, "/train", H5P_DEFAULT) <= 0 || H5Lexists(f, path, H5P_DEFAULT) <= 0) return 0;
  hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
  if (ds < 0) return 0;
  hid_t sp = H5Dget_space(ds);
  int ok = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 &&
           H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0;
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(ds);
  return ok;
}

/* The step and wall-clock time a pre-training checkpoint records (see
 * checkpoint.h), which win over milestone.txt. */
static void milestone_from_ckpt(Job *j, const char *run_dir, const char *ckpt) {
  char path[PATH_MAX];
  if (!ckpt[0]) return;
  path_from_run(path, sizeof path, run_dir, ckpt);
  if (!file_exists(path)) return;
  H5E_auto2_t fn;
  void *data;
  H5Eget_auto2(H5E_DEFAULT, &fn, &data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f >= 0) {
    double step, wall;
    if (ckpt_value(f, "step", &step)) j->global_step = (long)step;
    if (ckpt_value(f, "wall_seconds", &wall)) j->pretrain_wall_s = wall;
    H5Fclose(f);
  }
  H5Eset_auto2(H5E_DEFAULT, fn, data);
}

static int is_job_dir(const char *dir) {
  char p[PATH_MAX];
  path_fmt(p, sizeof p, "%s/" JOB_STATUS_FILE, dir);
  if (file_exists(p)) return 1;
  path_fmt(p, sizeof p, "%s/metrics.csv", dir);
  return file_exists(p);
}

static void add_job(RunData *d, const char *rel, const char *task_dir, int epoch,
                    const Milestone *m) {
  char abs[PATH_MAX], path[PATH_MAX], *header;
  path_fmt(abs, sizeof abs, "%s/%s", d->run_dir, rel);
  d->jobs = xrealloc(d->jobs, (size_t)(d->njobs + 1) * sizeof *d->jobs);
  Job *j = &d->jobs[d->njobs++];
  memset(j, 0, sizeof *j);
  path_fmt(j->dir, sizeof j->dir, "%s", rel);
  j->epoch = epoch;
  job_status_init(&j->status);
  job_status_read(abs, &j->status);
  if (j->status.task[0]) path_fmt(j->task, sizeof j->task, "%s", j->status.task);
  else if (!task_from_config(abs, j->task, sizeof j->task))
    path_fmt(j->task, sizeof j->task, "%s", task_dir ? task_dir : "unknown");
  j->global_step = m->global_step;
  j->pretrain_wall_s = m->pretrain_wall_s;
  milestone_from_ckpt(j, d->run_dir, m->checkpoint[0] ? m->checkpoint : j->status.checkpoint);
  path_fmt(path, sizeof path, "%s/metrics.csv", abs);
  if (read_csv(path, &header, job_row, j)) {
    if (strcmp(header, "phase,step,epoch,metric,value") != 0)
      warn("%s: unexpected header '%s' (expected phase,step,epoch,metric,value)", path, header);
    free(header);
  }
  job_state(j, abs);
  job_finals(j);
}

static int epoch_dir(const char *name, int *epoch) {
  long e;
  if (strncmp(name, "epoch-", 6) != 0 || parse_long(name + 6, &e) != 0 || e < 0 || e > 99999999)
    return 0;
  for (const char *p = name + 6; *p; p++)
    if (*p < '0' || *p > '9') return 0;
  *epoch = (int)e;
  return 1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the subdirectories of dir. */
static char **list_dirs(const char *dir, int *count) {
  *count = 0;
  DIR *dp = opendir(dir);
  if (!dp) return NULL;
  char **names = NULL;
  size_t cap = 0;
  struct dirent *e;
  while ((e = readdir(dp)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char p[PATH_MAX];
    struct stat st;
    path_fmt(p, sizeof p, "%s/%s", dir, e->d_name);
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    grow((void **)&names, &cap, (size_t)*count + 1, sizeof *names);
    names[(*count)++] = xstrdup(e->d_name);
  }
  closedir(dp);
  if (*count) qsort(names, (size_t)*count, sizeof *names, cmp_str);
  return names;
}

static void free_names(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

static void load_epoch(RunData *d, const char *name, int epoch) {
  char rel[PATH_MAX], abs[PATH_MAX];
  path_fmt(rel, sizeof rel, "finetune/%s", name);
  path_fmt(abs, sizeof abs, "%s/%s", d->run_dir, rel);
  Milestone m;
  if (!milestone_read(abs, &m)) m.epoch = epoch;
  if (m.epoch != epoch)
    warn("%s/" MILESTONE_FILE ": epoch %d does not match the directory name; using %d", abs,
         m.epoch, epoch);
  if (is_job_dir(abs)) add_job(d, rel, NULL, epoch, &m);
  int n;
  char **subs = list_dirs(abs, &n);
  for (int i = 0; i < n; i++) {
    char sub_rel[PATH_MAX], sub_abs[PATH_MAX];
    path_fmt(sub_rel, sizeof sub_rel, "%s/%s", rel, subs[i]);
    path_fmt(sub_abs, sizeof sub_abs, "%s/%s", d->run_dir, sub_rel);
    if (is_job_dir(sub_abs)) add_job(d, sub_rel, subs[i], epoch, &m);
  }
  free_names(subs, n);
}

static int cmp_job(const void *a, const void *b) {
  const Job *x = a, *y = b;
  int c = strcmp(x->task, y->task);
  if (c) return c;
  if (x->epoch != y->epoch) return x->epoch < y->epoch ? -1 : 1;
  return strcmp(x->dir, y->dir);
}

static void collect_tasks(RunData *d) {
  for (int i = 0; i < d->njobs; i++) {
    if (d->ntasks && strcmp(d->tasks[d->ntasks - 1], d->jobs[i].task) == 0) continue;
    d->tasks = xrealloc(d->tasks, (size_t)(d->ntasks + 1) * sizeof *d->tasks);
    d->tasks[d->ntasks++] = xstrdup(d->jobs[i].task);
  }
}

static int init_key(void *user, const char *section, const char *name, const char *value) {
  char **out = user;
  if (strcmp(section, "pretrain") == 0 && strcmp(name, "init_checkpoint") == 0) {
    free(*out);
    *out = xstrdup(value);
  }
  return 1;
}

/* Only this key is read, with inih alone: the report of a run made by
 * another version of bertrain must not fail on a key this one lacks. */
static void load_init_checkpoint(RunData *d) {
  char path[PATH_MAX];
  path_fmt(path, sizeof path, "%s/config.ini", d->run_dir);
  d->init_checkpoint = NULL;
  if (file_exists(path) && ini_parse(path, init_key, &d->init_checkpoint) < 0)
    warn("%s: cannot read it for pretrain.init_checkpoint", path);
  if (!d->init_checkpoint) d->init_checkpoint = xstrdup("");
  d->baseline_label = d->init_checkpoint[0] ? " (initial weights)" : " (random init)";
}

RunData *run_data_load(const char *run_dir) {
  RunData *d = xcalloc(1, sizeof *d);
  d->run_dir = xstrdup(run_dir);
  load_pretrain(d);
  load_init_checkpoint(d);
  char ft[PATH_MAX];
  path_fmt(ft, sizeof ft, "%s/finetune", run_dir);
  int n;
  char **names = list_dirs(ft, &n);
  for (int i = 0; i < n; i++) {
    int epoch;
    if (epoch_dir(names[i], &epoch)) load_epoch(d, names[i], epoch);
  }
  free_names(names, n);
  if (d->njobs) qsort(d->jobs, (size_t)d->njobs, sizeof *d->jobs, cmp_job);
  collect_tasks(d);
  return d;
}

void run_data_free(RunData *d) {
  if (!d) return;
  for (int i = 0; i < d->njobs; i++) {
    Job *j = &d->jobs[i];
    for (int k = 0; k < j->nseries; k++) {
      Series *s = &j->series[k];
      free(s->phase);
      free(s->metric);
      free(s->step);
      free(s->epoch);
      free(s->value);
    }
    free(j->series);
    free(j->rows);
  }
  free(d->jobs);
  for (int i = 0; i < d->ntasks; i++) free(d->tasks[i]);
  free(d->tasks);
  free_list(d->pre.cols);
  free(d->pre.v);
  free(d->run_dir);
  free(d->init_checkpoint);
  free(d);
}

/* ---- metrics.csv ---- */

static void csv_pretrain(FILE *f, const Pretrain *p) {
  int cs = pretrain_col(p, "step"), ce = pretrain_col(p, "epoch"), cw = pretrain_col(p, "wall_s");
  char step[32], epoch[32], val[32];
  for (size_t i = 0; i < p->n; i++) {
    if (!pretrain_row_kept(p, i)) continue;
    const double *row = p->v + i * (size_t)p->ncols;
    format_double(step, sizeof step, row[cs]);
    if (ce >= 0) format_double(epoch, sizeof epoch, row[ce]);
    else epoch[0] = '\0';
    for (int c = 0; c < p->ncols; c++) {
      if (c == cs || c == ce || c == cw) continue;
      format_double(val, sizeof val, row[c]);
      fprintf(f, ",,pretrain,%s,%s,%s,%s\n", step, epoch, p->cols[c], val);
    }
  }
}

static void csv_job(FILE *f, const Job *j) {
  char val[32];
  if (j->global_step >= 0)
    fprintf(f, "%s,%d,milestone,%ld,%d,global_step,%ld\n", j->task, j->epoch, j->global_step,
            j->epoch, j->global_step);
  if (j->pretrain_wall_s >= 0) {
    format_double(val, sizeof val, j->pretrain_wall_s);
    fprintf(f, "%s,%d,milestone,%ld,%d,pretrain_wall_s,%s\n", j->task, j->epoch,
            j->global_step >= 0 ? j->global_step : 0, j->epoch, val);
  }
  for (size_t r = 0; r < j->nrows; r++) {
    const Series *s = &j->series[j->rows[r].series];
    size_t i = j->rows[r].index;
    format_double(val, sizeof val, s->value[i]);
    fprintf(f, "%s,%d,%s,%lld,%d,%s,%s\n", j->task, j->epoch, s->phase, (long long)s->step[i],
            s->epoch[i], s->metric, val);
  }
}

static void write_csv(const RunData *d) {
  char *text = NULL, path[PATH_MAX];
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) die("out of memory writing metrics.csv");
  fputs("task,pretrained_epoch,phase,step,epoch,metric,value\n", f);
  csv_pretrain(f, &d->pre);
  for (int i = 0; i < d->njobs; i++) csv_job(f, &d->jobs[i]);
  fclose(f);
  path_fmt(path, sizeof path, "%s/metrics.csv", d->run_dir);
  write_file_atomic(path, text, len);
  free(text);
}

/* ---- metrics.h5 ---- */

typedef struct H5Out {
  hid_t file, gcpl, dcpl;
  const char *path;
} H5Out;

static hid_t ck(const H5Out *o, hid_t id, const char *what) {
  if (id < 0) die("%s: %s failed", o->path, what);
  return id;
}

static void ckerr(const H5Out *o, herr_t e, const char *what) {
  if (e < 0) die("%s: %s failed", o->path, what);
}

static hid_t group(const H5Out *o, hid_t loc, const char *name) {
  hid_t g = H5Gcreate2(loc, name, H5P_DEFAULT, o->gcpl, H5P_DEFAULT);
  if (g < 0) die("%s: cannot create group %s", o->path, name);
  return g;
}

static void attr(const H5Out *o, hid_t loc, const char *name, hid_t ftype, hid_t mtype,
                 const void *v) {
  hid_t sp = ck(o, H5Screate(H5S_SCALAR), "H5Screate");
  hid_t a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0) die("%s: cannot create attribute %s", o->path, name);
  ckerr(o, H5Awrite(a, mtype, v), "H5Awrite");
  ckerr(o, H5Aclose(a), "H5Aclose");
  ckerr(o, H5Sclose(sp), "H5Sclose");
}

static void attr_str(const H5Out *o, hid_t loc, const char *name, const char *s) {
  hid_t t = ck(o, H5Tcopy(H5T_C_S1), "H5Tcopy");
  ckerr(o, H5Tset_size(t, strlen(s) + 1), "H5Tset_size");
  ckerr(o, H5Tset_cset(t, H5T_CSET_UTF8), "H5Tset_cset");
  attr(o, loc, name, t, t, s);
  ckerr(o, H5Tclose(t), "H5Tclose");
}

static void attr_i64(const H5Out *o, hid_t loc, const char *name, int64_t v) {
  attr(o, loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static void attr_f64(const H5Out *o, hid_t loc, const char *name, double v) {
  attr(o, loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

static void dataset(const H5Out *o, hid_t loc, const char *name, hid_t ftype, hid_t mtype,
                    size_t n, const void *data) {
  hsize_t dims[1] = {n};
  hid_t sp = ck(o, H5Screate_simple(1, dims, NULL), "H5Screate_simple");
  hid_t ds = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, o->dcpl, H5P_DEFAULT);
  if (ds < 0) die("%s: cannot create dataset %s", o->path, name);
  if (n) ckerr(o, H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "H5Dwrite");
  ckerr(o, H5Dclose(ds), "H5Dclose");
  ckerr(o, H5Sclose(sp), "H5Sclose");
}

static void h5_pretrain(const H5Out *o, const Pretrain *p) {
  hid_t g = group(o, o->file, "pretrain");
  double *col = xmalloc((p->n ? p->n : 1) * sizeof *col);
  int64_t *icol = xmalloc((p->n ? p->n : 1) * sizeof *icol);
  for (int c = 0; c < p->ncols; c++) {
    for (size_t i = 0; i < p->n; i++) col[i] = p->v[i * (size_t)p->ncols + c];
    if (strcmp(p->cols[c], "step") == 0) {
      for (size_t i = 0; i < p->n; i++) icol[i] = (int64_t)col[i];
      dataset(o, g, p->cols[c], H5T_STD_I64LE, H5T_NATIVE_INT64, p->n, icol);
    } else {
      dataset(o, g, p->cols[c], H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, p->n, col);
    }
  }
  free(col);
  free(icol);
  ckerr(o, H5Gclose(g), "H5Gclose");
}

typedef struct Point {
  int64_t step;
  int32_t epoch;
  double value;
} Point;

static void h5_series(const H5Out *o, hid_t loc, const Series *s) {
  hid_t mt = ck(o, H5Tcreate(H5T_COMPOUND, sizeof(Point)), "H5Tcreate");
  ckerr(o, H5Tinsert(mt, "step", HOFFSET(Point, step), H5T_NATIVE_INT64), "H5Tinsert");
  ckerr(o, H5Tinsert(mt, "epoch", HOFFSET(Point, epoch), H5T_NATIVE_INT32), "H5Tinsert");
  ckerr(o, H5Tinsert(mt, "value", HOFFSET(Point, value), H5T_NATIVE_DOUBLE), "H5Tinsert");
  hid_t ft = ck(o, H5Tcreate(H5T_COMPOUND, 20), "H5Tcreate");
  ckerr(o, H5Tinsert(ft, "step", 0, H5T_STD_I64LE), "H5Tinsert");
  ckerr(o, H5Tinsert(ft, "epoch", 8, H5T_STD_I32LE), "H5Tinsert");
  ckerr(o, H5Tinsert(ft, "value", 12, H5T_IEEE_F64LE), "H5Tinsert");
  Point *pts = xcalloc(s->n ? s->n : 1, sizeof *pts);
  for (size_t i = 0; i < s->n; i++) pts[i] = (Point){s->step[i], s->epoch[i], s->value[i]};
  dataset(o, loc, s->metric, ft, mt, s->n, pts);
  free(pts);
  ckerr(o, H5Tclose(ft), "H5Tclose");
  ckerr(o, H5Tclose(mt), "H5Tclose");
}

static void h5_job(const H5Out *o, hid_t task_group, const Job *j) {
  char name[32];
  path_fmt(name, sizeof name, "epoch-%04d", j->epoch);
  hid_t g = group(o, task_group, name);
  attr_str(o, g, "task", j->task);
  attr_i64(o, g, "pretrained_epoch", j->epoch);
  attr_i64(o, g, "global_step", j->global_step);
  attr_f64(o, g, "pretrain_wall_s", j->pretrain_wall_s >= 0 ? j->pretrain_wall_s : NAN);
  attr_str(o, g, "status", j->status.state);
  attr_i64(o, g, "exit_code", j->status.exit_code);
  attr_str(o, g, "log", j->status.log);
  attr_str(o, g, "checkpoint", j->status.checkpoint);
  attr_str(o, g, "job_id", j->status.job_id);
  attr_str(o, g, "reason", j->status.reason);
  attr_str(o, g, "dir", j->dir);
  attr_f64(o, g, "final_epoch_accuracy", j->final_acc);
  attr_f64(o, g, "final_f1", j->final_f1);
  /* Phases in the order they first appear. */
  for (int i = 0; i < j->nseries; i++) {
    int first = 1;
    for (int k = 0; k < i; k++) first &= strcmp(j->series[k].phase, j->series[i].phase) != 0;
    if (!first) continue;
    hid_t pg = group(o, g, j->series[i].phase);
    for (int k = i; k < j->nseries; k++)
      if (strcmp(j->series[k].phase, j->series[i].phase) == 0) h5_series(o, pg, &j->series[k]);
    ckerr(o, H5Gclose(pg), "H5Gclose");
  }
  ckerr(o, H5Gclose(g), "H5Gclose");
}

static void write_h5(const RunData *d) {
  char path[PATH_MAX], tmp[PATH_MAX + 32];
  path_fmt(path, sizeof path, "%s/metrics.h5", d->run_dir);
  path_fmt(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
  H5Out o = {-1, -1, -1, tmp};
  tmpfile_register(tmp);
  /* No modification times in the file: the same inputs give the same bytes. */
  o.gcpl = ck(&o, H5Pcreate(H5P_GROUP_CREATE), "H5Pcreate");
  ckerr(&o, H5Pset_obj_track_times(o.gcpl, 0), "H5Pset_obj_track_times");
  o.dcpl = ck(&o, H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate");
  ckerr(&o, H5Pset_obj_track_times(o.dcpl, 0), "H5Pset_obj_track_times");
  hid_t fcpl = ck(&o, H5Pcreate(H5P_FILE_CREATE), "H5Pcreate");
  ckerr(&o, H5Pset_obj_track_times(fcpl, 0), "H5Pset_obj_track_times");
  o.file = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
  if (o.file < 0) die("cannot create %s", tmp);
  attr_str(&o, o.file, "format", "bertrain-metrics");
  attr_i64(&o, o.file, "format_version", 1);
  if (d->pre.ncols) h5_pretrain(&o, &d->pre);
  hid_t ft = group(&o, o.file, "finetune");
  for (int t = 0; t < d->ntasks; t++) {
    hid_t tg = group(&o, ft, d->tasks[t]);
    for (int i = 0; i < d->njobs; i++) {
      const Job *j = &d->jobs[i];
      if (strcmp(j->task, d->tasks[t]) != 0) continue;
      /* Two directories claiming the same task and epoch: the first wins. */
      if (i > 0 && strcmp(d->jobs[i - 1].task, j->task) == 0 && d->jobs[i - 1].epoch == j->epoch) {
        warn("%s/%s: a second job for %s at epoch %d; left out of metrics.h5", d->run_dir, j->dir,
             j->task, j->epoch);
        continue;
      }
      h5_job(&o, tg, j);
    }
    ckerr(&o, H5Gclose(tg), "H5Gclose");
  }
  ckerr(&o, H5Gclose(ft), "H5Gclose");
  ckerr(&o, H5Pclose(fcpl), "H5Pclose");
  ckerr(&o, H5Pclose(o.gcpl), "H5Pclose");
  ckerr(&o, H5Pclose(o.dcpl), "H5Pclose");
  ckerr(&o, H5Fclose(o.file), "H5Fclose");
  commit_file(tmp, path);
}

void metrics_store_write(const RunData *d) {
  write_h5(d);
  write_csv(d);
}
