/*
 * espfleet-console rollout create: the rollout document for
 * espfleet-controller. The job is built as `job` builds it (without a
 * rollout percent: the controller's steps choose the devices), the rollout
 * is written by the protocol module (ef_rollout_spec_json) and read back
 * with the controller's own reader (ef_rollout_spec_parse), so a rollout the
 * controller would refuse is refused here with the same sentence, and
 * nothing is published.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"

/* The command line of `rollout create`. The lists are copies (freed by
 * create_args_free); ids point into them. */
typedef struct {
  con_common c;
  con_job_opts o;
  const char *image;
  const char *rollout_id;
  const char *groups[EF_ROLLOUT_MAX_GROUPS];
  size_t n_groups;
  char **device_lists; /* each --devices argument, split in place */
  size_t n_device_lists;
  const char **devices;
  size_t n_devices, cap_devices;
  ef_rollout_step steps[EF_ROLLOUT_MAX_STEPS];
  size_t n_steps;
  ef_rollout_window windows[EF_ROLLOUT_MAX_WINDOWS];
  size_t n_windows;
  long success_percent, abort_percent, abort_min, soak_s, progress_timeout_s, offline_timeout_s;
  bool wait, print;
} create_args;

static void create_args_free(create_args *a) {
  for (size_t i = 0; i < a->n_device_lists; i++) free(a->device_lists[i]);
  free(a->device_lists);
  free(a->devices);
}

#define CMD "rollout create"

/* --steps "1,10%,50%,100%": "N" is a count of devices, "N%" a percent of
 * the target. Their order and ranges are the rollout reader's to judge.
 * @return CON_OK or CON_USAGE (printed). */
static int parse_steps(create_args *a, const char *arg) {
  char *copy = strdup(arg), *save = NULL;
  int rc = CON_USAGE;
  if (!copy) {
    rc = con_fail(EF_ERR_NOMEM, NULL);
    goto out;
  }
  a->n_steps = 0;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    size_t len = strlen(tok);
    bool percent = len > 1 && tok[len - 1] == '%';
    long v;
    if (percent) tok[len - 1] = '\0';
    if (!con_parse_long(tok, 0, 100000000, &v)) {
      con_usage_error(CMD, "--steps: '%s%s' is not a step: a count of devices N or a percent N%%", tok,
                      percent ? "%" : "");
      goto out;
    }
    /* A step of nothing cannot be written as a step: say so here. */
    if (v == 0) {
      con_usage_error(CMD, "--steps: '0%s': a step reaches at least one device (or 1%%)", percent ? "%" : "");
      goto out;
    }
    if (a->n_steps == EF_ROLLOUT_MAX_STEPS) {
      con_usage_error(CMD, "--steps: at most %d steps", EF_ROLLOUT_MAX_STEPS);
      goto out;
    }
    a->steps[a->n_steps++] =
        percent ? (ef_rollout_step){.percent = (int)v} : (ef_rollout_step){.count = (int)v};
  }
  if (a->n_steps == 0) {
    con_usage_error(CMD, "--steps: at least one step");
    goto out;
  }
  rc = CON_OK;
out:
  free(copy);
  return rc;
}

/* --window HH:MM-HH:MM (UTC). @return CON_OK or CON_USAGE (printed). */
static int parse_window(create_args *a, const char *arg) {
  unsigned h1, m1, h2, m2;
  char end;
  if (a->n_windows == EF_ROLLOUT_MAX_WINDOWS)
    return con_usage_error(CMD, "--window: at most %d windows", EF_ROLLOUT_MAX_WINDOWS);
  if (strlen(arg) != 11 || sscanf(arg, "%2u:%2u-%2u:%2u%c", &h1, &m1, &h2, &m2, &end) != 4 || h1 > 23 ||
      h2 > 23 || m1 > 59 || m2 > 59)
    return con_usage_error(CMD, "--window: '%s' must be HH:MM-HH:MM (UTC, e.g. 22:00-04:00)", arg);
  a->windows[a->n_windows++] = (ef_rollout_window){(int)(h1 * 60 + m1), (int)(h2 * 60 + m2)};
  return CON_OK;
}

/* --devices a,b,c (repeatable). @return CON_OK or the exit status (printed). */
static int add_devices(create_args *a, const char *arg) {
  char **lists = realloc(a->device_lists, (a->n_device_lists + 1) * sizeof *lists);
  if (!lists) return con_fail(EF_ERR_NOMEM, NULL);
  a->device_lists = lists;
  char *copy = lists[a->n_device_lists] = strdup(arg), *save = NULL;
  if (!copy) return con_fail(EF_ERR_NOMEM, NULL);
  a->n_device_lists++;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (!ef_id_valid(tok))
      return con_usage_error(CMD, "--devices: '%s' is not a device id (1-64 characters of [A-Za-z0-9._:-])",
                             tok);
    if (a->n_devices == a->cap_devices) {
      size_t cap = a->cap_devices ? a->cap_devices * 2 : 64;
      const char **grown = realloc(a->devices, cap * sizeof *grown);
      if (!grown) return con_fail(EF_ERR_NOMEM, NULL);
      a->devices = grown;
      a->cap_devices = cap;
    }
    a->devices[a->n_devices++] = tok;
  }
  return CON_OK;
}

/* An integer option; its range is the rollout reader's to judge, which
 * names the document's key. @return CON_OK or CON_USAGE (printed). */
static int int_opt(const char *name, const char *arg, long *out) {
  if (!con_parse_long(arg, 0, 1000000000, out))
    return con_usage_error(CMD, "%s: '%s' is not a whole number", name, arg);
  return CON_OK;
}

/* @return CON_OK when the command should run, else the exit status (the
 * usage error printed). */
static int parse_create_args(int argc, char **argv, create_args *a) {
  enum {
    O_ROLLOUT_ID = CON_OPT_CMD2,
    O_GROUP,
    O_DEVICES,
    O_STEPS,
    O_SUCCESS,
    O_ABORT_PERCENT,
    O_ABORT_MIN,
    O_SOAK,
    O_PROGRESS_TIMEOUT,
    O_OFFLINE_TIMEOUT,
    O_WINDOW,
    O_WAIT,
    O_PRINT,
  };
  static const struct option longopts[] = {
      CON_JOB_LONGOPTS,
      {"rollout-id", required_argument, NULL, O_ROLLOUT_ID},
      {"group", required_argument, NULL, O_GROUP},
      {"devices", required_argument, NULL, O_DEVICES},
      {"steps", required_argument, NULL, O_STEPS},
      {"success-percent", required_argument, NULL, O_SUCCESS},
      {"abort-percent", required_argument, NULL, O_ABORT_PERCENT},
      {"abort-min", required_argument, NULL, O_ABORT_MIN},
      {"soak", required_argument, NULL, O_SOAK},
      {"progress-timeout", required_argument, NULL, O_PROGRESS_TIMEOUT},
      {"offline-timeout", required_argument, NULL, O_OFFLINE_TIMEOUT},
      {"window", required_argument, NULL, O_WINDOW},
      {"wait", no_argument, NULL, O_WAIT},
      {"print", no_argument, NULL, O_PRINT},
      CON_COMMON_LONGOPTS,
  };
  int opt, rc = CON_OK;
  con_common_init(&a->c);
  while (rc == CON_OK && (opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    int r = con_common_opt(&a->c, CMD, opt, optarg);
    if (r < 0) return CON_USAGE;
    if (r > 0 || con_job_opt(&a->o, opt, optarg)) continue;
    switch (opt) {
    case O_ROLLOUT_ID: a->rollout_id = optarg; break;
    case O_GROUP:
      if (!ef_id_valid(optarg))
        return con_usage_error(CMD, "--group: '%s' is not a group id (1-64 characters of [A-Za-z0-9._:-])",
                               optarg);
      if (a->n_groups == EF_ROLLOUT_MAX_GROUPS)
        return con_usage_error(CMD, "--group: at most %d groups", EF_ROLLOUT_MAX_GROUPS);
      a->groups[a->n_groups++] = optarg;
      break;
    case O_DEVICES: rc = add_devices(a, optarg); break;
    case O_STEPS: rc = parse_steps(a, optarg); break;
    case O_WINDOW: rc = parse_window(a, optarg); break;
    case O_SUCCESS: rc = int_opt("--success-percent", optarg, &a->success_percent); break;
    case O_ABORT_PERCENT: rc = int_opt("--abort-percent", optarg, &a->abort_percent); break;
    case O_ABORT_MIN: rc = int_opt("--abort-min", optarg, &a->abort_min); break;
    case O_SOAK: rc = int_opt("--soak", optarg, &a->soak_s); break;
    case O_PROGRESS_TIMEOUT: rc = int_opt("--progress-timeout", optarg, &a->progress_timeout_s); break;
    case O_OFFLINE_TIMEOUT: rc = int_opt("--offline-timeout", optarg, &a->offline_timeout_s); break;
    case O_WAIT: a->wait = true; break;
    case O_PRINT: a->print = true; break;
    default: return con_usage_error(CMD, "unknown option");
    }
  }
  if (rc != CON_OK) return rc;
  if (optind + 1 != argc) return con_usage_error(CMD, "expected exactly one IMAGE");
  a->image = argv[optind];
  if (!a->rollout_id) return con_usage_error(CMD, "--rollout-id R is required");
  if (!ef_id_valid(a->rollout_id))
    return con_usage_error(CMD, "--rollout-id: must be 1-64 characters of [A-Za-z0-9._:-]");
  if (!a->o.url) return con_usage_error(CMD, "--url is required");
  if (a->n_groups + a->n_devices == 0)
    return con_usage_error(CMD, "give the target: --group G and/or --devices ID,...");
  if (a->wait && a->print) return con_usage_error(CMD, "--wait and --print: choose one");
  return con_common_check(&a->c, CMD);
}

/* The rollout document, checked by ef_rollout_spec_parse. @p job_json is
 * taken over. @return CON_OK with @p out (free()), or CON_FAIL (printed). */
static int build_document(const create_args *a, char *job_json, char **out, ef_rollout_spec *parsed) {
  ef_rollout_spec s;
  ef_status st = EF_STATUS_INIT;
  int rc = CON_FAIL;
  char *text = NULL;
  memset(&s, 0, sizeof s);
  s.job_json = job_json;
  snprintf(s.rollout_id, sizeof s.rollout_id, "%s", a->rollout_id);
  for (size_t i = 0; i < a->n_groups; i++) snprintf(s.groups[i], sizeof s.groups[i], "%s", a->groups[i]);
  s.n_groups = a->n_groups;
  if (a->n_devices && !(s.devices = calloc(a->n_devices, sizeof *s.devices))) goto nomem;
  for (size_t i = 0; i < a->n_devices; i++) snprintf(s.devices[i], sizeof s.devices[i], "%s", a->devices[i]);
  s.n_devices = a->n_devices;
  if (a->n_steps) {
    memcpy(s.steps, a->steps, a->n_steps * sizeof *s.steps);
    s.n_steps = a->n_steps;
  } else {
    s.steps[0].percent = 100;
    s.n_steps = 1;
  }
  /* Written whole, defaults included: the document says what runs, and a
   * controller with other defaults cannot change it. (int_opt keeps the
   * values within int; their ranges are the reader's.) */
  s.success_percent = (int)a->success_percent;
  s.abort_percent = (int)a->abort_percent;
  s.abort_min = (int)a->abort_min;
  s.soak_s = a->soak_s;
  s.progress_timeout_s = a->progress_timeout_s;
  s.offline_timeout_s = a->offline_timeout_s;
  memcpy(s.windows, a->windows, a->n_windows * sizeof *s.windows);
  s.n_windows = a->n_windows;
  if (!(text = ef_rollout_spec_json(&s))) goto nomem;
  ef_err err = ef_rollout_spec_parse(text, strlen(text), parsed, &st);
  if (err != EF_OK) {
    con_fail(err == EF_ERR_BAD_JOB ? EF_ERR_ROLLOUT_INVALID : err, "rollout %s: %s", a->rollout_id,
             st.detail);
    goto out;
  }
  *out = text;
  text = NULL;
  rc = CON_OK;
  goto out;
nomem:
  rc = con_fail(EF_ERR_NOMEM, NULL);
out:
  ef_rollout_spec_free(&s); /* frees job_json and the devices */
  free(text);
  return rc;
}

/* "groups a, b; 3 device(s); steps 1, 10%, 100%" */
static void describe(const ef_rollout_spec *s, char *out, size_t n) {
  size_t used = 0;
  int w;
#define ADD(...)                                                    \
  do {                                                              \
    w = used < n ? snprintf(out + used, n - used, __VA_ARGS__) : 0; \
    if (w > 0) used += (size_t)w;                                   \
  } while (0)
  for (size_t i = 0; i < s->n_groups; i++) ADD("%s%s", i ? ", " : "group(s) ", s->groups[i]);
  if (s->n_devices) ADD("%s%zu listed device(s)", s->n_groups ? " and " : "", s->n_devices);
  for (size_t i = 0; i < s->n_steps; i++) {
    if (s->steps[i].percent)
      ADD("%s%d%%", i ? ", " : "; steps ", s->steps[i].percent);
    else
      ADD("%s%d", i ? ", " : "; steps ", s->steps[i].count);
  }
#undef ADD
}

/* --wait: prints @p s when it differs from the line printed last.
 * @return true when the rollout has ended, with the exit status in @p rc. */
static bool show_change(const create_args *a, const ef_rollout_status *s, char last[1024], int *rc) {
  char line[1024], ts[32];
  con_rollout_line(s, line, sizeof line);
  if (strcmp(line, last) != 0) {
    ef_rfc3339_format(s->updated_ms ? s->updated_ms : ef_wall_ms(), ts);
    printf("%s %s\n", ts, line);
    snprintf(last, 1024, "%s", line);
  }
  if (!ef_rollout_state_is_final(s->state)) return false;
  if (s->state == EF_RS_COMPLETED)
    *rc = CON_OK;
  else /* aborted: the jobs that had not finished were canceled; invalid: the controller refused it */
    *rc = con_fail(s->state == EF_RS_ABORTED ? EF_ERR_ROLLOUT_ABORTED : EF_ERR_ROLLOUT_INVALID,
                   "rollout %s %s%s%s", a->rollout_id, ef_rollout_state_name(s->state),
                   s->reason[0] ? ": " : "", s->reason);
  return true;
}

/* --wait: prints each change of the rollout's status (from @p first, when
 * not NULL) until it ends. @return 0 completed, 1 aborted or invalid (error
 * line), 3 timeout, 130 interrupted. */
static int follow(con_link *link, const create_args *a, const ef_rollout_status *first, int64_t deadline) {
  char last[1024] = "";
  int rc = CON_OK;
  ef_inbox_msg *m;
  if (first && show_change(a, first, last, &rc)) return rc;
  while ((m = con_link_next(link, deadline))) {
    ef_rollout_status s;
    bool ok = con_rollout_status_read(m, a->c.prefix, a->rollout_id, &s);
    ef_inbox_msg_free(m);
    if (ok && show_change(a, &s, last, &rc)) return rc;
  }
  if (con_interrupted()) {
    fprintf(stderr, CON_PROGRAM " rollout: interrupted; the rollout goes on (espfleet-controller runs it)\n");
    return CON_INTERRUPTED;
  }
  fprintf(stderr, CON_PROGRAM " rollout: timed out after %g s; the rollout goes on: %s\n", a->c.timeout_s,
          last[0] ? last : "no status from espfleet-controller yet (is it running?)");
  return CON_TIMEOUT;
}

/* What the broker holds for the rollout id before create publishes. */
typedef struct {
  bool has_doc;  /* a retained rollout document */
  bool same_doc; /* ... that is the same rollout as ours */
  bool has_status;
  ef_rollout_status status;
} existing;

/* True when @p payload is a rollout document for the same rollout as
 * @p ours (compared as the protocol module writes both). */
static bool same_rollout(const char *payload, size_t len, const char *ours) {
  ef_rollout_spec s;
  if (ef_rollout_spec_parse(payload, len, &s, NULL) != EF_OK) return false;
  char *text = ef_rollout_spec_json(&s);
  bool same = text && strcmp(text, ours) == 0;
  free(text);
  ef_rollout_spec_free(&s);
  return same;
}

/* Takes the retained document and status of the rollout, which the broker
 * sends at once after the subscription when there are any. */
static void read_existing(con_link *link, const create_args *a, const char *doc, existing *e) {
  int64_t until = ef_mono_ms() + CON_SETTLE_MS;
  ef_inbox_msg *m;
  memset(e, 0, sizeof *e);
  while (!(e->has_doc && e->has_status) && (m = con_link_next(link, until))) {
    char id[EF_JOB_ID_MAX + 1], sub[EF_JOB_ID_MAX + 1];
    if (ef_topic_parse(m->topic, a->c.prefix, id, sub) == EF_TOPIC_ROLLOUT &&
        strcmp(id, a->rollout_id) == 0 && m->len > 0) {
      e->has_doc = true;
      e->same_doc = same_rollout(m->payload, m->len, doc);
    } else if (con_rollout_status_read(m, a->c.prefix, a->rollout_id, &e->status)) {
      e->has_status = true;
    }
    ef_inbox_msg_free(m);
  }
}

int con_rollout_create(int argc, char **argv) {
  create_args a = {.o = {.percent = -1},
                   .success_percent = EF_ROLLOUT_DEFAULT_SUCCESS_PERCENT,
                   .abort_percent = EF_ROLLOUT_DEFAULT_ABORT_PERCENT,
                   .abort_min = EF_ROLLOUT_DEFAULT_ABORT_MIN,
                   .soak_s = EF_ROLLOUT_DEFAULT_SOAK_S,
                   .progress_timeout_s = EF_ROLLOUT_DEFAULT_PROGRESS_TIMEOUT,
                   .offline_timeout_s = EF_ROLLOUT_DEFAULT_OFFLINE_TIMEOUT};
  char *job_json = NULL, *doc = NULL;
  char topics[2][EF_TOPIC_MAX], what[512];
  const char *topic_ptrs[2] = {topics[0], topics[1]};
  con_link *link = NULL;
  con_image img;
  ef_job job = {0};
  ef_rollout_spec spec;
  bool have_spec = false;
  int rc;

  if ((rc = parse_create_args(argc, argv, &a)) != CON_OK) goto out;
  if ((rc = con_job_prepare(a.image, &a.o, &img, &job_json, &job)) != CON_OK) goto out;
  rc = build_document(&a, job_json, &doc, &spec);
  job_json = NULL; /* taken over */
  if (rc != CON_OK) goto out;
  have_spec = true;
  if (a.print) {
    printf("%s\n", doc);
    goto out;
  }
  rc = CON_FAIL;
  if (!con_topic(topics[0], a.c.prefix, EF_TOPIC_ROLLOUT, a.rollout_id) ||
      !con_topic(topics[1], a.c.prefix, EF_TOPIC_ROLLOUT_STATUS, a.rollout_id))
    goto out;

  setvbuf(stdout, NULL, _IOLBF, 0);
  con_catch_signals();
  double timeout =
      a.c.timeout_s > 0 && a.c.timeout_s < CON_CONNECT_TIMEOUT_S ? a.c.timeout_s : CON_CONNECT_TIMEOUT_S;
  int64_t deadline = a.c.timeout_s > 0 ? ef_mono_ms() + (int64_t)(a.c.timeout_s * 1000) : -1;
  if (con_link_open(&a.c, topic_ptrs, 2, timeout, &link) != EF_OK) goto out;
  /* Rollouts cannot be changed (docs/rollouts.md): the controller ignores
   * another document under an id it holds, so publishing one would only
   * make the broker disagree with the controller. An invalid rollout is
   * not held, and may be replaced. */
  existing e;
  read_existing(link, &a, doc, &e);
  bool invalid = e.has_status && e.status.state == EF_RS_INVALID;
  bool held = e.has_status && !invalid;
  if ((held && !e.same_doc) || (!held && !invalid && e.has_doc && !e.same_doc)) {
    char line[1024] = "a document on the broker, no status from espfleet-controller";
    if (held) con_rollout_line(&e.status, line, sizeof line);
    con_fail(EF_ERR_ROLLOUT_STATE,
             "rollout %s exists (%s) and a rollout cannot be changed: delete it first ('rollout delete %s') "
             "or choose another --rollout-id",
             a.rollout_id, line, a.rollout_id);
    goto out;
  }
  if (e.same_doc && held) {
    /* the same rollout again: nothing to publish, and --wait follows it */
    printf("rollout %s exists with this document; not published again\n", a.rollout_id);
    rc = a.wait ? follow(link, &a, &e.status, deadline) : CON_OK;
    goto out;
  }
  if (con_link_publish(link, topics[0], doc, true, timeout) != EF_OK) goto out;
  describe(&spec, what, sizeof what);
  printf("published rollout %s to %s (retained): job %s (%s %s, %llu bytes) to %s\n", a.rollout_id, topics[0],
         job.job_id, *job.project ? job.project : "image", job.version, (unsigned long long)job.size, what);
  /* a status that was there before (an invalid rollout's) is not this rollout's */
  rc = a.wait ? follow(link, &a, NULL, deadline) : CON_OK;
out:
  if (have_spec) ef_rollout_spec_free(&spec);
  con_link_close(link);
  create_args_free(&a);
  free(job_json);
  free(doc);
  return rc;
}
