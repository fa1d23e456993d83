/*
 * Image generator: determinism, sizes, distinct versions, argument checks,
 * and that memory does not grow with the image size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "espfleet/image.h"
#include "espfleet/mkimage.h"

/*
 * A FILE that hashes and validates what is written to it without keeping
 * it, so a 64 MiB image costs no 64 MiB buffer in the test either.
 */
typedef struct {
  EVP_MD_CTX *sha;
  ef_image_validator *v;
  ef_err feed_err;
  uint64_t bytes;
} sink;

static ssize_t sink_write(void *cookie, const char *buf, size_t len) {
  sink *s = cookie;
  EVP_DigestUpdate(s->sha, buf, len);
  if (s->feed_err == EF_OK) s->feed_err = ef_image_feed(s->v, (const uint8_t *)buf, len, NULL);
  s->bytes += len;
  return (ssize_t)len;
}

typedef struct {
  ef_err write_err;
  ef_err valid_err;
  uint64_t written;
  uint64_t bytes;
  uint8_t sha256[32];
  ef_app_desc desc;
  ef_image_header hdr;
} result;

static result generate(uint16_t chip, const char *version, const char *project, uint64_t size,
                       uint32_t secure_version) {
  result r;
  memset(&r, 0, sizeof r);
  sink s = {EVP_MD_CTX_new(), NULL, EF_OK, 0};
  assert_non_null(s.sha);
  assert_int_equal(EVP_DigestInit_ex(s.sha, EVP_sha256(), NULL), 1);
  assert_int_equal(ef_image_validator_new(&s.v), EF_OK);
  cookie_io_functions_t io = {.write = sink_write};
  FILE *f = fopencookie(&s, "w", io);
  assert_non_null(f);
  ef_mkimage_options o = {.chip_id = chip,
                          .version = version,
                          .project = project,
                          .size = size,
                          .secure_version = secure_version};
  r.write_err = ef_mkimage_write(&o, f, &r.written, NULL);
  assert_int_equal(fclose(f), 0);
  r.valid_err = s.feed_err != EF_OK ? s.feed_err : ef_image_finish(s.v, NULL, NULL);
  r.bytes = s.bytes;
  unsigned len = 0;
  EVP_DigestFinal_ex(s.sha, r.sha256, &len);
  if (ef_image_desc_ready(s.v)) r.desc = *ef_image_get_app_desc(s.v);
  r.hdr = *ef_image_get_header(s.v);
  EVP_MD_CTX_free(s.sha);
  ef_image_validator_free(s.v);
  return r;
}

static void test_deterministic(void **state) {
  (void)state;
  result a = generate(0x0009, "1.0.0", "demo", 300000, 0);
  result b = generate(0x0009, "1.0.0", "demo", 300000, 0);
  assert_int_equal(a.write_err, EF_OK);
  assert_int_equal(a.valid_err, EF_OK);
  assert_memory_equal(a.sha256, b.sha256, 32);
  assert_int_equal(a.written, b.written);
}

static void test_options_change_bytes(void **state) {
  (void)state;
  result base = generate(0x0009, "1.0.0", "demo", 300000, 0);
  result other[] = {
      generate(0x0009, "1.0.1", "demo", 300000, 0),
      generate(0x0009, "1.0.0", "demo2", 300000, 0),
      generate(0x0005, "1.0.0", "demo", 300000, 0),
      generate(0x0009, "1.0.0", "demo", 300000, 1),
  };
  for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
    assert_int_equal(other[i].valid_err, EF_OK);
    assert_memory_not_equal(base.sha256, other[i].sha256, 32);
  }
  assert_string_equal(other[0].desc.version, "1.0.1");
  assert_string_equal(other[1].desc.project_name, "demo2");
  assert_int_equal(other[2].hdr.chip_id, 0x0005);
  assert_int_equal(other[3].desc.secure_version, 1);
}

static void test_sizes(void **state) {
  (void)state;
  uint64_t sizes[] = {512, 513, 1000, 4096, 65537, 1024 * 1024, 8 * 1024 * 1024 + 3};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    result r = generate(0x0009, "3.2.1", "sizes", sizes[i], 0);
    assert_int_equal(r.write_err, EF_OK);
    assert_int_equal(r.valid_err, EF_OK);
    assert_int_equal(r.written, r.bytes);
    assert_true(r.written <= sizes[i]);
    assert_true(sizes[i] - r.written < 48);
    assert_int_equal(r.hdr.flash_mode, 2);
    assert_true(r.hdr.hash_appended);
    assert_true(r.hdr.segment_count >= 3);
  }
}

static void test_invalid_args(void **state) {
  (void)state;
  char long_str[40];
  memset(long_str, 'x', sizeof long_str - 1);
  long_str[sizeof long_str - 1] = '\0';
  ef_mkimage_options bad[] = {
      {.chip_id = 9, .version = "1", .project = "p", .size = 511},
      {.chip_id = 9, .version = "1", .project = "p", .size = EF_MKIMAGE_MAX_SIZE + 1},
      {.chip_id = 9, .version = long_str, .project = "p", .size = 4096},
      {.chip_id = 9, .version = "1", .project = long_str, .size = 4096},
      {.chip_id = 9, .version = NULL, .project = "p", .size = 4096},
      {.chip_id = 0xFFFF, .version = "1", .project = "p", .size = 4096},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    uint64_t written = 1;
    ef_status st = EF_STATUS_INIT;
    assert_int_equal(ef_mkimage_write(&bad[i], f, &written, &st), EF_ERR_INVALID_ARG);
    assert_int_equal(written, 0);
    /* each refusal names what is wrong */
    static const char *const why[] = {
        "size 511",      "size", "version and project", "version and project", "version and project",
        "chip id 0xffff"};
    assert_non_null(strstr(st.detail, why[i]));
    fclose(f);
    assert_int_equal(len, 0);
    free(buf);
  }
  /* 31 characters is the most the 32-byte fields hold with their NUL. */
  long_str[31] = '\0';
  result r = generate(0x0009, long_str, long_str, 4096, 0);
  assert_int_equal(r.valid_err, EF_OK);
  assert_string_equal(r.desc.version, long_str);
}

static long max_rss_kib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static void test_memory_flat(void **state) {
  (void)state;
  result small = generate(0x0009, "1.0.0", "mem", 8ull * 1024 * 1024, 0);
  assert_int_equal(small.valid_err, EF_OK);
  long before = max_rss_kib();
  result big = generate(0x0009, "1.0.0", "mem", 64ull * 1024 * 1024, 0);
  long after = max_rss_kib();
  assert_int_equal(big.write_err, EF_OK);
  assert_int_equal(big.valid_err, EF_OK);
  assert_true(big.written > 64ull * 1024 * 1024 - 48);
  /* Several 16 MiB segments; none above the validator's limit. */
  assert_true(big.hdr.segment_count >= 6);
  if (after - before > 1024) fail_msg("peak RSS grew by %ld KiB for a 64 MiB image", after - before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deterministic), cmocka_unit_test(test_options_change_bytes),
      cmocka_unit_test(test_sizes),         cmocka_unit_test(test_invalid_args),
      cmocka_unit_test(test_memory_flat),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
