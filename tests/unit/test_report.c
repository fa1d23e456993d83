/* State, progress and last-will documents; the progress limiter; the error table doc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "espfleet/report.h"

#define SHA_A "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static cJSON *parse_free(char *text) {
  assert_non_null(text);
  cJSON *o = cJSON_Parse(text);
  free(text);
  assert_non_null(o);
  return o;
}

static const char *str(const cJSON *o, const char *key) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsString(it)) fail_msg("%s is not a string", key);
  return it->valuestring;
}

static double num(const cJSON *o, const char *key) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(it)) fail_msg("%s is not a number", key);
  return it->valuedouble;
}

static void test_state_names(void **state) {
  (void)state;
  static const char *names[] = {"idle",      "downloading", "verifying", "activating", "rebooting",
                                "succeeded", "failed",      "rejected",  "canceled",   "skipped"};
  for (int i = 0; i < EF_STATE__COUNT; i++) {
    ef_job_state s;
    assert_string_equal(ef_state_name((ef_job_state)i), names[i]);
    assert_int_equal(ef_state_from_name(names[i], &s), EF_OK);
    assert_int_equal(s, i);
  }
  ef_job_state s;
  assert_int_equal(ef_state_from_name("offline", &s), EF_ERR_INVALID_ARG);
  assert_string_equal(ef_state_name(EF_STATE__COUNT), "unknown");
  assert_false(ef_state_is_final(EF_STATE_IDLE));
  assert_false(ef_state_is_final(EF_STATE_DOWNLOADING));
  assert_false(ef_state_is_final(EF_STATE_VERIFYING));
  assert_false(ef_state_is_final(EF_STATE_ACTIVATING));
  assert_false(ef_state_is_final(EF_STATE_REBOOTING));
  assert_true(ef_state_is_final(EF_STATE_SUCCEEDED));
  assert_true(ef_state_is_final(EF_STATE_FAILED));
  assert_true(ef_state_is_final(EF_STATE_REJECTED));
  assert_true(ef_state_is_final(EF_STATE_CANCELED));
  assert_true(ef_state_is_final(EF_STATE_SKIPPED));
}

static void test_rfc3339_format(void **state) {
  (void)state;
  char ts[32];
  ef_rfc3339_format(0, ts);
  assert_string_equal(ts, "1970-01-01T00:00:00.000Z");
  ef_rfc3339_format(1893553445123LL, ts);
  assert_string_equal(ts, "2030-01-02T03:04:05.123Z");
  ef_rfc3339_format(1700000000007LL, ts);
  assert_string_equal(ts, "2023-11-14T22:13:20.007Z");
}

static void test_state_document_failed(void **state) {
  (void)state;
  ef_state s;
  ef_state_init(&s, "dev-1");
  s.state = EF_STATE_FAILED;
  snprintf(s.job_id, sizeof s.job_id, "job-9");
  snprintf(s.fw_version, sizeof s.fw_version, "FG-1.0.4.0.0");
  snprintf(s.driver_release, sizeof s.driver_release, "FG-1.0.3.0.0");
  s.driver_source = EF_DRIVER_SOURCE_KERNEL_LOG;
  snprintf(s.app.version, sizeof s.app.version, "1.2.0");
  snprintf(s.app.project, sizeof s.app.project, "hosted");
  snprintf(s.app.sha256_hex, sizeof s.app.sha256_hex, SHA_A);
  s.bytes = 4096;
  s.total = 1048576;
  s.attempt = 2;
  s.error = EF_ERR_IMAGE_BAD_MAGIC;
  snprintf(s.detail, sizeof s.detail, "first byte is 0x00, expected 0xE9");
  s.ts_ms = 1893553445123LL;
  cJSON *o = parse_free(ef_report_state_json(&s));
  assert_string_equal(str(o, "device_id"), "dev-1");
  assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "online")));
  assert_string_equal(str(o, "state"), "failed");
  assert_string_equal(str(o, "job_id"), "job-9");
  assert_string_equal(str(o, "fw_version"), "FG-1.0.4.0.0");
  assert_string_equal(str(o, "driver_release"), "FG-1.0.3.0.0");
  assert_string_equal(str(o, "driver_release_source"), "kernel_log");
  const cJSON *app = cJSON_GetObjectItemCaseSensitive(o, "app");
  assert_string_equal(str(app, "version"), "1.2.0");
  assert_string_equal(str(app, "project"), "hosted");
  assert_string_equal(str(app, "sha256"), SHA_A);
  assert_true(num(o, "bytes") == 4096);
  assert_true(num(o, "total") == 1048576);
  assert_true(num(o, "attempt") == 2);
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
  assert_string_equal(str(err, "code"), "image_invalid"); /* the class */
  assert_string_equal(str(err, "message"), ef_err_message(EF_ERR_IMAGE_BAD_MAGIC));
  assert_string_equal(str(err, "detail"), "image_bad_magic: first byte is 0x00, expected 0xE9");
  assert_string_equal(str(o, "ts"), "2030-01-02T03:04:05.123Z");
  assert_string_equal(str(o, "client_version"), ESPFLEET_VERSION);
  cJSON_Delete(o);
}

static void test_state_document_idle(void **state) {
  (void)state;
  ef_state s;
  ef_state_init(&s, "dev-1");
  s.error = EF_ERR_HASH_MISMATCH; /* stale error: not shown outside failed/rejected */
  cJSON *o = parse_free(ef_report_state_json(&s));
  assert_string_equal(str(o, "state"), "idle");
  assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "job_id")));
  assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "fw_version")));
  /* the driver release not known: said so, not left out */
  assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "driver_release")));
  assert_string_equal(str(o, "driver_release_source"), "unknown");
  assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "app")));
  assert_null(cJSON_GetObjectItemCaseSensitive(o, "error"));
  assert_true(num(o, "attempt") == 0);
  cJSON_Delete(o);

  /* rejected without a detail sentence: detail is just the name */
  s.state = EF_STATE_REJECTED;
  s.error = EF_ERR_DOWNGRADE_REFUSED;
  o = parse_free(ef_report_state_json(&s));
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
  assert_string_equal(str(err, "code"), "downgrade_refused");
  assert_string_equal(str(err, "detail"), "downgrade_refused");
  cJSON_Delete(o);

  /* an ESP timeout reports its family */
  s.state = EF_STATE_FAILED;
  s.error = EF_ERR_ESP_TIMEOUT;
  o = parse_free(ef_report_state_json(&s));
  assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(o, "error"), "code"), "esp_unavailable");
  cJSON_Delete(o);
}

static void test_progress_and_offline(void **state) {
  (void)state;
  cJSON *o = parse_free(ef_report_progress_json("dev-1", "job-9", 524288, 1048576, 1000));
  assert_string_equal(str(o, "device_id"), "dev-1");
  assert_string_equal(str(o, "job_id"), "job-9");
  assert_true(num(o, "bytes") == 524288);
  assert_true(num(o, "total") == 1048576);
  assert_true(num(o, "percent") == 50);
  assert_string_equal(str(o, "ts"), "1970-01-01T00:00:01.000Z");
  cJSON_Delete(o);
  o = parse_free(ef_report_progress_json("dev-1", "job-9", 1048575, 1048576, 0));
  assert_true(num(o, "percent") == 99); /* never rounds up to 100 before the end */
  cJSON_Delete(o);
  o = parse_free(ef_report_progress_json("dev-1", "job-9", 10, 0, 0));
  assert_true(num(o, "percent") == 0);
  cJSON_Delete(o);

  o = parse_free(ef_report_offline_json("dev-1"));
  assert_string_equal(str(o, "device_id"), "dev-1");
  assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "online")));
  assert_string_equal(str(o, "client_version"), ESPFLEET_VERSION);
  cJSON_Delete(o);
}

static void test_progress_limiter(void **state) {
  (void)state;
  ef_progress_limiter l;
  ef_progress_limiter_init(&l);
  const uint64_t total = 100000;
  assert_true(ef_progress_due(&l, 1000, 100, total));  /* first one */
  assert_false(ef_progress_due(&l, 1100, 200, total)); /* 100 ms later */
  assert_false(ef_progress_due(&l, 1499, 300, total));
  assert_true(ef_progress_due(&l, 1500, 400, total)); /* 500 ms later */
  /* a stalled transfer (same bytes) still reports every 5 s, not more often */
  assert_false(ef_progress_due(&l, 2500, 400, total));
  assert_false(ef_progress_due(&l, 6499, 400, total));
  assert_true(ef_progress_due(&l, 6500, 400, total));
  /* 100 % always goes out, even right after another one, and only once */
  assert_true(ef_progress_due(&l, 6600, total, total));
  assert_false(ef_progress_due(&l, 20000, total, total));

  /* at most 2 per second over a fast transfer, every call 10 ms apart */
  ef_progress_limiter_init(&l);
  int published = 0;
  for (int t = 0; t < 10000; t += 10)
    if (ef_progress_due(&l, t, (uint64_t)t + 1, 1000000)) published++;
  assert_int_equal(published, 20);
}

/* docs/errors.md must list every code of error.h with its class. */
static void test_errors_doc_complete(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s", __FILE__);
  char *cut = strstr(path, "/tests/unit/");
  if (!cut) skip();
  snprintf(cut, sizeof path - (size_t)(cut - path), "/docs/errors.md");
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("cannot open %s", path);
  static char doc[65536];
  size_t n = fread(doc, 1, sizeof doc - 1, f);
  fclose(f);
  doc[n] = '\0';
  for (int e = 0; e < EF_ERR__COUNT; e++) {
    char row[128];
    snprintf(row, sizeof row, "| `%s` | `%s` |", ef_err_name((ef_err)e), ef_err_class((ef_err)e));
    if (!strstr(doc, row)) fail_msg("docs/errors.md lacks the row starting %s", row);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_state_names),           cmocka_unit_test(test_rfc3339_format),
      cmocka_unit_test(test_state_document_failed), cmocka_unit_test(test_state_document_idle),
      cmocka_unit_test(test_progress_and_offline),  cmocka_unit_test(test_progress_limiter),
      cmocka_unit_test(test_errors_doc_complete),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
