/* TensorBoard event encoding: CRC-32C, TFRecord framing and the Event
 * protocol buffer bytes, checked against values worked out by hand from the
 * formats' definitions. */
#include <string.h>

#include "tfevents.h"
#include "test_util.h"

static void test_crc(void) {
  /* The check value of CRC-32C (RFC 3720, appendix B.4). */
  CHECK_INT(crc32c("123456789", 9), 0xE3069283u);
  uint8_t zeros[32] = {0};
  CHECK_INT(crc32c(zeros, 32), 0x8A9136AAu);
  CHECK_INT(crc32c("", 0), 0);
  uint32_t c = crc32c("123456789", 9);
  CHECK_INT(crc32c_masked("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

static void test_version_event(void) {
  uint8_t buf[TF_EVENT_MAX];
  size_t n = tf_encode_event(buf, 1.5, 0, "brain.Event:2", NULL, 0);
  /* wall_time: key 0x09, 1.5 as little-endian double; file_version: key 0x1a. */
  const uint8_t want[] = {0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x1a, 13, 'b', 'r', 'a', 'i', 'n',
                          '.', 'E', 'v', 'e', 'n', 't', ':', '2'};
  CHECK_INT(n, sizeof want);
  CHECK(memcmp(buf, want, sizeof want) == 0);
}

static void test_scalar_event(void) {
  uint8_t buf[TF_EVENT_MAX];
  size_t n = tf_encode_event(buf, 0.0, 300, NULL, "loss", 0.5f);
  /* step 300 = varint ac 02; summary (key 0x2a) { value (0x0a) { tag (0x0a) "loss",
   * simple_value (0x15) 0.5f = 00 00 00 3f } }. */
  const uint8_t want[] = {0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0xac, 0x02, 0x2a, 13, 0x0a, 11,
                          0x0a, 4, 'l', 'o', 's', 's', 0x15, 0, 0, 0, 0x3f};
  CHECK_INT(n, sizeof want);
  CHECK(memcmp(buf, want, sizeof want) == 0);
}

static void test_frame(void) {
  const uint8_t payload[] = {1, 2, 3};
  uint8_t rec[3 + 16];
  CHECK_INT(tf_frame_record(rec, payload, 3), 19);
  const uint8_t len[8] = {3, 0, 0, 0, 0, 0, 0, 0};
  CHECK(memcmp(rec, len, 8) == 0);
  uint32_t lc = crc32c_masked(len, 8), pc = crc32c_masked(payload, 3);
  CHECK_INT(rec[8] | rec[9] << 8 | rec[10] << 16 | (uint32_t)rec[11] << 24, lc);
  CHECK(memcmp(rec + 12, payload, 3) == 0);
  CHECK_INT(rec[15] | rec[16] << 8 | rec[17] << 16 | (uint32_t)rec[18] << 24, pc);
}

int main(void) {
  test_crc();
  test_version_event();
  test_scalar_event();
  test_frame();
  return test_finish();
}
