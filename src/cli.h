/* Command-line parsing shared by the subcommands: every command takes
 * --config FILE and --set section.key=value (repeatable) besides its own. */
#ifndef BERTRAIN_CLI_H
#define BERTRAIN_CLI_H

#include "config.h"

typedef enum {
  OPT_FLAG,   /* int *: set to 1 */
  OPT_STRING, /* const char **: the next argument */
  OPT_INT,    /* int *: the next argument, an integer */
  OPT_LIST    /* StrList *: one or more following arguments not starting with "--" */
} OptKind;

typedef struct StrList {
  const char **items;
  int count;
} StrList;

typedef struct CliOpt {
  const char *name; /* without the leading "--" */
  OptKind kind;
  void *target;
} CliOpt;

typedef struct Command {
  const char *name;
  const char *summary; /* one line for "bertrain --help" */
  const char *usage;   /* full text for "bertrain help NAME" */
  int (*run)(int argc, char **argv);
  int uses_mpi;        /* MPI is started before run() */
} Command;

/* Parses argv[1..] (argv[0] is the command name) into the options and cfg
 * (defaults, then --config, then each --set in order). --help prints the
 * command's usage and exits 0; anything unknown dies naming it. Returns
 * the index of the first positional argument ("--" ends options). */
int cli_parse(const Command *cmd, int argc, char **argv, const CliOpt *opts, int nopts,
              Config *cfg);
void strlist_free(StrList *l);

/* argv with the arguments that are neither an option nor an option's value
 * moved to the end (order kept otherwise), for commands whose options may
 * follow their positional arguments; opts must have no OPT_LIST. Free the
 * array (not its strings) with free(). */
char **cli_options_first(int argc, char **argv, const CliOpt *opts, int nopts);

#endif
