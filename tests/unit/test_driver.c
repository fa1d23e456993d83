/* The host driver's release: its format, its kernel log line, reading the log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "espfleet/clock.h"
#include "espfleet/driver.h"

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/test_driver.XXXXXX", base && base[0] ? base : "/tmp");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  const char *names[] = {"kmsg", "fifo", "long"};
  char path[512];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
    unlink(path);
  }
  return rmdir(tmpdir);
}

static const char *tmp_path(const char *name) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  return path;
}

static const char *write_tmp(const char *name, const char *text) {
  const char *path = tmp_path(name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static void test_release_format(void **state) {
  (void)state;
  static const char *good[] = {"FG-1.0.0.0.0", "FG-1.0.4.0.0", "NG-4294967295.0.0.0.12", "a_b9-0.0.0.0.0",
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZabcde-1.2.3.4.5"};
  static const char *bad[] = {"",
                              "FG",
                              "FG-",
                              "-1.0.0.0.0",
                              "FG-1.0.0.0",
                              "FG-1.0.0.0.0.0",
                              "FG-1..0.0.0",
                              "FG-1.0.0.0.",
                              "FG-1.0.0.0.4294967296",
                              "FG-1.0.0.0.0 ",
                              " FG-1.0.0.0.0",
                              "F G-1.0.0.0.0",
                              "FG-+1.0.0.0.0",
                              "FG_1.0.0.0.0",
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef-1.2.3.4.5" /* 32-character name */};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    if (!ef_fw_release_valid(good[i])) fail_msg("should be valid: \"%s\"", good[i]);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (ef_fw_release_valid(bad[i])) fail_msg("should be invalid: \"%s\"", bad[i]);
  assert_false(ef_fw_release_valid(NULL));
}

static bool from_line(const char *line, char out[EF_FW_RELEASE_MAX + 1]) {
  return ef_driver_release_from_line(line, strlen(line), out, EF_FW_RELEASE_MAX + 1);
}

static void test_release_from_line(void **state) {
  (void)state;
  char out[EF_FW_RELEASE_MAX + 1] = "";
  /* /dev/kmsg record, as the driver's pr_info with pr_fmt "%s: %s: " gives it */
  assert_true(from_line(
      "6,812,4051234,-;esp32_spi: check_esp_version: Driver supports Firmware version: FG-1.0.0.0.0", out));
  assert_string_equal(out, "FG-1.0.0.0.0");
  /* dmesg text, with the record's newline */
  assert_true(from_line(
      "[    4.051234] esp32_sdio: check_esp_version: Driver supports Firmware version: FG-1.0.3.0.0\n", out));
  assert_string_equal(out, "FG-1.0.3.0.0");
  /* the ESP's own version on the next line is not the driver's */
  strcpy(out, "untouched");
  assert_false(
      from_line("6,813,4051300,-;esp32_spi: check_esp_version: ESP Firmware version: FG-9.0.0.0.0", out));
  assert_false(from_line("Driver supports Firmware version: FG-1.0.0.0", out));
  assert_false(from_line("Driver supports Firmware version: FG-1.0.0.0.0x", out));
  assert_false(from_line("Driver supports Firmware version:FG-1.0.0.0.0", out));
  assert_false(from_line("", out));
  assert_string_equal(out, "untouched");
  /* too small an output buffer is a miss, not a truncated release */
  char small[8] = "";
  const char *line = "Driver supports Firmware version: FG-1.0.0.0.0";
  assert_false(ef_driver_release_from_line(line, strlen(line), small, sizeof small));
}

static void test_read_log_file(void **state) {
  (void)state;
  char out[EF_FW_RELEASE_MAX + 1] = "";
  bool found = true;
  /* kmsg-style records with continuation lines; the last driver line wins
   * (the driver was reloaded with a newer release) */
  const char *path = write_tmp(
      "kmsg",
      "6,1,100,-;Linux version 6.1\n"
      "6,812,4051234,-;esp32_spi: check_esp_version: Driver supports Firmware version: FG-1.0.0.0.0\n"
      " SUBSYSTEM=spi\n"
      "6,813,4051300,-;esp32_spi: check_esp_version: ESP Firmware version: FG-1.0.0.0.0\n"
      "6,900,9051234,-;esp32_spi: check_esp_version: Driver supports Firmware version: FG-1.0.4.0.0\n"
      "3,901,9051300,-;esp32_spi: check_esp_version: Incompatible ESP firmware release detected\n"
      "6,902,9051301,-;last line without a newline: Driver supports Firmware version: oops");
  assert_int_equal(ef_driver_release_read_log(path, out, sizeof out, &found, NULL), EF_OK);
  assert_true(found);
  assert_string_equal(out, "FG-1.0.4.0.0");

  /* nothing there */
  write_tmp("kmsg", "6,1,100,-;Linux version 6.1\n");
  assert_int_equal(ef_driver_release_read_log(path, out, sizeof out, &found, NULL), EF_OK);
  assert_false(found);
  write_tmp("kmsg", "");
  assert_int_equal(ef_driver_release_read_log(path, out, sizeof out, &found, NULL), EF_OK);
  assert_false(found);
  /* a final line without a newline still counts */
  write_tmp("kmsg", "Driver supports Firmware version: FG-2.0.0.0.0");
  assert_int_equal(ef_driver_release_read_log(path, out, sizeof out, &found, NULL), EF_OK);
  assert_true(found);
  assert_string_equal(out, "FG-2.0.0.0.0");

  /* an over-long line is skipped, the next one is read */
  char *big = malloc(70000);
  assert_non_null(big);
  memset(big, 'x', 69000);
  snprintf(
      big + 69000, 1000,
      " Driver supports Firmware version: FG-7.0.0.0.0\nDriver supports Firmware version: FG-3.0.0.0.0\n");
  write_tmp("long", big);
  free(big);
  assert_int_equal(ef_driver_release_read_log(tmp_path("long"), out, sizeof out, &found, NULL), EF_OK);
  assert_true(found);
  assert_string_equal(out, "FG-3.0.0.0.0");

  /* unreadable: an I/O error, not "not found" */
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_driver_release_read_log(tmp_path("missing"), out, sizeof out, &found, &st), EF_ERR_IO);
  assert_false(found);
  /* why, for the caller (no errno side channel) */
  assert_non_null(strstr(st.detail, tmp_path("missing")));
  assert_non_null(strstr(st.detail, "No such file or directory"));
}

static double now_s(void) { return (double)ef_mono_ms() / 1000.0; }

/* A path that never ends or never answers does not hold the caller. */
static void test_read_log_never_hangs(void **state) {
  (void)state;
  char out[EF_FW_RELEASE_MAX + 1];
  bool found = true;
  /* a FIFO without a writer: a blocking open would wait forever */
  assert_int_equal(mkfifo(tmp_path("fifo"), 0600), 0);
  double t0 = now_s();
  assert_int_equal(ef_driver_release_read_log(tmp_path("fifo"), out, sizeof out, &found, NULL), EF_OK);
  assert_false(found);
  /* an endless device: bounded read */
  assert_int_equal(ef_driver_release_read_log("/dev/zero", out, sizeof out, &found, NULL), EF_OK);
  assert_false(found);
  /* the real kernel log, when readable: read to its end, then return */
  if (access("/dev/kmsg", R_OK) == 0) {
    ef_err e = ef_driver_release_read_log("/dev/kmsg", out, sizeof out, &found, NULL);
    assert_true(e == EF_OK || e == EF_ERR_IO); /* EPERM under dmesg_restrict */
  }
  assert_true(now_s() - t0 < 10.0);
}

static void test_source_names(void **state) {
  (void)state;
  assert_string_equal(ef_driver_source_name(EF_DRIVER_SOURCE_CONFIG), "config");
  assert_string_equal(ef_driver_source_name(EF_DRIVER_SOURCE_KERNEL_LOG), "kernel_log");
  assert_string_equal(ef_driver_source_name(EF_DRIVER_SOURCE_UNKNOWN), "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_release_format),
      cmocka_unit_test(test_release_from_line),
      cmocka_unit_test_setup_teardown(test_read_log_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_log_never_hangs, setup, teardown),
      cmocka_unit_test(test_source_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
