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
    "  --print                 print the document on stdout instead of publishing\n" CON_JOB_OPTS_USAGE
        CON_JOB_ID_USAGE
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

/* The command line of `job`. */
typedef struct {
  con_common c;
  con_job_opts o;
  const char *image;
  const char *device, *group; /* exactly one, unless print */
  bool retain, print;
} job_args;

/* @return CON_OK when the command should run, else the exit status (the
 * usage error printed). */
static int parse_job_args(int argc, char **argv, job_args *a) {
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
  long v;
  int opt;
  con_common_init(&a->c);
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    int r = con_common_opt(&a->c, "job", opt, optarg);
    if (r < 0) return CON_USAGE;
    if (r > 0 || con_job_opt(&a->o, opt, optarg)) continue;
    switch (opt) {
    case O_DEVICE: a->device = optarg; break;
    case O_GROUP: a->group = optarg; break;
    case O_RETAIN: a->retain = true; break;
    case O_PRINT: a->print = true; break;
    case O_PERCENT:
      if (!con_parse_long(optarg, 0, 100, &v))
        return con_usage_error("job", "--percent: '%s' is not a number 0..100", optarg);
      a->o.percent = (int)v;
      break;
    default: return con_usage_error("job", "unknown option");
    }
  }
  if (optind + 1 != argc) return con_usage_error("job", "expected exactly one IMAGE");
  a->image = argv[optind];
  if (!a->o.url) return con_usage_error("job", "--url is required");
  if (!a->print && !a->device == !a->group)
    return con_usage_error("job", "give one of --device or --group (or --print)");
  if ((a->device && !ef_id_valid(a->device)) || (a->group && !ef_id_valid(a->group)))
    return con_usage_error("job", "--device/--group: must be 1-64 characters of [A-Za-z0-9._:-]");
  return con_common_check(&a->c, "job");
}

int cmd_job(int argc, char **argv) {
  job_args a = {.o = {.percent = -1}};
  char *json = NULL;
  con_link *link = NULL;
  con_image img;
  ef_job job = {0}; /* filled by con_job_prepare; zeroed so analysers see it set */
  char topic[EF_TOPIC_MAX];
  int rc;

  if ((rc = parse_job_args(argc, argv, &a)) != CON_OK) goto out;
  if ((rc = con_job_prepare(a.image, &a.o, &img, &json, &job)) != CON_OK) goto out;
  if (a.print) {
    printf("%s\n", json);
    rc = CON_OK;
    goto out;
  }
  rc = CON_FAIL;
  if (!con_topic(topic, a.c.prefix, a.device ? EF_TOPIC_DEVICE_JOB : EF_TOPIC_GROUP_JOB,
                 a.device ? a.device : a.group))
    goto out;
  double timeout = a.c.timeout_s > 0 ? a.c.timeout_s : CON_CONNECT_TIMEOUT_S;
  if (con_link_open(&a.c, NULL, 0, timeout, &link) != EF_OK) goto out;
  if (con_link_publish(link, topic, json, a.retain, timeout) != EF_OK) goto out;
  printf("published job %s to %s%s: %s %s, %llu bytes, sha256 %s\n", job.job_id, topic,
         a.retain ? " (retained)" : "", *job.project ? job.project : "image", job.version,
         (unsigned long long)job.size, job.sha256_hex);
  rc = CON_OK;
out:
  con_link_close(link);
  free(json);
  return rc;
}
