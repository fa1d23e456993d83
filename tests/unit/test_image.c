/*
 * Image validator: generated images in any chunking, every defect, the real
 * ESP32-S3 image from ../shared/firmware, the chip table, version order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "espfleet/image.h"
#include "espfleet/mkimage.h"

typedef struct {
  uint8_t *data;
  size_t len;
} blob;

static blob make_image(uint16_t chip, const char *version, uint64_t size) {
  blob b = {NULL, 0};
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  ef_mkimage_options o = {.chip_id = chip, .version = version, .project = "unit-test", .size = size};
  uint64_t written = 0;
  assert_int_equal(ef_mkimage_write(&o, f, &written, NULL), EF_OK);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(written, len);
  b.data = (uint8_t *)buf;
  b.len = len;
  return b;
}

/* Feeds b in chunks of @p chunk; returns the first error of feed or finish. */
static ef_err validate(const uint8_t *data, size_t len, size_t chunk, ef_image_summary *sum,
                       ef_err *feed_err) {
  ef_image_validator *v = NULL;
  assert_int_equal(ef_image_validator_new(&v), EF_OK);
  ef_err ferr = EF_OK;
  ef_status st = EF_STATUS_INIT, fst = EF_STATUS_INIT;
  for (size_t off = 0; off < len && ferr == EF_OK; off += chunk) {
    size_t n = len - off < chunk ? len - off : chunk;
    ferr = ef_image_feed(v, data + off, n, &fst);
  }
  if (feed_err) *feed_err = ferr;
  ef_err err = ef_image_finish(v, sum, &st);
  assert_int_equal(st.code, err);
  assert_int_equal(fst.code, ferr);
  if (ferr != EF_OK) {
    assert_int_equal(err, ferr);
    /* the sticky defect is reported again with the same sentence */
    assert_string_equal(st.detail, fst.detail);
  }
  if (err != EF_OK) assert_true(strlen(st.detail) > 10);
  assert_false(st.retryable); /* a bad image stays bad */
  ef_image_validator_free(v);
  return err;
}

/* Recomputes the digest over the hashed part, so only the checksum is wrong. */
static void fix_digest(blob *b) {
  size_t hashed = b->len - 32;
  SHA256(b->data, hashed, b->data + hashed);
}

static void test_valid_any_chunking(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.2.3", 200 * 1024);
  size_t chunks[] = {1, 7, 65536, b.len};
  for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
    ef_image_summary sum;
    ef_err ferr;
    assert_int_equal(validate(b.data, b.len, chunks[i], &sum, &ferr), EF_OK);
    assert_int_equal(ferr, EF_OK);
    assert_int_equal(sum.image_size, b.len);
    assert_int_equal(sum.total_size, b.len);
    assert_int_equal(sum.hashed_size, b.len - 32);
    assert_int_equal(sum.checksum_offset, b.len - 33);
    assert_int_equal(sum.checksum_offset % 16, 15);
    assert_int_equal(sum.checksum, b.data[b.len - 33]);
  }
  free(b.data);
}

static void test_desc_ready_after_288(void **state) {
  (void)state;
  blob b = make_image(0x0005, "4.5.6-rc1", 4096);
  ef_image_validator *v = NULL;
  assert_int_equal(ef_image_validator_new(&v), EF_OK);
  for (size_t i = 0; i < EF_IMAGE_DESC_END; i++) {
    assert_false(ef_image_desc_ready(v));
    assert_int_equal(ef_image_feed(v, b.data + i, 1, NULL), EF_OK);
  }
  assert_true(ef_image_desc_ready(v));
  const ef_image_header *h = ef_image_get_header(v);
  assert_int_equal(h->chip_id, 0x0005);
  assert_int_equal(h->flash_mode, 2);
  assert_true(h->hash_appended);
  assert_int_equal(h->max_chip_rev_full, 0xFFFF);
  assert_int_equal(h->segments[0].load_addr, 0x3C000020);
  assert_int_equal(h->segments[0].length, 256);
  assert_int_equal(h->segments[0].file_offset, 32);
  const ef_app_desc *d = ef_image_get_app_desc(v);
  assert_int_equal(d->magic, EF_APP_DESC_MAGIC);
  assert_string_equal(d->version, "4.5.6-rc1");
  assert_string_equal(d->project_name, "unit-test");
  assert_string_equal(d->time, "00:00:00");
  assert_string_equal(d->date, "Jan  1 2026");
  assert_string_equal(d->idf_ver, "espfleet-mkimage");
  assert_int_equal(ef_image_feed(v, b.data + EF_IMAGE_DESC_END, b.len - EF_IMAGE_DESC_END, NULL), EF_OK);
  assert_int_equal(ef_image_finish(v, NULL, NULL), EF_OK);
  assert_int_equal(ef_image_get_header(v)->segment_count, 3);
  ef_image_validator_free(v);
  free(b.data);
}

static void test_bad_magic(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 4096);
  b.data[0] = 0x7F;
  ef_image_validator *v = NULL;
  assert_int_equal(ef_image_validator_new(&v), EF_OK);
  /* Known from the first byte. */
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_image_feed(v, b.data, 1, &st), EF_ERR_IMAGE_BAD_MAGIC);
  assert_int_equal(st.code, EF_ERR_IMAGE_BAD_MAGIC);
  assert_non_null(strstr(st.detail, "0x7f"));
  /* Sticky. */
  assert_int_equal(ef_image_feed(v, b.data + 1, 10, NULL), EF_ERR_IMAGE_BAD_MAGIC);
  assert_int_equal(ef_image_finish(v, NULL, NULL), EF_ERR_IMAGE_BAD_MAGIC);
  ef_image_validator_free(v);
  free(b.data);
}

static void test_bad_checksum_only(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 8192);
  b.data[b.len - 33] ^= 0x01;
  fix_digest(&b);
  assert_int_equal(validate(b.data, b.len, 7, NULL, NULL), EF_ERR_IMAGE_BAD_CHECKSUM);
  free(b.data);
}

static void test_flipped_data_byte(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 8192);
  b.data[4000] ^= 0x40;
  /* Both checksum and digest break; the checksum is reported first. */
  assert_int_equal(validate(b.data, b.len, 65536, NULL, NULL), EF_ERR_IMAGE_BAD_CHECKSUM);
  /* With the checksum repaired, the digest still catches it. */
  b.data[b.len - 33] ^= 0x40;
  assert_int_equal(validate(b.data, b.len, 65536, NULL, NULL), EF_ERR_IMAGE_BAD_DIGEST);
  free(b.data);
}

static void test_bad_digest(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 8192);
  b.data[b.len - 5] ^= 0x80;
  ef_image_summary sum;
  assert_int_equal(validate(b.data, b.len, 1, &sum, NULL), EF_ERR_IMAGE_BAD_DIGEST);
  free(b.data);
}

static void test_truncated(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 8192);
  size_t cuts[] = {0, 1, 10, 23, 24, 30, 32, 100, 288, 4000, b.len - 40, b.len - 33, b.len - 32, b.len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    ef_err ferr;
    assert_int_equal(validate(b.data, cuts[i], 7, NULL, &ferr), EF_ERR_IMAGE_TRUNCATED);
    assert_int_equal(ferr, EF_OK);
  }
  free(b.data);
}

static void test_segment_count(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 4096);
  uint8_t counts[] = {0, 17, 255};
  for (size_t i = 0; i < sizeof counts; i++) {
    b.data[1] = counts[i];
    ef_image_validator *v = NULL;
    assert_int_equal(ef_image_validator_new(&v), EF_OK);
    assert_int_equal(ef_image_feed(v, b.data, 23, NULL), EF_OK);
    /* Known as soon as the header is complete. */
    assert_int_equal(ef_image_feed(v, b.data + 23, 1, NULL), EF_ERR_IMAGE_SEGMENTS);
    ef_image_validator_free(v);
  }
  free(b.data);
}

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_absurd_segment_length(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 4096);
  /* Segment 1's header follows segment 0 (24 + 8 + 256). */
  uint32_t lens[] = {0x7FFFFFF0u, 0xFFFFFFFCu, EF_IMAGE_MAX_SEGMENT_LEN + 4, 1001};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    uint8_t saved[4];
    memcpy(saved, b.data + 288 + 4, 4);
    put32(b.data + 288 + 4, lens[i]);
    ef_err ferr;
    assert_int_equal(validate(b.data, 296, 296, NULL, &ferr), EF_ERR_IMAGE_SEGMENTS);
    assert_int_equal(ferr, EF_ERR_IMAGE_SEGMENTS);
    memcpy(b.data + 288 + 4, saved, 4);
  }
  free(b.data);
}

static void test_bad_app_desc(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 4096);
  b.data[EF_APP_DESC_OFFSET] ^= 0xFF;
  ef_image_validator *v = NULL;
  assert_int_equal(ef_image_validator_new(&v), EF_OK);
  assert_int_equal(ef_image_feed(v, b.data, 35, NULL), EF_OK);
  assert_int_equal(ef_image_feed(v, b.data + 35, 1, NULL), EF_ERR_IMAGE_BAD_DESC);
  assert_false(ef_image_desc_ready(v));
  ef_image_validator_free(v);
  b.data[EF_APP_DESC_OFFSET] ^= 0xFF;

  /* A first segment too short to hold the description. */
  put32(b.data + 28, 252);
  ef_err ferr;
  assert_int_equal(validate(b.data, b.len, 7, NULL, &ferr), EF_ERR_IMAGE_BAD_DESC);
  assert_int_equal(ferr, EF_ERR_IMAGE_BAD_DESC);
  free(b.data);
}

static void test_trailing_bytes(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 8192);
  size_t extra = 4096;
  uint8_t *d = realloc(b.data, b.len + extra);
  assert_non_null(d);
  memset(d + b.len, 0xFF, extra);
  ef_image_summary sum;
  assert_int_equal(validate(d, b.len + extra, 1000, &sum, NULL), EF_OK);
  assert_int_equal(sum.image_size, b.len);
  assert_int_equal(sum.total_size, b.len + extra);
  free(d);
}

/* The stream hash covers every byte fed (trailing bytes too), in any
 * chunking, and can be read at any point without ending the stream. */
static void test_stream_sha256(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 100000);
  size_t extra = 5000;
  uint8_t *d = realloc(b.data, b.len + extra);
  assert_non_null(d);
  memset(d + b.len, 0xA5, extra);
  size_t total = b.len + extra;
  static const size_t chunks[] = {1, 7, 4096, 1 << 20};
  for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
    ef_image_validator *v = NULL;
    uint8_t want[32], got[32];
    assert_int_equal(ef_image_validator_new(&v), EF_OK);
    for (size_t off = 0; off < total; off += chunks[c]) {
      size_t n = total - off < chunks[c] ? total - off : chunks[c];
      assert_int_equal(ef_image_feed(v, d + off, n, NULL), EF_OK);
      if (off == 0) {
        /* a peek in the middle does not disturb the stream */
        SHA256(d, n, want);
        assert_int_equal(ef_image_stream_sha256(v, got), EF_OK);
        assert_memory_equal(got, want, 32);
      }
    }
    assert_int_equal(ef_image_finish(v, NULL, NULL), EF_OK);
    SHA256(d, total, want);
    assert_int_equal(ef_image_stream_sha256(v, got), EF_OK);
    assert_memory_equal(got, want, 32);
    ef_image_validator_free(v);
  }
  free(d);
}

static void test_no_hash_appended(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 8192);
  b.data[23] = 0;
  ef_image_summary sum;
  assert_int_equal(validate(b.data, b.len - 32, 64, &sum, NULL), EF_OK);
  assert_int_equal(sum.image_size, b.len - 32);
  /* The checksum is still checked. */
  b.data[b.len - 33] ^= 1;
  assert_int_equal(validate(b.data, b.len - 32, 64, NULL, NULL), EF_ERR_IMAGE_BAD_CHECKSUM);
  free(b.data);
}

static void test_check_file(void **state) {
  (void)state;
  blob b = make_image(0x000D, "2.0.0", 300 * 1024);
  char path[] = "/tmp/test_image_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
  close(fd);
  ef_image_header h;
  ef_app_desc d;
  ef_image_summary s;
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_image_check_file(path, &h, &d, &s, &st), EF_OK);
  assert_int_equal(h.chip_id, 0x000D);
  assert_string_equal(d.version, "2.0.0");
  assert_int_equal(s.image_size, b.len);
  assert_int_equal(st.code, EF_OK);
  assert_string_equal(st.detail, "");

  /* Truncated file: the detail names the offset. */
  assert_int_equal(truncate(path, 100000), 0);
  assert_int_equal(ef_image_check_file(path, &h, &d, &s, &st), EF_ERR_IMAGE_TRUNCATED);
  assert_int_equal(st.code, EF_ERR_IMAGE_TRUNCATED);
  assert_non_null(strstr(st.detail, "100000"));
  unlink(path);
  ef_status_clear(&st);
  assert_int_equal(ef_image_check_file(path, NULL, NULL, NULL, &st), EF_ERR_IO);
  assert_int_equal(st.code, EF_ERR_IO);
  assert_non_null(strstr(st.detail, path));
  assert_int_equal(ef_image_check_file(path, NULL, NULL, NULL, NULL), EF_ERR_IO);
  free(b.data);
}

static void test_real_image(void **state) {
  (void)state;
  const char *dir = getenv("ESPFLEET_SHARED_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/firmware/esp32s3-app-idf4.4.7.bin", dir ? dir : "../shared");
  if (access(path, R_OK) != 0) {
    print_message("skipping: %s is not present\n", path);
    skip();
  }
  ef_image_header h;
  ef_app_desc d;
  ef_image_summary s;
  assert_int_equal(ef_image_check_file(path, &h, &d, &s, NULL), EF_OK);
  assert_int_equal(s.total_size, 1488032);
  assert_int_equal(s.image_size, 1488032);
  assert_int_equal(h.chip_id, 0x0009);
  assert_string_equal(ef_chip_name(h.chip_id), "esp32s3");
  assert_int_equal(h.segment_count, 5);
  assert_true(h.hash_appended);
  const uint32_t addr[] = {0x3c0e0020, 0x3fc95a40, 0x42000020, 0x3fc9736c, 0x40374000};
  const uint32_t len[] = {517828, 6444, 875144, 16248, 72256};
  for (int i = 0; i < 5; i++) {
    assert_int_equal(h.segments[i].load_addr, addr[i]);
    assert_int_equal(h.segments[i].length, len[i]);
  }
  assert_int_equal(h.segments[0].file_offset, 32);
  assert_int_equal(s.checksum, 0x51);
  assert_int_equal(s.checksum_offset, 1487999);
  assert_int_equal(s.hashed_size, 1488000);
  assert_int_equal(d.magic, EF_APP_DESC_MAGIC);
  assert_string_equal(d.version, "esp-idf: v4.4.7 38eeba213a");
  assert_string_equal(d.project_name, "arduino-lib-builder");
  assert_string_equal(d.time, "12:12:53");
  assert_string_equal(d.date, "Mar  5 2024");
  assert_string_equal(d.idf_ver, "v4.4.7-dirty");
  assert_int_equal(d.secure_version, 0);

  /* Corrupting one byte of the real image is caught too. */
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  uint8_t *buf = malloc(1488032);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, 1488032, f), 1488032);
  fclose(f);
  assert_int_equal(validate(buf, 1488032, 4000, NULL, NULL), EF_OK);
  buf[700000] ^= 0x01;
  assert_int_equal(validate(buf, 1488032, 4000, NULL, NULL), EF_ERR_IMAGE_BAD_CHECKSUM);
  free(buf);
}

/* Corrupt images give the same verdict however they are chunked, and never crash. */
static void test_mutations_chunking_agree(void **state) {
  (void)state;
  blob b = make_image(0x0009, "1.0.0", 8192);
  uint8_t *m = malloc(b.len);
  assert_non_null(m);
  uint64_t rng = 0x12345678;
  int defects = 0;
  for (int round = 0; round < 300; round++) {
    memcpy(m, b.data, b.len);
    for (int k = 0; k < 3; k++) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      /* Mostly the header area, where the structure lives. */
      size_t pos = (rng >> 8) % (round % 2 ? 400 : b.len);
      m[pos] = (uint8_t)(rng >> 40);
    }
    size_t len = round % 5 == 0 ? (size_t)((rng >> 20) % b.len) : b.len;
    ef_err whole = validate(m, len, len ? len : 1, NULL, NULL);
    assert_int_equal(validate(m, len, 1, NULL, NULL), whole);
    assert_int_equal(validate(m, len, 7, NULL, NULL), whole);
    assert_int_equal(validate(m, len, 4096, NULL, NULL), whole);
    if (whole != EF_OK) defects++;
  }
  /* Three random bytes almost always break something. */
  assert_true(defects > 250);
  free(m);
  free(b.data);
}

static void test_chip_names(void **state) {
  (void)state;
  static const struct {
    const char *name;
    uint16_t id;
  } t[] = {{"esp32", 0x0000},   {"esp32s2", 0x0002}, {"esp32c3", 0x0005},
           {"esp32s3", 0x0009}, {"esp32c2", 0x000C}, {"esp32c6", 0x000D},
           {"esp32h2", 0x0010}, {"esp32p4", 0x0012}, {"esp32c5", 0x0017}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    uint16_t id = 0xFFFF;
    assert_string_equal(ef_chip_name(t[i].id), t[i].name);
    assert_int_equal(ef_chip_from_name(t[i].name, &id), EF_OK);
    assert_int_equal(id, t[i].id);
  }
  const char *s3[] = {"ESP32-S3", "esp32-s3", "esp32s3", "Esp32_S3"};
  for (size_t i = 0; i < 4; i++) {
    uint16_t id = 0;
    assert_int_equal(ef_chip_from_name(s3[i], &id), EF_OK);
    assert_int_equal(id, 0x0009);
  }
  uint16_t id = 0x1234;
  assert_int_equal(ef_chip_from_name("esp8266", &id), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_chip_from_name("", &id), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_chip_from_name("esp32s3esp32s3esp32s3", &id), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_chip_from_name(NULL, &id), EF_ERR_INVALID_ARG);
  assert_int_equal(id, 0x1234);
  assert_null(ef_chip_name(0xFFFF));
  assert_null(ef_chip_name(0x0001));
}

static int sign(int x) { return (x > 0) - (x < 0); }

static void test_version_compare(void **state) {
  (void)state;
  static const struct {
    const char *a, *b;
    int want;
  } t[] = {
      {"1.10.0", "1.9.3", 1},
      {"1.9.3", "1.10.0", -1},
      {"1.2.3", "1.2.3", 0},
      {"v1.2.3", "1.2.3", 0},
      {"V2.0", "v2.0.0", 0},
      {"1.2", "1.2.0", 0},
      {"1.2", "1.2.1", -1},
      {"1.0.0-rc1", "1.0.0", -1},
      {"1.0.0", "1.0.0-rc1", 1},
      {"1.0.0-rc1", "1.0.0-rc2", -1},
      {"1.0.0a", "1.0.0", 1},
      {"2", "10", -1},
      {"", "0", 0},
      {"", "0.1", -1},
      {"0010", "10", 0},
      {"1.2.3.4", "1.2.3", 1},
      {"99999999999999999999999", "1", 1},
      {NULL, "", 0},
      {"version", "1", -1},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    int got = sign(ef_version_compare(t[i].a, t[i].b));
    if (got != t[i].want)
      fail_msg("compare(\"%s\", \"%s\") = %d, want %d", t[i].a ? t[i].a : "(null)", t[i].b, got, t[i].want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_any_chunking),
      cmocka_unit_test(test_desc_ready_after_288),
      cmocka_unit_test(test_bad_magic),
      cmocka_unit_test(test_bad_checksum_only),
      cmocka_unit_test(test_flipped_data_byte),
      cmocka_unit_test(test_bad_digest),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_segment_count),
      cmocka_unit_test(test_absurd_segment_length),
      cmocka_unit_test(test_bad_app_desc),
      cmocka_unit_test(test_trailing_bytes),
      cmocka_unit_test(test_stream_sha256),
      cmocka_unit_test(test_no_hash_appended),
      cmocka_unit_test(test_check_file),
      cmocka_unit_test(test_mutations_chunking_agree),
      cmocka_unit_test(test_real_image),
      cmocka_unit_test(test_chip_names),
      cmocka_unit_test(test_version_compare),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
