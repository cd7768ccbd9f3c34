/* Model weights in HDF5, self-describing: a file holds everything needed to
 * rebuild the model and its tokenizer.
 *
 * Layout (format "bertrain-weights", version 1):
 *   /<hf name>   one float32 dataset per tensor, named by its Hugging Face
 *                state_dict key with the dots kept (e.g.
 *                "bert.encoder.layer.0.attention.self.query.weight"), shaped
 *                as in PyTorch (Linear weight = (out, in)); chunked with a
 *                fletcher32 checksum on every chunk. Tied tensors are stored
 *                once (see params.h).
 *   /vocab       uint8: the bytes of vocab.txt (UTF-8, each token followed by
 *                '\n', in id order), chunked with fletcher32 like the tensors.
 *   root attributes:
 *     format "bertrain-weights", format_version (int),
 *     architecture ("BertForPreTraining", "BertForSequenceClassification",
 *                   "BertForPreTraining+classifier" or "BertModel"),
 *     vocab_size, hidden, layers, heads, intermediate, max_position,
 *     type_vocab, num_labels, pretraining_heads, pad_token_id, lowercase (int),
 *     initializer_range, dropout, attention_dropout (double),
 *     vocab_hash (uint64, fnv1a64 of the tokens as Vocab.hash),
 *     config (string: the full resolved INI configuration).
 * Groups are reserved for what a training checkpoint adds on top (e.g.
 * /optimizer/<moment>/<hf name> written with weights_write_tensors, and
 * /train attributes); readers of the weights skip groups.
 *
 * Writers produce NAME.tmp and rename it into place after fsync, so a file
 * under its final name is always complete. Every error names the file (and
 * dataset) and ends the job. */
#ifndef BERTRAIN_WEIGHTS_H5_H
#define BERTRAIN_WEIGHTS_H5_H

#include <hdf5.h>

#include "config.h"
#include "params.h"
#include "vocab.h"

#define WEIGHTS_FORMAT "bertrain-weights"
#define WEIGHTS_FORMAT_VERSION 1

/* Writes params (laid out by t) with cfg and vocab to path. */
void weights_save(const char *path, const ParamTable *t, const float *params, const Config *cfg,
                  const Vocab *vocab);

/* Reads path into params. Checks the format version; the architecture
 * against t's shape, lowercase against cfg (if not NULL) and the vocabulary
 * against vocab (if not NULL), listing every mismatching key; and every
 * tensor's presence and shape. Only classifier.* may be absent: those
 * tensors are left as they are (initialise the buffer first). Datasets the
 * model does not use (e.g. cls.* when fine-tuning) are reported and skipped.
 * Returns the number of tensors left as they were. */
int weights_load(const char *path, const ParamTable *t, float *params, const Config *cfg,
                 const Vocab *vocab);

/* The shape a weights file holds (num_labels and pretraining included). */
void weights_read_shape(const char *path, ModelShape *s);
/* The vocabulary embedded in a weights file (checked against vocab_hash). */
Vocab *weights_read_vocab(const char *path);
/* Sets cfg's architecture keys (model.layers, hidden, heads, intermediate,
 * max_position, type_vocab) and model.lowercase to the file's. */
void weights_read_model_config(const char *path, Config *cfg);
/* The resolved configuration text the file was written with; free() it. */
char *weights_read_config_text(const char *path);

/* Building blocks for files that carry more than weights (checkpoints).
 * weights_create writes everything weights_save does into path.tmp and
 * returns it open, for the caller to add groups; weights_commit closes it
 * and moves it into place. */
typedef struct WeightsFile {
  hid_t file;
  char *path, *tmp;
} WeightsFile;
WeightsFile *weights_create(const char *path, const ParamTable *t, const float *params,
                            const Config *cfg, const Vocab *vocab);
void weights_commit(WeightsFile *w);
/* Opens a weights file read-only after checking its format and version;
 * close with H5Fclose. */
hid_t weights_open(const char *path);
/* One dataset per tensor of t under loc (the root or a group); where names
 * loc in errors, e.g. "ckpt.h5:/optimizer/m". */
void weights_write_tensors(hid_t loc, const char *where, const ParamTable *t, const float *buf);
/* Reads every tensor of t from loc, checking shapes; a missing classifier.*
 * tensor is left as it is when allow_missing_classifier, else an error.
 * Returns the number of tensors left as they were. */
int weights_read_tensors(hid_t loc, const char *where, const ParamTable *t, float *buf,
                         int allow_missing_classifier);

#endif
