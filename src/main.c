/* bertrain: BERT pre-training and fine-tuning. This file only dispatches to
 * the subcommands and prints the help. */
#include <stdio.h>
#include <string.h>

#include "comm.h"
#include "commands.h"
#include "config.h"
#include "util.h"

static const Command *const COMMANDS[] = {
  &CMD_VOCAB, &CMD_PREP, &CMD_TOKENIZE, &CMD_GLUE, &CMD_PRETRAIN, &CMD_FINETUNE, &CMD_PREDICT,
  &CMD_FORWARD, &CMD_EXPORT, &CMD_IMPORT, &CMD_BENCH, &CMD_REPORT, &CMD_SWEEP, &CMD_VERSION,
};

static void print_overview(FILE *f) {
  fputs("bertrain: BERT pre-training and fine-tuning, from text corpus to GLUE predictions\n\n"
        "usage: bertrain COMMAND [options]   (or: mpirun -np N bertrain prep ...)\n\n"
        "commands:\n", f);
  for (size_t i = 0; i < ARRAY_LEN(COMMANDS); i++)
    fprintf(f, "  %-10s %s\n", COMMANDS[i]->name, COMMANDS[i]->summary);
  fputs("  help       'bertrain help COMMAND' for a command, 'bertrain help config' for config keys\n\n"
        "Every command takes --config FILE.ini and --set section.key=value (repeatable).\n", f);
}

static const Command *find_command(const char *name) {
  for (size_t i = 0; i < ARRAY_LEN(COMMANDS); i++)
    if (strcmp(COMMANDS[i]->name, name) == 0) return COMMANDS[i];
  return NULL;
}

static int run_help(int argc, char **argv) {
  if (argc < 3) {
    print_overview(stdout);
    return 0;
  }
  if (strcmp(argv[2], "config") == 0) {
    config_print_help(stdout);
    return 0;
  }
  const Command *c = find_command(argv[2]);
  if (!c) die("no help for '%s': not a command (try 'bertrain --help')", argv[2]);
  fputs(c->usage, stdout);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_overview(stderr);
    return 2;
  }
  const char *name = argv[1];
  if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0)
    return run_help(argc, argv);
  if (strcmp(name, "--version") == 0) name = "version";
  const Command *c = find_command(name);
  if (!c) die("unknown command '%s' (try 'bertrain --help')", name);
  if (c->uses_mpi) mpi_start(&argc, &argv);
  int rc = c->run(argc - 1, argv + 1);
  if (c->uses_mpi) {
    comm_stop();
    mpi_stop();
  }
  return rc;
}
