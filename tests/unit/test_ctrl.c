/* The control client against the fake ESP (fake_esp.h): a thread on a real
 * pseudo-terminal, reached through a symlink the way the simulator exposes
 * its pty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "espfleet/clock.h"
#include "espfleet/ctrl.h"
#include "espfleet/log.h"
#include "espfleet/transport.h"
#include "fake_esp.h"

/* ---------------------------------------------------------------- client */

struct events {
  int n;
  int id[16];
  int32_t hb[16];
  size_t len[16];
};

static void on_event(void *arg, const ef_ctrl_event *ev) {
  struct events *e = arg;
  if (e->n >= 16) return;
  e->id[e->n] = ev->id;
  e->hb[e->n] = ev->hb_num;
  e->len[e->n] = ev->data_len;
  e->n++;
}

static ef_ctrl *client(struct fake *f, int timeout_ms, int window) {
  ef_ctrl_options o;
  ef_ctrl_options_default(&o);
  o.device = f->link;
  o.timeout_ms = timeout_ms;
  o.open_timeout_ms = 2000;
  o.window = window;
  ef_ctrl *c = NULL;
  assert_int_equal(ef_ctrl_open(&o, &c, NULL), EF_OK);
  return c;
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 131 + seed) >> 3);
  p[0] = 0xE9;
}

static void test_request_response(void **state) {
  struct fake *f = fake_new();
  fake_start(f);
  ef_ctrl *c = client(f, 2000, 1);
  ef_fw_version v;
  char s[64];
  assert_int_equal(ef_ctrl_get_fw_version(c, &v, NULL), EF_OK);
  ef_fw_version_format(&v, s, sizeof s);
  assert_string_equal(s, "FG-1.0.3.0.0");
  assert_int_equal(ef_ctrl_feature(c, EF_FEATURE_BLUETOOTH, false, NULL), EF_OK);
  assert_int_equal(SEEN(f, last_feature), 2);
  assert_int_equal(SEEN(f, last_enable), 0);

  static uint8_t img[3 * 4000 + 123];
  fill(img, sizeof img, 1);
  assert_int_equal(ef_ctrl_ota_begin(c, NULL), EF_OK);
  for (size_t off = 0; off < sizeof img; off += 4000) {
    size_t n = sizeof img - off < 4000 ? sizeof img - off : 4000;
    assert_int_equal(ef_ctrl_ota_write(c, img + off, n, NULL), EF_OK);
  }
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_ctrl_ota_end(c, &st), EF_OK);
  assert_int_equal(st.code, EF_OK);
  assert_string_equal(st.detail, "");
  assert_true(fake_got_image(f, img, sizeof img));
  assert_int_equal(SEEN(f, writes), 4);
  assert_int_equal(SEEN(f, ends), 1);
  assert_true(SEEN(f, uids_increasing));
  assert_int_equal(ef_ctrl_ota_write(c, img, 0, NULL), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_ctrl_ota_write(c, img, EF_CTRL_MAX_CHUNK + 1, NULL), EF_ERR_INVALID_ARG);
  ef_ctrl_close(c);
  fake_free(f);
}

static void test_format_width(void **state) {
  ef_fw_version v = {.name = "FG", .major1 = 1, .major2 = 0, .minor = 3};
  char s[64];
  ef_fw_version_format(&v, s, sizeof s);
  assert_string_equal(s, "FG-1.0.3.0.0");
}

static void test_timeout_then_late_response(void **state) {
  struct fake *f = fake_new();
  f->late_mode = 1;
  fake_start(f);
  ef_ctrl *c = client(f, 300, 1);
  ef_fw_version v;
  int64_t t0 = ef_mono_ms();
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_ctrl_get_fw_version(c, &v, &st), EF_ERR_ESP_TIMEOUT);
  int64_t took = ef_mono_ms() - t0;
  assert_true(took >= 250 && took < 2000);
  assert_string_equal(st.detail, "no answer to Req_GetFwVersion (uid 1) within 300 ms");
  assert_true(st.retryable);
  /* The fake now answers the old uid first ("LATE"), then ours ("FG"). */
  assert_int_equal(ef_ctrl_get_fw_version(c, &v, NULL), EF_OK);
  assert_string_equal(v.name, "FG");
  assert_int_equal(SEEN(f, fw_reqs), 2);
  ef_ctrl_close(c);
  fake_free(f);
}

static void test_events_while_waiting(void **state) {
  struct fake *f = fake_new();
  f->events_mode = 1;
  fake_start(f);
  ef_ctrl *c = client(f, 2000, 1);
  struct events ev = {0};
  ef_ctrl_set_event_cb(c, on_event, &ev);
  ef_fw_version v;
  assert_int_equal(ef_ctrl_get_fw_version(c, &v, NULL), EF_OK);
  assert_string_equal(v.name, "FG");
  assert_int_equal(ev.n, 3);
  assert_int_equal(ev.id[0], EF_CTRL_EVENT_HEARTBEAT);
  assert_int_equal(ev.hb[0], 7);
  assert_int_equal(ev.id[1], EF_CTRL_EVENT_ESP_INIT);
  assert_int_equal(ev.len[1], 2);
  assert_int_equal(ev.id[2], EF_CTRL_EVENT_HEARTBEAT);
  assert_int_equal(ev.hb[2], 8);
  /* Nothing else pending: poll times out quietly. */
  assert_int_equal(ef_ctrl_poll(c, 50, NULL), EF_OK);
  assert_int_equal(ev.n, 3);
  ef_ctrl_close(c);
  fake_free(f);
}

static void test_window_of_four(void **state) {
  struct fake *f = fake_new();
  f->hold_writes = 4; /* a client that waited for each answer would stall */
  fake_start(f);
  ef_ctrl *c = client(f, 2000, 4);
  static uint8_t img[8 * 1000];
  fill(img, sizeof img, 2);
  assert_int_equal(ef_ctrl_ota_begin(c, NULL), EF_OK);
  for (int i = 0; i < 8; i++) assert_int_equal(ef_ctrl_ota_write(c, img + i * 1000, 1000, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_flush(c, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_end(c, NULL), EF_OK);
  assert_int_equal(SEEN(f, max_held), 4);
  assert_true(fake_got_image(f, img, sizeof img));
  ef_ctrl_close(c);
  fake_free(f);
}

static void test_refused_write_in_window(void **state) {
  struct fake *f = fake_new();
  f->refuse_write = 3;
  fake_start(f);
  ef_ctrl *c = client(f, 2000, 4);
  static uint8_t img[10 * 500];
  fill(img, sizeof img, 3);
  assert_int_equal(ef_ctrl_ota_begin(c, NULL), EF_OK);
  ef_err err = EF_OK;
  ef_status st = EF_STATUS_INIT;
  int i;
  for (i = 1; i <= 10 && err == EF_OK; i++) err = ef_ctrl_ota_write(c, img + (i - 1) * 500, 500, &st);
  assert_int_equal(err, EF_ERR_OTA_WRITE_FAILED);
  int failed_at = i - 1;
  assert_true(failed_at >= 3 && failed_at <= 3 + 4); /* reported within one window */
  /* the firmware's answer is in the detail, and waiting does not change it */
  assert_int_equal(st.code, EF_ERR_OTA_WRITE_FAILED);
  assert_false(st.retryable);
  assert_non_null(strstr(st.detail, "resp -1"));
  int sent = SEEN(f, writes);
  assert_true(sent <= 3 + 4 - 1);
  /* Sticky, with the first failure's status: no further write is sent and
   * OTA end is never sent. */
  ef_status again = EF_STATUS_INIT;
  assert_int_equal(ef_ctrl_ota_write(c, img, 500, &again), EF_ERR_OTA_WRITE_FAILED);
  assert_string_equal(again.detail, st.detail);
  assert_int_equal(ef_ctrl_ota_flush(c, NULL), EF_ERR_OTA_WRITE_FAILED);
  ef_status_clear(&again);
  assert_int_equal(ef_ctrl_ota_end(c, &again), EF_ERR_OTA_WRITE_FAILED);
  assert_string_equal(again.detail, st.detail);
  assert_int_equal(SEEN(f, ends), 0);
  assert_int_equal(SEEN(f, writes), sent);
  /* Answers to the abandoned writes are discarded; other requests work. */
  ef_fw_version v;
  assert_int_equal(ef_ctrl_get_fw_version(c, &v, NULL), EF_OK);
  /* A new OTA starts clean. */
  fake_set(f, &f->refuse_write, 0);
  assert_int_equal(ef_ctrl_ota_begin(c, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_write(c, img, 500, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_end(c, NULL), EF_OK);
  ef_ctrl_close(c);
  fake_free(f);
}

static void test_hangup_is_unavailable(void **state) {
  struct fake *f = fake_new();
  f->hangup_on_write = 2;
  fake_start(f);
  ef_ctrl *c = client(f, 3000, 1);
  static uint8_t img[3 * 100];
  fill(img, sizeof img, 4);
  assert_int_equal(ef_ctrl_ota_begin(c, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_write(c, img, 100, NULL), EF_OK);
  int64_t t0 = ef_mono_ms();
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_ctrl_ota_write(c, img + 100, 100, &st), EF_ERR_ESP_UNAVAILABLE);
  assert_true(ef_mono_ms() - t0 < 2500); /* the hang-up, not the timeout */
  assert_true(st.retryable);
  assert_non_null(strstr(st.detail, "Req_OTAWrite"));
  assert_int_equal(ef_ctrl_ota_end(c, NULL), EF_ERR_ESP_UNAVAILABLE);
  assert_int_equal(SEEN(f, writes), 2); /* never re-sent */
  assert_int_equal(SEEN(f, ends), 0);
  ef_ctrl_close(c);
  fake_free(f);
}

static void test_reopen_after_reboot(void **state) {
  struct fake *f = fake_new();
  f->reboot_after_end = 1;
  fake_start(f);
  ef_ctrl *c = client(f, 2000, 1);
  struct events ev = {0};
  ef_ctrl_set_event_cb(c, on_event, &ev);
  static uint8_t img[1000];
  fill(img, sizeof img, 5);
  assert_int_equal(ef_ctrl_ota_begin(c, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_write(c, img, sizeof img, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_end(c, NULL), EF_OK);
  /* The fake hangs up, removes the node for 300 ms, makes a new pty at the
   * same path and answers the first GetFwVersion with ESPInit only. */
  ef_fw_version v;
  int64_t t0 = ef_mono_ms();
  assert_int_equal(ef_ctrl_wait_boot(c, 5000, &v, NULL), EF_OK);
  assert_true(ef_mono_ms() - t0 < 4000);
  assert_string_equal(v.name, "FG");
  assert_int_equal(SEEN(f, recreated), 1);
  int inits = 0;
  for (int i = 0; i < ev.n; i++) inits += ev.id[i] == EF_CTRL_EVENT_ESP_INIT;
  assert_int_equal(inits, 1);
  assert_int_equal(ef_ctrl_get_fw_version(c, &v, NULL), EF_OK);
  ef_ctrl_close(c);
  fake_free(f);
}

static void test_uid_zero_firmware(void **state) {
  struct fake *f = fake_new();
  f->uid_zero = 1;
  fake_start(f);
  ef_ctrl *c = client(f, 2000, 3);
  static uint8_t img[7 * 300];
  fill(img, sizeof img, 6);
  ef_fw_version v;
  assert_int_equal(ef_ctrl_get_fw_version(c, &v, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_begin(c, NULL), EF_OK);
  for (int i = 0; i < 7; i++) assert_int_equal(ef_ctrl_ota_write(c, img + i * 300, 300, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_end(c, NULL), EF_OK);
  assert_true(fake_got_image(f, img, sizeof img));
  ef_ctrl_close(c);
  fake_free(f);
}

/* A realistic transfer: 2 MiB in 4000-byte chunks, window 1 then 4. */
static void test_large_image(void **state) {
  const size_t size = 2u << 20, chunk = EF_CTRL_DEFAULT_CHUNK;
  uint8_t *img = malloc(size);
  assert_non_null(img);
  fill(img, size, 7);
  for (int window = 1; window <= 4; window += 3) {
    struct fake *f = fake_new();
    fake_start(f);
    ef_ctrl *c = client(f, 2000, window);
    int64_t t0 = ef_mono_ms();
    assert_int_equal(ef_ctrl_ota_begin(c, NULL), EF_OK);
    for (size_t off = 0; off < size; off += chunk)
      assert_int_equal(ef_ctrl_ota_write(c, img + off, size - off < chunk ? size - off : chunk, NULL), EF_OK);
    assert_int_equal(ef_ctrl_ota_end(c, NULL), EF_OK);
    int64_t ms = ef_mono_ms() - t0;
    print_message("window %d: %zu bytes in %lld ms\n", window, size, (long long)ms);
    assert_true(fake_got_image(f, img, size));
    ef_ctrl_close(c);
    fake_free(f);
  }
  free(img);
}

/* ---- the driver refusing a message ---------------------------------------
 * esp_serial_write returns 0 for a message above its limit and a short count
 * when it runs out of buffers. No real file does that on demand, so write()
 * is interposed here (the library is linked statically): for one descriptor
 * it returns what the test says, for every other it is the system call. */
static int refuse_fd = -1;
static ssize_t refuse_ret;
static int refuse_calls;

ssize_t write(int fd, const void *buf, size_t n) {
  if (fd == refuse_fd) {
    refuse_calls++;
    return refuse_ret;
  }
  return syscall(SYS_write, fd, buf, n);
}

static void test_driver_refuses_write(void **state) {
  char dir[PATH_MAX], path[PATH_MAX + 8];
  snprintf(dir, sizeof dir, "/tmp/ef-ctrl-XXXXXX");
  assert_non_null(mkdtemp(dir));
  /* a FIFO: a device that is not a terminal, so writes keep message rules */
  snprintf(path, sizeof path, "%s/esps0", dir);
  assert_int_equal(mkfifo(path, 0600), 0);
  ef_ctrl_options o;
  ef_ctrl_options_default(&o);
  o.device = path;
  o.timeout_ms = 300;
  for (int partial = 0; partial <= 1; partial++) {
    ef_ctrl *c = NULL;
    assert_int_equal(ef_ctrl_open(&o, &c, NULL), EF_OK);
    /* the client's descriptor is the newest one open */
    int probe = open("/dev/null", O_RDONLY);
    assert_true(probe > 0);
    close(probe);
    refuse_fd = probe - 1;
    refuse_ret = partial ? 1500 : 0;
    refuse_calls = 0;
    int64_t t0 = ef_mono_ms();
    ef_fw_version v;
    ef_status st = EF_STATUS_INIT;
    assert_int_equal(ef_ctrl_get_fw_version(c, &v, &st), EF_ERR_ESP_WRITE_REFUSED);
    assert_non_null(strstr(st.detail, partial ? "took 1500 of" : "took 0 of"));
    /* one attempt, no loop until the deadline */
    assert_int_equal(refuse_calls, 1);
    assert_true(ef_mono_ms() - t0 < 200);
    refuse_fd = -1;
    ef_ctrl_close(c);
  }
  unlink(path);
  rmdir(dir);
}

static void test_open_missing_device(void **state) {
  char dir[PATH_MAX], path[PATH_MAX + 8];
  snprintf(dir, sizeof dir, "/tmp/ef-ctrl-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/none", dir);
  ef_ctrl_options o;
  ef_ctrl_options_default(&o);
  o.device = path;
  o.open_timeout_ms = 200;
  ef_ctrl *c = NULL;
  int64_t t0 = ef_mono_ms();
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_ctrl_open(&o, &c, &st), EF_ERR_ESP_UNAVAILABLE);
  assert_null(c);
  assert_true(ef_mono_ms() - t0 >= 150);
  /* the path and the system's reason */
  assert_non_null(strstr(st.detail, path));
  assert_non_null(strstr(st.detail, "No such file"));
  assert_true(st.retryable);
  o.device = "/dev/null";
  o.window = EF_CTRL_MAX_WINDOW + 1;
  assert_int_equal(ef_ctrl_open(&o, &c, NULL), EF_ERR_INVALID_ARG);
  rmdir(dir);
}

/* ---- cancel: every wait ends within EF_TRANSPORT_CANCEL_POLL_MS, except
 * the wait for OTA end's answer ---- */

static int64_t cancel_at; /* monotonic ms from which the callback says stop */

static bool cancel_after(void *arg) {
  (void)arg;
  return ef_mono_ms() >= cancel_at;
}

static ef_ctrl *cancelable_client(struct fake *f, int timeout_ms, int window) {
  ef_ctrl_options o;
  ef_ctrl_options_default(&o);
  o.device = f->link;
  o.timeout_ms = timeout_ms;
  o.ota_begin_timeout_ms = 20000;
  o.open_timeout_ms = 2000;
  o.window = window;
  o.should_cancel = cancel_after;
  cancel_at = INT64_MAX;
  ef_ctrl *c = NULL;
  assert_int_equal(ef_ctrl_open(&o, &c, NULL), EF_OK);
  return c;
}

static void test_cancel_unanswered_begin(void **state) {
  struct fake *f = fake_new();
  f->silent_begin = 1; /* an ESP that never finishes erasing */
  fake_start(f);
  ef_ctrl *c = cancelable_client(f, 20000, 1);
  int64_t t0 = ef_mono_ms();
  cancel_at = t0 + 300;
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_ctrl_ota_begin(c, &st), EF_ERR_CANCELED);
  int64_t took = ef_mono_ms() - t0;
  assert_true(took >= 290 && took < 300 + 2 * EF_TRANSPORT_CANCEL_POLL_MS);
  assert_non_null(strstr(st.detail, "canceled while waiting for the answer to Req_OTABegin"));
  assert_int_equal(SEEN(f, begins), 1);
  ef_ctrl_close(c);
  fake_free(f);
}

static void test_cancel_stalled_write(void **state) {
  struct fake *f = fake_new();
  f->silent_from_write = 2;
  fake_start(f);
  ef_ctrl *c = cancelable_client(f, 20000, 1);
  static uint8_t chunk[4000];
  fill(chunk, sizeof chunk, 3);
  assert_int_equal(ef_ctrl_ota_begin(c, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_write(c, chunk, sizeof chunk, NULL), EF_OK);
  int64_t t0 = ef_mono_ms();
  cancel_at = t0 + 300;
  assert_int_equal(ef_ctrl_ota_write(c, chunk, sizeof chunk, NULL), EF_ERR_CANCELED);
  assert_true(ef_mono_ms() - t0 < 300 + 2 * EF_TRANSPORT_CANCEL_POLL_MS);
  /* sticky: nothing more is sent, OTA end least of all */
  ef_ctrl_set_cancel_cb(c, NULL, NULL);
  assert_int_equal(ef_ctrl_ota_end(c, NULL), EF_ERR_CANCELED);
  assert_int_equal(SEEN(f, writes), 2);
  assert_int_equal(SEEN(f, ends), 0);
  ef_ctrl_close(c);
  fake_free(f);
}

static void test_ota_end_is_not_canceled(void **state) {
  struct fake *f = fake_new();
  f->end_delay_ms = 400;
  fake_start(f);
  ef_ctrl *c = cancelable_client(f, 2000, 2);
  static uint8_t img[2 * 4000];
  fill(img, sizeof img, 4);
  assert_int_equal(ef_ctrl_ota_begin(c, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_write(c, img, 4000, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_write(c, img + 4000, 4000, NULL), EF_OK);
  assert_int_equal(ef_ctrl_ota_flush(c, NULL), EF_OK);
  cancel_at = 0; /* from now on every wait is asked to stop */
  int64_t t0 = ef_mono_ms();
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_ctrl_ota_end(c, &st), EF_OK);
  assert_true(ef_mono_ms() - t0 >= 350);
  assert_int_equal(SEEN(f, ends), 1);
  /* the next wait is asked again */
  ef_fw_version v;
  assert_int_equal(ef_ctrl_wait_boot(c, 10000, &v, &st), EF_ERR_CANCELED);
  assert_non_null(strstr(st.detail, "canceled while waiting for the ESP to restart"));
  ef_ctrl_close(c);
  fake_free(f);
}

static void test_cancel_wait_boot(void **state) {
  struct fake *f = fake_new();
  fake_start(f); /* never restarts */
  ef_ctrl *c = cancelable_client(f, 2000, 1);
  int64_t t0 = ef_mono_ms();
  cancel_at = t0 + 300;
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_ctrl_wait_boot(c, 20000, NULL, &st), EF_ERR_CANCELED);
  assert_true(ef_mono_ms() - t0 < 300 + 2 * EF_TRANSPORT_CANCEL_POLL_MS + 500);
  ef_ctrl_close(c);
  fake_free(f);
}

static void test_cancel_open_wait(void **state) {
  char dir[PATH_MAX], path[PATH_MAX + 8];
  snprintf(dir, sizeof dir, "/tmp/ef-ctrl-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/none", dir);
  ef_ctrl_options o;
  ef_ctrl_options_default(&o);
  o.device = path;
  o.open_timeout_ms = 20000;
  o.should_cancel = cancel_after;
  ef_ctrl *c = NULL;
  int64_t t0 = ef_mono_ms();
  cancel_at = t0 + 200;
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_ctrl_open(&o, &c, &st), EF_ERR_CANCELED);
  assert_null(c);
  assert_true(ef_mono_ms() - t0 < 200 + 2 * EF_TRANSPORT_CANCEL_POLL_MS);
  rmdir(dir);
}

int main(void) {
  ef_log_set_level(EF_LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_format_width),
      cmocka_unit_test(test_request_response),
      cmocka_unit_test(test_timeout_then_late_response),
      cmocka_unit_test(test_events_while_waiting),
      cmocka_unit_test(test_window_of_four),
      cmocka_unit_test(test_refused_write_in_window),
      cmocka_unit_test(test_hangup_is_unavailable),
      cmocka_unit_test(test_reopen_after_reboot),
      cmocka_unit_test(test_uid_zero_firmware),
      cmocka_unit_test(test_large_image),
      cmocka_unit_test(test_open_missing_device),
      cmocka_unit_test(test_driver_refuses_write),
      cmocka_unit_test(test_cancel_unanswered_begin),
      cmocka_unit_test(test_cancel_stalled_write),
      cmocka_unit_test(test_ota_end_is_not_canceled),
      cmocka_unit_test(test_cancel_wait_boot),
      cmocka_unit_test(test_cancel_open_wait),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
