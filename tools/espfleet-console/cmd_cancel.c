/* espfleet-console cancel: asks one device to stop a job. */
#include <stdio.h>
#include <stdlib.h>

#include "console.h"

const char con_cancel_usage[] =
    "Usage: espfleet-console cancel JOB_ID --device ID [OPTIONS]\n"
    "\n"
    "Publishes {\"job_id\": JOB_ID} with QoS 1 (not retained) on\n"
    "P/devices/ID/cancel. The device drops the job if it is waiting, stops it\n"
    "if it is downloading or verifying (the ESP keeps its old image), and\n"
    "ignores the cancel from OTA end on or for any other job. Follow the\n"
    "outcome with 'espfleet-console watch --device ID --job JOB_ID'.\n"
    "\n"
    "  --device ID             the device\n"
    "\n"
    "--timeout S bounds the connection and the broker's acknowledgement (10 s).\n"
    "Exit status: 0 published; 1 error; 2 usage error.\n";

int cmd_cancel(int argc, char **argv) {
  enum { O_DEVICE = CON_OPT_CMD };
  static const struct option longopts[] = {
      {"device", required_argument, NULL, O_DEVICE},
      CON_COMMON_LONGOPTS,
  };
  con_common c;
  const char *device = NULL;
  con_link *link = NULL;
  char topic[512];
  char *json = NULL;
  cJSON *doc = NULL;
  int opt, rc = CON_USAGE;

  con_common_init(&c);
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    int r = con_common_opt(&c, "cancel", opt, optarg);
    if (r < 0) goto out;
    if (r > 0) continue;
    if (opt == O_DEVICE)
      device = optarg;
    else {
      con_usage_error("cancel", "unknown option");
      goto out;
    }
  }
  if (optind + 1 != argc) {
    con_usage_error("cancel", "expected exactly one JOB_ID");
    goto out;
  }
  const char *job_id = argv[optind];
  if (!ef_id_valid(job_id)) {
    con_usage_error("cancel", "JOB_ID: must be 1-64 characters of [A-Za-z0-9._:-]");
    goto out;
  }
  if (!device || !ef_id_valid(device)) {
    con_usage_error("cancel", "--device ID is required (1-64 characters of [A-Za-z0-9._:-])");
    goto out;
  }
  if ((rc = con_common_check(&c, "cancel")) != CON_OK) goto out;
  rc = CON_FAIL;
  if (!con_topic(topic, sizeof topic, c.prefix, "devices", device, "cancel")) {
    con_fail(EF_ERR_INVALID_ARG, "topic too long");
    goto out;
  }
  doc = cJSON_CreateObject();
  if (!doc || !cJSON_AddStringToObject(doc, "job_id", job_id) || !(json = cJSON_PrintUnformatted(doc))) {
    con_fail(EF_ERR_NOMEM, NULL);
    goto out;
  }
  double timeout = c.timeout_s > 0 ? c.timeout_s : CON_CONNECT_TIMEOUT_S;
  if (con_link_open(&c, NULL, 0, timeout, &link) != EF_OK) goto out;
  if (con_link_publish(link, topic, json, false, timeout) != EF_OK) goto out;
  printf("published cancel of job %s to %s\n", job_id, topic);
  rc = CON_OK;
out:
  con_link_close(link);
  cJSON_Delete(doc);
  free(json);
  return rc;
}
