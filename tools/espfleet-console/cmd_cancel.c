/* espfleet-console cancel: asks one device, or every device of a group, to stop a job. */
#include <stdio.h>
#include <stdlib.h>

#include "console.h"

const char con_cancel_usage[] =
    "Usage: espfleet-console cancel JOB_ID (--device ID | --group G) [OPTIONS]\n"
    "\n"
    "Publishes the cancel document {\"job_id\": JOB_ID} with QoS 1 (not\n"
    "retained) on P/devices/ID/cancel or P/groups/G/cancel. A device drops\n"
    "the job if it is waiting, stops it if it is downloading or verifying (the\n"
    "ESP keeps its old image), and ignores the cancel from OTA end on or for\n"
    "any other job. Follow the outcome with\n"
    "'espfleet-console watch --job JOB_ID'.\n"
    "\n"
    "  --device ID             the device\n"
    "  --group G               every device of the group (devices subscribe to\n"
    "                          their groups' cancel topics)\n"
    "\n"
    "--timeout S bounds the connection and the broker's acknowledgement (10 s).\n"
    "Exit status: 0 published; 1 error; 2 usage error.\n";

int cmd_cancel(int argc, char **argv) {
  enum { O_DEVICE = CON_OPT_CMD, O_GROUP };
  static const struct option longopts[] = {
      {"device", required_argument, NULL, O_DEVICE},
      {"group", required_argument, NULL, O_GROUP},
      CON_COMMON_LONGOPTS,
  };
  con_common c;
  const char *device = NULL, *group = NULL;
  con_link *link = NULL;
  char topic[EF_TOPIC_MAX];
  char *json = NULL;
  int opt, rc = CON_USAGE;

  con_common_init(&c);
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    int r = con_common_opt(&c, "cancel", opt, optarg);
    if (r < 0) goto out;
    if (r > 0) continue;
    if (opt == O_DEVICE) {
      device = optarg;
    } else if (opt == O_GROUP) {
      group = optarg;
    } else {
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
  if (!device == !group) {
    con_usage_error("cancel", "give one of --device ID or --group G");
    goto out;
  }
  if (!ef_id_valid(device ? device : group)) {
    con_usage_error("cancel", "%s: must be 1-64 characters of [A-Za-z0-9._:-]",
                    device ? "--device" : "--group");
    goto out;
  }
  if ((rc = con_common_check(&c, "cancel")) != CON_OK) goto out;
  rc = CON_FAIL;
  if (!con_topic(topic, c.prefix, device ? EF_TOPIC_DEVICE_CANCEL : EF_TOPIC_GROUP_CANCEL,
                 device ? device : group))
    goto out;
  if (!(json = ef_cancel_json(job_id))) {
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
  free(json);
  return rc;
}
