/* TLV frames: encoding and stream reassembly, including garbled streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "espfleet/tlv.h"

static ef_tlv_reader *new_reader(void) {
  ef_tlv_reader *r = malloc(sizeof *r);
  assert_non_null(r);
  ef_tlv_reader_reset(r);
  r->dropped = 0;
  return r;
}

/* Encodes a frame and checks its size against ef_tlv_frame_size. */
static size_t enc(const char *ep, const void *payload, size_t n, uint8_t *out, size_t cap) {
  size_t len = ef_tlv_encode(ep, payload, n, out, cap);
  assert_int_equal(len, ef_tlv_frame_size(ep, n));
  return len;
}

static void feed(ef_tlv_reader *r, const uint8_t *p, size_t n) {
  assert_true(n <= ef_tlv_reader_space(r));
  assert_int_equal(ef_tlv_reader_feed(r, p, n), EF_OK);
}

static void expect_frame(ef_tlv_reader *r, const char *ep, const void *payload, size_t n) {
  ef_tlv_frame f;
  assert_int_equal(ef_tlv_reader_next(r, &f), 1);
  assert_string_equal(f.endpoint, ep);
  assert_int_equal(f.payload_len, n);
  if (n) assert_memory_equal(f.payload, payload, n);
}

static void test_encode_layout(void **state) {
  uint8_t out[64];
  size_t n = enc("ctrlResp", "\xAA\xBB\xCC", 3, out, sizeof out);
  const uint8_t want[] = {0x01, 8, 0, 'c', 't', 'r', 'l', 'R', 'e', 's', 'p', 0x02, 3, 0, 0xAA, 0xBB, 0xCC};
  assert_int_equal(n, sizeof want);
  assert_memory_equal(out, want, sizeof want);
}

static void test_encode_round_trip_sizes(void **state) {
  size_t cap = EF_TLV_MAX_FRAME;
  uint8_t *out = malloc(cap), *payload = malloc(EF_TLV_MAX_PAYLOAD);
  ef_tlv_reader *r = new_reader();
  for (size_t i = 0; i < EF_TLV_MAX_PAYLOAD; i++) payload[i] = (uint8_t)(i * 7 + 3);
  const size_t sizes[] = {0, 1, 255, 256, 4000, 32768, EF_TLV_MAX_PAYLOAD};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = enc(EF_TLV_EP_EVENT, payload, sizes[i], out, cap);
    assert_true(n > 0);
    feed(r, out, n);
    expect_frame(r, EF_TLV_EP_EVENT, payload, sizes[i]);
    ef_tlv_frame f;
    assert_int_equal(ef_tlv_reader_next(r, &f), 0);
  }
  assert_int_equal(r->dropped, 0);
  free(out);
  free(payload);
  free(r);
}

static void test_encode_refuses(void **state) {
  uint8_t out[32];
  char longname[EF_TLV_MAX_EP + 2];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  /* 6 + 8 + 20 = 34 bytes do not fit in 32; 33 would not either */
  assert_int_equal(ef_tlv_encode("ctrlResp", (const uint8_t *)"0123456789abcdefghij", 20, out, sizeof out),
                   0);
  assert_int_equal(ef_tlv_encode("ctrlResp", (const uint8_t *)"0123456789abcdefgh", 18, out, sizeof out), 32);
  assert_int_equal(ef_tlv_encode(longname, (const uint8_t *)"x", 1, out, sizeof out), 0);
  assert_int_equal(ef_tlv_encode("", (const uint8_t *)"x", 1, out, sizeof out), 0);
  uint8_t *big = calloc(1, EF_TLV_MAX_PAYLOAD + 1), *dst = malloc(EF_TLV_MAX_FRAME + 16);
  assert_int_equal(ef_tlv_encode("ctrlResp", big, EF_TLV_MAX_PAYLOAD + 1, dst, EF_TLV_MAX_FRAME + 16), 0);
  free(big);
  free(dst);
}

static void test_byte_by_byte(void **state) {
  uint8_t a[64], b[64];
  size_t na = enc(EF_TLV_EP_RESP, "hello", 5, a, sizeof a);
  size_t nb = enc(EF_TLV_EP_EVENT, "", 0, b, sizeof b);
  ef_tlv_reader *r = new_reader();
  ef_tlv_frame f;
  for (size_t i = 0; i < na; i++) {
    assert_int_equal(ef_tlv_reader_next(r, &f), 0);
    feed(r, &a[i], 1);
  }
  expect_frame(r, EF_TLV_EP_RESP, "hello", 5);
  for (size_t i = 0; i < nb; i++) {
    assert_int_equal(ef_tlv_reader_next(r, &f), 0);
    feed(r, &b[i], 1);
  }
  expect_frame(r, EF_TLV_EP_EVENT, "", 0); /* zero-length payload is a frame */
  assert_int_equal(ef_tlv_reader_next(r, &f), 0);
  assert_int_equal(r->dropped, 0);
  free(r);
}

static void test_several_frames_one_feed(void **state) {
  uint8_t buf[256];
  size_t n = 0;
  n += enc(EF_TLV_EP_RESP, "one", 3, buf + n, sizeof buf - n);
  n += enc(EF_TLV_EP_EVENT, "two!", 4, buf + n, sizeof buf - n);
  n += enc(EF_TLV_EP_RESP, "", 0, buf + n, sizeof buf - n);
  size_t half = enc(EF_TLV_EP_RESP, "four", 4, buf + n, sizeof buf - n);
  ef_tlv_reader *r = new_reader();
  feed(r, buf, n + half - 2); /* the last frame arrives split */
  expect_frame(r, EF_TLV_EP_RESP, "one", 3);
  expect_frame(r, EF_TLV_EP_EVENT, "two!", 4);
  expect_frame(r, EF_TLV_EP_RESP, "", 0);
  ef_tlv_frame f;
  assert_int_equal(ef_tlv_reader_next(r, &f), 0);
  feed(r, buf + n + half - 2, 2);
  expect_frame(r, EF_TLV_EP_RESP, "four", 4);
  assert_int_equal(r->dropped, 0);
  free(r);
}

static void test_garbage_before_and_between(void **state) {
  uint8_t buf[256];
  size_t n = 0;
  const uint8_t junk1[] = {0x00, 0xff, 0x02, 0x05, 0x00, 0x41};
  /* Looks like a start: 0x01 and a name length, but the name is not text. */
  const uint8_t junk2[] = {0x01, 0x03, 0x00, 0x00, 0x10, 0x20};
  memcpy(buf + n, junk1, sizeof junk1);
  n += sizeof junk1;
  n += enc(EF_TLV_EP_RESP, "A", 1, buf + n, sizeof buf - n);
  memcpy(buf + n, junk2, sizeof junk2);
  n += sizeof junk2;
  n += enc(EF_TLV_EP_EVENT, "B", 1, buf + n, sizeof buf - n);
  ef_tlv_reader *r = new_reader();
  feed(r, buf, n);
  expect_frame(r, EF_TLV_EP_RESP, "A", 1);
  expect_frame(r, EF_TLV_EP_EVENT, "B", 1);
  assert_int_equal(r->dropped, sizeof junk1 + sizeof junk2);
  free(r);
}

static void test_bad_type_bytes(void **state) {
  uint8_t good[64], bad[64];
  size_t ng = enc(EF_TLV_EP_RESP, "ok", 2, good, sizeof good);
  /* Second type byte is not 0x02: the whole thing is not a frame. */
  size_t nb = enc(EF_TLV_EP_RESP, "xx", 2, bad, sizeof bad);
  bad[3 + 8] = 0x03;
  ef_tlv_reader *r = new_reader();
  feed(r, bad, nb);
  feed(r, good, ng);
  expect_frame(r, EF_TLV_EP_RESP, "ok", 2);
  ef_tlv_frame f;
  assert_int_equal(ef_tlv_reader_next(r, &f), 0);
  assert_true(r->dropped >= 1);
  assert_int_equal(r->dropped, nb); /* nothing of the broken frame is mistaken for a frame */
  /* First type byte wrong */
  ef_tlv_reader_reset(r);
  r->dropped = 0;
  good[0] = 0x05;
  feed(r, good, ng);
  assert_int_equal(ef_tlv_reader_next(r, &f), 0);
  assert_int_equal(r->dropped, ng);
  free(r);
}

static void test_impossible_lengths(void **state) {
  uint8_t good[64];
  size_t ng = enc(EF_TLV_EP_RESP, "ok", 2, good, sizeof good);
  ef_tlv_reader *r = new_reader();
  ef_tlv_frame f;
  /* endpoint length 0 */
  const uint8_t zero[] = {0x01, 0x00, 0x00, 0x02, 0x01, 0x00, 0x55};
  feed(r, zero, sizeof zero);
  feed(r, good, ng);
  expect_frame(r, EF_TLV_EP_RESP, "ok", 2);
  assert_int_equal(r->dropped, sizeof zero);
  /* endpoint length above EF_TLV_MAX_EP: must not wait for 0xffff bytes */
  r->dropped = 0;
  const uint8_t huge[] = {0x01, 0xff, 0xff, 'c', 't', 'r', 'l'};
  feed(r, huge, sizeof huge);
  feed(r, good, ng);
  expect_frame(r, EF_TLV_EP_RESP, "ok", 2);
  assert_int_equal(ef_tlv_reader_next(r, &f), 0);
  assert_int_equal(r->dropped, sizeof huge);
  const uint8_t just_over[] = {0x01, EF_TLV_MAX_EP + 1, 0x00};
  r->dropped = 0;
  feed(r, just_over, sizeof just_over);
  feed(r, good, ng);
  expect_frame(r, EF_TLV_EP_RESP, "ok", 2);
  assert_int_equal(r->dropped, sizeof just_over);
  free(r);
}

static void test_max_payload_split_and_space(void **state) {
  uint8_t *frame = malloc(EF_TLV_MAX_FRAME), *payload = malloc(EF_TLV_MAX_PAYLOAD);
  for (size_t i = 0; i < EF_TLV_MAX_PAYLOAD; i++) payload[i] = (uint8_t)(i ^ (i >> 8));
  size_t n = enc(EF_TLV_EP_RESP, payload, EF_TLV_MAX_PAYLOAD, frame, EF_TLV_MAX_FRAME);
  ef_tlv_reader *r = new_reader();
  ef_tlv_frame f;
  /* Many maximal frames in odd-sized pieces: the reader must keep making
   * room and never refuse what ef_tlv_reader_space offered. */
  for (int round = 0; round < 5; round++) {
    size_t off = 0;
    while (off < n) {
      size_t piece = 7777;
      if (piece > n - off) piece = n - off;
      size_t space = ef_tlv_reader_space(r);
      assert_true(space >= EF_TLV_MAX_FRAME);
      feed(r, frame + off, piece);
      off += piece;
      if (off < n) assert_int_equal(ef_tlv_reader_next(r, &f), 0);
    }
    expect_frame(r, EF_TLV_EP_RESP, payload, EF_TLV_MAX_PAYLOAD);
    assert_int_equal(ef_tlv_reader_next(r, &f), 0);
  }
  /* Feeding more than the space is refused, not overflowed. */
  size_t space = ef_tlv_reader_space(r);
  uint8_t *big = calloc(1, space + 1);
  assert_int_equal(ef_tlv_reader_feed(r, big, space + 1), EF_ERR_INVALID_ARG);
  free(big);
  assert_int_equal(r->dropped, 0);
  free(r);
  free(frame);
  free(payload);
}

static void test_random_garbage_never_crashes(void **state) {
  ef_tlv_reader *r = new_reader();
  uint8_t buf[1024], good[64];
  size_t ng = enc(EF_TLV_EP_EVENT, "sync", 4, good, sizeof good);
  unsigned seed = 12345;
  ef_tlv_frame f;
  for (int i = 0; i < 200; i++) {
    for (size_t j = 0; j < sizeof buf; j++) {
      seed = seed * 1103515245u + 12345u;
      buf[j] = (uint8_t)(seed >> 16);
    }
    if (ef_tlv_reader_space(r) < sizeof buf) ef_tlv_reader_reset(r);
    feed(r, buf, sizeof buf);
    while (ef_tlv_reader_next(r, &f)) assert_true(f.payload_len <= EF_TLV_MAX_PAYLOAD);
  }
  /* After garbage, a reset and a good frame always come through. */
  ef_tlv_reader_reset(r);
  feed(r, good, ng);
  expect_frame(r, EF_TLV_EP_EVENT, "sync", 4);
  free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode_layout),
      cmocka_unit_test(test_encode_round_trip_sizes),
      cmocka_unit_test(test_encode_refuses),
      cmocka_unit_test(test_byte_by_byte),
      cmocka_unit_test(test_several_frames_one_feed),
      cmocka_unit_test(test_garbage_before_and_between),
      cmocka_unit_test(test_bad_type_bytes),
      cmocka_unit_test(test_impossible_lengths),
      cmocka_unit_test(test_max_payload_split_and_space),
      cmocka_unit_test(test_random_garbage_never_crashes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
