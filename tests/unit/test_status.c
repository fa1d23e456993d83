/* ef_status: code, retryable, detail; the first failure wins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "espfleet/status.h"

static void test_fail_and_defaults(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(st.code, EF_OK);
  assert_int_equal(ef_status_fail(&st, EF_ERR_ESP_TIMEOUT, "no answer within %d ms", 500),
                   EF_ERR_ESP_TIMEOUT);
  assert_int_equal(st.code, EF_ERR_ESP_TIMEOUT);
  assert_true(st.retryable); /* the code's default */
  assert_string_equal(st.detail, "no answer within 500 ms");
  ef_status_clear(&st);
  assert_int_equal(st.code, EF_OK);
  assert_false(st.retryable);
  assert_string_equal(st.detail, "");
  assert_int_equal(ef_status_fail(&st, EF_ERR_IMAGE_BAD_MAGIC, NULL), EF_ERR_IMAGE_BAD_MAGIC);
  assert_false(st.retryable);
  assert_string_equal(st.detail, "");
  /* a module that knows better says so */
  ef_status_clear(&st);
  ef_status_fail_r(&st, EF_ERR_DOWNLOAD_FAILED, false, "HTTP %d", 404);
  assert_false(st.retryable);
  assert_string_equal(st.detail, "HTTP 404");
}

static void test_first_failure_wins(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_status_fail(&st, EF_ERR_HASH_MISMATCH, "sha256 is 00..");
  /* a cleanup path's failure does not bury the cause */
  assert_int_equal(ef_status_fail(&st, EF_ERR_IO, "close failed"), EF_ERR_IO);
  assert_int_equal(ef_status_fail_r(&st, EF_ERR_MQTT, true, "later"), EF_ERR_MQTT);
  assert_int_equal(st.code, EF_ERR_HASH_MISMATCH);
  assert_string_equal(st.detail, "sha256 is 00..");
  /* EF_OK is no failure */
  ef_status_clear(&st);
  assert_int_equal(ef_status_fail(&st, EF_OK, "nothing"), EF_OK);
  assert_int_equal(st.code, EF_OK);
  assert_string_equal(st.detail, "");
}

static void test_null_is_allowed(void **state) {
  (void)state;
  char buf[64];
  ef_status_clear(NULL);
  assert_int_equal(ef_status_fail(NULL, EF_ERR_IO, "x %d", 1), EF_ERR_IO);
  assert_int_equal(ef_status_fail_r(NULL, EF_ERR_IO, true, NULL), EF_ERR_IO);
  assert_int_equal(ef_status_copy(NULL, NULL), EF_OK);
  ef_status_prefix(NULL, "step");
  assert_string_equal(ef_status_text(NULL, buf, sizeof buf), "ok");
}

static void test_copy(void **state) {
  (void)state;
  ef_status from = EF_STATUS_INIT, to = EF_STATUS_INIT;
  ef_status_fail_r(&from, EF_ERR_DOWNLOAD_NO_RANGE, true, "server does not serve byte ranges");
  assert_int_equal(ef_status_copy(&to, &from), EF_ERR_DOWNLOAD_NO_RANGE);
  assert_int_equal(to.code, EF_ERR_DOWNLOAD_NO_RANGE);
  assert_true(to.retryable);
  assert_string_equal(to.detail, from.detail);
  /* the first failure wins here too, and an empty status copies nothing */
  ef_status other = EF_STATUS_INIT;
  ef_status_fail(&other, EF_ERR_IO, "other");
  assert_int_equal(ef_status_copy(&to, &other), EF_ERR_IO);
  assert_string_equal(to.detail, "server does not serve byte ranges");
  ef_status none = EF_STATUS_INIT, target = EF_STATUS_INIT;
  assert_int_equal(ef_status_copy(&target, &none), EF_OK);
  assert_int_equal(target.code, EF_OK);
  assert_int_equal(ef_status_copy(&target, NULL), EF_OK);
}

static void test_prefix_and_text(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  char buf[EF_STATUS_DETAIL_MAX + 32];
  ef_status_prefix(&st, "download"); /* nothing failed: nothing to name */
  assert_string_equal(st.detail, "");
  assert_string_equal(ef_status_text(&st, buf, sizeof buf), "ok");
  ef_status_fail(&st, EF_ERR_DOWNLOAD_FAILED, "HTTP 404");
  ef_status_prefix(&st, "download");
  assert_string_equal(st.detail, "download: HTTP 404");
  assert_string_equal(ef_status_text(&st, buf, sizeof buf), "download_failed: download: HTTP 404");
  ef_status bare = EF_STATUS_INIT;
  ef_status_fail(&bare, EF_ERR_NOMEM, NULL);
  ef_status_prefix(&bare, "journal");
  assert_string_equal(bare.detail, "journal");
  ef_status_clear(&bare);
  ef_status_fail(&bare, EF_ERR_NOMEM, NULL);
  assert_string_equal(ef_status_text(&bare, buf, sizeof buf), "out_of_memory");
  /* a detail too long for the prefix is cut at its end, never overflows */
  char longer[EF_STATUS_DETAIL_MAX * 2];
  memset(longer, 'x', sizeof longer - 1);
  longer[sizeof longer - 1] = '\0';
  ef_status_clear(&st);
  ef_status_fail(&st, EF_ERR_IO, "%s", longer);
  assert_int_equal(strlen(st.detail), EF_STATUS_DETAIL_MAX - 1);
  ef_status_prefix(&st, "step");
  assert_int_equal(strlen(st.detail), EF_STATUS_DETAIL_MAX - 1);
  assert_memory_equal(st.detail, "step: xxx", 9);
  /* a small buffer is cut too */
  char small[8];
  assert_string_equal(ef_status_text(&st, small, sizeof small), "io_erro");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fail_and_defaults), cmocka_unit_test(test_first_failure_wins),
      cmocka_unit_test(test_null_is_allowed),   cmocka_unit_test(test_copy),
      cmocka_unit_test(test_prefix_and_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
