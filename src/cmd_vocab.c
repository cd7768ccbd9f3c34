/* PLACEHOLDER: being written. */
#include "commands.h"
#include "util.h"
static int run(int argc, char **argv) { (void)argc; (void)argv; die("vocab: not written yet"); }
const Command CMD_VOCAB = {"vocab", "(not written yet)", "usage: bertrain vocab\n", run, 0};
