/* PLACEHOLDER: being written. */
#include "commands.h"
#include "util.h"
static int run(int argc, char **argv) { (void)argc; (void)argv; die("tokenize: not written yet"); }
const Command CMD_TOKENIZE = {"tokenize", "(not written yet)", "usage: bertrain tokenize\n", run, 0};
