/* Drives the coordinator the way pre-training will, for test_coordinator.sh:
 *   coord_driver CONFIG RUN_DIR BERTRAIN [--set KEY=VALUE]... [--baseline]
 *                [--milestone CKPT:EPOCH:WALL_S:STEP]... [--wait SECONDS]
 * Between milestones it "trains" for a while (coord_poll every 10 ms, 40
 * times), as the pre-training loop would call it every step. With
 * finetune.launcher = inline it runs each job itself ('bertrain finetune'
 * through system()) and reports the outcome with coord_job_done. --wait
 * polls until no job is outstanding (slurm) before coord_finish. Prints
 * the longest coord_milestone / coord_poll call and the most jobs seen
 * running at once, for the test to check that the launcher does not block
 * and keeps to finetune.max_parallel. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "config.h"
#include "coordinator.h"
#include "params.h"
#include "util.h"
#include "vocab.h"

static double g_max_call = 0;
static int g_max_running = 0;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void timed_poll(Coordinator *c) {
  double t = now_seconds();
  coord_poll(c);
  t = now_seconds() - t;
  if (t > g_max_call) g_max_call = t;
  if (coord_running(c) > g_max_running) g_max_running = coord_running(c);
}

static void train_a_while(Coordinator *c) {
  for (int i = 0; i < 40; i++) {
    timed_poll(c);
    sleep_ms(10);
  }
}

static void run_inline(Coordinator *c, const char *bertrain) {
  CoordJob j;
  while (coord_next_inline(c, &j)) {
    char cmd[PATH_MAX * 6];
    snprintf(cmd, sizeof cmd, "'%s' finetune --checkpoint '%s' --task %s --data '%s' --out '%s' "
             "--set run.seed=%ld --set run.threads=1 > '%s' 2>&1", bertrain, j.checkpoint, j.task,
             j.data, j.out, j.seed, j.log);
    int st = system(cmd);
    int rc = st == -1 ? 127 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    coord_job_done(c, &j, rc);
  }
}

static void baseline(Coordinator *c, const Config *cfg) {
  Vocab *v = vocab_load(cfg->model.vocab);
  ModelShape shape = model_shape(cfg, v->size, 0, 1);
  ParamTable *t = params_build(&shape);
  float *host = params_alloc_host(t);
  params_init(t, host, (uint64_t)cfg->run.seed, cfg->model.initializer_range, v->pad);
  coord_baseline(c, t, host, cfg, v);
  free(host);
  params_free(t);
  vocab_free(v);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: coord_driver CONFIG RUN_DIR BERTRAIN [options]\n");
    return 2;
  }
  Config cfg;
  config_defaults(&cfg);
  config_load_file(&cfg, argv[1]);
  for (int i = 4; i + 1 < argc; i++)
    if (strcmp(argv[i], "--set") == 0) config_set(&cfg, argv[++i]);
  Coordinator *c = coord_new(&cfg, argv[2], argv[3]);
  coord_poll_interval(c, 0.2);
  coord_set_command(c, argc - 1, argv + 1, 1);
  int inline_jobs = strcmp(cfg.finetune.launcher, "inline") == 0;
  double wait = 0;
  for (int i = 4; i < argc; i++) {
    if (strcmp(argv[i], "--set") == 0) {
      i++;
    } else if (strcmp(argv[i], "--baseline") == 0) {
      double t = now_seconds();
      baseline(c, &cfg);
      t = now_seconds() - t;
      if (t > g_max_call) g_max_call = t;
      if (inline_jobs) run_inline(c, argv[3]);
      train_a_while(c);
    } else if (strcmp(argv[i], "--milestone") == 0 && i + 1 < argc) {
      char path[PATH_MAX];
      int epoch;
      double wall;
      long step;
      if (sscanf(argv[++i], "%4095[^:]:%d:%lf:%ld", path, &epoch, &wall, &step) != 4)
        die("--milestone %s: expected CKPT:EPOCH:WALL_S:STEP", argv[i]);
      double t = now_seconds();
      coord_milestone(c, path, epoch, wall, step);
      t = now_seconds() - t;
      if (t > g_max_call) g_max_call = t;
      if (inline_jobs) run_inline(c, argv[3]);
      train_a_while(c);
    } else if (strcmp(argv[i], "--wait") == 0 && i + 1 < argc) {
      wait = atof(argv[++i]);
    } else {
      die("coord_driver: unknown argument %s", argv[i]);
    }
  }
  double until = now_seconds() + wait;
  while (coord_outstanding(c) && now_seconds() < until) {
    timed_poll(c);
    sleep_ms(50);
  }
  printf("outstanding_before_finish %d\n", coord_outstanding(c));
  coord_finish(c);
  printf("max_call_s %.3f\nmax_running %d\n", g_max_call, g_max_running);
  coord_free(c);
  config_free(&cfg);
  return 0;
}
