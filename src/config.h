/* The run configuration: INI sections read with libinih, every key with a
 * default and a one-line description, overridable with --set. Adding a key
 * means adding a field here and a row in config.c's table. */
#ifndef BERTRAIN_CONFIG_H
#define BERTRAIN_CONFIG_H

#include <stdio.h>

typedef struct Config {
  struct {
    char *vocab;        /* vocab.txt */
    int lowercase;      /* do_lower_case: lower-case and strip accents */
    int max_word_chars; /* longer words become [UNK] */
    int layers;         /* transformer layers (num_hidden_layers) */
    int hidden;         /* hidden size */
    int heads;          /* attention heads; hidden % heads == 0 */
    int intermediate;   /* feed-forward size */
    int max_position;   /* max_position_embeddings */
    int type_vocab;     /* type_vocab_size (segments) */
    double dropout;           /* hidden_dropout_prob */
    double attention_dropout; /* attention_probs_dropout_prob */
    double initializer_range; /* std of the truncated-normal initialisation */
  } model;
  struct {
    char *corpus;       /* comma-separated corpus files */
    char *dir;          /* where prep writes shards */
    int shards;
    int seq_length;
    int max_predictions;
    double masked_lm_prob;
    double short_seq_prob;
    int dupe_factor;
    int whole_word_mask;
    long seed;
    int vocab_size;
    int vocab_min_frequency;
    int cache_mb;       /* chunk cache for reading shards in training */
  } data;
  struct {
    int epochs;           /* epochs of steps_per_epoch optimizer steps */
    int steps_per_epoch;  /* optimizer steps per epoch; 0 = one pass over the data */
    int milestone_epochs; /* epochs between kept checkpoints epoch-NNNN.h5 */
    int skip_nonfinite;   /* skip (and count) steps with a non-finite loss or gradient */
    int batch_size;       /* sequences per optimizer step (global) */
    int micro_batch;      /* sequences per forward/backward pass */
    double lr;            /* peak learning rate */
    double warmup_proportion; /* fraction of steps with linear warm-up */
    char *optimizer;      /* adamw | lamb */
    double weight_decay;
    double adam_beta1, adam_beta2, adam_epsilon; /* AdamW's and LAMB's moments */
    double max_grad_norm; /* clip the global gradient norm; 0 = no clipping */
    double bucket_mb;     /* > 0: all-reduce gradient buckets during the backward */
    int log_every;        /* steps between progress lines */
    char *init_checkpoint; /* weights a new run starts from; "" = random */
  } pretrain;
  struct {
    int every_steps;      /* latest.h5 every this many steps; 0 = never */
    double every_minutes; /* latest.h5 every this many minutes; 0 = never */
  } checkpoint;
  struct {
    char *task;
    char *data;
    int epochs;
    double lr;
    int batch_size;
    double warmup_proportion;
    int seq_length;
    double weight_decay;
    double adam_beta1, adam_beta2, adam_epsilon;
    double max_grad_norm;
    char *launcher;       /* none | inline | process | slurm: fine-tuning at milestones */
    char *tasks;          /* TASK or TASK:DIR, comma-separated; "" = task with data */
    char *command;        /* command template of the process launcher */
    int max_parallel;     /* process launcher: jobs running at once */
    int baseline;         /* also fine-tune the initial weights (epoch 0) */
    char *sbatch;         /* job script of the slurm launcher */
  } finetune;
  struct {
    long seed;          /* initialisation, data order, dropout masks */
    char *dir;          /* run directory; "" = runs/<config name> */
    int threads;        /* CPU threads; 0 = all cores */
    char *device;
    int tf32;             /* GPUs: TF32 matrix products */
    char *precision;      /* fp32 | bf16 */       /* cpu */
  } run;
} Config;

/* Source of the config being read, for error messages. */
typedef struct ConfigSource {
  const char *file; /* NULL for --set */
  int line;
  const char *set;  /* the --set argument */
} ConfigSource;

void config_defaults(Config *c);
void config_free(Config *c);
/* dst = a deep copy of src (free both with config_free). */
void config_copy(Config *dst, const Config *src);
/* Reads an INI file over the current values; dies with FILE:LINE on errors. */
void config_load_file(Config *c, const char *path);
/* Applies "section.key=value"; dies naming the --set argument on errors. */
void config_set(Config *c, const char *assignment);
/* Sets section.name = value read from FILE:LINE (errors name them). */
void config_set_at(Config *c, const char *file, int line, const char *section, const char *name,
                   const char *value);
/* Writes the resolved config as INI text that config_load_file accepts. */
void config_write(const Config *c, FILE *f);
/* Writes DIR/config.ini atomically. */
void config_write_to_dir(const Config *c, const char *dir);
/* "bertrain help config": every section and key with default and description. */
void config_print_help(FILE *f);

/* Splits a comma-separated list (e.g. data.corpus) into a NULL-terminated
 * array of trimmed, non-empty items; free with free_list(). */
char **split_list(const char *s, int *count);
void free_list(char **items);

#endif
