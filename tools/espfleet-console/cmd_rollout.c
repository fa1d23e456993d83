/*
 * espfleet-console rollout: the client of espfleet-controller, which runs
 * staged rollouts from retained rollout documents (docs/rollouts.md). The
 * console writes the documents (create: rollout_create.c; delete), sends
 * control messages (pause, resume, abort) and reads the statuses the
 * controller publishes (show, list). Every document goes through the
 * protocol module's readers and writers (rollout_doc.h), so the console and
 * the controller cannot disagree about them, and every text shown from one
 * is escaped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"

const char con_rollout_usage[] =
    "Usage: espfleet-console rollout create IMAGE --rollout-id R --url URL (--group G ... | --devices "
    "ID,...)\n"
    "                                [--steps S1,S2,...] [policy options] [job options] [--wait] [--print]\n"
    "       espfleet-console rollout pause|resume|abort R [--reason TEXT]\n"
    "       espfleet-console rollout show R [--devices]\n"
    "       espfleet-console rollout list [--no-announce]\n"
    "       espfleet-console rollout delete R\n"
    "\n"
    "Rollouts are run by espfleet-controller, which must be running: it reads\n"
    "the retained rollout document on P/rollouts/R, sends the job to the\n"
    "target's devices step by step as its policy allows, and publishes the\n"
    "rollout's status on P/rollouts/R/status (docs/rollouts.md).\n"
    "\n"
    "create     builds the job for IMAGE (as 'job' does) and the rollout\n"
    "           document, checks it with the controller's own reader and\n"
    "           publishes it retained on P/rollouts/R; a rollout cannot be\n"
    "           changed: an id that exists with another document is refused\n"
    "  --rollout-id R          the rollout's id (required)\n"
    "  --group G               a group of the target (repeatable)\n"
    "  --devices ID,ID,...     devices of the target (repeatable)\n"
    "  --steps S1,S2,...       each step widens the rollout to N devices (\"N\")\n"
    "                          or N % of the target (\"N%\"); the last must be\n"
    "                          100%; default 100% (one step)\n"
    "  --success-percent P     share of a step's devices that must succeed\n"
    "                          before the next step (default 100)\n"
    "  --abort-percent P       abort when P % of the finished devices failed\n"
    "                          (default 10) ...\n"
    "  --abort-min N           ... once at least N devices finished (default 1)\n"
    "  --soak S                seconds a finished step waits before the next (0)\n"
    "  --progress-timeout S    a device not final S seconds after its job was\n"
    "                          sent counts as failed (default 3600)\n"
    "  --offline-timeout S     a device offline S seconds after its job was sent\n"
    "                          counts as failed (default 600)\n"
    "  --window HH:MM-HH:MM    steps start only inside these UTC windows\n"
    "                          (repeatable; the end may wrap past midnight)\n"
    "  --wait                  follow the status until the rollout ends\n"
    "  --print                 print the rollout document instead of publishing\n"
    "  job options: --job-id, --url, and those of 'job' (no --percent):\n" CON_JOB_OPTS_USAGE CON_JOB_ID_USAGE
    "\n"
    "pause      start no further step            } publish a control message on\n"
    "resume     undo a pause, or go on after a   } P/rollouts/R/control and wait\n"
    "           halted step                      } for the status to show it\n"
    "abort      stop for good; unfinished jobs   }\n"
    "           are canceled                     }\n"
    "  --reason TEXT           why (kept in the rollout's status)\n"
    "show       the rollout's status: state, step, device counts, reason\n"
    "  --devices               also one row per device (asked of the controller)\n"
    "list       one row per rollout the controllers know\n"
    "  --no-announce           only retained statuses (no announce request)\n"
    "delete     clears the retained rollout document; the controller then\n"
    "           aborts the rollout if it has not ended, forgets it and clears\n"
    "           its status\n"
    "\n"
    "--timeout S: create bounds the connection and acknowledgement (10 s) and,\n"
    "with --wait, the wait (default none); pause, resume, abort and show wait\n"
    "at most S for the controller (10 s, show 5 s); list collects for S (2 s).\n"
    "Exit status: 0 done (create --wait: completed); 1 error, no controller\n"
    "answered, or the rollout was aborted or refused (create --wait); 2 usage\n"
    "error; 3 create --wait timed out; 130 interrupted.\n";

/* ---- statuses ---- */

void con_rollout_line(const ef_rollout_status *s, char *out, size_t n) {
  /* the bad ones first: they are what an operator looks for */
  static const ef_rollout_device_state order[] = {EF_RD_SUCCEEDED, EF_RD_FAILED,  EF_RD_TIMED_OUT,
                                                  EF_RD_OFFLINE,   EF_RD_RUNNING, EF_RD_SENT,
                                                  EF_RD_WAITING};
  size_t used = 0;
  int w;
#define ADD(...)                                                    \
  do {                                                              \
    w = used < n ? snprintf(out + used, n - used, __VA_ARGS__) : 0; \
    if (w > 0) used += (size_t)w;                                   \
  } while (0)
  if (n) out[0] = '\0';
  ADD("%s %s", s->rollout_id, ef_rollout_state_name(s->state));
  if (s->step >= 0)
    ADD(": step %d/%d, %d of %d device(s) reached", s->step + 1, s->n_steps, s->step_devices, s->devices);
  else
    ADD(": no step started, %d device(s) in the target", s->devices);
  bool any = false;
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
    if (s->counts[order[i]]) {
      ADD("%s%d %s", any ? ", " : ": ", s->counts[order[i]], ef_rollout_device_state_name(order[i]));
      any = true;
    }
  if (s->reason[0]) ADD(" (%s)", s->reason);
#undef ADD
}

bool con_rollout_status_read(const ef_inbox_msg *m, const char *prefix, const char *rollout_id,
                             ef_rollout_status *s) {
  char id[EF_JOB_ID_MAX + 1], sub[EF_JOB_ID_MAX + 1];
  if (ef_topic_parse(m->topic, prefix, id, sub) != EF_TOPIC_ROLLOUT_STATUS) return false;
  if (rollout_id && strcmp(id, rollout_id) != 0) return false;
  if (ef_rollout_status_parse(m->payload, m->len, s, NULL) != EF_OK) return false;
  /* the topic names the rollout: a document that says otherwise is not its status */
  return strcmp(s->rollout_id, id) == 0;
}

/* Right after subscribing to a rollout's status: takes the retained status,
 * so that what arrives later is the controller's answer to what the command
 * publishes next. @return true when there was one (in @p last). */
static bool settle(con_link *link, const char *prefix, const char *rollout_id, ef_rollout_status *last) {
  bool seen = false;
  int64_t until = ef_mono_ms() + CON_SETTLE_MS;
  ef_inbox_msg *m;
  while ((m = con_link_next(link, until))) {
    ef_rollout_status s;
    if (con_rollout_status_read(m, prefix, rollout_id, &s)) {
      *last = s;
      seen = true;
      /* the retained status is the only one expected now: no need to wait on */
      until = ef_mono_ms();
    }
    ef_inbox_msg_free(m);
  }
  return seen;
}

static void print_status_line(const ef_rollout_status *s) {
  char line[1024], ts[32];
  con_rollout_line(s, line, sizeof line);
  ef_rfc3339_format(s->updated_ms ? s->updated_ms : ef_wall_ms(), ts);
  printf("%s %s\n", ts, line);
}

/* ---- the simple subcommands' command line ---- */

typedef struct {
  con_common c;
  const char *sub;
  const char *rollout_id;
  const char *reason;
  bool devices, no_announce;
} simple_args;

/* Options: --reason for pause/resume/abort, --devices for show,
 * --no-announce for list. @return CON_OK or the usage status (printed). */
static int parse_simple_args(int argc, char **argv, simple_args *a) {
  enum { O_REASON = CON_OPT_CMD, O_DEVICES, O_NO_ANNOUNCE };
  static const struct option longopts[] = {
      {"reason", required_argument, NULL, O_REASON},
      {"devices", no_argument, NULL, O_DEVICES},
      {"no-announce", no_argument, NULL, O_NO_ANNOUNCE},
      CON_COMMON_LONGOPTS,
  };
  char cmd[32];
  bool control =
      strcmp(a->sub, "pause") == 0 || strcmp(a->sub, "resume") == 0 || strcmp(a->sub, "abort") == 0;
  bool list = strcmp(a->sub, "list") == 0;
  int opt;
  snprintf(cmd, sizeof cmd, "rollout %s", a->sub);
  con_common_init(&a->c);
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    int r = con_common_opt(&a->c, cmd, opt, optarg);
    if (r < 0) return CON_USAGE;
    if (r > 0) continue;
    if (opt == O_REASON && control)
      a->reason = optarg;
    else if (opt == O_DEVICES && strcmp(a->sub, "show") == 0)
      a->devices = true;
    else if (opt == O_NO_ANNOUNCE && list)
      a->no_announce = true;
    else
      return con_usage_error(cmd, "unknown option");
  }
  if (list) {
    if (optind != argc) return con_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
  } else {
    if (optind + 1 != argc) return con_usage_error(cmd, "expected exactly one rollout id R");
    a->rollout_id = argv[optind];
    if (!ef_id_valid(a->rollout_id))
      return con_usage_error(cmd, "R: must be 1-64 characters of [A-Za-z0-9._:-]");
  }
  return con_common_check(&a->c, cmd);
}

/* ---- pause, resume, abort ---- */

/* True when @p s shows that @p action took effect. */
static bool took_effect(ef_rollout_action action, const ef_rollout_status *s) {
  switch (action) {
  case EF_ROLLOUT_PAUSE: return s->state == EF_RS_PAUSED;
  case EF_ROLLOUT_ABORT: return s->state == EF_RS_ABORTED;
  /* resumed: running again, or already through its last step */
  case EF_ROLLOUT_RESUME:
    return s->state == EF_RS_RUNNING || s->state == EF_RS_PENDING || s->state == EF_RS_COMPLETED;
  default: return true;
  }
}

static int cmd_control(const simple_args *a, ef_rollout_action action) {
  char status_topic[EF_TOPIC_MAX], control_topic[EF_TOPIC_MAX];
  const char *topics[1] = {status_topic};
  con_link *link = NULL;
  char *json = NULL;
  ef_rollout_status before, s = {0};
  bool answered = false;
  int rc = CON_FAIL;
  double wait_s = a->c.timeout_s > 0 ? a->c.timeout_s : CON_CONNECT_TIMEOUT_S;
  if (!con_topic(status_topic, a->c.prefix, EF_TOPIC_ROLLOUT_STATUS, a->rollout_id) ||
      !con_topic(control_topic, a->c.prefix, EF_TOPIC_ROLLOUT_CONTROL, a->rollout_id))
    goto out;
  if (!(json = ef_rollout_control_json(action, a->reason))) {
    con_fail(EF_ERR_NOMEM, NULL);
    goto out;
  }
  con_catch_signals();
  /* --timeout is how long the controller may take; connecting has its own budget */
  if (con_link_open(&a->c, topics, 1, CON_CONNECT_TIMEOUT_S, &link) != EF_OK) goto out;
  /* A status from before the control tells nothing about a controller that
   * runs now; and a rollout that ended takes no control. */
  if (settle(link, a->c.prefix, a->rollout_id, &before) && ef_rollout_state_is_final(before.state)) {
    print_status_line(&before);
    if (action == EF_ROLLOUT_ABORT && before.state == EF_RS_ABORTED) {
      printf("rollout %s was already aborted\n", a->rollout_id);
      rc = CON_OK;
    } else {
      con_fail(EF_ERR_ROLLOUT_STATE, "rollout %s is %s: nothing to %s", a->rollout_id,
               ef_rollout_state_name(before.state), ef_rollout_action_name(action));
    }
    goto out;
  }
  int64_t deadline = ef_mono_ms() + (int64_t)(wait_s * 1000);
  if (con_link_publish(link, control_topic, json, false, wait_s) != EF_OK) goto out;
  printf("published %s of rollout %s to %s\n", ef_rollout_action_name(action), a->rollout_id, control_topic);
  ef_inbox_msg *m;
  while ((m = con_link_next(link, deadline))) {
    bool ok = con_rollout_status_read(m, a->c.prefix, a->rollout_id, &s);
    ef_inbox_msg_free(m);
    if (!ok) continue;
    answered = true;
    if (took_effect(action, &s)) {
      print_status_line(&s);
      rc = CON_OK;
      goto out;
    }
  }
  if (con_interrupted()) {
    rc = CON_INTERRUPTED;
  } else if (answered) {
    char line[1024];
    con_rollout_line(&s, line, sizeof line);
    con_fail(EF_ERR_ROLLOUT_STATE, "the controller did not %s rollout %s within %g s: %s",
             ef_rollout_action_name(action), a->rollout_id, wait_s, line);
  } else {
    con_fail(EF_ERR_CONTROLLER_UNAVAILABLE,
             "no controller answered the %s of rollout %s within %g s (is espfleet-controller running, "
             "and does the rollout exist? see 'rollout list')",
             ef_rollout_action_name(action), a->rollout_id, wait_s);
  }
out:
  con_link_close(link);
  free(json);
  return rc;
}

/* ---- show ---- */

static void print_status(const ef_rollout_status *s) {
  char created[32] = "-", updated[32] = "-";
  if (s->created_ms) ef_rfc3339_format(s->created_ms, created);
  if (s->updated_ms) ef_rfc3339_format(s->updated_ms, updated);
  printf("rollout   %s\n", s->rollout_id);
  printf("job       %s\n", s->job_id[0] ? s->job_id : "-");
  printf("state     %s\n", ef_rollout_state_name(s->state));
  if (s->step >= 0)
    printf("step      %d/%d (%d of %d device(s) reached)\n", s->step + 1, s->n_steps, s->step_devices,
           s->devices);
  else
    printf("step      -/%d (no step started; %d device(s) in the target)\n", s->n_steps, s->devices);
  printf("devices  ");
  for (int i = 0; i < EF_RD__COUNT; i++)
    printf("%s %s %d", i ? "," : "", ef_rollout_device_state_name((ef_rollout_device_state)i), s->counts[i]);
  printf("\n");
  printf("reason    %s\n", s->reason[0] ? s->reason : "-");
  printf("created   %s\n", created);
  printf("updated   %s\n", updated);
}

/* The per-device rows, sorted by device. @return false when out of memory. */
static bool print_devices(const ef_rollout_device_row *rows, size_t n, bool tty) {
  static const char *const head[] = {"DEVICE", "STEP", "STATE", "JOB_STATE", "ERROR"};
  con_table *t = con_table_new(5, head);
  bool ok = t != NULL;
  for (size_t i = 0; ok && i < n; i++) {
    char step[16] = "-";
    if (rows[i].step >= 0) snprintf(step, sizeof step, "%d", rows[i].step + 1);
    const char *state = ef_rollout_device_state_name(rows[i].state);
    const char *cells[5] = {rows[i].device_id[0] ? rows[i].device_id : "?", step, state,
                            rows[i].job_state[0] ? rows[i].job_state : "-",
                            rows[i].error[0] ? rows[i].error : "-"};
    const char *colors[5] = {NULL, NULL,
                             ef_rollout_device_state_is_bad(rows[i].state) ? "\033[31m"
                             : rows[i].state == EF_RD_SUCCEEDED            ? "\033[32m"
                                                                           : NULL,
                             con_term_state_color(rows[i].job_state)};
    ok = con_table_add(t, cells, colors);
  }
  if (ok) {
    con_table_sort(t);
    printf("\n");
    if (n == 0)
      printf("no device in the rollout yet\n");
    else
      con_table_print(t, stdout, tty, 0, "\n");
  }
  con_table_free(t);
  return ok;
}

/* Asks the controller for the per-device rows and prints them. @return the exit status. */
static int show_devices(const simple_args *a, con_link *link, int64_t deadline, double wait_s) {
  char control_topic[EF_TOPIC_MAX];
  char *json = ef_rollout_control_json(EF_ROLLOUT_DEVICES, NULL);
  ef_rollout_device_row *rows = NULL;
  size_t n = 0;
  int rc = CON_FAIL;
  if (!json) {
    con_fail(EF_ERR_NOMEM, NULL);
    goto out;
  }
  if (!con_topic(control_topic, a->c.prefix, EF_TOPIC_ROLLOUT_CONTROL, a->rollout_id) ||
      con_link_publish(link, control_topic, json, false, wait_s) != EF_OK)
    goto out;
  ef_inbox_msg *m;
  int got = 0; /* parts received: a large rollout's rows come in several documents */
  while ((m = con_link_next(link, deadline))) {
    char id[EF_JOB_ID_MAX + 1], sub[EF_JOB_ID_MAX + 1];
    ef_rollout_device_row *part_rows = NULL;
    size_t part_n = 0;
    int part = 1, parts = 1;
    bool mine = ef_topic_parse(m->topic, a->c.prefix, id, sub) == EF_TOPIC_ROLLOUT_DEVICES &&
                strcmp(id, a->rollout_id) == 0;
    ef_err err =
        mine ? ef_rollout_devices_parse(m->payload, m->len, &part_rows, &part_n, NULL) : EF_ERR_INVALID_ARG;
    if (err == EF_OK) ef_rollout_devices_parts(m->payload, m->len, &part, &parts);
    ef_inbox_msg_free(m);
    if (err == EF_OK && part_n) {
      ef_rollout_device_row *grown = realloc(rows, (n + part_n) * sizeof *rows);
      if (!grown) err = EF_ERR_NOMEM;
      if (grown) {
        rows = grown;
        memcpy(rows + n, part_rows, part_n * sizeof *rows);
        n += part_n;
      }
    }
    free(part_rows);
    if (err == EF_ERR_NOMEM) {
      con_fail(err, NULL);
      goto out;
    }
    if (err == EF_OK && ++got >= parts) {
      rc = print_devices(rows, n, con_term_is_tty()) ? CON_OK : con_fail(EF_ERR_NOMEM, NULL);
      goto out;
    }
  }
  if (con_interrupted())
    rc = CON_INTERRUPTED;
  else
    con_fail(EF_ERR_CONTROLLER_UNAVAILABLE,
             "no controller answered the devices request for rollout %s within %g s", a->rollout_id, wait_s);
out:
  free(rows);
  free(json);
  return rc;
}

static int cmd_show(const simple_args *a) {
  char topics[2][EF_TOPIC_MAX];
  const char *topic_ptrs[2] = {topics[0], topics[1]};
  con_link *link = NULL;
  ef_rollout_status s;
  bool seen = false;
  int rc = CON_FAIL;
  double wait_s = a->c.timeout_s > 0 ? a->c.timeout_s : 5.0;
  if (!con_topic(topics[0], a->c.prefix, EF_TOPIC_ROLLOUT_STATUS, a->rollout_id) ||
      !con_topic(topics[1], a->c.prefix, EF_TOPIC_ROLLOUT_DEVICES, a->rollout_id))
    goto out;
  con_catch_signals();
  if (con_link_open(&a->c, topic_ptrs, a->devices ? 2 : 1, CON_CONNECT_TIMEOUT_S, &link) != EF_OK) goto out;
  int64_t deadline = ef_mono_ms() + (int64_t)(wait_s * 1000);
  ef_inbox_msg *m;
  while (!seen && (m = con_link_next(link, deadline))) {
    seen = con_rollout_status_read(m, a->c.prefix, a->rollout_id, &s);
    ef_inbox_msg_free(m);
  }
  if (!seen) {
    rc = con_interrupted() ? CON_INTERRUPTED
                           : con_fail(EF_ERR_CONTROLLER_UNAVAILABLE,
                                      "no status of rollout %s within %g s: no such rollout, or no "
                                      "espfleet-controller has taken it up",
                                      a->rollout_id, wait_s);
    goto out;
  }
  print_status(&s);
  rc = a->devices ? show_devices(a, link, deadline, wait_s) : CON_OK;
out:
  con_link_close(link);
  return rc;
}

/* ---- list ---- */

typedef struct {
  char id[EF_JOB_ID_MAX + 1];
  ef_rollout_status s;
} listed;

static int cmd_list(const simple_args *a) {
  static const char *const head[] = {"ROLLOUT", "JOB", "STATE", "STEP", "SUCCEEDED", "FAILED", "DEVICES"};
  char topic[EF_TOPIC_MAX];
  const char *topics[1] = {topic};
  con_link *link = NULL;
  listed *all = NULL;
  size_t n = 0, cap = 0;
  con_table *t = NULL;
  int rc = CON_FAIL;
  if (!con_topic(topic, a->c.prefix, EF_TOPIC_ROLLOUT_STATUS, "+")) goto out;
  con_catch_signals();
  if (con_link_open(&a->c, topics, 1, CON_CONNECT_TIMEOUT_S, &link) != EF_OK) goto out;
  int64_t deadline = ef_mono_ms() + (int64_t)((a->c.timeout_s > 0 ? a->c.timeout_s : 2.0) * 1000);
  /* Controllers re-publish every status they hold: brokers that do not
   * deliver retained messages to wildcard subscriptions show them too. */
  if (!a->no_announce &&
      con_link_announce(link, a->c.prefix, EF_ANNOUNCE_ROLLOUTS, NULL, CON_CONNECT_TIMEOUT_S) != EF_OK)
    goto out;
  ef_inbox_msg *m;
  while ((m = con_link_next(link, deadline))) {
    ef_rollout_status s;
    bool ok = con_rollout_status_read(m, a->c.prefix, NULL, &s);
    ef_inbox_msg_free(m);
    if (!ok) continue;
    size_t i = 0;
    while (i < n && strcmp(all[i].id, s.rollout_id) != 0) i++;
    if (i == n) {
      if (n == cap) {
        size_t grown = cap ? cap * 2 : 16;
        listed *p = realloc(all, grown * sizeof *p);
        if (!p) goto nomem;
        all = p;
        cap = grown;
      }
      snprintf(all[n++].id, sizeof all[0].id, "%s", s.rollout_id);
    }
    all[i].s = s; /* the newest one counts */
  }
  if (con_interrupted()) {
    rc = CON_INTERRUPTED;
    goto out;
  }
  if (n == 0) {
    printf("no rollout status under %s/rollouts/ (is espfleet-controller running?)\n", a->c.prefix);
    rc = CON_OK;
    goto out;
  }
  if (!(t = con_table_new(7, head))) goto nomem;
  for (size_t i = 0; i < n; i++) {
    const ef_rollout_status *s = &all[i].s;
    char step[24] = "-", ok_n[16], bad_n[16], total[16];
    if (s->step >= 0) snprintf(step, sizeof step, "%d/%d", s->step + 1, s->n_steps);
    int bad = 0;
    for (int k = 0; k < EF_RD__COUNT; k++)
      if (ef_rollout_device_state_is_bad((ef_rollout_device_state)k)) bad += s->counts[k];
    snprintf(ok_n, sizeof ok_n, "%d", s->counts[EF_RD_SUCCEEDED]);
    snprintf(bad_n, sizeof bad_n, "%d", bad);
    snprintf(total, sizeof total, "%d", s->devices);
    const char *cells[7] = {
        all[i].id, s->job_id[0] ? s->job_id : "-", ef_rollout_state_name(s->state), step, ok_n, bad_n, total};
    const char *colors[7] = {NULL,
                             NULL,
                             s->state == EF_RS_COMPLETED                              ? "\033[32m"
                             : s->state == EF_RS_ABORTED || s->state == EF_RS_INVALID ? "\033[31m"
                                                                                      : "\033[33m",
                             NULL,
                             NULL,
                             bad ? "\033[31m" : NULL};
    if (!con_table_add(t, cells, colors)) goto nomem;
  }
  con_table_sort(t);
  con_table_print(t, stdout, con_term_is_tty(), 0, "\n");
  rc = CON_OK;
  goto out;
nomem:
  rc = con_fail(EF_ERR_NOMEM, NULL);
out:
  con_table_free(t);
  con_link_close(link);
  free(all);
  return rc;
}

/* ---- delete ---- */

static int cmd_delete(const simple_args *a) {
  char topic[EF_TOPIC_MAX];
  con_link *link = NULL;
  int rc = CON_FAIL;
  double timeout = a->c.timeout_s > 0 ? a->c.timeout_s : CON_CONNECT_TIMEOUT_S;
  if (!con_topic(topic, a->c.prefix, EF_TOPIC_ROLLOUT, a->rollout_id)) goto out;
  if (con_link_open(&a->c, NULL, 0, timeout, &link) != EF_OK) goto out;
  /* An empty retained message is how MQTT removes a retained one. */
  if (con_link_publish(link, topic, "", true, timeout) != EF_OK) goto out;
  printf(
      "deleted rollout %s: cleared the retained rollout document on %s; espfleet-controller aborts the "
      "rollout if it has not ended, then forgets it and clears its status\n",
      a->rollout_id, topic);
  rc = CON_OK;
out:
  con_link_close(link);
  return rc;
}

/* ---- dispatch ---- */

int cmd_rollout(int argc, char **argv) {
  static const struct {
    const char *name;
    ef_rollout_action action; /* for the control subcommands */
  } controls[] = {{"pause", EF_ROLLOUT_PAUSE}, {"resume", EF_ROLLOUT_RESUME}, {"abort", EF_ROLLOUT_ABORT}};
  if (argc < 2 || argv[1][0] == '-')
    return con_usage_error("rollout",
                           "expected a subcommand: create, pause, resume, abort, show, list or delete");
  const char *sub = argv[1];
  if (strcmp(sub, "create") == 0) return con_rollout_create(argc - 1, argv + 1);
  simple_args a = {.sub = sub};
  bool known = strcmp(sub, "show") == 0 || strcmp(sub, "list") == 0 || strcmp(sub, "delete") == 0;
  for (size_t i = 0; i < sizeof controls / sizeof controls[0]; i++)
    known = known || strcmp(sub, controls[i].name) == 0;
  if (!known) return con_usage_error("rollout", "unknown subcommand '%s'", sub);
  int rc = parse_simple_args(argc - 1, argv + 1, &a);
  if (rc != CON_OK) return rc;
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (size_t i = 0; i < sizeof controls / sizeof controls[0]; i++)
    if (strcmp(sub, controls[i].name) == 0) return cmd_control(&a, controls[i].action);
  if (strcmp(sub, "show") == 0) return cmd_show(&a);
  if (strcmp(sub, "list") == 0) return cmd_list(&a);
  return cmd_delete(&a);
}
