/* espfleetd configuration: defaults, every problem named, the shipped example. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "espfleet/config.h"
#include "espfleet/ctrl.h"

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/test_config.XXXXXX", base && base[0] ? base : "/tmp");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  const char *names[] = {"config.json", "password", "ca.pem"};
  char path[512];
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
    unlink(path);
  }
  return rmdir(tmpdir);
}

static const char *write_tmp(const char *name, const char *text) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static ef_err parse(const char *json, ef_config *c, ef_config_problems *p) {
  return ef_config_parse(json, strlen(json), 0, c, p, NULL);
}

static bool has_problem(const ef_config_problems *p, const char *prefix) {
  for (size_t i = 0; i < p->count; i++)
    if (strncmp(p->lines[i], prefix, strlen(prefix)) == 0) return true;
  return false;
}

static void dump(const ef_config_problems *p) {
  for (size_t i = 0; i < p->count; i++) fprintf(stderr, "  problem: %s\n", p->lines[i]);
}

static void test_defaults(void **state) {
  (void)state;
  ef_config *c = malloc(sizeof *c);
  ef_config_problems *p = malloc(sizeof *p);
  assert_int_equal(parse("{\"device_id\":\"dev-1\",\"mqtt\":{\"uri\":\"mqtt://127.0.0.1:1883\"}}", c, p),
                   EF_OK);
  assert_int_equal(p->count, 0);
  assert_string_equal(c->device_id, "dev-1");
  assert_int_equal(c->n_groups, 0);
  assert_string_equal(c->state_dir, "/var/lib/espfleet");
  assert_string_equal(c->mqtt.uri, "mqtt://127.0.0.1:1883");
  assert_string_equal(c->mqtt.client_id, "dev-1"); /* the device_id: docs/security.md, "Broker access" */
  assert_string_equal(c->mqtt.username, "");
  assert_false(c->mqtt.has_password);
  assert_string_equal(c->mqtt.ca_file, "");
  assert_int_equal(c->mqtt.keepalive_s, 30);
  assert_string_equal(c->mqtt.topic_prefix, "espfleet");
  assert_string_equal(c->esp.device, "/dev/esps0");
  assert_string_equal(c->esp.chip, "");
  assert_int_equal(c->esp.chip_id, -1);
  /* the control client's (measured) defaults, legal for every chip */
  assert_int_equal(c->esp.chunk_size, EF_CTRL_DEFAULT_CHUNK);
  assert_int_equal(c->esp.window, EF_CTRL_DEFAULT_WINDOW);
  assert_true(EF_CTRL_DEFAULT_CHUNK <= EF_CTRL_MAX_CHUNK);
  assert_int_equal(c->esp.max_image_size, 16777216);
  assert_false(c->esp.disable_bt_during_ota);
  assert_int_equal(c->esp.boot_timeout_s, 60);
  assert_int_equal(c->esp.begin_timeout_s, 60);
  assert_string_equal(c->esp.driver_release, "");
  assert_string_equal(c->esp.kernel_log, "/dev/kmsg");
  assert_string_equal(c->download.ca_file, "");
  assert_int_equal(c->download.connect_timeout_s, 15);
  assert_int_equal(c->download.stall_timeout_s, 30);
  assert_false(c->download.allow_http);
  assert_int_equal(c->download.max_attempts, 3);
  ef_job_limits lim;
  ef_config_job_limits(c, &lim);
  assert_int_equal(lim.max_image_size, 16777216);
  assert_false(lim.allow_http);
  free(c);
  free(p);
}

static void test_every_value_set(void **state) {
  (void)state;
  ef_config *c = malloc(sizeof *c);
  ef_config_problems *p = malloc(sizeof *p);
  const char *ca = strdup(write_tmp("ca.pem", "not really a CA\n"));
  const char *pw = strdup(write_tmp("password", "s3cret\n"));
  char json[4096];
  snprintf(
      json, sizeof json,
      "{\"device_id\":\"d\",\"groups\":[\"g1\",\"g.2\"],\"state_dir\":\"/tmp/x\","
      "\"mqtt\":{\"uri\":\"mqtts://broker:8883\",\"client_id\":\"cid\",\"username\":\"u\","
      "\"password_file\":\"%s\",\"ca_file\":\"%s\",\"cert_file\":\"%s\",\"key_file\":\"%s\","
      "\"keepalive_s\":10,\"topic_prefix\":\"acme/fleet\"},"
      "\"esp\":{\"device\":\"/dev/pts/9\",\"chip\":\"ESP32-C3\",\"chunk_size\":2048,\"window\":4,"
      "\"max_image_size\":2097152,\"disable_bt_during_ota\":true,\"boot_timeout_s\":20,\"begin_timeout_s\":"
      "90,"
      "\"driver_release\":\"FG-1.0.4.0.0\",\"kernel_log\":\"/var/log/kern.log\"},"
      "\"download\":{\"ca_file\":\"%s\",\"connect_timeout_s\":5,\"stall_timeout_s\":7,\"allow_http\":true,"
      "\"max_attempts\":5}}",
      pw, ca, ca, ca, ca);
  ef_err e = parse(json, c, p);
  dump(p);
  assert_int_equal(e, EF_OK);
  assert_int_equal(c->n_groups, 2);
  assert_string_equal(c->groups[1], "g.2");
  assert_string_equal(c->state_dir, "/tmp/x");
  assert_string_equal(c->mqtt.client_id, "cid");
  assert_string_equal(c->mqtt.username, "u");
  assert_true(c->mqtt.has_password);
  assert_string_equal(c->mqtt.password, "s3cret"); /* newline trimmed */
  assert_string_equal(c->mqtt.cert_file, ca);
  assert_int_equal(c->mqtt.keepalive_s, 10);
  assert_string_equal(c->mqtt.topic_prefix, "acme/fleet");
  assert_string_equal(c->esp.device, "/dev/pts/9");
  assert_string_equal(c->esp.chip, "esp32c3");
  assert_int_equal(c->esp.chip_id, 5);
  assert_int_equal(c->esp.chunk_size, 2048);
  assert_int_equal(c->esp.window, 4);
  assert_int_equal(c->esp.max_image_size, 2097152);
  assert_true(c->esp.disable_bt_during_ota);
  assert_int_equal(c->esp.boot_timeout_s, 20);
  assert_int_equal(c->esp.begin_timeout_s, 90);
  assert_string_equal(c->esp.driver_release, "FG-1.0.4.0.0");
  assert_string_equal(c->esp.kernel_log, "/var/log/kern.log");
  assert_string_equal(c->download.ca_file, ca);
  assert_int_equal(c->download.connect_timeout_s, 5);
  assert_int_equal(c->download.stall_timeout_s, 7);
  assert_true(c->download.allow_http);
  assert_int_equal(c->download.max_attempts, 5);
  free((void *)ca);
  free((void *)pw);
  free(c);
  free(p);
}

/* One document with a mistake in every key: each one must be named. */
static void test_every_problem_named(void **state) {
  (void)state;
  ef_config *c = malloc(sizeof *c);
  ef_config_problems *p = malloc(sizeof *p);
  char json[4096];
  snprintf(json, sizeof json,
           "{\"device_id\":\"bad id\",\"groups\":[\"ok\",\"bad/group\",7,\"ok\"],\"state_dir\":\"\","
           "\"mqtt\":{\"uri\":\"tcp://broker\",\"client_id\":\"\",\"username\":5,"
           "\"password_file\":\"%s/missing-password\",\"ca_file\":\"%s/missing-ca\","
           "\"cert_file\":\"%s/missing-cert\",\"keepalive_s\":0,\"topic_prefix\":\"a/#\",\"pasword\":\"x\"},"
           "\"esp\":{\"device\":\"\",\"chip\":\"esp99\",\"chunk_size\":0,\"window\":9,\"max_image_size\":-1,"
           "\"disable_bt_during_ota\":\"no\",\"boot_timeout_s\":0,\"begin_timeout_s\":1.5,"
           "\"driver_release\":\"1.0.4\",\"kernel_log\":\"\"},"
           "\"download\":{\"ca_file\":\"%s/missing-ca2\",\"connect_timeout_s\":0,\"stall_timeout_s\":\"30\","
           "\"allow_http\":1,\"max_attempts\":0},"
           "\"devcie_id\":\"typo\"}",
           tmpdir, tmpdir, tmpdir, tmpdir);
  assert_int_equal(parse(json, c, p), EF_ERR_CONFIG);
  dump(p);
  char chunk_problem[128], window_problem[64];
  snprintf(chunk_problem, sizeof chunk_problem,
           "esp.chunk_size: must be 1..%d (the ESP firmware drops messages above %d bytes)",
           EF_CTRL_MAX_CHUNK, EF_CTRL_FW_MSG_MAX);
  snprintf(window_problem, sizeof window_problem, "esp.window: must be 1..%d", EF_CTRL_MAX_WINDOW);
  const char *expected[] = {
      "device_id: required, 1-64 characters of [A-Za-z0-9._:-]",
      "groups[1]: must be 1-64 characters",
      "groups[2]: must be 1-64 characters",
      "groups[3]: \"ok\" is listed twice",
      "state_dir: must not be empty",
      "mqtt.uri: must start with mqtt:// or mqtts://",
      "mqtt.client_id: must not be empty",
      "mqtt.username: must be a string",
      "mqtt.password_file: cannot read",
      "mqtt.ca_file: cannot read",
      "mqtt.cert_file: cannot read",
      "mqtt.key_file: required when mqtt.cert_file is set",
      "mqtt.keepalive_s: must be an integer 1..65535",
      "mqtt.topic_prefix: must be 1-128 characters",
      "mqtt.pasword: unknown key",
      "esp.device: must not be empty",
      "esp.chip: unknown chip \"esp99\"",
      chunk_problem,
      window_problem,
      "esp.max_image_size: must be a positive integer",
      "esp.disable_bt_during_ota: must be true or false",
      "esp.boot_timeout_s: must be an integer 1..3600",
      "esp.begin_timeout_s: must be an integer 1..3600",
      "esp.driver_release: must be a release such as FG-1.0.0.0.0 (NAME-a.b.c.d.e)",
      "esp.kernel_log: must not be empty",
      "download.ca_file: cannot read",
      "download.connect_timeout_s: must be an integer 1..600",
      "download.stall_timeout_s: must be an integer 1..3600",
      "download.allow_http: must be true or false",
      "download.max_attempts: must be an integer 1..100",
      "devcie_id: unknown key",
  };
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
    if (!has_problem(p, expected[i])) fail_msg("missing problem: %s", expected[i]);
  assert_int_equal(p->count, sizeof expected / sizeof expected[0]);
  free(c);
  free(p);
}

static void test_structural_problems(void **state) {
  (void)state;
  ef_config *c = malloc(sizeof *c);
  ef_config_problems *p = malloc(sizeof *p);
  assert_int_equal(parse("{}", c, p), EF_ERR_CONFIG);
  assert_true(has_problem(p, "device_id: required"));
  assert_true(has_problem(p, "mqtt.uri: required"));
  assert_int_equal(p->count, 2);

  assert_int_equal(
      parse("{\"device_id\":\"d\",\"mqtt\":[],\"esp\":1,\"download\":null,\"groups\":\"g\"}", c, p),
      EF_ERR_CONFIG);
  dump(p);
  assert_true(has_problem(p, "mqtt: must be an object"));
  assert_true(has_problem(p, "esp: must be an object"));
  assert_true(has_problem(p, "download: must be an object"));
  assert_true(has_problem(p, "groups: must be a list"));

  assert_int_equal(parse("{\"device_id\":\"d\",\n  \"mqtt\": {,}}", c, p), EF_ERR_CONFIG);
  assert_int_equal(p->count, 1);
  assert_true(has_problem(p, "config: not valid JSON (line 2"));

  assert_int_equal(parse("[]", c, p), EF_ERR_CONFIG);
  assert_true(has_problem(p, "config: must be a JSON object"));

  /* a key given twice is ambiguous */
  assert_int_equal(parse("{\"device_id\":\"a\",\"device_id\":\"b\",\"mqtt\":{\"uri\":\"mqtt://h\"}}", c, p),
                   EF_ERR_CONFIG);
  assert_true(has_problem(p, "device_id: given more than once"));

  free(c);
  free(p);
}

static void test_tls_with_plain_uri(void **state) {
  (void)state;
  ef_config *c = malloc(sizeof *c);
  ef_config_problems *p = malloc(sizeof *p);
  const char *json = "{\"device_id\":\"d\",\"mqtt\":{\"uri\":\"mqtt://h\",\"ca_file\":\"/x\"}}";
  assert_int_equal(ef_config_parse(json, strlen(json), EF_CONFIG_SKIP_FILES, c, p, NULL), EF_ERR_CONFIG);
  assert_true(has_problem(p, "mqtt.uri: TLS files are configured but the uri is mqtt://"));
  assert_int_equal(p->count, 1);
  free(c);
  free(p);
}

/* A password over mqtt:// crosses the network in clear: a problem, unless
 * the broker is on this host (finding 7d). */
static void test_password_in_clear(void **state) {
  (void)state;
  ef_config *c = malloc(sizeof *c);
  ef_config_problems *p = malloc(sizeof *p);
  static const struct {
    const char *uri;
    bool problem;
  } cases[] = {
      {"mqtt://broker.example.com:1883", true},
      {"mqtt://10.0.0.5", true},
      {"mqtt://127.0.0.1:1883", false},
      {"mqtt://127.1.2.3", false},
      {"mqtt://localhost:1883", false},
      {"mqtt://LOCALHOST", false},
      {"mqtt://[::1]:1883", false},
      {"mqtt://127.0.0.1.evil.example.com", true},
      {"mqtt://localhost.evil.example.com", true},
      {"mqtt://[::2]:1883", true},
      {"mqtts://broker.example.com:8883", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char json[512];
    snprintf(json, sizeof json,
             "{\"device_id\":\"d\",\"mqtt\":{\"uri\":\"%s\",\"username\":\"d\","
             "\"password_file\":\"/etc/espfleet/mqtt-password\"}}",
             cases[i].uri);
    ef_err e = ef_config_parse(json, strlen(json), EF_CONFIG_SKIP_FILES, c, p, NULL);
    bool named = has_problem(p, "mqtt.password_file: the password would cross the network in clear");
    if (named != cases[i].problem || (e == EF_OK) == cases[i].problem)
      fail_msg("%s: %s, problem %s", cases[i].uri, ef_err_name(e), named ? "named" : "not named");
  }
  /* without a password there is nothing to protect */
  const char *json = "{\"device_id\":\"d\",\"mqtt\":{\"uri\":\"mqtt://broker.example.com\"}}";
  assert_int_equal(ef_config_parse(json, strlen(json), EF_CONFIG_SKIP_FILES, c, p, NULL), EF_OK);
  free(c);
  free(p);
}

/* A key is the file's text: a problem line shows it escaped and cut, never
 * a terminal escape sequence (found by fuzz_config). */
static void test_unknown_key_escaped(void **state) {
  (void)state;
  ef_config *c = malloc(sizeof *c);
  ef_config_problems *p = malloc(sizeof *p);
  char json[1024];
  char long_key[301];
  memset(long_key, 'k', 300);
  long_key[300] = '\0';
  snprintf(json, sizeof json,
           "{\"device_id\":\"d\",\"mqtt\":{\"uri\":\"mqtt://h\"},\"x\\u001b[2J\":1,\"%s\":2}", long_key);
  assert_int_equal(ef_config_parse(json, strlen(json), EF_CONFIG_SKIP_FILES, c, p, NULL), EF_ERR_CONFIG);
  assert_true(has_problem(p, "x\\x1b[2J: unknown key"));
  for (size_t i = 0; i < p->count; i++) {
    for (const char *q = p->lines[i]; *q; q++) assert_true((unsigned char)*q >= 0x20);
    assert_true(strlen(p->lines[i]) < 100);
  }
  free(c);
  free(p);
}

/* The ESP32-C2's request queue (REQ_Q_MAX 3) is no limit: the firmware's
 * one receive buffer lets only one request wait in it (docs/esp-hosted.md). */
static void test_window_of_esp32c2(void **state) {
  (void)state;
  ef_config *c = malloc(sizeof *c);
  ef_config_problems *p = malloc(sizeof *p);
  const char *ok =
      "{\"device_id\":\"d\",\"mqtt\":{\"uri\":\"mqtt://h\"},\"esp\":{\"chip\":\"esp32c2\",\"window\":4}}";
  assert_int_equal(ef_config_parse(ok, strlen(ok), EF_CONFIG_SKIP_FILES, c, p, NULL), EF_OK);
  assert_int_equal(c->esp.window, 4);
  free(c);
  free(p);
}

/* The firmware reassembles each control message in a 4096-byte buffer and
 * drops the rest: no configuration may ask for an OTA write that does not fit. */
static void test_chunk_size_limit(void **state) {
  (void)state;
  ef_config *c = malloc(sizeof *c);
  ef_config_problems *p = malloc(sizeof *p);
  char json[256], want[128];
  assert_true(EF_CTRL_MAX_CHUNK < 4096); /* the data plus the frame's headers fit */
  snprintf(want, sizeof want,
           "esp.chunk_size: must be 1..%d (the ESP firmware drops messages above %d bytes)",
           EF_CTRL_MAX_CHUNK, EF_CTRL_FW_MSG_MAX);
  snprintf(json, sizeof json,
           "{\"device_id\":\"d\",\"mqtt\":{\"uri\":\"mqtt://h\"},\"esp\":{\"chunk_size\":%d}}",
           EF_CTRL_MAX_CHUNK);
  assert_int_equal(ef_config_parse(json, strlen(json), EF_CONFIG_SKIP_FILES, c, p, NULL), EF_OK);
  assert_int_equal(c->esp.chunk_size, EF_CTRL_MAX_CHUNK);
  const int too_big[] = {EF_CTRL_MAX_CHUNK + 1, 4096, 16000, 16384, 32768};
  for (size_t i = 0; i < sizeof too_big / sizeof too_big[0]; i++) {
    snprintf(json, sizeof json,
             "{\"device_id\":\"d\",\"mqtt\":{\"uri\":\"mqtt://h\"},\"esp\":{\"chunk_size\":%d}}", too_big[i]);
    assert_int_equal(ef_config_parse(json, strlen(json), EF_CONFIG_SKIP_FILES, c, p, NULL), EF_ERR_CONFIG);
    assert_int_equal(p->count, 1);
    assert_string_equal(p->lines[0], want);
    assert_int_equal(c->esp.chunk_size, EF_CONFIG_DEFAULT_CHUNK_SIZE);
  }
  free(c);
  free(p);
}

static void test_load_file_and_password(void **state) {
  (void)state;
  ef_config *c = malloc(sizeof *c);
  ef_config_problems *p = malloc(sizeof *p);
  char *pw = strdup(write_tmp("password", "pa ss\r\n\n"));
  char json[1024];
  snprintf(json, sizeof json,
           "{\"device_id\":\"d\",\"mqtt\":{\"uri\":\"mqtt://"
           "127.0.0.1:1\",\"username\":\"u\",\"password_file\":\"%s\"}}",
           pw);
  const char *path = write_tmp("config.json", json);
  assert_int_equal(ef_config_load(path, c, p, NULL), EF_OK);
  assert_true(c->mqtt.has_password);
  assert_string_equal(c->mqtt.password, "pa ss");

  char missing[512];
  snprintf(missing, sizeof missing, "%s/nope.json", tmpdir);
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_config_load(missing, c, p, &st), EF_ERR_CONFIG);
  assert_int_equal(p->count, 1);
  assert_true(has_problem(p, "config: cannot read"));
  /* the status is the one problem, for a caller that wants one line */
  assert_int_equal(st.code, EF_ERR_CONFIG);
  assert_string_equal(st.detail, p->lines[0]);
  /* several problems: the first, and how many more */
  const char *two = "{\"device_id\":\"d\",\"mqtt\":{\"uri\":\"mqtt://h\"},\"bogus\":1,\"other\":2}";
  ef_status_clear(&st);
  assert_int_equal(ef_config_parse(two, strlen(two), EF_CONFIG_SKIP_FILES, c, p, &st), EF_ERR_CONFIG);
  assert_int_equal(p->count, 2);
  char want[EF_CONFIG_PROBLEM_LEN + 32];
  snprintf(want, sizeof want, "%s (and 1 more problem)", p->lines[0]);
  assert_string_equal(st.detail, want);
  ef_status_clear(&st);
  assert_int_equal(ef_config_parse(NULL, 0, 0, c, p, &st), EF_ERR_CONFIG);
  assert_string_equal(st.detail, "config: empty");
  free(pw);
  free(c);
  free(p);
}

/* The shipped example must load cleanly (its files live on the target machine). */
static void test_example_config(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s", __FILE__);
  char *cut = strstr(path, "/tests/unit/");
  if (!cut) skip();
  snprintf(cut, sizeof path - (size_t)(cut - path), "/config/espfleetd.example.json");
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("cannot open %s", path);
  static char text[65536];
  size_t n = fread(text, 1, sizeof text, f);
  fclose(f);
  ef_config *c = malloc(sizeof *c);
  ef_config_problems *p = malloc(sizeof *p);
  ef_err e = ef_config_parse(text, n, EF_CONFIG_SKIP_FILES, c, p, NULL);
  dump(p);
  assert_int_equal(e, EF_OK);
  assert_string_equal(c->device_id, "gw-0042");
  assert_int_equal(c->n_groups, 2);
  assert_string_equal(c->mqtt.uri, "mqtts://mqtt.example.com:8883");
  /* and through the file loader, only the files it names can be missing */
  e = ef_config_load(path, c, p, NULL);
  /* which of those files exist depends on the machine; a failure says why */
  assert_true(e == EF_OK || p->count > 0);
  for (size_t i = 0; i < p->count; i++)
    if (!strstr(p->lines[i], ": cannot read /etc/espfleet/")) fail_msg("unexpected problem: %s", p->lines[i]);
  free(c);
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
      cmocka_unit_test_setup_teardown(test_every_value_set, setup, teardown),
      cmocka_unit_test_setup_teardown(test_every_problem_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_structural_problems, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tls_with_plain_uri, setup, teardown),
      cmocka_unit_test_setup_teardown(test_password_in_clear, setup, teardown),
      cmocka_unit_test_setup_teardown(test_window_of_esp32c2, setup, teardown),
      cmocka_unit_test(test_unknown_key_escaped),
      cmocka_unit_test_setup_teardown(test_chunk_size_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_load_file_and_password, setup, teardown),
      cmocka_unit_test_setup_teardown(test_example_config, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
