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
    printf("%s %s progress %d%% (%llu/%llu) job=%s\n", ts, d->device, d->percent, (unsigned long long)d->bytes,
           (unsigned long long)d->total, *d->job_id ? d->job_id : "-");
  } else if (d->has_online && !d->online) {
    printf("%s %s offline%s%s\n", ts, d->device, *d->job_id ? " job=" : "", d->job_id);
  } else {
    printf("%s %s %s job=%s", ts, d->device, *d->state_name ? d->state_name : "?", *d->job_id ? d->job_id : "-");
    if (*d->error_code) printf(" error=%s%s%s%s", d->error_code, *d->error_detail ? " (" : "", d->error_detail,
                               *d->error_detail ? ")" : "");
    printf("\n");
  }
}

int cmd_watch(int argc, char **argv) {
  enum { O_DEVICE = CON_OPT_CMD, O_JOB, O_UNTIL_FINAL, O_JSON };
  static const struct option longopts[] = {
      {"device", required_argument, NULL, O_DEVICE},
      {"job", required_argument, NULL, O_JOB},
      {"until-final", no_argument, NULL, O_UNTIL_FINAL},
      {"json", no_argument, NULL, O_JSON},
      CON_COMMON_LONGOPTS,
  };
  con_common c;
  const char *devices[CON_MAX_DEVICES];
  char topics[2 * CON_MAX_DEVICES][512];
  const char *topic_ptrs[2 * CON_MAX_DEVICES];
  int n_devices = 0;
  const char *job_id = NULL;
  bool until_final = false, json = false;
  watch_set set = {0};
  con_link *link = NULL;
  int opt, rc = CON_USAGE;

  con_common_init(&c);
  while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    int r = con_common_opt(&c, "watch", opt, optarg);
    if (r < 0) goto out;
    if (r > 0) continue;
    switch (opt) {
      case O_JOB: job_id = optarg; break;
      case O_UNTIL_FINAL: until_final = true; break;
      case O_JSON: json = true; break;
      case O_DEVICE:
        if (!ef_id_valid(optarg) || n_devices == CON_MAX_DEVICES) {
          con_usage_error("watch", "--device: '%s' is not a device id, or more than %d devices", optarg,
                          CON_MAX_DEVICES);
          goto out;
        }
        devices[n_devices++] = optarg;
        break;
      default: con_usage_error("watch", "unknown option"); goto out;
    }
  }
  if (optind != argc) {
    con_usage_error("watch", "unexpected argument '%s'", argv[optind]);
    goto out;
  }
  if (job_id && !ef_id_valid(job_id)) {
    con_usage_error("watch", "--job: must be 1-64 characters of [A-Za-z0-9._:-]");
    goto out;
  }
  if (until_final && !job_id) {
    con_usage_error("watch", "--until-final needs --job");
    goto out;
  }
  if ((rc = con_common_check(&c, "watch")) != CON_OK) goto out;
  rc = CON_FAIL;
  int n_topics = 0;
  for (int i = 0; i < (n_devices ? n_devices : 1); i++) {
    const char *id = n_devices ? devices[i] : "+";
    if (!con_topic(topics[n_topics], sizeof topics[0], c.prefix, "devices", id, "state") ||
        !con_topic(topics[n_topics + 1], sizeof topics[0], c.prefix, "devices", id, "progress")) {
      con_fail(EF_ERR_INVALID_ARG, "topic too long");
      goto out;
    }
    topic_ptrs[n_topics] = topics[n_topics];
    topic_ptrs[n_topics + 1] = topics[n_topics + 1];
    n_topics += 2;
  }
  for (int i = 0; i < n_devices; i++)
    if (!set_find(&set, devices[i], true)) {
      rc = con_fail(EF_ERR_NOMEM, NULL);
      goto out;
    }

  setvbuf(stdout, NULL, _IOLBF, 0);
  con_catch_signals();
  double connect_s = c.timeout_s > 0 && c.timeout_s < CON_CONNECT_TIMEOUT_S ? c.timeout_s : CON_CONNECT_TIMEOUT_S;
  int64_t start = ef_mono_ms();
  if (con_link_open(&c, topic_ptrs, (size_t)n_topics, connect_s, &link) != EF_OK) goto out;
  int64_t deadline = c.timeout_s > 0 ? start + (int64_t)(c.timeout_s * 1000) : -1;
  for (;;) {
    if (until_final && set_all_final(&set)) break;
    con_msg *m = con_link_next(link, deadline);
    if (!m) break;
    con_doc d;
    bool ok = con_doc_parse(m, c.prefix, &d);
    con_msg_free(m);
    if (!ok) continue;
    bool offline = !d.progress && d.has_online && !d.online;
    if (!job_id || strcmp(d.job_id, job_id) == 0 || offline) {
      if (json) {
        char *text = cJSON_PrintUnformatted(d.doc);
        if (text) printf("%s\n", text);
        free(text);
      } else {
        print_line(&d);
      }
    }
    if (until_final && !d.progress && !offline && d.state_known && strcmp(d.job_id, job_id) == 0) {
      watched *w = set_find(&set, d.device, n_devices == 0);
      if (w) {
        w->final = ef_state_is_final(d.state);
        w->state = d.state;
        w->error = con_doc_error(&d, EF_ERR_INTERNAL);
        snprintf(w->detail, sizeof w->detail, "%s", d.error_detail);
      }
    }
    con_doc_clear(&d);
  }

  if (!until_final) {
    rc = CON_OK;
  } else if (set_all_final(&set)) {
    rc = CON_OK;
    for (size_t i = 0; i < set.n && rc == CON_OK; i++) {
      const watched *w = &set.w[i];
      if (con_state_is_bad(w->state))
        rc = con_fail(w->error, "job %s on %s: %s%s%s", job_id, w->device, ef_state_name(w->state),
                      *w->detail ? ": " : "", w->detail);
    }
  } else if (con_interrupted()) {
    rc = CON_INTERRUPTED;
  } else {
    char pending[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < set.n && used < sizeof pending; i++)
      if (!set.w[i].final)
        used += (size_t)snprintf(pending + used, sizeof pending - used, "%s%s", used ? ", " : "", set.w[i].device);
    fprintf(stderr, CON_PROGRAM " watch: timed out after %g s: %s%s\n", c.timeout_s,
            set.n ? "no final state for the job from " : "no device reported on the job", pending);
    rc = CON_TIMEOUT;
  }
out:
  con_link_close(link);
  free(set.w);
  return rc;
}
