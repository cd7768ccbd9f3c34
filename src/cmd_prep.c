/* PLACEHOLDER: being written. */
#include "commands.h"
#include "util.h"
static int run(int argc, char **argv) { (void)argc; (void)argv; die("prep: not written yet"); }
const Command CMD_PREP = {"prep", "(not written yet)", "usage: bertrain prep\n", run, 0};
