/* bertrain sweep FILE: the runs of a sweep file (sweep.h), and the
 * arguments of one of them for the job scripts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "sweep.h"
#include "util.h"

static void list_runs(const Sweep *s) {
  printf("sweep %s: base config %s, %d run%s in %s/\n", s->path, s->base, s->nruns,
         s->nruns == 1 ? "" : "s", s->dir);
  for (int i = 0; i < s->nruns; i++) {
    printf("  %2d  %-20s %s  ", i, s->runs[i].name, s->runs[i].dir);
    for (int k = 0; k < s->runs[i].nsets; k++) printf("%s%s", k ? " " : "", s->runs[i].sets[k]);
    printf("%s\n", s->runs[i].nsets ? "" : "(the base as it is)");
  }
  printf("\nSlurm, one array task per run:  sbatch --array=0-%d slurm/sweep.sbatch %s\n",
         s->nruns - 1, s->path);
  printf("One run on a workstation:        mapfile -t A < <(bertrain sweep %s --args 0)\n"
         "                                 scripts/run-local.sh -n 2 \"${A[@]}\"\n", s->path);
  printf("The sweep's report:              bertrain report --sweep %s\n", s->dir);
}

static void print_args(const Sweep *s, int index) {
  if (index < 0 || index >= s->nruns)
    die("sweep %s: no run %d (it has runs 0 to %d)", s->path, index, s->nruns - 1);
  const SweepRun *r = &s->runs[index];
  printf("%s\n", s->base);
  for (int k = 0; k < r->nsets; k++) printf("--set\n%s\n", r->sets[k]);
  printf("--set\nrun.dir=%s\n", r->dir);
}

static int run(int argc, char **argv) {
  int index = -1, dir_only = 0;
  CliOpt opts[] = {{"args", OPT_INT, &index}, {"dir", OPT_FLAG, &dir_only}};
  Config cfg;
  char **args = cli_options_first(argc, argv, opts, (int)ARRAY_LEN(opts));
  int first = cli_parse(&CMD_SWEEP, argc, args, opts, (int)ARRAY_LEN(opts), &cfg);
  config_free(&cfg);
  if (first >= argc) die("sweep: no sweep file given (usage: bertrain sweep FILE [--args INDEX])");
  if (first + 1 < argc) die("sweep: one sweep file expected, got '%s' too", args[first + 1]);
  Sweep *s = sweep_load(args[first]);
  free(args);
  if (dir_only) printf("%s\n", s->dir);
  else if (index >= 0) print_args(s, index);
  else list_runs(s);
  sweep_free(s);
  return 0;
}

const Command CMD_SWEEP = {
  "sweep", "list a sweep file's runs, or give one run's arguments for the job scripts",
  "usage: bertrain sweep FILE [--args INDEX | --dir]\n\n"
  "A sweep file (configs/sweeps/*.ini) names a base config and a list of runs,\n"
  "each a [NAME] section of overrides (section.key = value):\n\n"
  "  [sweep]\n"
  "  base = configs/bert-mini-mrpc.ini   ; the config every run starts from\n"
  "  dir = runs/sweeps/depth             ; default runs/sweeps/<file's base name>\n"
  "  [L3-b128]\n"
  "  model.layers = 3\n"
  "  pretrain.batch_size = 128\n\n"
  "Each run is a whole 'bertrain pretrain' run (with its milestone fine-tuning)\n"
  "in DIR/NAME; runs are numbered from 0 in file order, the index of the Slurm\n"
  "job array that slurm/sweep.sbatch runs. Every override is checked against\n"
  "the base config here. 'bertrain report --sweep DIR' compares the runs.\n\n"
  "Without options it lists the runs and the commands that run them. Nothing\n"
  "is written.\n\n"
  "options:\n"
  "  --args INDEX  print the arguments of run INDEX, one per line: the base\n"
  "                config, then '--set' 'KEY=VALUE' pairs, the last one\n"
  "                run.dir=DIR/NAME; what slurm/pretrain.sbatch and\n"
  "                scripts/run-local.sh take, and 'bertrain pretrain --config'\n"
  "                followed by them\n"
  "  --dir         print the sweep directory\n",
  run, 0,
};
