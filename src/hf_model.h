/* Hugging Face model directories for BERT, both ways: config.json,
 * model.safetensors, vocab.txt and tokenizer_config.json, as transformers'
 * save_pretrained writes them, so BertForPreTraining.from_pretrained (or
 * BertForSequenceClassification, BertModel, BertTokenizer) loads what
 * bertrain trained, and bertrain fine-tunes a published BERT.
 *
 * The tensors keep their names: bertrain's are Hugging Face's (params.h).
 * What changes on the way: the tied MLM decoder tensors, stored once by
 * bertrain, are written as copies and read back as checks; an import also
 * accepts Google's LayerNorm names (gamma, beta) and BertModel's names
 * without the "bert." prefix, and F16 and BF16 tensors (widened). */
#ifndef BERTRAIN_HF_MODEL_H
#define BERTRAIN_HF_MODEL_H

#include "config.h"

/* Writes the weights file ckpt (weights, a checkpoint or a fine-tuned
 * model) as a Hugging Face directory dir, created if needed. cfg is the
 * file's configuration (train_config_from_checkpoint): dropout and the
 * initialiser's range go into config.json, finetune.task too when there is
 * a classifier. */
void hf_export(const char *ckpt, const Config *cfg, const char *dir);

/* Reads the Hugging Face directory dir into a bertrain weights file out.
 * cfg starts as the user's configuration; the model section is set from
 * dir's config.json and tokenizer_config.json (model.vocab = dir/vocab.txt),
 * and is what out records. Dies naming the file and key or tensor when dir
 * holds something bertrain's BERT cannot represent. */
void hf_import(const char *dir, Config *cfg, const char *out);

#endif
