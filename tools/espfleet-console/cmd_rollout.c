/*
 * espfleet-console rollout: a staged (canary) rollout as a controller runs
 * it. The same job (same job_id and content) is re-published on a group
 * topic with a growing rollout.percent; docs/protocol.md keeps the percent
 * out of the job's fingerprint, so each step widens the sample instead of
 * making a new job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"

const char con_rollout_usage[] =
    "Usage: espfleet-console rollout IMAGE --url URL --group G --job-id ID --steps P1,P2,...\n"
    "                                [--interval S] [--devices ID,ID,...] [OPTIONS]\n"
    "\n"
    "Builds the job for IMAGE (as 'job' does) and publishes it on\n"
    "P/groups/G/job once per step, with rollout.percent set to the step's\n"
    "percent, waiting --interval seconds between steps. Devices outside a step's\n"
    "sample report skipped and run the job when a later step includes them;\n"
    "devices that already finished it re-publish their result.\n"
    "\n"
    "Rollout options:\n"
    "  --group G               the group to roll out to (required)\n"
    "  --job-id ID             the job's id, the same for every step (required)\n"
    "  --steps P1,P2,...       strictly increasing percents 0..100 (required),\n"
    "                          e.g. 1,10,50,100\n"
    "  --interval S            seconds between steps (default 60)\n"
    "  --devices ID,ID,...     canary devices to watch: the rollout stops (exit\n"
    "                          1, no further step) as soon as one of them\n"
    "                          reports failed or rejected for the job\n"
    "  --retain                publish each step retained\n" CON_JOB_OPTS_USAGE
    "\n"
    "--timeout S bounds the connection and each acknowledgement (10 s).\n"
    "Exit status: 0 every step published; 1 stopped by a failed or rejected\n"
    "device (its error line is printed) or an error; 2 usage error; 130\n"
    "interrupted.\n";

#define MAX_STEPS 100

/* Reads every message until @p deadline_ms; returns CON_FAIL (error line
 * printed) when a watched device reports failed or rejected for the job.
 * Rejected counts too: a canary refusing the job (version or chip mismatch,
 * expired) says the job is wrong for the fleet just as loudly. */
static int watch_canaries(con_link *link, const con_common *c, const char *job_id, int64_t deadline_ms) {
  con_msg *m;
  while ((m = con_link_next(link, deadline_ms))) {
    con_doc d;
    bool ok = con_doc_parse(m, c->prefix, &d);
    con_msg_free(m);
    if (!ok) continue;
    /* Only the listed devices' state topics are subscribed to. */
    bool failed = !d.progress && d.state_known &&
                  (d.state == EF_STATE_FAILED || d.state == EF_STATE_REJECTED) &&
                  strcmp(d.job_id, job_id) == 0;
    if (failed) {
      int rc = con_fail(con_doc_error(&d, EF_ERR_INTERNAL), "rollout of %s stopped: %s %s%s%s", job_id,
                        d.device, d.state_name, *d.error_detail ? ": " : "", d.error_detail);
      con_doc_clear(&d);
      return rc;
    }
    if (!d.progress && strcmp(d.job_id, job_id) == 0)
      printf("  %s: %s\n", d.device, *d.state_name ? d.state_name : "?");
    con_doc_clear(&d);
  }
  return con_interrupted() ? CON_INTERRUPTED : CON_OK;
}

/* The command line of `rollout`. steps_arg and devices_arg are copies
 * (free them); devices point into devices_arg. */
typedef struct {
  con_common c;
  con_job_opts o;
  const char *image;
  const char *group;
  char *steps_arg, *devices_arg;
  int steps[MAX_STEPS], n_steps;
  const char *devices[CON_MAX_DEVICES];
  int n_devices;
  double interval;
  bool retain;
} rollout_args;

/* --steps: strictly increasing percents. @return CON_OK or CON_USAGE (printed). */
static int parse_steps(rollout_args *a) {
  char *save = NULL;
  for (char *tok = strtok_r(a->steps_arg, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    long v;
    if (a->n_steps == MAX_STEPS || !con_parse_long(tok, 0, 100, &v) ||
        (a->n_steps && v <= a->steps[a->n_steps - 1]))
      return con_usage_error("rollout", "--steps: must be strictly increasing percents 0..100 ('%s')", tok);
    a->steps[a->n_steps++] = (int)v;
  }
  if (a->n_steps == 0) return con_usage_error("rollout", "--steps: at least one percent");
  return CON_OK;
}

/* @return CON_OK when the rollout should run, else the exit status (the
 * usage error printed). */
static int parse_rollout_args(int argc, char **argv, rollout_args *a) {
  enum { O_GROUP = CON_OPT_CMD2, O_STEPS, O_INTERVAL, O_DEVICES, O_RETAIN };
  static const struct option longopts[] = {
      CON_JOB_LONGOPTS,
      {"group", required_argument, NULL, O_GROUP},
      {"steps", required_argument, NULL, O_STEPS},
      {"interval", required_argument, NULL, O_INTERVAL},
      {"devices", required_argument, NULL, O_DEVICES},
      {"retain", no_argument, NULL, O_RETAIN},
      CON_COMMON_LONGOPTS,
  };
  int opt, rc;
  con_common_init(&a->c);
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    int r = con_common_opt(&a->c, "rollout", opt, optarg);
    if (r < 0) return CON_USAGE;
    if (r > 0 || con_job_opt(&a->o, opt, optarg)) continue;
    switch (opt) {
    case O_GROUP: a->group = optarg; break;
    case O_RETAIN: a->retain = true; break;
    case O_STEPS:
      free(a->steps_arg);
      a->steps_arg = strdup(optarg);
      break;
    case O_DEVICES:
      free(a->devices_arg);
      a->devices_arg = strdup(optarg);
      break;
    case O_INTERVAL:
      if (!con_parse_seconds(optarg, &a->interval))
        return con_usage_error("rollout", "--interval: '%s' is not a number of seconds", optarg);
      break;
    default: return con_usage_error("rollout", "unknown option");
    }
  }
  if (optind + 1 != argc) return con_usage_error("rollout", "expected exactly one IMAGE");
  a->image = argv[optind];
  if (!a->o.url || !a->group || !a->o.job_id || !a->steps_arg)
    return con_usage_error("rollout", "--url, --group, --job-id and --steps are required");
  if (!ef_id_valid(a->group))
    return con_usage_error("rollout", "--group: must be 1-64 characters of [A-Za-z0-9._:-]");
  if ((rc = parse_steps(a)) != CON_OK) return rc;
  if (a->devices_arg && (a->n_devices = con_split_ids(a->devices_arg, a->devices, CON_MAX_DEVICES)) <= 0)
    return con_usage_error("rollout", "--devices: 1-%d device ids separated by commas", CON_MAX_DEVICES);
  return con_common_check(&a->c, "rollout");
}

/* The group's job topic, and the canaries' state topics. @return false
 * (error printed) when one is too long. */
static bool rollout_topics(const rollout_args *a, char topic[512], char topics[][512],
                           const char **topic_ptrs) {
  if (!con_topic(topic, 512, a->c.prefix, "groups", a->group, "job")) {
    con_fail(EF_ERR_INVALID_ARG, "topic too long");
    return false;
  }
  for (int i = 0; i < a->n_devices; i++) {
    if (!con_topic(topics[i], 512, a->c.prefix, "devices", a->devices[i], "state")) {
      con_fail(EF_ERR_INVALID_ARG, "topic too long");
      return false;
    }
    topic_ptrs[i] = topics[i];
  }
  return true;
}

/* The job document of a later step: the same release, only
 * rollout.percent (already in @p o) changes. @return false (error printed). */
static bool build_step(const con_image *img, const con_job_opts *o, char **json) {
  char reason[256];
  ef_manifest rel;
  bool have = false;
  ef_err err = con_job_release(img, o, &rel, &have, reason, sizeof reason);
  if (err == EF_OK) err = con_job_build(img, o, have ? &rel : NULL, json, NULL, reason, sizeof reason);
  if (err != EF_OK) {
    con_fail(err, "%s", reason);
    return false;
  }
  return true;
}

int cmd_rollout(int argc, char **argv) {
  rollout_args a = {.o = {.percent = -1}, .interval = 60};
  char topics[CON_MAX_DEVICES][512];
  const char *topic_ptrs[CON_MAX_DEVICES];
  char *json = NULL;
  con_link *link = NULL;
  con_image img;
  ef_job job;
  char topic[512];
  int rc;

  if ((rc = parse_rollout_args(argc, argv, &a)) != CON_OK) goto out;
  /* Read and check the image once; every step only changes the percent. */
  a.o.percent = a.steps[0];
  if ((rc = con_job_prepare(a.image, &a.o, &img, &json, &job)) != CON_OK) goto out;
  rc = CON_FAIL;
  if (!rollout_topics(&a, topic, topics, topic_ptrs)) goto out;

  setvbuf(stdout, NULL, _IOLBF, 0);
  con_catch_signals();
  double timeout = a.c.timeout_s > 0 ? a.c.timeout_s : CON_CONNECT_TIMEOUT_S;
  if (con_link_open(&a.c, topic_ptrs, (size_t)a.n_devices, timeout, &link) != EF_OK) goto out;
  printf("rollout of job %s (%s %s, %llu bytes) to %s in %d step(s)\n", job.job_id,
         *job.project ? job.project : "image", job.version, (unsigned long long)job.size, topic, a.n_steps);
  for (int i = 0; i < a.n_steps; i++) {
    if (i > 0) {
      a.o.percent = a.steps[i];
      free(json);
      json = NULL;
      if (!build_step(&img, &a.o, &json)) goto out;
    }
    /* A canary that already failed (e.g. in an earlier run) stops the
     * rollout before it widens. */
    if ((rc = watch_canaries(link, &a.c, job.job_id, ef_mono_ms())) != CON_OK) goto out;
    rc = CON_FAIL;
    if (con_link_publish(link, topic, json, a.retain, timeout) != EF_OK) goto out;
    printf("step %d/%d: published at %d %%\n", i + 1, a.n_steps, a.steps[i]);
    if (i + 1 < a.n_steps &&
        (rc = watch_canaries(link, &a.c, job.job_id, ef_mono_ms() + (int64_t)(a.interval * 1000))) != CON_OK)
      goto out;
  }
  printf("rollout of job %s complete at %d %%\n", job.job_id, a.steps[a.n_steps - 1]);
  rc = CON_OK;
out:
  if (rc == CON_INTERRUPTED)
    fprintf(stderr, CON_PROGRAM " rollout: interrupted; no further step published\n");
  con_link_close(link);
  free(json);
  free(a.steps_arg);
  free(a.devices_arg);
  return rc;
}
