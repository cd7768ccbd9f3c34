/* PLACEHOLDER: being written. */
#include "commands.h"
#include "util.h"
static int run(int argc, char **argv) { (void)argc; (void)argv; die("glue: not written yet"); }
const Command CMD_GLUE = {"glue", "(not written yet)", "usage: bertrain glue\n", run, 0};
