/* The subcommands of the bertrain binary, one file each (cmd_*.c). */
#ifndef BERTRAIN_COMMANDS_H
#define BERTRAIN_COMMANDS_H

#include "cli.h"

extern const Command CMD_TOKENIZE;
extern const Command CMD_VOCAB;
extern const Command CMD_PREP;
extern const Command CMD_GLUE;
extern const Command CMD_VERSION;
extern const Command CMD_PRETRAIN;
extern const Command CMD_FINETUNE;
extern const Command CMD_PREDICT;
extern const Command CMD_FORWARD;
extern const Command CMD_BENCH;
extern const Command CMD_REPORT;
extern const Command CMD_SWEEP;
extern const Command CMD_EXPORT;
extern const Command CMD_IMPORT;

#endif
