/* Job documents and the job policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "espfleet/job.h"

#define SHA_A "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define SHA_B "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"

static const char *full_job =
    "{\"job_id\":\"fw-2025.01:canary_1\",\"url\":\"https://updates.example.com/fw/1.2.0.bin\","
    "\"sha256\":\"" SHA_A
    "\",\"size\":1048576,\"version\":\"1.2.0\",\"project\":\"hosted\","
    "\"chip\":\"ESP32-S3\",\"allow_downgrade\":true,\"rollout\":{\"percent\":25},"
    "\"not_after\":\"2030-01-02T03:04:05Z\",\"expect_fw_version\":\"FG-1.0.4.0.0\","
    "\"comment\":\"unknown keys are ignored\"}";

/* ef_job_parse, with its status's detail copied to @p reason; the status
 * must agree with the result and a refusal is never retryable. */
static ef_err parse_with(const char *json, size_t len, const ef_job_limits *lim, ef_job *job, char *reason,
                         size_t n) {
  ef_status st = EF_STATUS_INIT;
  ef_err e = ef_job_parse(json, len, lim, job, &st);
  assert_int_equal(st.code, e);
  assert_false(st.retryable);
  if (e != EF_OK) assert_true(st.detail[0] != '\0');
  snprintf(reason, n, "%s", st.detail);
  return e;
}

static ef_err parse(const char *json, ef_job *job, char *reason, size_t n) {
  ef_job_limits lim;
  ef_job_limits_default(&lim);
  return parse_with(json, strlen(json), &lim, job, reason, n);
}

static void test_full_job(void **state) {
  (void)state;
  ef_job j;
  char reason[256];
  assert_int_equal(parse(full_job, &j, reason, sizeof reason), EF_OK);
  assert_string_equal(j.job_id, "fw-2025.01:canary_1");
  assert_string_equal(j.url, "https://updates.example.com/fw/1.2.0.bin");
  assert_string_equal(j.sha256_hex, SHA_A);
  assert_int_equal(j.sha256[0], 0x9f);
  assert_int_equal(j.sha256[31], 0x08);
  assert_int_equal(j.size, 1048576);
  assert_string_equal(j.version, "1.2.0");
  assert_string_equal(j.project, "hosted");
  assert_string_equal(j.chip, "esp32s3");
  assert_int_equal(j.chip_id, 9);
  assert_true(j.allow_downgrade);
  assert_int_equal(j.rollout_percent, 25);
  assert_int_equal((long long)j.not_after, 1893553445LL); /* date -u -d 2030-01-02T03:04:05Z +%s */
  assert_string_equal(j.expect_fw_version, "FG-1.0.4.0.0");
}

static void test_minimal_job_defaults(void **state) {
  (void)state;
  ef_job j;
  char reason[256];
  const char *doc =
      "{\"job_id\":\"a\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":1,\"version\":\"1\"}";
  assert_int_equal(parse(doc, &j, reason, sizeof reason), EF_OK);
  assert_string_equal(j.project, "");
  assert_string_equal(j.chip, "");
  assert_int_equal(j.chip_id, -1);
  assert_false(j.allow_downgrade);
  assert_int_equal(j.rollout_percent, -1);
  assert_int_equal(j.not_after, 0);
  assert_string_equal(j.expect_fw_version, "");
}

/* Upper-case hex is accepted and normalised. */
static void test_sha_upper_case(void **state) {
  (void)state;
  ef_job j;
  char reason[256];
  const char *doc =
      "{\"job_id\":\"a\",\"url\":\"https://h/x\",\"sha256\":"
      "\"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08\","
      "\"size\":1,\"version\":\"1\"}";
  assert_int_equal(parse(doc, &j, reason, sizeof reason), EF_OK);
  assert_string_equal(j.sha256_hex, SHA_A);
}

struct bad_case {
  const char *doc;
  const char *reason_prefix; /* the reason must start with this (the key) */
  const char *job_id;        /* best-effort job_id expected */
};

#define GOOD_REST "\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":10,\"version\":\"1.0\""

static const struct bad_case bad_cases[] = {
    {"{" GOOD_REST "}", "job_id: required", ""},
    {"{\"job_id\":\"\"," GOOD_REST "}", "job_id: must be 1-64", ""},
    {"{\"job_id\":\"a/b\"," GOOD_REST "}", "job_id: must be 1-64", ""},
    {"{\"job_id\":\"a+b\"," GOOD_REST "}", "job_id: must be 1-64", ""},
    {"{\"job_id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"," GOOD_REST "}",
     "job_id: must be 1-64", ""},
    {"{\"job_id\":7," GOOD_REST "}", "job_id: must be 1-64", ""},
    {"{\"job_id\":\"j1\",\"sha256\":\"" SHA_A "\",\"size\":10,\"version\":\"1\"}", "url: required", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"http://h/x\",\"sha256\":\"" SHA_A "\",\"size\":10,\"version\":\"1\"}",
     "url: must be https", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"ftp://h/x\",\"sha256\":\"" SHA_A "\",\"size\":10,\"version\":\"1\"}",
     "url: must be https", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://\",\"sha256\":\"" SHA_A "\",\"size\":10,\"version\":\"1\"}",
     "url: must be https", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https:// h/x\",\"sha256\":\"" SHA_A "\",\"size\":10,\"version\":\"1\"}",
     "url: must be https", "j1"},
    {"{\"job_id\":\"j1\",\"url\":[],\"sha256\":\"" SHA_A "\",\"size\":10,\"version\":\"1\"}", "url: ", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"size\":10,\"version\":\"1\"}", "sha256: required", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":\"abc\",\"size\":10,\"version\":\"1\"}",
     "sha256: must be 64 hex digits", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "0\",\"size\":10,\"version\":\"1\"}",
     "sha256: must be 64 hex digits", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":"
     "\"zf86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\",\"size\":10,\"version\":\"1\"}",
     "sha256: must be 64 hex digits", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"version\":\"1\"}",
     "size: required", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":0,\"version\":\"1\"}",
     "size: must be a positive integer no larger than esp.max_image_size (16777216)", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":-5,\"version\":\"1\"}",
     "size: must be a positive integer", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":1.5,\"version\":\"1\"}",
     "size: must be a positive integer", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":\"10\",\"version\":\"1\"}",
     "size: must be a positive integer", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":10}", "version: required",
     "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"version\":\"2\"}", "version: given more than once", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":10,\"version\":1}",
     "version: must be a string", "j1"},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":10,\"version\":"
     "\"123456789012345678901234567890123\"}",
     "version: must be a string of 1-32", "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"project\":\"\"}", "project: must be a string", "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"chip\":\"esp99\"}", "chip: must be a known chip", "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"chip\":3}", "chip: must be a known chip", "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"allow_downgrade\":\"yes\"}",
     "allow_downgrade: must be true or false", "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"rollout\":50}", "rollout: must be an object", "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"rollout\":{}}", "rollout.percent: required", "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"rollout\":{\"percent\":101}}", "rollout.percent: must be 0..100",
     "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"rollout\":{\"percent\":-1}}", "rollout.percent: must be 0..100",
     "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"rollout\":{\"percent\":12.5}}", "rollout.percent: must be 0..100",
     "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"not_after\":\"tomorrow\"}", "not_after: must be an RFC 3339 time",
     "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"not_after\":\"2030-02-30T00:00:00Z\"}",
     "not_after: must be an RFC 3339", "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"not_after\":\"2030-01-01T00:00:00\"}",
     "not_after: must be an RFC 3339", "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"not_after\":1893553445}", "not_after: must be an RFC 3339", "j1"},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"expect_fw_version\":false}", "expect_fw_version: must be a string",
     "j1"},
    {"{\"job_id\":\"j1\",\"job_id\":\"j2\"," GOOD_REST "}", "job_id: given more than once", ""},
    {"[1,2,3]", "payload: must be a JSON object", ""},
    {"\"job\"", "payload: must be a JSON object", ""},
    {"{\"job_id\":\"j1\",", "payload: not valid JSON", ""},
    {"{\"job_id\":\"j1\"} trailing", "payload: not valid JSON", ""},
    {"", "payload: empty", ""},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/\xc3\x28\"}", "payload: not valid UTF-8", ""},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/\xed\xa0\x80\"}", "payload: not valid UTF-8", ""},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/\xc0\xaf\"}", "payload: not valid UTF-8", ""},
    /* an escaped NUL would cut a string short: refused, never truncated */
    {"{\"job_id\":\"j1\\u0000evil\"," GOOD_REST "}", "payload: \\u0000 is not allowed", ""},
    {"{\"job_id\":\"j1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A
     "\",\"size\":10,\"version\":\"1.0\\u0000x\"}",
     "payload: \\u0000 is not allowed", ""},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"project\":\"p\\u0000\"}", "payload: \\u0000 is not allowed", ""},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"expect_fw_version\":\"FG-1.0.4.0.0\\u0000x\"}",
     "payload: \\u0000 is not allowed", ""},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"version\\u0000\":\"9\"}", "payload: \\u0000 is not allowed", ""},
    {"{\"job_id\":\"j1\"," GOOD_REST ",\"note\":\"\\\\\\u0000\"}", "payload: \\u0000 is not allowed", ""},
};

static void test_bad_jobs(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    ef_job j;
    char reason[256] = "";
    ef_err e = parse(bad_cases[i].doc, &j, reason, sizeof reason);
    if (e != EF_ERR_BAD_JOB ||
        strncmp(reason, bad_cases[i].reason_prefix, strlen(bad_cases[i].reason_prefix)) != 0 ||
        strcmp(j.job_id, bad_cases[i].job_id) != 0)
      fail_msg("case %zu (%s): got %s \"%s\" job_id \"%s\", want bad_job \"%s...\" job_id \"%s\"", i,
               bad_cases[i].doc, ef_err_name(e), reason, j.job_id, bad_cases[i].reason_prefix,
               bad_cases[i].job_id);
    /* nothing half-parsed survives a refusal */
    assert_string_equal(j.url, "");
    assert_int_equal(j.size, 0);
  }
}

static void test_embedded_nul(void **state) {
  (void)state;
  ef_job j;
  char reason[256];
  const char doc[] = "{\"job_id\":\"j1\"}\0{\"x\":1}";
  assert_int_equal(parse_with(doc, sizeof doc - 1, NULL, &j, reason, sizeof reason), EF_ERR_BAD_JOB);
  assert_string_equal(reason, "payload: not valid UTF-8 text");
}

static void test_escaped_backslash_then_u0000(void **state) {
  (void)state;
  ef_job j;
  char reason[256] = "";
  /* "\\u0000" in JSON is a backslash and the text "u0000": no NUL, accepted */
  assert_int_equal(
      parse("{\"job_id\":\"j1\"," GOOD_REST ",\"note\":\"a\\\\u0000b\"}", &j, reason, sizeof reason), EF_OK);
  assert_string_equal(j.job_id, "j1");
}

static void test_not_null_terminated(void **state) {
  (void)state;
  ef_job j;
  char reason[256];
  char buf[512];
  size_t n = (size_t)snprintf(buf, sizeof buf, "{\"job_id\":\"a\"," GOOD_REST "}");
  buf[n] = 'X'; /* garbage just past the length must not be read */
  assert_int_equal(parse_with(buf, n, NULL, &j, reason, sizeof reason), EF_OK);
  assert_string_equal(j.job_id, "a");
}

static void test_too_large(void **state) {
  (void)state;
  ef_job j;
  char reason[256];
  ef_job_limits lim;
  ef_job_limits_default(&lim);
  lim.max_image_size = 1000;
  const char *doc =
      "{\"job_id\":\"big\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":1001,\"version\":\"1\"}";
  assert_int_equal(parse_with(doc, strlen(doc), &lim, &j, reason, sizeof reason), EF_ERR_TOO_LARGE);
  assert_string_equal(reason, "size: 1001 bytes is larger than esp.max_image_size (1000)");
  assert_string_equal(j.job_id, "big");
  /* at the limit it is fine */
  doc =
      "{\"job_id\":\"big\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":1000,\"version\":\"1\"}";
  assert_int_equal(parse_with(doc, strlen(doc), &lim, &j, reason, sizeof reason), EF_OK);
  /* too large and malformed elsewhere: the malformation wins */
  doc = "{\"job_id\":\"big\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":5000}";
  assert_int_equal(parse_with(doc, strlen(doc), &lim, &j, reason, sizeof reason), EF_ERR_BAD_JOB);
  assert_string_equal(reason, "version: required");
}

static void test_huge_payload(void **state) {
  (void)state;
  ef_job j;
  char reason[256];
  size_t n = 1024 * 1024;
  char *doc = malloc(n + 1);
  assert_non_null(doc);
  /* valid JSON, but far above the payload limit: refused before parsing */
  int k = snprintf(doc, n, "{\"job_id\":\"j1\",\"pad\":\"");
  memset(doc + k, 'x', n - (size_t)k - 2);
  doc[n - 2] = '"';
  doc[n - 1] = '}';
  doc[n] = '\0';
  assert_int_equal(parse_with(doc, n, NULL, &j, reason, sizeof reason), EF_ERR_BAD_JOB);
  assert_true(strncmp(reason, "payload: too large", 18) == 0);
  /* a caller that dropped the oversized payload unread gets the same answer */
  assert_int_equal(parse_with(NULL, n, NULL, &j, reason, sizeof reason), EF_ERR_BAD_JOB);
  assert_string_equal(reason, "payload: too large (1048576 bytes, at most 16384)");
  assert_int_equal(parse_with(NULL, 0, NULL, &j, reason, sizeof reason), EF_ERR_BAD_JOB);
  assert_string_equal(reason, "payload: empty");
  /* deeply nested arrays within the limit do not crash the parser */
  memset(doc, '[', 16000);
  assert_int_equal(parse_with(doc, 16000, NULL, &j, reason, sizeof reason), EF_ERR_BAD_JOB);
  assert_true(strncmp(reason, "payload: not valid JSON", 23) == 0);
  free(doc);
}

static void test_allow_http(void **state) {
  (void)state;
  ef_job j;
  char reason[256];
  ef_job_limits lim;
  ef_job_limits_default(&lim);
  lim.allow_http = true;
  const char *doc = "{\"job_id\":\"a\",\"url\":\"http://127.0.0.1:8080/x\",\"sha256\":\"" SHA_A
                    "\",\"size\":1,\"version\":\"1\"}";
  assert_int_equal(parse_with(doc, strlen(doc), &lim, &j, reason, sizeof reason), EF_OK);
  assert_string_equal(j.url, "http://127.0.0.1:8080/x");
  lim.allow_http = false;
  assert_int_equal(parse_with(doc, strlen(doc), &lim, &j, reason, sizeof reason), EF_ERR_BAD_JOB);
  assert_string_equal(reason, "url: must be https (https://host/...)");
}

static void test_rfc3339(void **state) {
  (void)state;
  time_t t;
  assert_int_equal(ef_rfc3339_parse("1970-01-01T00:00:00Z", &t), EF_OK);
  assert_int_equal(t, 0);
  assert_int_equal(ef_rfc3339_parse("2030-01-02T03:04:05.123456z", &t), EF_OK);
  assert_int_equal((long long)t, 1893553445LL);
  assert_int_equal(ef_rfc3339_parse("2030-01-02T05:04:05+02:00", &t), EF_OK);
  assert_int_equal((long long)t, 1893553445LL);
  assert_int_equal(ef_rfc3339_parse("2030-01-01T22:04:05-05:00", &t), EF_OK);
  assert_int_equal((long long)t, 1893553445LL);
  assert_int_equal(ef_rfc3339_parse("2024-02-29T00:00:00Z", &t), EF_OK);
  assert_int_equal(ef_rfc3339_parse("2023-02-29T00:00:00Z", &t), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_rfc3339_parse("2030-01-02 03:04:05Z", &t), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_rfc3339_parse("2030-01-02T03:04:05+0200", &t), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_rfc3339_parse("2030-01-02T03:04:05Zjunk", &t), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_rfc3339_parse("2030-13-02T03:04:05Z", &t), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_rfc3339_parse("2030-01-02T24:00:00Z", &t), EF_ERR_INVALID_ARG);
}

/* Red-team finding 1: offsets that carry the instant out of 1970..9999 UTC.
 * Both are valid RFC 3339; the instant must come back from the formatter's
 * text, or the journal cannot read back a job it accepted. */
static void test_rfc3339_offsets_at_the_edges(void **state) {
  (void)state;
  time_t t, back;
  char text[32];
  assert_int_equal(ef_rfc3339_parse("1970-01-01T00:00:00+01:00", &t), EF_OK);
  assert_int_equal((long long)t, -3600LL);
  assert_true(ef_rfc3339_format_seconds(t, text));
  assert_string_equal(text, "1969-12-31T23:00:00Z");
  assert_int_equal(ef_rfc3339_parse(text, &back), EF_OK);
  assert_int_equal((long long)back, (long long)t);

  assert_int_equal(ef_rfc3339_parse("9999-12-31T23:59:59-01:00", &t), EF_OK);
  assert_int_equal((long long)t, 253402300799LL + 3600);
  assert_true(ef_rfc3339_format_seconds(t, text));
  assert_string_equal(text, "9999-12-31T23:59:59-01:00");
  assert_int_equal(ef_rfc3339_parse(text, &back), EF_OK);
  assert_int_equal((long long)back, (long long)t);

  /* the extremes: 23:59 beyond either end of years 0000-9999 */
  assert_int_equal(ef_rfc3339_parse("0000-01-01T00:00:00+23:59", &t), EF_OK);
  assert_int_equal((long long)t, -62167219200LL - 86340);
  assert_true(ef_rfc3339_format_seconds(t, text));
  assert_string_equal(text, "0000-01-01T00:00:00+23:59");
  assert_false(ef_rfc3339_format_seconds(t - 1, text));
  assert_string_equal(text, "");
  assert_int_equal(ef_rfc3339_parse("9999-12-31T23:59:59-23:59", &t), EF_OK);
  assert_true(ef_rfc3339_format_seconds(t, text));
  assert_string_equal(text, "9999-12-31T23:59:59-23:59");
  assert_false(ef_rfc3339_format_seconds(t + 1, text));
  /* a second that needs a minute's offset keeps its own seconds */
  assert_true(ef_rfc3339_format_seconds(253402300799LL + 1, text));
  assert_string_equal(text, "9999-12-31T23:59:00-00:01");
  assert_true(ef_rfc3339_format_seconds(0, text));
  assert_string_equal(text, "1970-01-01T00:00:00Z");
  assert_true(ef_rfc3339_format_seconds(951782400, text));
  assert_string_equal(text, "2000-02-29T00:00:00Z");
  assert_int_equal(ef_rfc3339_parse("1969-12-31T23:59:59Z", &t), EF_OK);
  assert_int_equal((long long)t, -1LL);
  assert_int_equal(ef_rfc3339_parse("2030-01-02T03:04:60Z", &t), EF_OK); /* leap second */
  assert_int_equal((long long)t, 1893553499LL);
}

/* Red-team finding 4: a string that ends right after the offset sign (or
 * inside it) is never read past its end. Each text is copied to a buffer of
 * exactly its size, so ASan or valgrind sees any read beyond it. */
static void test_rfc3339_truncated_offsets(void **state) {
  (void)state;
  static const char *const cut[] = {
      "2030-01-02T00:00:00+",      "2030-01-02T00:00:00-",     "2030-01-02T00:00:00+0",
      "2030-01-02T00:00:00+01",    "2030-01-02T00:00:00+01:",  "2030-01-02T00:00:00+01:0",
      "2030-01-02T00:00:00.",      "2030-01-02T00:00:00.5",    "2030-01-02T00:00:00.5+",
      "2030-01-02T00:00:00+1x:00", "2030-01-02T00:00:00+01x00"};
  for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
    size_t n = strlen(cut[i]) + 1;
    char *exact = malloc(n);
    assert_non_null(exact);
    memcpy(exact, cut[i], n);
    time_t t;
    if (ef_rfc3339_parse(exact, &t) != EF_ERR_INVALID_ARG) fail_msg("accepted %s", cut[i]);
    free(exact);
  }
}

/* Every instant the parser can return is written so that it reads back the
 * same: random instants over the whole range, and the neighbours of the
 * places where the text changes form. */
static void test_rfc3339_format_parse_inverse(void **state) {
  (void)state;
  const int64_t lo = -62167219200LL - 86340, hi = 253402300799LL + 86340;
  int64_t edges[] = {lo, -62167219200LL, -86400, -1, 0, 1, 951782399, 951782400, 253402300799LL, hi};
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (int i = 0; i < 200000; i++) {
    int64_t t;
    if (i < (int)(sizeof edges / sizeof edges[0]) * 3)
      t = edges[i / 3] + (i % 3) - 1;
    else {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      t = lo + (int64_t)(x % (uint64_t)(hi - lo + 1));
    }
    char text[32];
    time_t back;
    bool ok = ef_rfc3339_format_seconds((time_t)t, text);
    if (t < lo || t > hi) {
      assert_false(ok);
      continue;
    }
    if (!ok || ef_rfc3339_parse(text, &back) != EF_OK || (int64_t)back != t)
      fail_msg("%lld written as \"%s\" does not read back", (long long)t, text);
  }
}

/* The largest size a job may carry (2^53) is written exactly: cJSON would
 * print it with 15 digits, 9007199254740990, and the journal would read back
 * another job. */
static void test_to_json_round_trip_huge_size(void **state) {
  (void)state;
  ef_job_limits lim = {.max_payload = 4096, .max_image_size = UINT64_MAX, .allow_http = false};
  const char *doc = "{\"job_id\":\"j\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A
                    "\",\"size\":9007199254740992,\"version\":\"1\"}";
  ef_job a, b;
  assert_int_equal(ef_job_parse(doc, strlen(doc), &lim, &a, NULL), EF_OK);
  assert_int_equal(a.size, 9007199254740992ULL);
  char *text = ef_job_to_json(&a);
  assert_non_null(text);
  assert_non_null(strstr(text, "\"size\":9007199254740992,"));
  assert_int_equal(ef_job_parse(text, strlen(text), &lim, &b, NULL), EF_OK);
  free(text);
  assert_memory_equal(&a, &b, sizeof a);
}

/* A job with such a not_after writes a document that reads back to it. */
static void test_to_json_round_trip_not_after_edges(void **state) {
  (void)state;
  static const char *const na[] = {"1970-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                   "1970-01-01T00:00:00Z",      "0000-01-01T00:00:00+23:59",
                                   "9999-12-31T23:59:59-23:59", "2030-01-02T03:04:60.999+05:30"};
  for (size_t i = 0; i < sizeof na / sizeof na[0]; i++) {
    char doc[512], reason[256];
    snprintf(doc, sizeof doc,
             "{\"job_id\":\"j\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A
             "\",\"size\":1,\"version\":\"1\",\"not_after\":\"%s\"}",
             na[i]);
    ef_job a, b;
    assert_int_equal(parse(doc, &a, reason, sizeof reason), EF_OK);
    char *text = ef_job_to_json(&a);
    assert_non_null(text);
    if (parse(text, &b, reason, sizeof reason) != EF_OK)
      fail_msg("%s: %s does not read back: %s", na[i], text, reason);
    free(text);
    assert_memory_equal(&a, &b, sizeof a);
  }
}

static void test_fingerprint(void **state) {
  (void)state;
  ef_job a, b;
  char fa[65], fb[65], reason[256];
  assert_int_equal(parse(full_job, &a, reason, sizeof reason), EF_OK);
  ef_job_fingerprint(&a, fa);
  assert_int_equal(strlen(fa), 64);
  /* stable: same content, different key order and a different rollout */
  const char *reordered =
      "{\"rollout\":{\"percent\":90},\"expect_fw_version\":\"FG-1.0.4.0.0\",\"not_after\":\"2030-01-02T04:04:"
      "05+01:00\","
      "\"allow_downgrade\":true,\"chip\":\"esp32s3\",\"project\":\"hosted\",\"version\":\"1.2.0\",\"size\":"
      "1048576,"
      "\"sha256\":\"" SHA_A
      "\",\"url\":\"https://updates.example.com/fw/1.2.0.bin\",\"job_id\":\"fw-2025.01:canary_1\"}";
  assert_int_equal(parse(reordered, &b, reason, sizeof reason), EF_OK);
  ef_job_fingerprint(&b, fb);
  assert_string_equal(fa, fb);
  /* no rollout at all is the same job too */
  b.rollout_percent = -1;
  ef_job_fingerprint(&b, fb);
  assert_string_equal(fa, fb);
  /* every content field changes it */
  b = a;
  snprintf(b.url, sizeof b.url, "https://updates.example.com/fw/1.2.1.bin");
  ef_job_fingerprint(&b, fb);
  assert_string_not_equal(fa, fb);
  b = a;
  snprintf(b.sha256_hex, sizeof b.sha256_hex, SHA_B);
  ef_job_fingerprint(&b, fb);
  assert_string_not_equal(fa, fb);
  b = a;
  b.size++;
  ef_job_fingerprint(&b, fb);
  assert_string_not_equal(fa, fb);
  b = a;
  snprintf(b.version, sizeof b.version, "1.2.1");
  ef_job_fingerprint(&b, fb);
  assert_string_not_equal(fa, fb);
  b = a;
  b.allow_downgrade = false;
  ef_job_fingerprint(&b, fb);
  assert_string_not_equal(fa, fb);
  b = a;
  b.project[0] = '\0';
  ef_job_fingerprint(&b, fb);
  assert_string_not_equal(fa, fb);
  b = a;
  b.not_after++;
  ef_job_fingerprint(&b, fb);
  assert_string_not_equal(fa, fb);
  b = a;
  b.expect_fw_version[0] = '\0';
  ef_job_fingerprint(&b, fb);
  assert_string_not_equal(fa, fb);
  b = a;
  snprintf(b.job_id, sizeof b.job_id, "other");
  ef_job_fingerprint(&b, fb);
  assert_string_not_equal(fa, fb);
}

static void test_to_json_round_trip(void **state) {
  (void)state;
  ef_job a, b;
  char reason[256];
  assert_int_equal(parse(full_job, &a, reason, sizeof reason), EF_OK);
  char *text = ef_job_to_json(&a);
  assert_non_null(text);
  assert_int_equal(parse(text, &b, reason, sizeof reason), EF_OK);
  free(text);
  assert_memory_equal(&a, &b, sizeof a);
}

/* Expected values: printf 'job-1/dev-1' | sha256sum -> 126a17c8..., 0x126a17c8 % 10000 = 2792. */
static void test_canary_bucket(void **state) {
  (void)state;
  assert_int_equal(ef_canary_bucket("job-1", "dev-1"), 2792);
  assert_int_equal(ef_canary_bucket("rollout-2025-01", "esp-gw-0042"), 681); /* a404d749 */
  assert_int_equal(ef_canary_bucket("a", "b"), 192);                         /* c14cddc0 */
  assert_true(ef_canary_selected(2792, 28));
  assert_false(ef_canary_selected(2792, 27));
  assert_false(ef_canary_selected(0, 0));
  assert_true(ef_canary_selected(0, 1));
  assert_true(ef_canary_selected(9999, 100));
  assert_true(ef_canary_selected(9999, -1));
  assert_false(ef_canary_selected(100, 1));
  assert_true(ef_canary_selected(99, 1));
}

static ef_job policy_job(void) {
  ef_job j;
  char reason[256];
  const char *doc = "{\"job_id\":\"job-1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A
                    "\",\"size\":10,\"version\":\"1.10.0\",\"not_after\":\"2030-01-01T00:00:00Z\"}";
  assert_int_equal(parse(doc, &j, reason, sizeof reason), EF_OK);
  return j;
}

/* A device "dev-1" of any chip with nothing installed, running, waiting or
 * recorded, at @p now; @p starting as in ef_job_facts. */
static ef_job_facts facts_at(time_t now, bool starting) {
  ef_job_facts f;
  memset(&f, 0, sizeof f);
  f.starting = starting;
  f.device_id = "dev-1";
  f.chip_id = -1;
  f.now = now;
  return f;
}

/* ef_job_decide on a fresh status; the status holds an error exactly for
 * REJECT and REFUSE, always with a sentence, never retryable. */
static ef_job_decision decide(const ef_job *j, const ef_status *parsed, const ef_job_facts *f,
                              ef_status *st) {
  ef_status_clear(st);
  ef_job_decision d = ef_job_decide(j, parsed, f, st);
  if (d == EF_DECISION_REJECT || d == EF_DECISION_REFUSE) {
    assert_int_not_equal(st->code, EF_OK);
    assert_true(st->detail[0] != '\0');
    assert_false(st->retryable);
  } else {
    assert_int_equal(st->code, EF_OK);
  }
  return d;
}

static void test_policy(void **state) {
  (void)state;
  ef_job j = policy_job();
  time_t before = 1893456000 - 1, after = 1893456000 + 1;
  ef_job_facts f = facts_at(before, true);
  ef_status st;
  assert_false(ef_job_expired(&j, 1893456000));
  assert_false(ef_job_expired(&j, before));
  assert_true(ef_job_expired(&j, after));

  assert_true(ef_job_already_installed(&j, "1.10.0", SHA_A));
  assert_false(ef_job_already_installed(&j, "1.10.0", SHA_B));
  assert_false(ef_job_already_installed(&j, "1.9.0", SHA_A));
  assert_false(ef_job_already_installed(&j, "", ""));

  assert_int_equal(ef_job_check_downgrade(&j, "1.9.3"), EF_OK); /* numeric, not text, order */
  assert_int_equal(ef_job_check_downgrade(&j, "1.10.0"), EF_OK);
  assert_int_equal(ef_job_check_downgrade(&j, "1.11.0"), EF_ERR_DOWNGRADE_REFUSED);
  assert_int_equal(ef_job_check_downgrade(&j, ""), EF_OK);
  j.allow_downgrade = true;
  assert_int_equal(ef_job_check_downgrade(&j, "1.11.0"), EF_OK);
  j.allow_downgrade = false;

  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_RUN);
  f.now = after;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_EXPIRED);
  assert_string_equal(st.detail, "not_after 2030-01-01T00:00:00.000Z has passed");
  f.now = before;
  f.installed_version = "2.0";
  f.installed_sha256_hex = SHA_B;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_DOWNGRADE_REFUSED);
  assert_string_equal(st.detail, "installed 2.0 is newer than 1.10.0");
  f.installed_version = "1.10.0";
  f.installed_sha256_hex = SHA_A;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_INSTALLED);
  f.installed_version = f.installed_sha256_hex = NULL;
  /* bucket of job-1/dev-1 is 2792: percent 27 skips, 28 runs */
  j.rollout_percent = 27;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_SKIP);
  j.rollout_percent = 28;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_RUN);
  j.rollout_percent = 0;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_SKIP);
  j.rollout_percent = 100;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_RUN);
  /* the same job when it arrives: the policy waits for its turn */
  f.starting = false;
  f.now = after;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_WAIT);
}

/* The chip check: a job that names a chip runs only on a device of that
 * chip, and it comes first among the policy's rules. */
static void test_intake_chip(void **state) {
  (void)state;
  ef_job j = policy_job();
  time_t before = 1893456000 - 1, after = 1893456000 + 1;
  ef_job_facts f = facts_at(before, true);
  ef_status st;
  assert_int_equal(j.chip_id, -1);
  f.chip_id = 0x0009;                                           /* esp32s3 */
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_RUN); /* no chip named: any device */
  snprintf(j.chip, sizeof j.chip, "esp32s3");
  j.chip_id = 0x0009;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_RUN);
  f.chip_id = 0x0005; /* esp32c3 */
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_CHIP_MISMATCH);
  assert_string_equal(st.detail, "job is for esp32s3, this device has esp32c3");
  /* before expiry, canary, installed, downgrade and driver */
  f.now = after;
  j.rollout_percent = 0;
  f.installed_version = "9.0";
  f.driver_release = "FG-1.0.0.0.0";
  snprintf(j.expect_fw_version, sizeof j.expect_fw_version, "FG-1.0.4.0.0");
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_CHIP_MISMATCH);
  /* a device configured for any chip takes it (the image header is checked
   * before OTA begin anyway) */
  f.chip_id = -1;
  f.now = before;
  j.rollout_percent = -1;
  f.installed_version = NULL;
  f.driver_release = NULL;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_RUN);
  /* when it arrives, the chip is not looked at yet: it waits its turn */
  f.chip_id = 0x0005;
  f.starting = false;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_WAIT);
}

/* The job policy_job() with another url: same job_id, other content. */
static ef_job conflicting_job(void) {
  ef_job j = policy_job();
  snprintf(j.url, sizeof j.url, "https://h/other");
  return j;
}

/* What arrives against what runs, waits and was recorded. */
static void test_intake_delivery(void **state) {
  (void)state;
  ef_job j = policy_job(), other = conflicting_job(), unrelated = policy_job();
  snprintf(unrelated.job_id, sizeof unrelated.job_id, "job-2");
  time_t now = 1893456000 - 1;
  ef_job_facts f = facts_at(now, false);
  ef_status st;
  char fp[65], other_fp[65];
  ef_job_fingerprint(&j, fp);
  ef_job_fingerprint(&other, other_fp);

  /* nothing runs, waits or is recorded: it waits for its turn */
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_WAIT);
  /* another job runs or waits: still waits (and replaces the waiting one) */
  f.running = &unrelated;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_WAIT);
  f.running = NULL;
  f.waiting = &unrelated;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_WAIT);

  /* the running job again: ignored; with other content: a conflict that
   * is not recorded (the running job's result will be) */
  f.waiting = NULL;
  f.running = &j;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_IGNORE);
  assert_int_equal(decide(&other, NULL, &f, &st), EF_DECISION_REFUSE);
  assert_int_equal(st.code, EF_ERR_JOB_CONFLICT);
  assert_string_equal(st.detail, "differs from the job with this job_id that is running");

  /* the waiting job again: waits (same content), or a conflict */
  f.running = NULL;
  f.waiting = &j;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_WAIT);
  assert_int_equal(decide(&other, NULL, &f, &st), EF_DECISION_REFUSE);
  assert_int_equal(st.code, EF_ERR_JOB_CONFLICT);
  assert_string_equal(st.detail, "differs from the waiting job with this job_id");
  f.waiting = NULL;

  /* a recorded result: repeated for the same content, a conflict for other
   * content; the first job's result stands */
  f.has_final = true;
  f.final_fingerprint = fp;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_REPEAT);
  assert_int_equal(decide(&other, NULL, &f, &st), EF_DECISION_REFUSE);
  assert_int_equal(st.code, EF_ERR_JOB_CONFLICT);
  assert_string_equal(st.detail, "differs from an earlier job with this job_id");
  /* ... also when its turn comes: never run twice */
  f.starting = true;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_REPEAT);
  f.starting = false;
  /* a recorded refusal of a document that never parsed has no fingerprint:
   * no conflict, and it does not stand for this job (a malformed first copy
   * must not poison the job_id, red-team finding 7): the job waits its turn */
  f.final_fingerprint = "";
  assert_int_equal(decide(&other, NULL, &f, &st), EF_DECISION_WAIT);
  /* a skipped job is evaluated again: a wider rollout may select it */
  f.final_fingerprint = fp;
  f.final_skipped = true;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_WAIT);
  f.starting = true;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_RUN);
  j.rollout_percent = 27; /* bucket 2792 */
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_SKIP);
  /* ... but not with other content */
  assert_int_equal(decide(&other, NULL, &f, &st), EF_DECISION_REFUSE);
  assert_int_equal(st.code, EF_ERR_JOB_CONFLICT);
}

/* The parse result: a document that did not parse is rejected with the
 * parser's status, and recorded unless its job_id has a result of its own. */
static void test_intake_parse_result(void **state) {
  (void)state;
  ef_job_facts f = facts_at(1893456000 - 1, false);
  ef_job bad, running = policy_job();
  ef_status parsed = EF_STATUS_INIT, st;

  /* no valid job_id: rejected and recorded as a job without id */
  assert_int_equal(ef_job_parse("{\"url\":1}", 10, NULL, &bad, &parsed), EF_ERR_BAD_JOB);
  assert_string_equal(bad.job_id, "");
  assert_int_equal(decide(&bad, &parsed, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_BAD_JOB);
  assert_string_equal(st.detail, parsed.detail);

  /* a valid job_id nobody knows: rejected against that job_id */
  ef_status_clear(&parsed);
  const char *doc = "{\"job_id\":\"job-1\",\"url\":\"ftp://h/x\"}";
  assert_int_equal(ef_job_parse(doc, strlen(doc), NULL, &bad, &parsed), EF_ERR_BAD_JOB);
  assert_string_equal(bad.job_id, "job-1");
  assert_int_equal(decide(&bad, &parsed, &f, &st), EF_DECISION_REJECT);
  /* the running job's id, or one with a recorded result: reported, but the
   * real result stands (not recorded) */
  f.running = &running;
  assert_int_equal(decide(&bad, &parsed, &f, &st), EF_DECISION_REFUSE);
  assert_int_equal(st.code, EF_ERR_BAD_JOB);
  f.running = NULL;
  f.has_final = true;
  f.final_fingerprint = "";
  assert_int_equal(decide(&bad, &parsed, &f, &st), EF_DECISION_REFUSE);
  /* ... but a recorded rejection of a copy that never parsed does not
   * poison the job_id: the correct document sent next runs (red-team) */
  ef_job fixed;
  ef_status fixed_st = EF_STATUS_INIT;
  doc =
      "{\"job_id\":\"job-1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":10,\"version\":\"1\"}";
  assert_int_equal(ef_job_parse(doc, strlen(doc), NULL, &fixed, &fixed_st), EF_OK);
  assert_int_equal(decide(&fixed, &fixed_st, &f, &st), EF_DECISION_WAIT);
  f.has_final = false;

  /* too large for this device: rejected with too_large */
  ef_job_limits lim;
  ef_job_limits_default(&lim);
  lim.max_image_size = 5;
  ef_status_clear(&parsed);
  doc =
      "{\"job_id\":\"job-3\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A "\",\"size\":10,\"version\":\"1\"}";
  assert_int_equal(ef_job_parse(doc, strlen(doc), &lim, &bad, &parsed), EF_ERR_TOO_LARGE);
  assert_int_equal(decide(&bad, &parsed, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_TOO_LARGE);
  /* a parse status of EF_OK is the same as none */
  ef_status ok = EF_STATUS_INIT;
  assert_int_equal(decide(&running, &ok, &f, &st), EF_DECISION_WAIT);
  assert_string_equal(ef_job_decision_name(EF_DECISION_REFUSE), "refuse");
}

/* The driver gate: a job whose image carries another ESP-Hosted release
 * than the host driver accepts is refused before anything is sent, unless
 * the host driver is updated in the same rollout. */
static void test_driver_gate(void **state) {
  (void)state;
  ef_job j = policy_job();
  time_t before = 1893456000 - 1;
  ef_job_facts f = facts_at(before, true);
  ef_status st;
  /* no expect_fw_version: nothing to compare */
  assert_int_equal(ef_job_check_driver(&j, "FG-1.0.0.0.0"), EF_OK);
  snprintf(j.expect_fw_version, sizeof j.expect_fw_version, "FG-1.0.4.0.0");
  assert_int_equal(ef_job_check_driver(&j, "FG-1.0.4.0.0"), EF_OK);
  assert_int_equal(ef_job_check_driver(&j, "FG-1.0.3.0.0"), EF_ERR_DRIVER_INCOMPATIBLE);
  assert_int_equal(ef_job_check_driver(&j, "FG-1.0.4.0.00"), EF_ERR_DRIVER_INCOMPATIBLE);
  /* driver release unknown: the gate cannot apply */
  assert_int_equal(ef_job_check_driver(&j, ""), EF_OK);
  assert_int_equal(ef_job_check_driver(&j, NULL), EF_OK);

  f.driver_release = "FG-1.0.3.0.0";
  f.driver_source = EF_DRIVER_SOURCE_KERNEL_LOG;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_DRIVER_INCOMPATIBLE);
  assert_string_equal(st.detail,
                      "the image carries FG-1.0.4.0.0, the host driver accepts FG-1.0.3.0.0 "
                      "(kernel_log); with driver_update the job may install it");
  f.driver_release = "FG-1.0.4.0.0";
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_RUN);
  f.driver_release = "";
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_RUN);
  /* earlier rules first: a skipped or installed job needs no gate */
  f.driver_release = "FG-1.0.3.0.0";
  j.rollout_percent = 0;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_SKIP);
  j.rollout_percent = -1;
  f.installed_version = "1.10.0";
  f.installed_sha256_hex = SHA_A;
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_INSTALLED);
  f.installed_version = f.installed_sha256_hex = NULL;
  /* the host driver is updated in the same rollout */
  j.driver_update = true;
  assert_int_equal(ef_job_check_driver(&j, "FG-1.0.3.0.0"), EF_OK);
  assert_int_equal(decide(&j, NULL, &f, &st), EF_DECISION_RUN);
}

/* driver_update: a boolean, only with expect_fw_version; part of the
 * fingerprint only when set, so older fingerprints stay valid. */
static void test_driver_update_key(void **state) {
  (void)state;
  ef_job a, b;
  char reason[256], fa[65], fb[65];
  const char *base = "{\"job_id\":\"d-1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A
                     "\",\"size\":10,\"version\":\"1.0.0\",\"expect_fw_version\":\"FG-1.0.4.0.0\"";
  char doc[512];
  snprintf(doc, sizeof doc, "%s}", base);
  assert_int_equal(parse(doc, &a, reason, sizeof reason), EF_OK);
  assert_false(a.driver_update);
  snprintf(doc, sizeof doc, "%s,\"driver_update\":false}", base);
  assert_int_equal(parse(doc, &b, reason, sizeof reason), EF_OK);
  ef_job_fingerprint(&a, fa);
  ef_job_fingerprint(&b, fb);
  assert_string_equal(fa, fb);
  snprintf(doc, sizeof doc, "%s,\"driver_update\":true}", base);
  assert_int_equal(parse(doc, &b, reason, sizeof reason), EF_OK);
  assert_true(b.driver_update);
  ef_job_fingerprint(&b, fb);
  assert_string_not_equal(fa, fb);
  /* the journal's JSON keeps it */
  char *text = ef_job_to_json(&b);
  assert_non_null(text);
  assert_non_null(strstr(text, "\"driver_update\":true"));
  assert_int_equal(parse(text, &a, reason, sizeof reason), EF_OK);
  free(text);
  assert_memory_equal(&a, &b, sizeof a);

  snprintf(doc, sizeof doc, "%s,\"driver_update\":1}", base);
  assert_int_equal(parse(doc, &b, reason, sizeof reason), EF_ERR_BAD_JOB);
  assert_string_equal(reason, "driver_update: must be true or false");
  assert_int_equal(parse("{\"job_id\":\"d-2\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A
                         "\",\"size\":10,\"version\":\"1.0.0\",\"driver_update\":true}",
                         &b, reason, sizeof reason),
                   EF_ERR_BAD_JOB);
  assert_string_equal(reason,
                      "driver_update: needs expect_fw_version (the release the updated driver accepts)");
}

/* ---- signed releases: the test key and vectors of docs/security.md ---- */
static const char rel_pub_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAKeOgkGhuxmJGuOVMjN7Iak4WJ4YqMpKMppEbidtDxMs=\n"
    "-----END PUBLIC KEY-----\n";
/* vector 1 as a job; %s: extra top-level keys (or ""), then the release object's */
#define SIGNED_JOB                                                                                         \
  "{\"job_id\":\"s-1\",\"url\":\"https://h/x\",\"sha256\":"                                                \
  "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\",\"size\":307200,"                  \
  "\"version\":\"%s\",\"project\":\"demo\",\"chip\":\"esp32s3\",\"expect_fw_version\":\"FG-1.0.3.0.0\"%s," \
  "\"release\":{\"key_id\":\"%s\",\"secure_version\":2,\"allow_downgrade\":false,\"signature\":"           \
  "\"UerNmIYhVBhxi5/ntSvxDLfoguY25eeVstbM93EzS+jMtG7a4gANJWWQfDec2wRGAmUfmJ4ais+NsaRiGKwdDg==\"}}"

static ef_job signed_job(const char *version, const char *extra, const char *key_id) {
  char doc[2048], reason[256];
  ef_job j;
  snprintf(doc, sizeof doc, SIGNED_JOB, version, extra, key_id);
  assert_int_equal(parse(doc, &j, reason, sizeof reason), EF_OK);
  return j;
}

static void test_signed_releases(void **state) {
  (void)state;
  ef_keyring kr;
  ef_status st = EF_STATUS_INIT;
  ef_release_key *k = NULL;
  memset(&kr, 0, sizeof kr);
  assert_int_equal(ef_release_key_parse(rel_pub_pem, strlen(rel_pub_pem), &k, &st), EF_OK);
  assert_int_equal(ef_keyring_add(&kr, "test-2026", k, &st), EF_OK);
  ef_job_facts f = facts_at(1000, true);
  f.keyring = &kr;
  f.chip_id = 0x0009; /* esp32s3 */

  ef_job good = signed_job("1.2.3", "", "test-2026");
  assert_true(good.has_release);
  assert_int_equal(decide(&good, NULL, &f, &st), EF_DECISION_RUN);
  /* the job round-trips with its release */
  char *text = ef_job_to_json(&good);
  ef_job back;
  char reason[256];
  assert_int_equal(parse(text, &back, reason, sizeof reason), EF_OK);
  free(text);
  assert_memory_equal(&back, &good, sizeof back);

  /* unsigned, unknown key, revoked key, a signed field changed */
  ef_job unsigned_job;
  assert_int_equal(parse("{\"job_id\":\"u-1\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A
                         "\",\"size\":10,\"version\":\"1.0.0\"}",
                         &unsigned_job, reason, sizeof reason),
                   EF_OK);
  assert_int_equal(decide(&unsigned_job, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_RELEASE_UNSIGNED);
  ef_job other_key = signed_job("1.2.3", "", "rel-9");
  assert_int_equal(decide(&other_key, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_RELEASE_KEY_UNKNOWN);
  ef_job changed = signed_job("1.2.4", "", "test-2026");
  assert_int_equal(decide(&changed, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_RELEASE_BAD_SIGNATURE);
  ef_job lifted = signed_job("1.2.3", ",\"driver_update\":true", "test-2026");
  assert_int_equal(decide(&lifted, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_RELEASE_BAD_SIGNATURE);

  /* allow_downgrade added to a signed job does not permit a downgrade */
  ef_job down = signed_job("1.2.3", ",\"allow_downgrade\":true", "test-2026");
  f.installed_version = "2.0.0";
  assert_int_equal(decide(&down, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_DOWNGRADE_REFUSED);
  f.installed_version = NULL;

  /* below the floor: refused with every permission there is */
  f.has_floor = true;
  f.secure_floor = 3;
  assert_int_equal(decide(&good, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_SECURE_VERSION_ROLLBACK);
  f.keyring = NULL; /* even on a device without keys */
  assert_int_equal(decide(&down, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_SECURE_VERSION_ROLLBACK);
  f.secure_floor = 2;
  f.keyring = &kr;
  assert_int_equal(decide(&good, NULL, &f, &st), EF_DECISION_RUN);

  /* rotation: a second key; revocation wins over trust */
  assert_int_equal(ef_keyring_revoke(&kr, "test-2026", &st), EF_OK);
  assert_int_equal(decide(&good, NULL, &f, &st), EF_DECISION_REJECT);
  assert_int_equal(st.code, EF_ERR_RELEASE_KEY_REVOKED);

  /* without keys an unsigned job runs as before */
  f.keyring = NULL;
  f.has_floor = false;
  f.chip_id = -1;
  assert_int_equal(decide(&unsigned_job, NULL, &f, &st), EF_DECISION_RUN);
  ef_keyring_free(&kr);

  /* the release object is strict */
  const char *bad[] = {"{\"key_id\":\"k\"}", "[]",
                       "{\"key_id\":\"k\",\"signature\":\"AA==\",\"secure_version\":1}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char doc[1024];
    ef_job j;
    snprintf(doc, sizeof doc,
             "{\"job_id\":\"b\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A
             "\",\"size\":1,\"version\":\"1\","
             "\"release\":%s}",
             bad[i]);
    assert_int_equal(parse(doc, &j, reason, sizeof reason), EF_ERR_BAD_JOB);
    assert_non_null(strstr(reason, "release"));
  }
}

static void test_id_valid(void **state) {
  (void)state;
  assert_true(ef_id_valid("A-z_0.9:x"));
  assert_false(ef_id_valid(""));
  assert_false(ef_id_valid("a b"));
  assert_false(ef_id_valid("a#"));
  assert_false(ef_id_valid("\xc3\xa9"));
  assert_false(ef_id_valid(NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_job),
      cmocka_unit_test(test_minimal_job_defaults),
      cmocka_unit_test(test_sha_upper_case),
      cmocka_unit_test(test_bad_jobs),
      cmocka_unit_test(test_embedded_nul),
      cmocka_unit_test(test_not_null_terminated),
      cmocka_unit_test(test_escaped_backslash_then_u0000),
      cmocka_unit_test(test_too_large),
      cmocka_unit_test(test_huge_payload),
      cmocka_unit_test(test_allow_http),
      cmocka_unit_test(test_rfc3339),
      cmocka_unit_test(test_fingerprint),
      cmocka_unit_test(test_to_json_round_trip),
      cmocka_unit_test(test_canary_bucket),
      cmocka_unit_test(test_policy),
      cmocka_unit_test(test_id_valid),
      cmocka_unit_test(test_driver_gate),
      cmocka_unit_test(test_driver_update_key),
      cmocka_unit_test(test_intake_chip),
      cmocka_unit_test(test_intake_delivery),
      cmocka_unit_test(test_intake_parse_result),
      cmocka_unit_test(test_signed_releases),
      cmocka_unit_test(test_rfc3339_offsets_at_the_edges),
      cmocka_unit_test(test_rfc3339_truncated_offsets),
      cmocka_unit_test(test_rfc3339_format_parse_inverse),
      cmocka_unit_test(test_to_json_round_trip_not_after_edges),
      cmocka_unit_test(test_to_json_round_trip_huge_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
