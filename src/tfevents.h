/* TensorBoard event files, written without TensorFlow: TFRecord framing
 * (uint64 length, masked CRC32C of the length, the payload, masked CRC32C
 * of the payload) around tensorflow.Event protocol buffers. The few fields
 * used are encoded by hand:
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
 *             Summary summary = 5; }
 *   Summary { repeated Value value = 1; }
 *   Value   { string tag = 1; float simple_value = 2; }
 * The first event of a file carries file_version "brain.Event:2". */
#ifndef BERTRAIN_TFEVENTS_H
#define BERTRAIN_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C (Castagnoli), and the masked form TFRecord stores. */
uint32_t crc32c(const void *data, size_t n);
uint32_t crc32c_masked(const void *data, size_t n);

/* Encodes an Event into buf (at least TF_EVENT_MAX bytes); returns its length.
 * version non-NULL makes a file-version event, else a scalar event with
 * tag and value. */
#define TF_EVENT_MAX 384
size_t tf_encode_event(uint8_t *buf, double wall_time, int64_t step, const char *version,
                       const char *tag, float value);
/* Frames payload as one TFRecord into out (n + 16 bytes); returns n + 16. */
size_t tf_frame_record(uint8_t *out, const uint8_t *payload, size_t n);

typedef struct TfWriter TfWriter;
/* Starts DIR/events.out.tfevents.0000000000.bertrain (under a temporary
 * name until tf_close), with the file-version event at wall_time. The fixed
 * name makes a rebuilt file replace the old one instead of adding to it. */
TfWriter *tf_open(const char *dir, double wall_time);
/* One scalar; tag at most 200 bytes. */
void tf_scalar(TfWriter *w, const char *tag, int64_t step, double wall_time, float value);
/* Writes and moves the file into place; dies naming it on an error. */
void tf_close(TfWriter *w);

#endif
