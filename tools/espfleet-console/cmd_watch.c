/* espfleet-console watch: prints state and progress documents as they arrive. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "console.h"

const char con_watch_usage[] =
    "Usage: espfleet-console watch [--device ID ...] [--job JOB_ID] [--until-final] [--json] [OPTIONS]\n"
    "\n"
    "Subscribes to the state and progress topics of every device (or the\n"
    "given ones) and prints one line per document as it arrives:\n"
    "  TIME DEVICE STATE job=JOB_ID [error=CODE (DETAIL)]\n"
    "  TIME DEVICE progress PERCENT% (BYTES/TOTAL) job=JOB_ID\n"
    "  TIME DEVICE offline\n"
    "TIME is the document's ts. Retained states arrive first, so the current\n"
    "state of each device shows at once.\n"
    "\n"
    "  --device ID             only this device (repeatable)\n"
    "  --job JOB_ID            only documents about this job (offline notices\n"
    "                          are always shown)\n"
    "  --until-final           with --job: exit once every watched device has\n"
    "                          reached a final state for the job; the watched\n"
    "                          devices are the --device ones, else every device\n"
    "                          that reported a state for the job so far\n"
    "  --json                  print each document as received, one per line\n"
    "\n"
    "--timeout S ends the watch after S seconds (default: never).\n"
    "Exit status: 0 done (with --until-final: every device succeeded or was\n"
    "skipped); 1 a device failed, was rejected or canceled (its error line is\n"
    "printed), or an error; 2 usage error; 3 --until-final and the timeout came\n"
    "first; 130 interrupted while waiting for --until-final.\n";

typedef struct {
  char device[EF_JOB_ID_MAX + 1];
  bool final;
  ef_job_state state;
  ef_err error;
  char detail[256];
} watched;

typedef struct {
  watched *w;
  size_t n, cap;
} watch_set;

static watched *set_find(watch_set *s, const char *device, bool add) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->w[i].device, device) == 0) return &s->w[i];
  if (!add) return NULL;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    watched *w = realloc(s->w, cap * sizeof *w);
    if (!w) return NULL;
    s->w = w;
    s->cap = cap;
  }
  watched *w = &s->w[s->n++];
  memset(w, 0, sizeof *w);
  snprintf(w->device, sizeof w->device, "%s", device);
  return w;
}

static bool set_all_final(const watch_set *s) {
  if (s->n == 0) return false;
  for (size_t i = 0; i < s->n; i++)
    if (!s->w[i].final) return false;
  return true;
}

static void print_line(const con_doc *d) {
  char now[32];
  const char *ts = d->ts;
  if (!*ts) {
    ef_rfc3339_format(ef_wall_ms(), now);
    ts = now;
  }
  if (d->progress) {
    printf("%s %s progress %d%% (%llu/%llu) job=%s\n", ts, d->device, d->percent,
           (unsigned long long)d->bytes, (unsigned long long)d->total, *d->job_id ? d->job_id : "-");
  } else if (d->has_online && !d->online) {
    printf("%s %s offline%s%s\n", ts, d->device, *d->job_id ? " job=" : "", d->job_id);
  } else {
    printf("%s %s %s job=%s", ts, d->device, *d->state_name ? d->state_name : "?",
           *d->job_id ? d->job_id : "-");
    if (*d->error_code)
      printf(" error=%s%s%s%s", d->error_code, *d->error_detail ? " (" : "", d->error_detail,
             *d->error_detail ? ")" : "");
    printf("\n");
  }
}

/* The command line of `watch`. */
typedef struct {
  con_common c;
  const char *devices[CON_MAX_DEVICES];
  int n_devices;
  const char *job_id; /* NULL: every job */
  bool until_final, json;
} watch_args;

/* @return CON_OK when the watch should run, else the exit status (the usage
 * error printed). */
static int parse_watch_args(int argc, char **argv, watch_args *a) {
  enum { O_DEVICE = CON_OPT_CMD, O_JOB, O_UNTIL_FINAL, O_JSON };
  static const struct option longopts[] = {
      {"device", required_argument, NULL, O_DEVICE},
      {"job", required_argument, NULL, O_JOB},
      {"until-final", no_argument, NULL, O_UNTIL_FINAL},
      {"json", no_argument, NULL, O_JSON},
      CON_COMMON_LONGOPTS,
  };
  int opt;
  memset(a, 0, sizeof *a);
  con_common_init(&a->c);
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    int r = con_common_opt(&a->c, "watch", opt, optarg);
    if (r < 0) return CON_USAGE;
    if (r > 0) continue;
    switch (opt) {
    case O_JOB: a->job_id = optarg; break;
    case O_UNTIL_FINAL: a->until_final = true; break;
    case O_JSON: a->json = true; break;
    case O_DEVICE:
      if (!ef_id_valid(optarg) || a->n_devices == CON_MAX_DEVICES)
        return con_usage_error("watch", "--device: '%s' is not a device id, or more than %d devices", optarg,
                               CON_MAX_DEVICES);
      a->devices[a->n_devices++] = optarg;
      break;
    default: return con_usage_error("watch", "unknown option");
    }
  }
  if (optind != argc) return con_usage_error("watch", "unexpected argument '%s'", argv[optind]);
  if (a->job_id && !ef_id_valid(a->job_id))
    return con_usage_error("watch", "--job: must be 1-64 characters of [A-Za-z0-9._:-]");
  if (a->until_final && !a->job_id) return con_usage_error("watch", "--until-final needs --job");
  return con_common_check(&a->c, "watch");
}

/* The state and progress topics of the watched devices (of every device
 * with "+"), into @p topics; @return how many, or 0 when one is too long. */
static int watch_topics(const watch_args *a, char topics[][512], const char **topic_ptrs) {
  int n_topics = 0;
  for (int i = 0; i < (a->n_devices ? a->n_devices : 1); i++) {
    const char *id = a->n_devices ? a->devices[i] : "+";
    if (!con_topic(topics[n_topics], 512, a->c.prefix, "devices", id, "state") ||
        !con_topic(topics[n_topics + 1], 512, a->c.prefix, "devices", id, "progress"))
      return 0;
    topic_ptrs[n_topics] = topics[n_topics];
    topic_ptrs[n_topics + 1] = topics[n_topics + 1];
    n_topics += 2;
  }
  return n_topics;
}

/* Prints @p d when it is about the watched job (offline notices always). */
static void show_doc(const watch_args *a, const con_doc *d, bool offline) {
  if (a->job_id && strcmp(d->job_id, a->job_id) != 0 && !offline) return;
  if (a->json) {
    char *text = cJSON_PrintUnformatted(d->doc);
    if (text) printf("%s\n", text);
    free(text);
  } else {
    print_line(d);
  }
}

/* --until-final: records a device's state for the job (adding the device
 * when no --device named the watched ones). */
static void note_state(const watch_args *a, watch_set *set, const con_doc *d) {
  watched *w = set_find(set, d->device, a->n_devices == 0);
  if (!w) return;
  w->final = ef_state_is_final(d->state);
  w->state = d->state;
  w->error = con_doc_error(d, EF_ERR_INTERNAL);
  snprintf(w->detail, sizeof w->detail, "%s", d->error_detail);
}

/* The exit status once the watch ended (by timeout, interrupt or every
 * device final); says why on stderr. */
static int watch_outcome(const watch_args *a, const watch_set *set) {
  if (!a->until_final) return CON_OK;
  if (set_all_final(set)) {
    for (size_t i = 0; i < set->n; i++) {
      const watched *w = &set->w[i];
      if (con_state_is_bad(w->state))
        return con_fail(w->error, "job %s on %s: %s%s%s", a->job_id, w->device, ef_state_name(w->state),
                        *w->detail ? ": " : "", w->detail);
    }
    return CON_OK;
  }
  if (con_interrupted()) return CON_INTERRUPTED;
  char pending[512] = "";
  size_t used = 0;
  for (size_t i = 0; i < set->n && used < sizeof pending; i++)
    if (!set->w[i].final)
      used +=
          (size_t)snprintf(pending + used, sizeof pending - used, "%s%s", used ? ", " : "", set->w[i].device);
  fprintf(stderr, CON_PROGRAM " watch: timed out after %g s: %s%s\n", a->c.timeout_s,
          set->n ? "no final state for the job from " : "no device reported on the job", pending);
  return CON_TIMEOUT;
}

int cmd_watch(int argc, char **argv) {
  watch_args a;
  char topics[2 * CON_MAX_DEVICES][512];
  const char *topic_ptrs[2 * CON_MAX_DEVICES];
  watch_set set = {0};
  con_link *link = NULL;
  int rc = parse_watch_args(argc, argv, &a);
  if (rc != CON_OK) goto out;
  rc = CON_FAIL;
  int n_topics = watch_topics(&a, topics, topic_ptrs);
  if (n_topics == 0) {
    con_fail(EF_ERR_INVALID_ARG, "topic too long");
    goto out;
  }
  for (int i = 0; i < a.n_devices; i++)
    if (!set_find(&set, a.devices[i], true)) {
      rc = con_fail(EF_ERR_NOMEM, NULL);
      goto out;
    }

  setvbuf(stdout, NULL, _IOLBF, 0);
  con_catch_signals();
  const con_common *c = &a.c;
  double connect_s =
      c->timeout_s > 0 && c->timeout_s < CON_CONNECT_TIMEOUT_S ? c->timeout_s : CON_CONNECT_TIMEOUT_S;
  int64_t start = ef_mono_ms();
  if (con_link_open(c, topic_ptrs, (size_t)n_topics, connect_s, &link) != EF_OK) goto out;
  int64_t deadline = c->timeout_s > 0 ? start + (int64_t)(c->timeout_s * 1000) : -1;
  for (;;) {
    if (a.until_final && set_all_final(&set)) break;
    con_msg *m = con_link_next(link, deadline);
    if (!m) break;
    con_doc d;
    bool ok = con_doc_parse(m, c->prefix, &d);
    con_msg_free(m);
    if (!ok) continue;
    bool offline = !d.progress && d.has_online && !d.online;
    show_doc(&a, &d, offline);
    if (a.until_final && !d.progress && !offline && d.state_known && strcmp(d.job_id, a.job_id) == 0)
      note_state(&a, &set, &d);
    con_doc_clear(&d);
  }
  rc = watch_outcome(&a, &set);
out:
  con_link_close(link);
  free(set.w);
  return rc;
}
