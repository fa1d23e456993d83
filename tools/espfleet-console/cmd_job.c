/* espfleet-console job: builds a job document from a local image and publishes it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"

const char con_job_usage[] =
    "Usage: espfleet-console job IMAGE --url URL (--device ID | --group G) [OPTIONS]\n"
    "       espfleet-console job IMAGE --url URL --print [OPTIONS]\n"
    "\n"
    "Validates the local IMAGE (an invalid image is refused with its image_*\n"
    "error), computes its SHA-256 and size, takes version, project and chip from\n"
    "the image, builds the job document, checks it with the daemon's own job\n"
    "parser, and publishes it with QoS 1 on P/devices/ID/job or P/groups/G/job.\n"
    "\n"
    "Job options:\n"
    "  --device ID             publish to one device\n"
    "  --group G               publish to every device of a group\n"
    "  --percent N             canary rollout: only devices in the first N %\n"
    "                          (0..100) run it; the others report skipped\n"
    "  --retain                publish retained (offline devices get it later;\n"
    "                          clear it with an empty retained message)\n"
    "  --print                 print the document on stdout instead of publishing\n"
    CON_JOB_OPTS_USAGE CON_JOB_ID_USAGE
    "\n"
    "--timeout S bounds the connection and the broker's acknowledgement (10 s).\n"
    "Exit status: 0 published (or printed); 1 error; 2 usage error.\n";

int con_job_opt(con_job_opts *o, int opt, const char *arg) {
  switch (opt) {
    case CON_OPT_URL: o->url = arg; return 1;
    case CON_OPT_JOB_ID: o->job_id = arg; return 1;
    case CON_OPT_ALLOW_DOWNGRADE: o->allow_downgrade = true; return 1;
    case CON_OPT_NOT_AFTER: o->not_after = arg; return 1;
    case CON_OPT_EXPECT_FW: o->expect_fw_version = arg; return 1;
    case CON_OPT_DRIVER_UPDATE: o->driver_update = true; return 1;
    case CON_OPT_ALLOW_HTTP: o->allow_http = true; return 1;
    case CON_OPT_MANIFEST: o->manifest = arg; return 1;
    case CON_OPT_SIGN_KEY: o->sign_key = arg; return 1;
    case CON_OPT_KEY_ID: o->key_id = arg; return 1;
    default: return 0;
  }
}

int con_job_prepare(const char *image, const con_job_opts *o, con_image *img, char **json, ef_job *job) {
  char detail[512];
  ef_err err = con_image_read(image, img, detail, sizeof detail);
  if (err != EF_OK) return con_fail(err, "%s", detail);
  ef_manifest rel;
  bool have = false;
  err = con_job_release(img, o, &rel, &have, detail, sizeof detail);
  if (err != EF_OK) return con_fail(err, "%s", detail);
  err = con_job_build(img, o, have ? &rel : NULL, json, job, detail, sizeof detail);
  if (err != EF_OK) return con_fail(err, "%s", detail);
  return CON_OK;
}

int cmd_job(int argc, char **argv) {
  enum { O_DEVICE = CON_OPT_CMD2, O_GROUP, O_PERCENT, O_RETAIN, O_PRINT };
  static const struct option longopts[] = {
      CON_JOB_LONGOPTS,
      {"device", required_argument, NULL, O_DEVICE},
      {"group", required_argument, NULL, O_GROUP},
      {"percent", required_argument, NULL, O_PERCENT},
      {"retain", no_argument, NULL, O_RETAIN},
      {"print", no_argument, NULL, O_PRINT},
      CON_COMMON_LONGOPTS,
  };
  con_common c;
  con_job_opts o = {.percent = -1};
  const char *device = NULL, *group = NULL;
  bool retain = false, print = false;
  char *json = NULL;
  con_link *link = NULL;
  con_image img;
  ef_job job = {0}; /* filled by con_job_prepare; zeroed so analysers see it set */
  char topic[512];
  long v;
  int opt, rc = CON_USAGE;

  con_common_init(&c);
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    int r = con_common_opt(&c, "job", opt, optarg);
    if (r < 0) goto out;
    if (r > 0 || con_job_opt(&o, opt, optarg)) continue;
    switch (opt) {
      case O_DEVICE: device = optarg; break;
      case O_GROUP: group = optarg; break;
      case O_RETAIN: retain = true; break;
      case O_PRINT: print = true; break;
      case O_PERCENT:
        if (!con_parse_long(optarg, 0, 100, &v)) {
          con_usage_error("job", "--percent: '%s' is not a number 0..100", optarg);
          goto out;
        }
        o.percent = (int)v;
        break;
      default: con_usage_error("job", "unknown option"); goto out;
    }
  }
  if (optind + 1 != argc) {
    con_usage_error("job", "expected exactly one IMAGE");
    goto out;
  }
  if (!o.url) {
    con_usage_error("job", "--url is required");
    goto out;
  }
  if (!print && !device == !group) {
    con_usage_error("job", "give one of --device or --group (or --print)");
    goto out;
  }
  if ((device && !ef_id_valid(device)) || (group && !ef_id_valid(group))) {
    con_usage_error("job", "--device/--group: must be 1-64 characters of [A-Za-z0-9._:-]");
    goto out;
  }
  if ((rc = con_common_check(&c, "job")) != CON_OK) goto out;

  if ((rc = con_job_prepare(argv[optind], &o, &img, &json, &job)) != CON_OK) goto out;
  if (print) {
    printf("%s\n", json);
    rc = CON_OK;
    goto out;
  }
  rc = CON_FAIL;
  if (!con_topic(topic, sizeof topic, c.prefix, device ? "devices" : "groups", device ? device : group, "job")) {
    con_fail(EF_ERR_INVALID_ARG, "topic too long");
    goto out;
  }
  double timeout = c.timeout_s > 0 ? c.timeout_s : CON_CONNECT_TIMEOUT_S;
  if (con_link_open(&c, NULL, 0, timeout, &link) != EF_OK) goto out;
  if (con_link_publish(link, topic, json, retain, timeout) != EF_OK) goto out;
  printf("published job %s to %s%s: %s %s, %llu bytes, sha256 %s\n", job.job_id, topic, retain ? " (retained)" : "",
         *job.project ? job.project : "image", job.version, (unsigned long long)job.size, job.sha256_hex);
  rc = CON_OK;
out:
  con_link_close(link);
  free(json);
  return rc;
}
