#define _POSIX_C_SOURCE 200809L
#include "hf_model.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "params.h"
#include "run_files.h"
#include "safetensors.h"
#include "train_util.h"
#include "util.h"
#include "weights_h5.h"

#define WORD_EMB "bert.embeddings.word_embeddings.weight"
#define MLM_BIAS "cls.predictions.bias"
#define DECODER_W "cls.predictions.decoder.weight"
#define DECODER_B "cls.predictions.decoder.bias"

/* ---- JSON files ---- */

static void write_json(const char *path, json_t *j) {
  char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
  if (!text) die("%s: cannot format the JSON", path);
  size_t n = strlen(text);
  text = xrealloc(text, n + 2);
  text[n] = '\n';
  text[n + 1] = '\0';
  write_file_atomic(path, text, n + 1);
  free(text);
}

static json_t *load_json(const char *path) {
  json_error_t err;
  json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
  if (!j) die("%s: not valid JSON (line %d, column %d): %s", path, err.line, err.column, err.text);
  if (!json_is_object(j)) die("%s: not a JSON object", path);
  return j;
}

/* dflt < 0: the key is required. */
static int json_int_key(const char *path, json_t *o, const char *key, int dflt) {
  json_t *v = json_object_get(o, key);
  if (!v && dflt >= 0) return dflt;
  if (!v) die("%s: no \"%s\"", path, key);
  if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX)
    die("%s: \"%s\" should be a non-negative integer", path, key);
  return (int)json_integer_value(v);
}

static double json_real_key(const char *path, json_t *o, const char *key, double dflt) {
  json_t *v = json_object_get(o, key);
  if (!v) return dflt;
  if (!json_is_number(v)) die("%s: \"%s\" should be a number", path, key);
  return json_number_value(v);
}

static const char *json_str_key(const char *path, json_t *o, const char *key, const char *dflt) {
  json_t *v = json_object_get(o, key);
  if (!v || json_is_null(v)) return dflt;
  if (!json_is_string(v)) die("%s: \"%s\" should be a string", path, key);
  return json_string_value(v);
}

/* ---- export ---- */

static const char *hf_architecture(const ModelShape *s) {
  if (s->num_labels > 0) return "BertForSequenceClassification";
  return s->pretraining ? "BertForPreTraining" : "BertModel";
}

static void set_int(json_t *o, const char *k, long v) { json_object_set_new(o, k, json_integer(v)); }
static void set_real(json_t *o, const char *k, double v) { json_object_set_new(o, k, json_real(v)); }
static void set_str(json_t *o, const char *k, const char *v) {
  json_object_set_new(o, k, json_string(v));
}

/* The labels of a classifier, as transformers names them by default. */
static void set_labels(json_t *o, const ModelShape *s, const Config *cfg) {
  json_t *id2label = json_object(), *label2id = json_object();
  for (int i = 0; i < s->num_labels; i++) {
    char id[16], label[32];
    snprintf(id, sizeof id, "%d", i);
    snprintf(label, sizeof label, "LABEL_%d", i);
    set_str(id2label, id, label);
    set_int(label2id, label, i);
  }
  json_object_set_new(o, "id2label", id2label);
  json_object_set_new(o, "label2id", label2id);
  set_str(o, "problem_type", "single_label_classification");
  set_str(o, "finetuning_task", cfg->finetune.task);
}

static void write_config(const char *path, const ModelShape *s, const Config *cfg, int pad_id) {
  json_t *o = json_object();
  json_t *arch = json_array();
  json_array_append_new(arch, json_string(hf_architecture(s)));
  json_object_set_new(o, "architectures", arch);
  set_str(o, "model_type", "bert");
  set_int(o, "vocab_size", s->vocab);
  set_int(o, "hidden_size", s->hidden);
  set_int(o, "num_hidden_layers", s->layers);
  set_int(o, "num_attention_heads", s->heads);
  set_int(o, "intermediate_size", s->intermediate);
  set_str(o, "hidden_act", "gelu");
  set_real(o, "hidden_dropout_prob", cfg->model.dropout);
  set_real(o, "attention_probs_dropout_prob", cfg->model.attention_dropout);
  set_int(o, "max_position_embeddings", s->max_position);
  set_int(o, "type_vocab_size", s->type_vocab);
  set_real(o, "initializer_range", cfg->model.initializer_range);
  set_real(o, "layer_norm_eps", 1e-12); /* BERT_LN_EPS */
  set_int(o, "pad_token_id", pad_id < 0 ? 0 : pad_id);
  set_str(o, "position_embedding_type", "absolute");
  set_str(o, "torch_dtype", "float32");
  if (s->num_labels > 0) set_labels(o, s, cfg);
  write_json(path, o);
  json_decref(o);
}

static void write_tokenizer_config(const char *path, const ModelShape *s, const Config *cfg) {
  json_t *o = json_object();
  set_str(o, "tokenizer_class", "BertTokenizer");
  json_object_set_new(o, "do_lower_case", json_boolean(cfg->model.lowercase));
  /* null: accents are stripped exactly when lower-casing, as bertrain does */
  json_object_set_new(o, "strip_accents", json_null());
  json_object_set_new(o, "tokenize_chinese_chars", json_true());
  set_int(o, "model_max_length", s->max_position);
  static const char *SPECIAL[][2] = {{"unk_token", "[UNK]"}, {"sep_token", "[SEP]"},
                                     {"pad_token", "[PAD]"}, {"cls_token", "[CLS]"},
                                     {"mask_token", "[MASK]"}};
  for (size_t i = 0; i < ARRAY_LEN(SPECIAL); i++) set_str(o, SPECIAL[i][0], SPECIAL[i][1]);
  write_json(path, o);
  json_decref(o);
}

static void write_vocab_txt(const char *path, const Vocab *v) {
  size_t n;
  char *text = vocab_join(v->tokens, v->size, &n);
  write_file_atomic(path, text, n);
  free(text);
}

static StTensor tensor_of(const Param *p, const float *host, const char *name) {
  StTensor s = {name ? name : p->name, p->ndim, {p->shape[0], p->shape[1]}, host + p->offset};
  return s;
}

static void write_tensors(const char *path, const ParamTable *t, const float *host) {
  StTensor *st = xcalloc((size_t)t->n + 2, sizeof *st);
  int n = 0;
  for (int i = 0; i < t->n; i++) st[n++] = tensor_of(&t->p[i], host, NULL);
  if (t->shape.pretraining) {
    /* Stored once by bertrain, tied by transformers on loading; written as
     * copies so that a reader without that rule has the whole model too. */
    st[n++] = tensor_of(params_get(t, WORD_EMB), host, DECODER_W);
    st[n++] = tensor_of(params_get(t, MLM_BIAS), host, DECODER_B);
  }
  st_write_f32(path, st, n);
  free(st);
}

void hf_export(const char *ckpt, const Config *cfg, const char *dir) {
  ModelShape s;
  weights_read_shape(ckpt, &s);
  Vocab *v = weights_read_vocab(ckpt);
  ParamTable *t = params_build(&s);
  float *host = params_alloc_host(t);
  weights_load(ckpt, t, host, cfg, v);
  make_dirs(dir);
  char path[PATH_MAX];
  path_fmt(path, sizeof path, "%s/model.safetensors", dir);
  write_tensors(path, t, host);
  path_fmt(path, sizeof path, "%s/config.json", dir);
  write_config(path, &s, cfg, v->pad);
  path_fmt(path, sizeof path, "%s/tokenizer_config.json", dir);
  write_tokenizer_config(path, &s, cfg);
  path_fmt(path, sizeof path, "%s/vocab.txt", dir);
  write_vocab_txt(path, v);
  info("export: %s (%s, %zu parameters) written to %s as a Hugging Face model: config.json, "
       "model.safetensors, vocab.txt, tokenizer_config.json", ckpt, hf_architecture(&s),
       params_count(t), dir);
  free(host);
  params_free(t);
  vocab_free(v);
}

/* ---- import: the configuration ---- */

static void require_str(const char *path, json_t *o, const char *key, const char *dflt,
                        const char *want, const char *why) {
  const char *have = json_str_key(path, o, key, dflt);
  if (strcmp(have, want) != 0)
    die("%s: \"%s\" is \"%s\"; bertrain imports \"%s\" only (%s)", path, key, have, want, why);
}

/* The [model] section from config.json, with Hugging Face BertConfig's
 * defaults for the keys it leaves out. */
static void read_model_config(const char *path, Config *cfg, int *vocab_size) {
  json_t *o = load_json(path);
  require_str(path, o, "model_type", "bert", "bert", "BERT");
  require_str(path, o, "hidden_act", "gelu", "gelu", "BERT's exact GELU");
  require_str(path, o, "position_embedding_type", "absolute", "absolute",
              "learned absolute position embeddings");
  double eps = json_real_key(path, o, "layer_norm_eps", 1e-12);
  if (fabs(eps - 1e-12) > 1e-15)
    die("%s: \"layer_norm_eps\" is %g; bertrain's LayerNorm uses BERT's 1e-12", path, eps);
  *vocab_size = json_int_key(path, o, "vocab_size", -1);
  cfg->model.layers = json_int_key(path, o, "num_hidden_layers", -1);
  cfg->model.hidden = json_int_key(path, o, "hidden_size", -1);
  cfg->model.heads = json_int_key(path, o, "num_attention_heads", -1);
  cfg->model.intermediate = json_int_key(path, o, "intermediate_size", -1);
  cfg->model.max_position = json_int_key(path, o, "max_position_embeddings", -1);
  cfg->model.type_vocab = json_int_key(path, o, "type_vocab_size", 2);
  cfg->model.dropout = json_real_key(path, o, "hidden_dropout_prob", 0.1);
  cfg->model.attention_dropout = json_real_key(path, o, "attention_probs_dropout_prob", 0.1);
  cfg->model.initializer_range = json_real_key(path, o, "initializer_range", 0.02);
  json_decref(o);
}

/* model.lowercase from tokenizer_config.json; BertTokenizer lower-cases
 * by default, and strips accents exactly when it lower-cases unless told. */
static void read_tokenizer_config(const char *path, Config *cfg) {
  if (!file_exists(path)) {
    info("import: no %s; lower-casing as BertTokenizer does by default (model.lowercase = "
         "true)", path);
    cfg->model.lowercase = 1;
    return;
  }
  json_t *o = load_json(path);
  json_t *lower = json_object_get(o, "do_lower_case"), *strip = json_object_get(o, "strip_accents");
  if (lower && !json_is_boolean(lower)) die("%s: \"do_lower_case\" should be true or false", path);
  cfg->model.lowercase = lower ? json_is_true(lower) : 1;
  int strip_differs = !json_is_boolean(strip) || json_is_true(strip) != cfg->model.lowercase;
  if (strip && !json_is_null(strip) && strip_differs)
    die("%s: \"strip_accents\" differs from \"do_lower_case\"; bertrain's tokenizer strips "
        "accents exactly when it lower-cases (model.lowercase)", path);
  json_decref(o);
}

/* ---- import: the tensors ---- */

typedef struct Entry {
  const StEntry *e;
  char name[PARAM_NAME_MAX]; /* bertrain's (Hugging Face's) name */
} Entry;

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The name bertrain gives a file's tensor; 0 for buffers that are not
 * parameters (position_ids). */
static int map_name(const char *path, const char *in, char *out) {
  if (ends_with(in, "position_ids")) return 0;
  int head = starts_with(in, "bert.") || starts_with(in, "cls.") || starts_with(in, "classifier.");
  int n = snprintf(out, PARAM_NAME_MAX, "%s%s", head ? "" : "bert.", in);
  if (n >= PARAM_NAME_MAX) die("%s: tensor name too long: %s", path, in);
  size_t len = strlen(out);
  if (ends_with(out, "LayerNorm.gamma")) strcpy(out + len - 5, "weight");
  else if (ends_with(out, "LayerNorm.beta")) strcpy(out + len - 4, "bias");
  return 1;
}

static const char *tied_target(const char *name) {
  if (strcmp(name, DECODER_W) == 0) return WORD_EMB;
  if (strcmp(name, DECODER_B) == 0) return MLM_BIAS;
  return NULL;
}

static Entry *map_entries(const StFile *f, int *count) {
  Entry *m = xcalloc((size_t)f->n + 1, sizeof *m);
  int n = 0;
  for (int i = 0; i < f->n; i++) {
    if (!map_name(f->path, f->e[i].name, m[n].name)) continue;
    for (int j = 0; j < n; j++)
      if (strcmp(m[j].name, m[n].name) == 0)
        die("%s: tensors %s and %s are the same parameter (%s)", f->path, m[j].e->name,
            f->e[i].name, m[n].name);
    m[n++].e = &f->e[i];
  }
  *count = n;
  return m;
}

static const Entry *find_entry(const Entry *m, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(m[i].name, name) == 0) return &m[i];
  return NULL;
}

static int num_labels(const char *path, const Entry *m, int n) {
  const Entry *c = find_entry(m, n, "classifier.weight");
  if (!c) return 0;
  if (c->e->ndim != 2) die("%s: %s should have 2 dimensions", path, c->e->name);
  return (int)c->e->shape[0];
}

/* 1 when the file holds every tensor of the pre-training heads (the MLM
 * bias may come as the decoder's); a file with some of them (e.g.
 * BertForMaskedLM's) is imported without heads, as fine-tuning needs none. */
static int has_heads(const char *path, const Entry *m, int n, const ModelShape *base) {
  ModelShape s = *base;
  s.pretraining = 1;
  ParamTable *t = params_build(&s);
  int have = 0, need = 0;
  for (int i = 0; i < t->n; i++) {
    if (t->p[i].part != PART_PRETRAIN) continue;
    need++;
    have += find_entry(m, n, t->p[i].name) ||
            (strcmp(t->p[i].name, MLM_BIAS) == 0 && find_entry(m, n, DECODER_B));
  }
  params_free(t);
  int some = 0;
  for (int i = 0; i < n; i++) some |= starts_with(m[i].name, "cls.");
  if (have < need && some)
    info("import: %s has %d of the %d tensors of the pre-training heads; importing the encoder "
         "without them (fine-tuning needs only bert.*)", path, have, need);
  return have == need;
}

static void shape_text(char *buf, size_t n, int ndim, const int64_t *dims) {
  size_t used = (size_t)snprintf(buf, n, "[");
  for (int d = 0; d < ndim && used < n; d++)
    used += (size_t)snprintf(buf + used, n - used, "%s%lld", d ? ", " : "", (long long)dims[d]);
  if (used < n) snprintf(buf + used, n - used, "]");
}

static void check_shape(const char *path, const StEntry *e, const Param *p) {
  int64_t want[2] = {p->shape[0], p->shape[1]};
  int same = e->ndim == p->ndim && e->shape[0] == want[0] && (p->ndim == 1 || e->shape[1] == want[1]);
  if (same) return;
  char have_s[96], want_s[96];
  shape_text(have_s, sizeof have_s, e->ndim, e->shape);
  shape_text(want_s, sizeof want_s, p->ndim, want);
  die("%s: tensor %s has shape %s; the model of config.json needs %s for %s", path, e->name,
      have_s, want_s, p->name);
}

/* Appends name to a "missing"/"unknown" list (the first 8, then "..."). */
static void list_add(char *list, size_t size, int *count, const char *name) {
  size_t used = strlen(list);
  if (*count < 8) snprintf(list + used, size - used, "%s%s", *count ? ", " : "", name);
  else if (*count == 8) snprintf(list + used, size - used, ", ...");
  (*count)++;
}

/* The file's own tensors (not the tied copies) into the table; a tensor
 * of the encoder or classifier the table lacks is an error. */
static void read_own(const StFile *f, const Entry *m, int n, const ParamTable *t, float *host,
                     unsigned char *filled) {
  char unknown[1024] = "";
  int n_unknown = 0;
  for (int i = 0; i < n; i++) {
    if (tied_target(m[i].name)) continue;
    const Param *p = params_find(t, m[i].name);
    if (!p) {
      if (!starts_with(m[i].name, "cls.")) list_add(unknown, sizeof unknown, &n_unknown, m[i].e->name);
      continue;
    }
    check_shape(f->path, m[i].e, p);
    st_read_f32(f, m[i].e, params_view(t, host, p->name));
    filled[p - t->p] = 1;
  }
  if (n_unknown)
    die("%s: %d tensor%s that bertrain's BERT does not have: %s", f->path, n_unknown,
        n_unknown == 1 ? "" : "s", unknown);
}

/* The tied copies: read into their target when the file lacks it, else
 * compared with it. */
static void read_tied(const StFile *f, const Entry *m, int n, const ParamTable *t, float *host,
                      unsigned char *filled) {
  for (int i = 0; i < n; i++) {
    const char *target = tied_target(m[i].name);
    const Param *p = target && t->shape.pretraining ? params_find(t, target) : NULL;
    if (!p) continue;
    check_shape(f->path, m[i].e, p);
    float *into = params_view(t, host, p->name);
    if (!filled[p - t->p]) {
      st_read_f32(f, m[i].e, into);
      filled[p - t->p] = 1;
      continue;
    }
    float *copy = xmalloc(p->count * sizeof *copy);
    st_read_f32(f, m[i].e, copy);
    if (memcmp(copy, into, p->count * sizeof *copy) != 0)
      warn("%s: %s differs from %s; they are tied in BERT, and Hugging Face's model uses %s, so "
           "bertrain does too", f->path, m[i].e->name, target, target);
    free(copy);
  }
}

static void read_tensors(const StFile *f, const Entry *m, int n, const ParamTable *t, float *host) {
  unsigned char *filled = xcalloc((size_t)t->n, 1);
  read_own(f, m, n, t, host, filled);
  read_tied(f, m, n, t, host, filled);
  char missing[1024] = "";
  int n_missing = 0;
  for (int i = 0; i < t->n; i++)
    if (!filled[i]) list_add(missing, sizeof missing, &n_missing, t->p[i].name);
  if (n_missing)
    die("%s: %d tensor%s of the model missing: %s", f->path, n_missing, n_missing == 1 ? "" : "s",
        missing);
  free(filled);
}

static void refuse_other_formats(const char *dir) {
  char path[PATH_MAX];
  path_fmt(path, sizeof path, "%s/model.safetensors.index.json", dir);
  if (file_exists(path))
    die("%s: a model split over several safetensors files; bertrain imports one "
        "model.safetensors (BERT-large is 1.3 GB: save it with save_pretrained("
        "max_shard_size=\"2GB\"))", dir);
  path_fmt(path, sizeof path, "%s/pytorch_model.bin", dir);
  if (file_exists(path))
    die("%s: no model.safetensors, only pytorch_model.bin (a pickle, which bertrain does not "
        "read); in Python: BertForPreTraining.from_pretrained(DIR).save_pretrained(DIR, "
        "safe_serialization=True)", dir);
  die("%s: no model.safetensors", dir);
}

/* The WordPiece vocabulary of a tokenizers file (tokenizer.json), which
 * transformers 5 saves in place of vocab.txt: its model.vocab maps each
 * token to its id. */
static Vocab *vocab_from_tokenizer_json(const char *path) {
  json_t *o = load_json(path), *model = json_object_get(o, "model");
  json_t *vocab = model ? json_object_get(model, "vocab") : NULL;
  const char *type = model ? json_str_key(path, model, "type", "") : "";
  if (strcmp(type, "WordPiece") != 0 || !json_is_object(vocab))
    die("%s: not a WordPiece tokenizer (model.type \"%s\"); BERT's vocabulary is WordPiece", path, type);
  int n = (int)json_object_size(vocab);
  char **tokens = xcalloc((size_t)n + 1, sizeof *tokens);
  const char *key;
  json_t *id;
  json_object_foreach(vocab, key, id) {
    json_int_t i = json_is_integer(id) ? json_integer_value(id) : -1;
    if (i < 0 || i >= n || tokens[i])
      die("%s: model.vocab: the ids should number the %d tokens 0 to %d once each ('%s')", path,
          n, n - 1, key);
    tokens[i] = (char *)key;
  }
  Vocab *v = vocab_from_tokens(tokens, n, path);
  free(tokens);
  json_decref(o);
  return v;
}

/* vocab.txt, or else tokenizer.json's vocabulary written out as vocab.txt
 * beside out (model.vocab names a file, as everywhere in bertrain). */
static Vocab *read_vocab(const char *dir, const char *out, Config *cfg) {
  char path[PATH_MAX];
  path_fmt(path, sizeof path, "%s/vocab.txt", dir);
  if (!file_exists(path)) {
    char tj[PATH_MAX];
    path_fmt(tj, sizeof tj, "%s/tokenizer.json", dir);
    if (!file_exists(tj))
      die("%s: neither vocab.txt nor tokenizer.json (bertrain needs BERT's WordPiece "
          "vocabulary)", dir);
    Vocab *v = vocab_from_tokenizer_json(tj);
    path_fmt(path, sizeof path, "%s.vocab.txt", out);
    write_vocab_txt(path, v);
    info("import: the vocabulary of %s written to %s", tj, path);
    vocab_free(v);
  }
  train_override(cfg, "model.vocab", path);
  return vocab_load(path);
}

void hf_import(const char *dir, Config *cfg, const char *out) {
  char path[PATH_MAX];
  path_fmt(path, sizeof path, "%s/config.json", dir);
  if (!file_exists(path)) die("%s: no config.json (not a Hugging Face model directory?)", dir);
  int vocab_size;
  read_model_config(path, cfg, &vocab_size);
  Vocab *v = read_vocab(dir, out, cfg);
  if (vocab_size != v->size)
    die("%s: vocab_size is %d but vocab.txt has %d tokens", path, vocab_size, v->size);
  path_fmt(path, sizeof path, "%s/tokenizer_config.json", dir);
  read_tokenizer_config(path, cfg);
  model_config_check(cfg);

  path_fmt(path, sizeof path, "%s/model.safetensors", dir);
  if (!file_exists(path)) refuse_other_formats(dir);
  StFile *f = st_open(path);
  int n;
  Entry *m = map_entries(f, &n);
  ModelShape s = model_shape(cfg, v->size, num_labels(path, m, n), 0);
  s.pretraining = has_heads(path, m, n, &s);
  ParamTable *t = params_build(&s);
  float *host = params_alloc_host(t);
  read_tensors(f, m, n, t, host);
  weights_save(out, t, host, cfg, v);
  info("import: %s (%d layers, hidden %d, %d heads, vocabulary %d%s%s; %zu parameters) written "
       "to %s", dir, s.layers, s.hidden, s.heads, s.vocab, s.pretraining ? ", pre-training heads" : "",
       s.num_labels ? ", classifier" : "", params_count(t), out);
  free(host);
  params_free(t);
  free(m);
  st_close(f);
  vocab_free(v);
}
