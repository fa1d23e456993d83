/* espfleet info: asks the ESP for its firmware version (GetFwVersion). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "espfleet/ctrl.h"
#include "espfleet/transport.h"

const char cli_info_usage[] =
    "Usage: espfleet info [--device PATH] [--timeout-ms N] [--json]\n"
    "\n"
    "Asks the ESP for its firmware version over the ESP-Hosted control path\n"
    "(GetFwVersion) and prints it as NAME-major1.major2.minor.patch1.patch2,\n"
    "e.g. FG-1.0.4.0.0.\n"
    "\n"
    "  --device PATH    control device (default " EF_DEFAULT_DEVICE ")\n"
    "  --timeout-ms N   request timeout (default " EF_STR(EF_CTRL_DEFAULT_TIMEOUT_MS) ")\n"
    "  --json           print {\"device\", \"version\", \"name\", \"major1\",\n"
    "                   \"major2\", \"minor\", \"rev_patch1\", \"rev_patch2\"}\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0 on success; 1 with 'espfleet: error: <code>: ...' (e.g.\n"
    "esp_unavailable, esp_timeout); 2 on a usage error.\n";

int cmd_info(int argc, char **argv) {
  enum { O_DEVICE = 256, O_TIMEOUT, O_JSON };
  static const struct option opts[] = {
      {"device", required_argument, NULL, O_DEVICE},
      {"timeout-ms", required_argument, NULL, O_TIMEOUT},
      {"json", no_argument, NULL, O_JSON},
      {NULL, 0, NULL, 0},
  };
  ef_ctrl_options co;
  ef_ctrl *ctrl = NULL;
  bool json = false;
  long l;
  int c, rc = CLI_FAIL;
  ef_status st = EF_STATUS_INIT;
  ef_err err;

  ef_ctrl_options_default(&co);
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (c) {
    case O_DEVICE: co.device = optarg; break;
    case O_TIMEOUT:
      if (!cli_parse_long(optarg, 1, CLI_MAX_TIMEOUT_MS, &l))
        return cli_usage_error("info", "bad value '%s' for --timeout-ms", optarg);
      co.timeout_ms = (int)l;
      break;
    case O_JSON: json = true; break;
    case ':': return cli_usage_error("info", "option '%s' needs a value", argv[optind - 1]);
    default: return cli_usage_error("info", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return cli_usage_error("info", "unexpected argument '%s'", argv[optind]);

  err = ef_ctrl_open(&co, &ctrl, &st);
  if (err != EF_OK) goto out;
  ef_fw_version fw;
  err = ef_ctrl_get_fw_version(ctrl, &fw, &st);
  if (err != EF_OK) {
    ef_status_prefix(&st, co.device);
    goto out;
  }
  char text[96];
  ef_fw_version_format(&fw, text, sizeof text);
  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "device", co.device);
    cJSON_AddStringToObject(o, "version", text);
    cJSON_AddStringToObject(o, "name", fw.name);
    cJSON_AddNumberToObject(o, "major1", fw.major1);
    cJSON_AddNumberToObject(o, "major2", fw.major2);
    cJSON_AddNumberToObject(o, "minor", fw.minor);
    cJSON_AddNumberToObject(o, "rev_patch1", fw.rev_patch1);
    cJSON_AddNumberToObject(o, "rev_patch2", fw.rev_patch2);
    char *s = cJSON_Print(o);
    if (s) puts(s);
    cJSON_free(s);
    cJSON_Delete(o);
  } else {
    printf("%s\n", text);
  }
  rc = CLI_OK;
out:
  ef_ctrl_close(ctrl);
  if (rc != CLI_OK) cli_fail(err, st.detail);
  return rc;
}
