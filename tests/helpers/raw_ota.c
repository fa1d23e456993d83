/*
 * raw_ota: pushes a file through the raw control API (OTA begin, writes,
 * OTA end) with NO host-side validation, so a test can show what the ESP
 * (the simulator) itself does with a bad image. Prints one line:
 *   ok
 *   error <code_name> <step> resp=<firmware resp>
 * Exit status 0 for ok, 1 for an error, 2 for bad usage.
 *
 *   raw_ota --device PATH [--chunk N] [--window N] [--timeout-ms N] FILE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/ctrl.h"
#include "espfleet/log.h"

static long parse_num(const char *s) {
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v <= 0) {
    fprintf(stderr, "raw_ota: not a positive number: %s\n", s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  ef_ctrl_options o;
  ef_ctrl *c = NULL;
  ef_status st = EF_STATUS_INIT;
  FILE *in = NULL;
  const char *file = NULL, *step = "open";
  size_t chunk = EF_CTRL_DEFAULT_CHUNK;
  static uint8_t buf[EF_CTRL_MAX_CHUNK];
  ef_err err;

  ef_log_set_ident("raw_ota");
  ef_ctrl_options_default(&o);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
      o.device = argv[++i];
    } else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
      chunk = (size_t)parse_num(argv[++i]);
    } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
      o.window = (int)parse_num(argv[++i]);
    } else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
      o.timeout_ms = o.ota_begin_timeout_ms = o.ota_end_timeout_ms = (int)parse_num(argv[++i]);
    } else if (argv[i][0] != '-' && !file) {
      file = argv[i];
    } else {
      file = NULL;
      break;
    }
  }
  if (!file || chunk > sizeof buf) {
    fprintf(stderr, "usage: raw_ota --device PATH [--chunk N<=%zu] [--window N] [--timeout-ms N] FILE\n",
            sizeof buf);
    return 2;
  }
  in = fopen(file, "rb");
  if (!in) {
    perror(file);
    return 2;
  }

  err = ef_ctrl_open(&o, &c, &st);
  if (err != EF_OK) goto out;
  step = "ota_begin";
  err = ef_ctrl_ota_begin(c, &st);
  if (err != EF_OK) goto out;
  step = "ota_write";
  for (;;) {
    size_t n = fread(buf, 1, chunk, in);
    if (n == 0) break;
    err = ef_ctrl_ota_write(c, buf, n, &st);
    if (err != EF_OK) goto out;
  }
  if (ferror(in)) {
    err = ef_status_fail(&st, EF_ERR_IO, "cannot read %s", file);
    goto out;
  }
  err = ef_ctrl_ota_flush(c, &st);
  if (err != EF_OK) goto out;
  step = "ota_end";
  err = ef_ctrl_ota_end(c, &st);
out:
  /* "error CODE STEP DETAIL"; a refusal's detail carries the firmware's resp */
  if (err == EF_OK)
    printf("ok\n");
  else
    printf("error %s %s %s\n", ef_err_name(err), step, st.detail);
  ef_ctrl_close(c);
  fclose(in);
  return err == EF_OK ? 0 : 1;
}
