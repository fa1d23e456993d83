/*
 * The protocol module (protocol.h, rollout_doc.h): topic names both ways,
 * the readers of state, cancel and announce documents, and the rollout,
 * control, status and devices documents that console and controller share.
 * Writers and readers are checked against each other (a document written
 * reads back the same) and every refusal against the key it must name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "espfleet/protocol.h"
#include "espfleet/rollout_doc.h"

/* ---- topics ---- */

/* ef_topic writes @p want for (kind, id, sub), and ef_topic_parse reads it back. */
static void topic_both_ways(ef_topic_kind kind, const char *id, const char *sub, const char *want) {
  char out[EF_TOPIC_MAX], got_id[EF_JOB_ID_MAX + 1], got_sub[EF_JOB_ID_MAX + 1];
  if (!ef_topic(out, sizeof out, "espfleet", kind, id, sub)) fail_msg("kind %d: not named", (int)kind);
  if (strcmp(out, want) != 0) fail_msg("kind %d: '%s', want '%s'", (int)kind, out, want);
  assert_int_equal(ef_topic_parse(out, "espfleet", got_id, got_sub), kind);
  assert_string_equal(got_id, kind == EF_TOPIC_ANNOUNCE ? "" : id);
  assert_string_equal(got_sub, kind == EF_TOPIC_DEVICE_RESULT ? sub : "");
}

static void test_topics_every_kind(void **state) {
  (void)state;
  topic_both_ways(EF_TOPIC_DEVICE_JOB, "gw-1", NULL, "espfleet/devices/gw-1/job");
  topic_both_ways(EF_TOPIC_DEVICE_CANCEL, "gw-1", NULL, "espfleet/devices/gw-1/cancel");
  topic_both_ways(EF_TOPIC_DEVICE_STATE, "gw-1", NULL, "espfleet/devices/gw-1/state");
  topic_both_ways(EF_TOPIC_DEVICE_PROGRESS, "gw-1", NULL, "espfleet/devices/gw-1/progress");
  topic_both_ways(EF_TOPIC_DEVICE_RESULT, "gw-1", "job.2:a", "espfleet/devices/gw-1/jobs/job.2:a");
  topic_both_ways(EF_TOPIC_GROUP_JOB, "lab", NULL, "espfleet/groups/lab/job");
  topic_both_ways(EF_TOPIC_GROUP_CANCEL, "lab", NULL, "espfleet/groups/lab/cancel");
  topic_both_ways(EF_TOPIC_ROLLOUT, "r-1", NULL, "espfleet/rollouts/r-1");
  topic_both_ways(EF_TOPIC_ROLLOUT_STATUS, "r-1", NULL, "espfleet/rollouts/r-1/status");
  topic_both_ways(EF_TOPIC_ROLLOUT_CONTROL, "r-1", NULL, "espfleet/rollouts/r-1/control");
  topic_both_ways(EF_TOPIC_ROLLOUT_DEVICES, "r-1", NULL, "espfleet/rollouts/r-1/devices");
  topic_both_ways(EF_TOPIC_ANNOUNCE, NULL, NULL, "espfleet/announce");
}

static void test_topics_wildcards_and_prefix(void **state) {
  (void)state;
  char out[EF_TOPIC_MAX], id[EF_JOB_ID_MAX + 1], sub[EF_JOB_ID_MAX + 1];
  /* "+" makes a subscription filter */
  assert_true(ef_topic(out, sizeof out, "espfleet", EF_TOPIC_DEVICE_STATE, "+", NULL));
  assert_string_equal(out, "espfleet/devices/+/state");
  assert_true(ef_topic(out, sizeof out, "espfleet", EF_TOPIC_ROLLOUT_STATUS, "+", NULL));
  assert_string_equal(out, "espfleet/rollouts/+/status");
  assert_true(ef_topic(out, sizeof out, "espfleet", EF_TOPIC_DEVICE_RESULT, "+", "+"));
  assert_string_equal(out, "espfleet/devices/+/jobs/+");
  /* a prefix of several levels */
  assert_true(ef_topic(out, sizeof out, "site/a", EF_TOPIC_GROUP_CANCEL, "g", NULL));
  assert_string_equal(out, "site/a/groups/g/cancel");
  assert_int_equal(ef_topic_parse(out, "site/a", id, sub), EF_TOPIC_GROUP_CANCEL);
  assert_string_equal(id, "g");
  /* but a filter is no topic a message arrives on */
  assert_int_equal(ef_topic_parse("espfleet/devices/+/state", "espfleet", id, sub), EF_TOPIC_UNKNOWN);
  assert_string_equal(id, "");
  /* prefix mismatch: another prefix, one that only starts the same, none */
  assert_int_equal(ef_topic_parse("other/devices/gw-1/state", "espfleet", id, sub), EF_TOPIC_UNKNOWN);
  assert_int_equal(ef_topic_parse("espfleet2/devices/gw-1/state", "espfleet", id, sub), EF_TOPIC_UNKNOWN);
  assert_int_equal(ef_topic_parse("devices/gw-1/state", "espfleet", id, sub), EF_TOPIC_UNKNOWN);
  assert_int_equal(ef_topic_parse("espfleet/devices/gw-1/state", "site/a", id, sub), EF_TOPIC_UNKNOWN);
  /* a room that does not fit is refused, never cut */
  char small[16];
  assert_false(ef_topic(small, sizeof small, "espfleet", EF_TOPIC_DEVICE_STATE, "gw-1", NULL));
  assert_string_equal(small, "");
}

static void test_topics_refused(void **state) {
  (void)state;
  char out[EF_TOPIC_MAX], id[EF_JOB_ID_MAX + 1], sub[EF_JOB_ID_MAX + 1];
  char long_id[EF_JOB_ID_MAX + 2];
  memset(long_id, 'a', sizeof long_id - 1);
  long_id[sizeof long_id - 1] = '\0';
  /* bad ids are not named */
  assert_false(ef_topic(out, sizeof out, "espfleet", EF_TOPIC_DEVICE_JOB, NULL, NULL));
  assert_false(ef_topic(out, sizeof out, "espfleet", EF_TOPIC_DEVICE_JOB, "", NULL));
  assert_false(ef_topic(out, sizeof out, "espfleet", EF_TOPIC_DEVICE_JOB, "a/b", NULL));
  assert_false(ef_topic(out, sizeof out, "espfleet", EF_TOPIC_DEVICE_JOB, "#", NULL));
  assert_false(ef_topic(out, sizeof out, "espfleet", EF_TOPIC_DEVICE_JOB, "a b", NULL));
  assert_false(ef_topic(out, sizeof out, "espfleet", EF_TOPIC_DEVICE_JOB, long_id, NULL));
  assert_false(ef_topic(out, sizeof out, "espfleet", EF_TOPIC_DEVICE_RESULT, "gw-1", NULL));
  assert_false(ef_topic(out, sizeof out, "espfleet", EF_TOPIC_UNKNOWN, "gw-1", NULL));
  /* nor read: a broker may carry any UTF-8 in a topic */
  static const char *const bad[] = {
      "espfleet/devices/ev il/state",
      "espfleet/devices//state",
      "espfleet/devices/gw\x1b[2J/state",
      "espfleet/devices/gw-1/state/x",
      "espfleet/devices/gw-1/",
      "espfleet/devices/gw-1",
      "espfleet/devices/gw-1/jobs/",
      "espfleet/devices/gw-1/jobs/a/b c", /* (a/b alone reads as job a.b: RabbitMQ) */
      "espfleet/devices/gw-1/jobs/a b",
      "espfleet/rollouts/r-1/",
      "espfleet/rollouts/r-1/status/x",
      "espfleet/rollouts/",
      "espfleet/groups/lab/state",
      "espfleet/groups/lab",
      "espfleet/announce/x",
      "espfleet/nothing/gw-1/state",
      "espfleet/",
      "espfleet",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    strcpy(id, "x");
    if (ef_topic_parse(bad[i], "espfleet", id, sub) != EF_TOPIC_UNKNOWN) fail_msg("'%s' was read", bad[i]);
    assert_string_equal(id, "");
    assert_string_equal(sub, "");
  }
  char topic[200];
  snprintf(topic, sizeof topic, "espfleet/devices/%s/state", long_id);
  assert_int_equal(ef_topic_parse(topic, "espfleet", id, sub), EF_TOPIC_UNKNOWN);
}

/* ---- state view ---- */

static void test_state_view(void **state) {
  (void)state;
  const char *doc =
      "{\"device_id\":\"gw-0042\",\"online\":true,\"state\":\"downloading\",\"job_id\":\"j1\","
      "\"fw_version\":\"FG-1.0.3.0.0\",\"app\":{\"version\":\"1.0.3\",\"project\":\"p\"},"
      "\"groups\":[\"lab\",\"bad id\",7,\"canary\"],\"bytes\":262144,\"total\":1048576,\"attempt\":2,"
      "\"ts\":\"2025-01-20T10:00:00.120Z\",\"client_version\":\"0.1.0\"}";
  ef_state_view v;
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_state_view_parse(doc, strlen(doc), &v, &st), EF_OK);
  assert_string_equal(v.device_id, "gw-0042");
  assert_true(v.has_online && v.online);
  assert_true(v.state_known);
  assert_int_equal(v.state, EF_STATE_DOWNLOADING);
  assert_string_equal(v.state_name, "downloading");
  assert_string_equal(v.job_id, "j1");
  assert_string_equal(v.fw_version, "FG-1.0.3.0.0");
  assert_string_equal(v.app_version, "1.0.3");
  assert_int_equal(v.bytes, 262144);
  assert_int_equal(v.total, 1048576);
  assert_int_equal(v.percent, 25); /* from bytes and total */
  assert_int_equal(v.attempt, 2);
  assert_int_equal(v.ts_ms, 1737367200120LL);
  /* only the entries that are group ids */
  assert_int_equal(v.n_groups, 2);
  assert_string_equal(v.groups[0], "lab");
  assert_string_equal(v.groups[1], "canary");
  assert_string_equal(v.error_code, "");

  /* a progress document: its percent as sent */
  doc = "{\"device_id\":\"gw-1\",\"job_id\":\"j1\",\"bytes\":524288,\"total\":1048576,\"percent\":49}";
  assert_int_equal(ef_state_view_parse(doc, strlen(doc), &v, NULL), EF_OK);
  assert_int_equal(v.percent, 49);
  assert_false(v.has_online);
  assert_false(v.state_known);
}

static void test_state_view_escapes(void **state) {
  (void)state;
  /* clear screen, window title, a C1 CSI, a right-to-left override, a CR */
  const char *doc =
      "{\"device_id\":\"evil\",\"online\":true,\"state\":\"failed\\u001b[2J\",\"job_id\":\"j\\u001b]0;"
      "x\\u0007\","
      "\"fw_version\":\"\\u009b31m\",\"app\":{\"version\":\"1\\u202e0\"},"
      "\"error\":{\"code\":\"bad_job\\u001b[5m\",\"detail\":\"see\\u001b[8m hidden\"},\"ts\":\"2025\\r\"}";
  ef_state_view v;
  assert_int_equal(ef_state_view_parse(doc, strlen(doc), &v, NULL), EF_OK);
  assert_string_equal(v.state_name, "failed\\x1b[2J");
  assert_false(v.state_known); /* not a state with the escape in it */
  assert_string_equal(v.job_id, "j\\x1b]0;x\\x07");
  assert_string_equal(v.fw_version, "\\u009b31m");
  assert_string_equal(v.app_version, "1\\u202e0");
  assert_string_equal(v.error_code, "bad_job\\x1b[5m");
  assert_string_equal(v.error_detail, "see\\x1b[8m hidden");
  assert_string_equal(v.ts, "2025\\x0d");
  assert_int_equal(v.ts_ms, 0);
}

static void test_state_view_missing(void **state) {
  (void)state;
  ef_state_view v;
  ef_status st = EF_STATUS_INIT;
  /* the last will: only device_id and online */
  const char *will = "{\"device_id\":\"gw-1\",\"online\":false,\"client_version\":\"0.1.0\"}";
  assert_int_equal(ef_state_view_parse(will, strlen(will), &v, NULL), EF_OK);
  assert_true(v.has_online);
  assert_false(v.online);
  assert_false(v.state_known);
  assert_string_equal(v.state_name, "");
  assert_string_equal(v.job_id, "");
  assert_int_equal(v.percent, 0);
  assert_int_equal(v.n_groups, 0);
  /* mistyped members read as absent, so other versions' documents still show */
  const char *odd =
      "{\"state\":7,\"job_id\":null,\"app\":\"1.0\",\"error\":[1],\"bytes\":-5,\"total\":\"x\","
      "\"groups\":\"lab\",\"online\":\"yes\",\"state_extra\":{}}";
  assert_int_equal(ef_state_view_parse(odd, strlen(odd), &v, NULL), EF_OK);
  assert_false(v.has_online);
  assert_string_equal(v.state_name, "");
  assert_string_equal(v.app_version, "");
  assert_string_equal(v.error_code, "");
  assert_int_equal(v.bytes, 0);
  assert_int_equal(v.n_groups, 0);
  /* an unknown state is shown as received, but not known */
  const char *future = "{\"state\":\"hibernating\"}";
  assert_int_equal(ef_state_view_parse(future, strlen(future), &v, NULL), EF_OK);
  assert_string_equal(v.state_name, "hibernating");
  assert_false(v.state_known);
  /* a cleared retained message, and what is not an object */
  assert_int_equal(ef_state_view_parse("", 0, &v, &st), EF_ERR_INVALID_ARG);
  assert_non_null(strstr(st.detail, "empty"));
  ef_status_clear(&st);
  assert_int_equal(ef_state_view_parse("[1]", 3, &v, &st), EF_ERR_INVALID_ARG);
  assert_non_null(strstr(st.detail, "object"));
  assert_int_equal(ef_state_view_parse("{\"a\":", 5, &v, NULL), EF_ERR_INVALID_ARG);

  assert_true(ef_state_is_bad(EF_STATE_FAILED));
  assert_true(ef_state_is_bad(EF_STATE_REJECTED));
  assert_true(ef_state_is_bad(EF_STATE_CANCELED));
  assert_false(ef_state_is_bad(EF_STATE_SUCCEEDED));
  assert_false(ef_state_is_bad(EF_STATE_SKIPPED));
  assert_false(ef_state_is_bad(EF_STATE_DOWNLOADING));
}

/* ---- cancel and announce ---- */

static void test_cancel(void **state) {
  (void)state;
  char id[EF_JOB_ID_MAX + 1];
  ef_status st = EF_STATUS_INIT;
  char *doc = ef_cancel_json("hosted-1.0.4:a_b");
  assert_non_null(doc);
  assert_string_equal(doc, "{\"job_id\":\"hosted-1.0.4:a_b\"}");
  assert_int_equal(ef_cancel_parse(doc, strlen(doc), id, &st), EF_OK);
  assert_string_equal(id, "hosted-1.0.4:a_b");
  free(doc);
  static const char *const bad[] = {
      "", "{}", "{\"job_id\":\"\"}", "{\"job_id\":\"a b\"}", "{\"job_id\":7}", "[\"j1\"]", "not json"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ef_status_clear(&st);
    strcpy(id, "x");
    if (ef_cancel_parse(bad[i], strlen(bad[i]), id, &st) != EF_ERR_BAD_JOB) fail_msg("'%s' was read", bad[i]);
    assert_string_equal(id, "");
    assert_non_null(strstr(st.detail, "job_id"));
  }
}

static void test_announce(void **state) {
  (void)state;
  ef_announce a = {.scope = EF_ANNOUNCE_DEVICES}, b;
  ef_status st = EF_STATUS_INIT;
  snprintf(a.job_id, sizeof a.job_id, "j1");
  char *doc = ef_announce_json(&a);
  assert_non_null(doc);
  assert_int_equal(ef_announce_parse(doc, strlen(doc), &b, &st), EF_OK);
  assert_int_equal(b.scope, EF_ANNOUNCE_DEVICES);
  assert_string_equal(b.job_id, "j1");
  free(doc);
  a = (ef_announce){.scope = EF_ANNOUNCE_ROLLOUTS};
  doc = ef_announce_json(&a);
  assert_non_null(doc);
  assert_null(strstr(doc, "job_id")); /* none given, none written */
  assert_int_equal(ef_announce_parse(doc, strlen(doc), &b, NULL), EF_OK);
  assert_int_equal(b.scope, EF_ANNOUNCE_ROLLOUTS);
  assert_string_equal(b.job_id, "");
  free(doc);
  /* empty and {} ask everyone */
  assert_int_equal(ef_announce_parse("", 0, &b, NULL), EF_OK);
  assert_int_equal(b.scope, EF_ANNOUNCE_ALL);
  assert_int_equal(ef_announce_parse("{}", 2, &b, NULL), EF_OK);
  assert_int_equal(b.scope, EF_ANNOUNCE_ALL);
  /* refusals name the key */
  static const struct {
    const char *doc, *key;
  } bad[] = {{"{\"scope\":\"everyone\"}", "scope"},
             {"{\"scope\":1}", "scope"},
             {"{\"scope\":\"devices\",\"job_id\":\"a b\"}", "job_id"},
             {"{\"job_id\":5}", "job_id"},
             {"[]", "payload"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ef_status_clear(&st);
    if (ef_announce_parse(bad[i].doc, strlen(bad[i].doc), &b, &st) != EF_ERR_INVALID_ARG)
      fail_msg("'%s' was read", bad[i].doc);
    if (strncmp(st.detail, bad[i].key, strlen(bad[i].key)) != 0)
      fail_msg("'%s': '%s' does not start with %s", bad[i].doc, st.detail, bad[i].key);
  }
}

static void test_secret_file(void **state) {
  (void)state;
  char path[] = "/tmp/espfleet-test-secret-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  fputs("s3cret\r\nsecond line\n", f);
  fclose(f);
  char out[16];
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_read_secret_file(path, out, sizeof out, &st), EF_OK);
  assert_string_equal(out, "s3cret"); /* the line end is not part of it */
  char tiny[4];
  assert_int_equal(ef_read_secret_file(path, tiny, sizeof tiny, &st), EF_ERR_CONFIG);
  assert_string_equal(tiny, "");
  /* a first line longer than the reader's buffer is refused, not cut */
  f = fopen(path, "w");
  assert_non_null(f);
  for (int i = 0; i < 1500; i++) fputc('x', f);
  fputc('\n', f);
  fclose(f);
  char big[2048];
  ef_status_clear(&st);
  assert_int_equal(ef_read_secret_file(path, big, sizeof big, &st), EF_ERR_CONFIG);
  assert_string_equal(big, "");
  unlink(path);
  ef_status_clear(&st);
  assert_int_equal(ef_read_secret_file(path, out, sizeof out, &st), EF_ERR_IO);
  assert_non_null(strstr(st.detail, path));
}

/* ---- rollout documents ---- */

#define JOB                                                                                                  \
  "{\"job_id\":\"hosted-1.0.4\",\"url\":\"https://fw.example.com/a.bin\",\"sha256\":"                        \
  "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\",\"size\":1048576,\"version\":\"1.0." \
  "4\","                                                                                                     \
  "\"project\":\"network_adapter\",\"chip\":\"esp32\"}"

static const char FULL[] =
    "{\"rollout_id\":\"r-2025.1\",\"job\":" JOB
    ",\"target\":{\"groups\":[\"lab\",\"canary\"],\"devices\":[\"gw-1\",\"gw-2\",\"gw-3\"]},"
    "\"steps\":[{\"count\":1},{\"percent\":10},{\"count\":20},{\"percent\":100}],"
    "\"policy\":{\"success_percent\":95,\"abort\":{\"failure_percent\":5,\"min_finished\":3},\"soak_s\":600,"
    "\"in_progress_timeout_s\":1800,\"offline_timeout_s\":300,"
    "\"windows\":[{\"start\":\"22:00\",\"end\":\"04:30\"},{\"start\":\"12:00\",\"end\":\"13:00\"}]}}";

static void spec_equal(const ef_rollout_spec *a, const ef_rollout_spec *b) {
  assert_string_equal(a->rollout_id, b->rollout_id);
  assert_string_equal(a->job_json, b->job_json);
  assert_string_equal(a->job.job_id, b->job.job_id);
  assert_int_equal(a->n_groups, b->n_groups);
  for (size_t i = 0; i < a->n_groups; i++) assert_string_equal(a->groups[i], b->groups[i]);
  assert_int_equal(a->n_devices, b->n_devices);
  for (size_t i = 0; i < a->n_devices; i++) assert_string_equal(a->devices[i], b->devices[i]);
  assert_int_equal(a->n_steps, b->n_steps);
  assert_memory_equal(a->steps, b->steps, a->n_steps * sizeof a->steps[0]);
  assert_int_equal(a->success_percent, b->success_percent);
  assert_int_equal(a->abort_percent, b->abort_percent);
  assert_int_equal(a->abort_min, b->abort_min);
  assert_int_equal(a->soak_s, b->soak_s);
  assert_int_equal(a->progress_timeout_s, b->progress_timeout_s);
  assert_int_equal(a->offline_timeout_s, b->offline_timeout_s);
  assert_int_equal(a->n_windows, b->n_windows);
  assert_memory_equal(a->windows, b->windows, a->n_windows * sizeof a->windows[0]);
}

static void test_rollout_spec_round_trip(void **state) {
  (void)state;
  ef_rollout_spec a, b;
  ef_status st = EF_STATUS_INIT;
  if (ef_rollout_spec_parse(FULL, strlen(FULL), &a, &st) != EF_OK) fail_msg("refused: %s", st.detail);
  assert_string_equal(a.rollout_id, "r-2025.1");
  assert_string_equal(a.job.job_id, "hosted-1.0.4");
  assert_int_equal(a.job.rollout_percent, -1);
  assert_int_equal(a.n_groups, 2);
  assert_string_equal(a.groups[1], "canary");
  assert_int_equal(a.n_devices, 3);
  assert_string_equal(a.devices[2], "gw-3");
  assert_int_equal(a.n_steps, 4);
  assert_int_equal(a.steps[0].count, 1);
  assert_int_equal(a.steps[1].percent, 10);
  assert_int_equal(a.steps[2].count, 20);
  assert_int_equal(a.steps[3].percent, 100);
  assert_int_equal(a.success_percent, 95);
  assert_int_equal(a.abort_percent, 5);
  assert_int_equal(a.abort_min, 3);
  assert_int_equal(a.soak_s, 600);
  assert_int_equal(a.progress_timeout_s, 1800);
  assert_int_equal(a.offline_timeout_s, 300);
  assert_int_equal(a.n_windows, 2);
  assert_int_equal(a.windows[0].start_min, 22 * 60);
  assert_int_equal(a.windows[0].end_min, 4 * 60 + 30);

  char *text = ef_rollout_spec_json(&a);
  assert_non_null(text);
  if (ef_rollout_spec_parse(text, strlen(text), &b, &st) != EF_OK)
    fail_msg("written, then refused: %s", st.detail);
  spec_equal(&a, &b);
  /* and written again, the same text */
  char *again = ef_rollout_spec_json(&b);
  assert_non_null(again);
  assert_string_equal(text, again);
  free(again);
  free(text);
  ef_rollout_spec_free(&a);
  ef_rollout_spec_free(&b);
}

static void test_rollout_spec_defaults(void **state) {
  (void)state;
  const char *doc = "{\"rollout_id\":\"r1\",\"job\":" JOB ",\"target\":{\"groups\":[\"lab\"]}}";
  ef_rollout_spec s;
  ef_status st = EF_STATUS_INIT;
  if (ef_rollout_spec_parse(doc, strlen(doc), &s, &st) != EF_OK) fail_msg("refused: %s", st.detail);
  assert_int_equal(s.n_steps, 1);
  assert_int_equal(s.steps[0].percent, 100);
  assert_int_equal(s.success_percent, EF_ROLLOUT_DEFAULT_SUCCESS_PERCENT);
  assert_int_equal(s.abort_percent, EF_ROLLOUT_DEFAULT_ABORT_PERCENT);
  assert_int_equal(s.abort_min, EF_ROLLOUT_DEFAULT_ABORT_MIN);
  assert_int_equal(s.soak_s, EF_ROLLOUT_DEFAULT_SOAK_S);
  assert_int_equal(s.progress_timeout_s, EF_ROLLOUT_DEFAULT_PROGRESS_TIMEOUT);
  assert_int_equal(s.offline_timeout_s, EF_ROLLOUT_DEFAULT_OFFLINE_TIMEOUT);
  assert_int_equal(s.n_windows, 0);
  assert_int_equal(s.n_devices, 0);
  assert_null(s.devices);
  ef_rollout_spec_free(&s);
  ef_rollout_spec_free(&s); /* twice is harmless */
}

/* @p doc is refused with a sentence that starts with @p key. */
static void refused(const char *doc, const char *key) {
  ef_rollout_spec s;
  ef_status st = EF_STATUS_INIT;
  ef_err err = ef_rollout_spec_parse(doc, strlen(doc), &s, &st);
  if (err != EF_ERR_BAD_JOB) fail_msg("%s: accepted (%d), want a refusal naming %s", doc, (int)err, key);
  if (strncmp(st.detail, key, strlen(key)) != 0) fail_msg("'%s' does not start with '%s'", st.detail, key);
  assert_false(st.retryable);
  assert_null(s.devices); /* nothing to free after a refusal */
  assert_null(s.job_json);
}

#define R(rest)      "{\"rollout_id\":\"r1\",\"job\":" JOB ",\"target\":{\"groups\":[\"lab\"]}" rest "}"
#define STEPS(steps) R(",\"steps\":[" steps "]")

static void test_rollout_spec_refusals(void **state) {
  (void)state;
  refused(R(",\"stpes\":[]"), "stpes: unknown key");
  refused(R(",\"policy\":{\"soak\":1}"), "policy.soak: unknown key");
  refused(R(",\"policy\":{\"abort\":{\"percent\":1}}"), "policy.abort.percent: unknown key");
  refused(STEPS("{\"percent\":50},{\"percent\":10},{\"percent\":100}"), "steps[1]: must reach more devices");
  refused(STEPS("{\"count\":5},{\"count\":5},{\"percent\":100}"), "steps[1]: must reach more devices");
  refused(STEPS("{\"percent\":10},{\"percent\":50}"), "steps: the last step must be {\"percent\": 100}");
  refused(STEPS("{\"count\":10}"), "steps: the last step");
  refused(STEPS("{\"percent\":10,\"count\":3},{\"percent\":100}"),
          "steps[0]: needs exactly one of percent and count");
  refused(STEPS("{},{\"percent\":100}"), "steps[0]: needs exactly one");
  refused(STEPS("{\"percent\":0},{\"percent\":100}"), "steps[0].percent: must be an integer 1..100");
  refused(STEPS("{\"percent\":100.5}"), "steps[0].percent");
  refused(STEPS("{\"percent\":10,\"share\":1},{\"percent\":100}"), "steps[0].share: unknown key");
  refused(R(",\"steps\":[]"), "steps: must be an array of 1-16 steps");
  refused("{\"rollout_id\":\"r1\",\"job\":" JOB ",\"target\":{}}", "target: names no group and no device");
  refused("{\"rollout_id\":\"r1\",\"job\":" JOB ",\"target\":{\"groups\":[],\"devices\":[]}}",
          "target: names no");
  refused("{\"rollout_id\":\"r1\",\"job\":" JOB "}", "target: must be an object");
  refused("{\"rollout_id\":\"r1\",\"job\":" JOB ",\"target\":{\"groups\":[\"a b\"]}}",
          "target.groups[0]: must be");
  refused("{\"rollout_id\":\"r1\",\"job\":" JOB ",\"target\":{\"devices\":[\"d\",\"d\"]}}",
          "target.devices[1]: d is listed twice");
  refused("{\"rollout_id\":\"r1\",\"job\":" JOB ",\"target\":{\"hosts\":[\"d\"]}}",
          "target.hosts: unknown key");
  refused(
      "{\"rollout_id\":\"r1\",\"job\":{\"job_id\":\"j\",\"rollout\":{\"percent\":10}},\"target\":{\"groups\":"
      "[\"g\"]}}",
      "job.rollout: not allowed");
  refused("{\"rollout_id\":\"r1\",\"job\":{\"job_id\":\"j\"},\"target\":{\"groups\":[\"g\"]}}",
          "job.url: required");
  refused("{\"rollout_id\":\"r1\",\"target\":{\"groups\":[\"g\"]}}", "job: must be a job document");
  refused(R(",\"policy\":{\"windows\":[{\"start\":\"25:00\",\"end\":\"01:00\"}]}"),
          "policy.windows[0].start, end");
  refused(R(",\"policy\":{\"windows\":[{\"start\":\"2200\",\"end\":\"01:00\"}]}"),
          "policy.windows[0].start, end");
  refused(R(",\"policy\":{\"windows\":[{\"start\":\"22:00\"}]}"), "policy.windows[0].start, end");
  refused(R(",\"policy\":{\"windows\":[{\"start\":\"22:00\",\"end\":\"01:60\"}]}"),
          "policy.windows[0].start, end");
  /* each position is a digit: no sign, no space */
  refused(R(",\"policy\":{\"windows\":[{\"start\":\" 9:05\",\"end\":\"10:00\"}]}"),
          "policy.windows[0].start, end");
  refused(R(",\"policy\":{\"windows\":[{\"start\":\"+9:05\",\"end\":\"10:00\"}]}"),
          "policy.windows[0].start, end");
  refused(R(",\"policy\":{\"windows\":[{\"start\":\"09:05\",\"end\":\"1:000\"}]}"),
          "policy.windows[0].start, end");
  refused(R(",\"policy\":{\"windows\":{\"start\":\"22:00\"}}"), "policy.windows: must be an array");
  refused(R(",\"policy\":{\"success_percent\":0}"), "policy.success_percent: must be an integer 1..100");
  refused(R(",\"policy\":{\"in_progress_timeout_s\":1}"), "policy.in_progress_timeout_s: must be an integer");
  refused(R(",\"policy\":{\"abort\":{\"failure_percent\":101}}"), "policy.abort.failure_percent: must be");
  refused("{\"rollout_id\":\"r 1\",\"job\":" JOB ",\"target\":{\"groups\":[\"g\"]}}", "rollout_id: must be");
  refused("[]", "payload: not a JSON object");
  refused("", "payload: not a JSON object");
}

static void test_rollout_step_reach(void **state) {
  (void)state;
  ef_rollout_spec s = {.n_steps = 4};
  s.steps[0] = (ef_rollout_step){.percent = 1};
  s.steps[1] = (ef_rollout_step){.count = 5};
  s.steps[2] = (ef_rollout_step){.percent = 50};
  s.steps[3] = (ef_rollout_step){.percent = 100};
  /* a percent rounds up: 1 % of 20 is one device, not none */
  assert_int_equal(ef_rollout_step_reach(&s, 0, 20), 1);
  assert_int_equal(ef_rollout_step_reach(&s, 1, 20), 5);
  assert_int_equal(ef_rollout_step_reach(&s, 2, 20), 10);
  assert_int_equal(ef_rollout_step_reach(&s, 3, 20), 20);
  assert_int_equal(ef_rollout_step_reach(&s, 2, 21), 11); /* 10.5 up */
  /* a count is capped at the target */
  assert_int_equal(ef_rollout_step_reach(&s, 1, 3), 3);
  assert_int_equal(ef_rollout_step_reach(&s, 0, 0), 0);
  /* never less than the step before: 5 devices, then 1 % of 100 is 1 */
  s.steps[0] = (ef_rollout_step){.count = 5};
  s.steps[1] = (ef_rollout_step){.percent = 1};
  assert_int_equal(ef_rollout_step_reach(&s, 1, 100), 5);
  /* beyond the last step: the last step's reach */
  assert_int_equal(ef_rollout_step_reach(&s, 9, 100), 100);
}

static void test_rollout_in_window(void **state) {
  (void)state;
  const int64_t day = 19000 * 86400LL; /* a midnight UTC */
  ef_rollout_spec s = {0};
  assert_true(ef_rollout_in_window(&s, day + 12 * 3600)); /* no window: always */
  s.n_windows = 1;
  s.windows[0] = (ef_rollout_window){22 * 60, 4 * 60 + 30}; /* past midnight */
  assert_true(ef_rollout_in_window(&s, day + 22 * 3600));
  assert_true(ef_rollout_in_window(&s, day + 23 * 3600 + 59 * 60));
  assert_true(ef_rollout_in_window(&s, day));
  assert_true(ef_rollout_in_window(&s, day + 4 * 3600 + 29 * 60 + 59));
  assert_false(ef_rollout_in_window(&s, day + 4 * 3600 + 30 * 60)); /* the end is not in it */
  assert_false(ef_rollout_in_window(&s, day + 12 * 3600));
  assert_false(ef_rollout_in_window(&s, day + 21 * 3600 + 59 * 60));
  s.windows[1] = (ef_rollout_window){12 * 60, 13 * 60};
  s.n_windows = 2;
  assert_true(ef_rollout_in_window(&s, day + 12 * 3600 + 30 * 60));
  assert_false(ef_rollout_in_window(&s, day + 13 * 3600));
  /* start equal to end: the whole day */
  s.windows[0] = (ef_rollout_window){600, 600};
  s.n_windows = 1;
  assert_true(ef_rollout_in_window(&s, day + 5 * 3600));
  /* before 1970 too */
  s.windows[0] = (ef_rollout_window){23 * 60, 60};
  assert_true(ef_rollout_in_window(&s, -30 * 60)); /* 23:30 of 31 December 1969 */
}

/* ---- control, status, devices ---- */

static void test_rollout_control(void **state) {
  (void)state;
  static const ef_rollout_action all[] = {EF_ROLLOUT_PAUSE, EF_ROLLOUT_RESUME, EF_ROLLOUT_ABORT,
                                          EF_ROLLOUT_DEVICES};
  char reason[32];
  ef_rollout_action got;
  ef_status st = EF_STATUS_INIT;
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    char *doc = ef_rollout_control_json(all[i], i % 2 ? "night \x1b[2J window" : NULL);
    assert_non_null(doc);
    assert_int_equal(ef_rollout_control_parse(doc, strlen(doc), &got, reason, sizeof reason, &st), EF_OK);
    assert_int_equal(got, all[i]);
    assert_string_equal(reason, i % 2 ? "night \\x1b[2J window" : ""); /* escaped as it is read */
    free(doc);
  }
  assert_string_equal(ef_rollout_action_name(EF_ROLLOUT_PAUSE), "pause");
  assert_string_equal(ef_rollout_action_name(EF_ROLLOUT_DEVICES), "devices");
  static const char *const bad[] = {"", "{}", "{\"action\":\"stop\"}", "{\"action\":1}", "[\"pause\"]"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ef_status_clear(&st);
    if (ef_rollout_control_parse(bad[i], strlen(bad[i]), &got, reason, sizeof reason, &st) !=
        EF_ERR_INVALID_ARG)
      fail_msg("'%s' was read", bad[i]);
    assert_non_null(strstr(st.detail, "action"));
  }
}

static void test_rollout_status(void **state) {
  (void)state;
  ef_rollout_status
      a = {.state = EF_RS_HALTED,
           .step = 1,
           .n_steps = 4,
           .devices = 40,
           .step_devices = 4,
           .counts = {[EF_RD_WAITING] = 36, [EF_RD_SUCCEEDED] = 2, [EF_RD_FAILED] = 1, [EF_RD_TIMED_OUT] = 1},
           .created_ms = 1737367200000LL,
           .updated_ms = 1737367260000LL},
      b;
  ef_status st = EF_STATUS_INIT;
  snprintf(a.rollout_id, sizeof a.rollout_id, "r1");
  snprintf(a.job_id, sizeof a.job_id, "j1");
  snprintf(a.reason, sizeof a.reason, "step 2: 2 of 4 succeeded \x1b[2J");
  char *doc = ef_rollout_status_json(&a);
  assert_non_null(doc);
  assert_int_equal(ef_rollout_status_parse(doc, strlen(doc), &b, &st), EF_OK);
  assert_string_equal(b.rollout_id, "r1");
  assert_string_equal(b.job_id, "j1");
  assert_int_equal(b.state, EF_RS_HALTED);
  assert_int_equal(b.step, 1);
  assert_int_equal(b.n_steps, 4);
  assert_int_equal(b.devices, 40);
  assert_int_equal(b.step_devices, 4);
  assert_memory_equal(b.counts, a.counts, sizeof a.counts);
  assert_string_equal(b.reason, "step 2: 2 of 4 succeeded \\x1b[2J");
  assert_int_equal(b.created_ms, a.created_ms);
  assert_int_equal(b.updated_ms, a.updated_ms);
  free(doc);
  /* before the first step, without job or reason: null in the document */
  a = (ef_rollout_status){.state = EF_RS_PENDING, .step = -1, .n_steps = 1};
  snprintf(a.rollout_id, sizeof a.rollout_id, "r2");
  doc = ef_rollout_status_json(&a);
  assert_non_null(doc);
  assert_non_null(strstr(doc, "\"job_id\":null"));
  assert_non_null(strstr(doc, "\"reason\":null"));
  assert_int_equal(ef_rollout_status_parse(doc, strlen(doc), &b, NULL), EF_OK);
  assert_int_equal(b.step, -1);
  assert_string_equal(b.job_id, "");
  free(doc);
  /* the names both ways, and which ones are final */
  for (int s = 0; s < EF_RS__COUNT; s++) {
    ef_rollout_state back;
    assert_int_equal(ef_rollout_state_from_name(ef_rollout_state_name((ef_rollout_state)s), &back), EF_OK);
    assert_int_equal(back, s);
    assert_int_equal(ef_rollout_state_is_final((ef_rollout_state)s),
                     s == EF_RS_COMPLETED || s == EF_RS_ABORTED || s == EF_RS_INVALID);
  }
  ef_rollout_state back;
  assert_int_equal(ef_rollout_state_from_name("finished", &back), EF_ERR_INVALID_ARG);
  /* what is not a status: a cleared one, no rollout_id, an unknown state */
  static const char *const bad[] = {"",
                                    "{}",
                                    "{\"rollout_id\":\"r1\"}",
                                    "{\"state\":\"running\"}",
                                    "{\"rollout_id\":\"r1\",\"state\":\"finished\"}",
                                    "[]"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (ef_rollout_status_parse(bad[i], strlen(bad[i]), &b, NULL) != EF_ERR_INVALID_ARG)
      fail_msg("'%s' was read", bad[i]);
}

static void test_rollout_devices(void **state) {
  (void)state;
  ef_rollout_device_row rows[3] = {
      {.device_id = "gw-1",
       .step = 0,
       .state = EF_RD_SUCCEEDED,
       .job_state = "succeeded",
       .updated_ms = 1737367200000LL},
      {.device_id = "gw-2",
       .step = 1,
       .state = EF_RD_FAILED,
       .job_state = "failed",
       .updated_ms = 1737367260000LL},
      {.device_id = "gw-3", .step = -1, .state = EF_RD_WAITING, .updated_ms = 1737367260000LL},
  };
  snprintf(rows[1].error, sizeof rows[1].error, "hash_mismatch: x\x1b[2J");
  ef_rollout_device_row *got = NULL;
  size_t n = 0;
  ef_status st = EF_STATUS_INIT;
  char *doc = ef_rollout_devices_json("r1", rows, 3);
  assert_non_null(doc);
  assert_int_equal(ef_rollout_devices_parse(doc, strlen(doc), &got, &n, &st), EF_OK);
  assert_int_equal(n, 3);
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(got[i].device_id, rows[i].device_id);
    assert_int_equal(got[i].step, rows[i].step);
    assert_int_equal(got[i].state, rows[i].state);
    assert_string_equal(got[i].job_state, rows[i].job_state);
    assert_int_equal(got[i].updated_ms, rows[i].updated_ms);
  }
  assert_string_equal(got[1].error, "hash_mismatch: x\\x1b[2J");
  assert_string_equal(got[2].error, "");
  free(got);
  free(doc);
  /* no rows */
  doc = ef_rollout_devices_json("r1", NULL, 0);
  assert_non_null(doc);
  assert_int_equal(ef_rollout_devices_parse(doc, strlen(doc), &got, &n, NULL), EF_OK);
  assert_int_equal(n, 0);
  assert_null(got);
  free(doc);
  assert_int_equal(ef_rollout_devices_parse("{}", 2, &got, &n, NULL), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_rollout_devices_parse("", 0, &got, &n, NULL), EF_ERR_INVALID_ARG);

  for (int s = 0; s < EF_RD__COUNT; s++)
    assert_int_equal(ef_rollout_device_state_is_bad((ef_rollout_device_state)s),
                     s == EF_RD_FAILED || s == EF_RD_TIMED_OUT || s == EF_RD_OFFLINE);
  assert_string_equal(ef_rollout_device_state_name(EF_RD_TIMED_OUT), "timed_out");
}

static void test_topic_same(void **state) {
  (void)state;
  assert_true(ef_topic_same("espfleet/devices/dev.1/cancel", "espfleet/devices/dev.1/cancel"));
  assert_true(ef_topic_same("espfleet/devices/dev/1/cancel", "espfleet/devices/dev.1/cancel")); /* RabbitMQ */
  assert_false(ef_topic_same("espfleet/devices/dev.1/job", "espfleet/devices/dev.1/cancel"));
  assert_false(ef_topic_same("espfleet/devices/dev.1/cancel/x", "espfleet/devices/dev.1/cancel"));
  assert_false(ef_topic_same("espfleet/devices/dev.1", "espfleet/devices/dev.1/cancel"));
  /* ids whose '.' came back as '/' (RabbitMQ) parse as the dotted ids */
  char id[EF_JOB_ID_MAX + 1], sub[EF_JOB_ID_MAX + 1];
  assert_int_equal(ef_topic_parse("espfleet/devices/dev/1/state", "espfleet", id, sub),
                   EF_TOPIC_DEVICE_STATE);
  assert_string_equal(id, "dev.1");
  assert_int_equal(ef_topic_parse("espfleet/devices/dev/1/jobs/rel/1/0", "espfleet", id, sub),
                   EF_TOPIC_DEVICE_RESULT);
  assert_string_equal(id, "dev.1");
  assert_string_equal(sub, "rel.1.0");
  assert_int_equal(ef_topic_parse("fleet/eu/rollouts/r/1/status", "fleet.eu", id, sub),
                   EF_TOPIC_ROLLOUT_STATUS);
  assert_string_equal(id, "r.1");
  assert_int_equal(ef_topic_parse("espfleet/devices/dev/1/bogus", "espfleet", id, sub), EF_TOPIC_UNKNOWN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_topic_same),
      cmocka_unit_test(test_topics_every_kind),
      cmocka_unit_test(test_topics_wildcards_and_prefix),
      cmocka_unit_test(test_topics_refused),
      cmocka_unit_test(test_state_view),
      cmocka_unit_test(test_state_view_escapes),
      cmocka_unit_test(test_state_view_missing),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_announce),
      cmocka_unit_test(test_secret_file),
      cmocka_unit_test(test_rollout_spec_round_trip),
      cmocka_unit_test(test_rollout_spec_defaults),
      cmocka_unit_test(test_rollout_spec_refusals),
      cmocka_unit_test(test_rollout_step_reach),
      cmocka_unit_test(test_rollout_in_window),
      cmocka_unit_test(test_rollout_control),
      cmocka_unit_test(test_rollout_status),
      cmocka_unit_test(test_rollout_devices),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
