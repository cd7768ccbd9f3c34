/* The safetensors format (Hugging Face's file for tensors): an 8-byte
 * little-endian header length, a JSON header naming each tensor's dtype,
 * shape and byte range, then the tensors' bytes, little-endian, with no
 * gaps. The JSON is read and written with jansson.
 *
 * Errors name the file (and tensor) and end the job. */
#ifndef BERTRAIN_SAFETENSORS_H
#define BERTRAIN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

/* One float32 tensor to write; data holds shape[0] x ... floats, row-major. */
typedef struct StTensor {
  const char *name;
  int ndim;
  int64_t shape[ST_MAX_DIMS];
  const float *data;
} StTensor;

/* Writes n float32 tensors to path (via path.tmp, renamed into place), with
 * the header's __metadata__ {"format": "pt"}, which transformers requires. */
void st_write_f32(const char *path, const StTensor *t, int n);

typedef struct StEntry {
  char *name;
  char dtype[8];
  int ndim;
  int64_t shape[ST_MAX_DIMS];
  uint64_t begin, end; /* byte range in the data section */
} StEntry;

typedef struct StFile {
  char *path;
  void *fp;             /* FILE * */
  uint64_t data_start;  /* file offset of the data section */
  int n;
  StEntry *e;           /* in the header's order */
} StFile;

/* Opens path and checks the header: valid JSON, every entry with a known
 * dtype, a shape and byte ranges that tile the data section exactly (so a
 * file cut short is caught here). */
StFile *st_open(const char *path);
void st_close(StFile *f);
const StEntry *st_find(const StFile *f, const char *name);
/* Elements of the entry (the product of its shape). */
uint64_t st_count(const StEntry *e);
/* Reads the entry into out as float32, widening F16 and BF16; dies for
 * other dtypes. */
void st_read_f32(const StFile *f, const StEntry *e, float *out);

#endif
