/*
 * espfleet-console watch: state and progress documents as they arrive, as
 * lines (a pipe, a log) or as a table redrawn in place (a terminal).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "console.h"

const char con_watch_usage[] =
    "Usage: espfleet-console watch [--device ID ...] [--job JOB_ID] [--until-final] [--json]\n"
    "                              [--no-announce] [OPTIONS]\n"
    "\n"
    "Subscribes to the state and progress topics of every device (or the\n"
    "given ones) and shows what they report. On a terminal: a table redrawn in\n"
    "place (device, state, progress bar, percent, time left, error). Otherwise\n"
    "one line per document as it arrives:\n"
    "  TIME DEVICE STATE job=JOB_ID [error=CODE (DETAIL)]\n"
    "  TIME DEVICE progress PERCENT% (BYTES/TOTAL) job=JOB_ID\n"
    "  TIME DEVICE offline\n"
    "TIME is the document's ts. Retained states arrive first, so the current\n"
    "state of each device shows at once; the devices are also asked to publish\n"
    "their state again (an announce request), for brokers that do not deliver\n"
    "retained messages to wildcard subscriptions.\n"
    "\n"
    "  --device ID             only this device (repeatable)\n"
    "  --job JOB_ID            only documents about this job (offline notices\n"
    "                          are always shown)\n"
    "  --until-final           with --job: exit once every watched device has\n"
    "                          reached a final state for the job; the watched\n"
    "                          devices are the --device ones, else every device\n"
    "                          that reported a state for the job so far\n"
    "  --json                  print each document as received, one per line\n"
    "  --no-announce           do not ask the devices to publish their state again\n"
    "\n"
    "--timeout S ends the watch after S seconds (default: never).\n"
    "Exit status: 0 done (with --until-final: every device succeeded or was\n"
    "skipped); 1 a device failed, was rejected or canceled (its error line is\n"
    "printed), or an error; 2 usage error; 3 --until-final and the timeout came\n"
    "first; 130 interrupted while waiting for --until-final.\n";

/* Redraws of the live view: at most 5 a second, and once a second anyway so
 * the clock in its title shows that it is alive. */
#define REDRAW_MIN_MS  200
#define REDRAW_IDLE_MS 1000
#define BAR_WIDTH      20

/* What is known about one device. */
typedef struct {
  char device[EF_JOB_ID_MAX + 1];
  bool watched; /* --until-final waits for it */
  bool shown;   /* has a row in the live view */
  bool has_state;
  con_device_doc last; /* the last state document */
  char *last_payload;  /* its text, to recognise a repeat */
  bool final;          /* --until-final: a final state for the job */
  int percent;         /* -1 = no progress known for the current job */
  char progress_job[EF_JOB_ID_MAX + 1];
  uint64_t bytes, total;
  uint64_t first_bytes; /* the first progress of this download, for the rate */
  int64_t first_ms, last_ms;
} device;

typedef struct {
  device *d;
  size_t n, cap;
} device_set;

static device *set_find(device_set *s, const char *id, bool add) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->d[i].device, id) == 0) return &s->d[i];
  if (!add) return NULL;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    device *grown = realloc(s->d, cap * sizeof *grown);
    if (!grown) return NULL;
    s->d = grown;
    s->cap = cap;
  }
  device *d = &s->d[s->n++];
  memset(d, 0, sizeof *d);
  d->percent = -1;
  snprintf(d->device, sizeof d->device, "%s", id);
  return d;
}

static void set_free(device_set *s) {
  for (size_t i = 0; i < s->n; i++) free(s->d[i].last_payload);
  free(s->d);
}

static bool set_all_final(const device_set *s) {
  bool any = false;
  for (size_t i = 0; i < s->n; i++) {
    if (!s->d[i].watched) continue;
    if (!s->d[i].final) return false;
    any = true;
  }
  return any;
}

/* The command line of `watch`. */
typedef struct {
  con_common c;
  const char *devices[CON_MAX_DEVICES];
  int n_devices;
  const char *job_id; /* NULL: every job */
  bool until_final, json, no_announce;
} watch_args;

/* ---- lines ---- */

static void print_line(const con_device_doc *doc) {
  const ef_state_view *d = &doc->v;
  char now[32];
  const char *ts = d->ts;
  if (!*ts) {
    ef_rfc3339_format(ef_wall_ms(), now);
    ts = now;
  }
  if (doc->kind == EF_TOPIC_DEVICE_PROGRESS) {
    printf("%s %s progress %d%% (%llu/%llu) job=%s\n", ts, doc->device, d->percent,
           (unsigned long long)d->bytes, (unsigned long long)d->total, *d->job_id ? d->job_id : "-");
  } else if (doc->offline) {
    printf("%s %s offline%s%s\n", ts, doc->device, *d->job_id ? " job=" : "", d->job_id);
  } else {
    printf("%s %s %s job=%s", ts, doc->device, *d->state_name ? d->state_name : "?",
           *d->job_id ? d->job_id : "-");
    if (*d->error_code)
      printf(" error=%s%s%s%s", d->error_code, *d->error_detail ? " (" : "", d->error_detail,
             *d->error_detail ? ")" : "");
    printf("\n");
  }
}

/* --json: the document as received, as one line of JSON (re-written by
 * cJSON, so a line is always one line). */
static void print_json(const char *payload, size_t len) {
  cJSON *doc = cJSON_ParseWithLength(payload, len);
  char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
  if (text) printf("%s\n", text);
  free(text);
  cJSON_Delete(doc);
}

/* ---- the live view ---- */

/* "[#####---------------]" for @p percent. */
static void bar(int percent, char out[BAR_WIDTH + 3]) {
  int full = percent * BAR_WIDTH / 100;
  out[0] = '[';
  for (int i = 0; i < BAR_WIDTH; i++) out[1 + i] = i < full ? '#' : '-';
  out[BAR_WIDTH + 1] = ']';
  out[BAR_WIDTH + 2] = '\0';
}

/* Time left of a download from the rate its progress documents show (their
 * ts, the device's own clock). "" when it cannot be told yet. */
static void eta(const device *d, char *out, size_t n) {
  out[0] = '\0';
  if (d->last_ms <= d->first_ms || d->bytes <= d->first_bytes || d->total <= d->bytes) return;
  double rate = (double)(d->bytes - d->first_bytes) / (double)(d->last_ms - d->first_ms); /* bytes per ms */
  long s = (long)((double)(d->total - d->bytes) / rate / 1000.0 + 0.5);
  if (s >= 3600)
    snprintf(out, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    snprintf(out, n, "%ld:%02ld", s / 60, s % 60);
}

/* The percent shown for a device: its progress while downloading, 100 once
 * every byte is in, nothing when no transfer is known. */
static int shown_percent(const device *d, const watch_args *a) {
  const ef_state_view *v = &d->last.v;
  bool same_job = !d->has_state || strcmp(v->job_id, d->progress_job) == 0;
  if (d->has_state && v->state_known) {
    switch (v->state) {
    case EF_STATE_VERIFYING:
    case EF_STATE_ACTIVATING:
    case EF_STATE_REBOOTING:
    case EF_STATE_SUCCEEDED: return 100;
    case EF_STATE_DOWNLOADING: break;
    default: return same_job ? d->percent : -1;
    }
  }
  (void)a;
  return same_job ? d->percent : -1;
}

static void draw(const watch_args *a, const device_set *set) {
  static const char *const head_job[] = {"DEVICE", "STATE", "JOB", "PROGRESS", "%", "LEFT", "ERROR"};
  static const char *const head[] = {"DEVICE", "STATE", "PROGRESS", "%", "LEFT", "ERROR"};
  bool with_job = a->job_id == NULL;
  size_t cols = with_job ? 7 : 6;
  con_table *t = con_table_new(cols, with_job ? head_job : head);
  int counts[EF_STATE__COUNT + 1] = {0}; /* the last one counts offline devices */
  size_t shown = 0;
  int w, h;
  if (!t) return;
  for (size_t i = 0; i < set->n; i++) {
    const device *d = &set->d[i];
    if (!d->shown) continue;
    const ef_state_view *v = &d->last.v;
    char pbar[BAR_WIDTH + 3] = "", pct[16] = "", left[48] = "", error[320] = "";
    int p = shown_percent(d, a);
    if (p >= 0) {
      bar(p, pbar);
      snprintf(pct, sizeof pct, "%d%%", p);
    }
    if (d->has_state && v->state_known && v->state == EF_STATE_DOWNLOADING) eta(d, left, sizeof left);
    if (*v->error_code)
      snprintf(error, sizeof error, "%s%s%s", v->error_code, *v->error_detail ? ": " : "", v->error_detail);
    const char *state = d->last.offline ? "offline" : d->has_state && *v->state_name ? v->state_name : "?";
    const char *cells[7], *colors[7] = {NULL};
    size_t c = 0;
    cells[c++] = d->device;
    colors[c] = d->last.offline ? "\033[31m" : con_term_state_color(state);
    cells[c++] = state;
    if (with_job) cells[c++] = *v->job_id ? v->job_id : "-";
    cells[c++] = pbar;
    cells[c++] = pct;
    cells[c++] = left;
    colors[c] = "\033[31m";
    cells[c++] = error;
    if (!con_table_add(t, cells, colors)) break;
    counts[d->last.offline                  ? EF_STATE__COUNT
           : d->has_state && v->state_known ? (int)v->state
                                            : EF_STATE_IDLE]++;
    shown++;
  }
  con_table_sort(t);
  con_term_size(&w, &h);
  char now[32], title[512];
  time_t secs = time(NULL);
  strftime(now, sizeof now, "%H:%M:%S", localtime(&secs));
  size_t used = (size_t)snprintf(title, sizeof title, "%s  %s%s  %zu device(s)", now,
                                 a->job_id ? "job " : "every job", a->job_id ? a->job_id : "", shown);
  for (int s = 0; s <= EF_STATE__COUNT && used < sizeof title; s++)
    if (counts[s])
      used += (size_t)snprintf(title + used, sizeof title - used, "%s %d %s", used ? "," : "", counts[s],
                               s == EF_STATE__COUNT ? "offline" : ef_state_name((ef_job_state)s));
  fputs("\033[H", stdout);
  printf("\033[1m%s\033[0m\033[K\n\033[K\n", title);
  if (shown == 0)
    printf("waiting for state documents...\033[K\n");
  else
    con_table_print(t, stdout, true, h > 5 ? (size_t)h - 4 : 1, "\033[K\n");
  fputs("\033[J", stdout);
  fflush(stdout);
  con_table_free(t);
}

/* ---- reading documents ---- */

/* @return CON_OK when the watch should run, else the exit status (the usage
 * error printed). */
static int parse_watch_args(int argc, char **argv, watch_args *a) {
  enum { O_DEVICE = CON_OPT_CMD, O_JOB, O_UNTIL_FINAL, O_JSON, O_NO_ANNOUNCE };
  static const struct option longopts[] = {
      {"device", required_argument, NULL, O_DEVICE},     {"job", required_argument, NULL, O_JOB},
      {"until-final", no_argument, NULL, O_UNTIL_FINAL}, {"json", no_argument, NULL, O_JSON},
      {"no-announce", no_argument, NULL, O_NO_ANNOUNCE}, CON_COMMON_LONGOPTS,
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
    case O_NO_ANNOUNCE: a->no_announce = true; break;
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
 * with "+"), into @p topics; @return how many, or 0 (error printed). */
static int watch_topics(const watch_args *a, char topics[][EF_TOPIC_MAX], const char **topic_ptrs) {
  int n_topics = 0;
  for (int i = 0; i < (a->n_devices ? a->n_devices : 1); i++) {
    const char *id = a->n_devices ? a->devices[i] : "+";
    if (!con_topic(topics[n_topics], a->c.prefix, EF_TOPIC_DEVICE_STATE, id) ||
        !con_topic(topics[n_topics + 1], a->c.prefix, EF_TOPIC_DEVICE_PROGRESS, id))
      return 0;
    topic_ptrs[n_topics] = topics[n_topics];
    topic_ptrs[n_topics + 1] = topics[n_topics + 1];
    n_topics += 2;
  }
  return n_topics;
}

/* Records a progress document. */
static void note_progress(device *d, const ef_state_view *v) {
  if (strcmp(d->progress_job, v->job_id) != 0 || v->bytes < d->bytes) {
    /* another job, or a download that started over: a new rate */
    snprintf(d->progress_job, sizeof d->progress_job, "%s", v->job_id);
    d->first_bytes = v->bytes;
    d->first_ms = v->ts_ms;
  }
  d->bytes = v->bytes;
  d->total = v->total;
  d->last_ms = v->ts_ms;
  d->percent = v->percent;
}

/* Records a state document; takes over @p m's payload. @return false when
 * it repeats the last one of the device (a device answering an announce
 * request publishes the state it had), which is then not shown again. */
static bool note_state(const watch_args *a, device *d, const con_device_doc *doc, ef_inbox_msg *m) {
  if (d->last_payload && strcmp(d->last_payload, m->payload) == 0) return false;
  free(d->last_payload);
  d->last_payload = m->payload;
  m->payload = NULL;
  if (!doc->offline) {
    d->last = *doc;
    d->has_state = true;
    if (doc->v.state_known && doc->v.state == EF_STATE_DOWNLOADING &&
        strcmp(d->progress_job, doc->v.job_id) != 0)
      note_progress(d, &doc->v);
  } else {
    d->last.offline = true;
  }
  if (a->until_final && !doc->offline && doc->v.state_known && strcmp(doc->v.job_id, a->job_id) == 0) {
    if (a->n_devices == 0) d->watched = true;
    d->final = ef_state_is_final(doc->v.state);
  }
  return true;
}

/* Takes in one message. @return false when out of memory. */
static bool take(const watch_args *a, device_set *set, ef_inbox_msg *m, bool live, bool *dirty) {
  con_device_doc doc;
  if (!con_device_doc_read(m, a->c.prefix, &doc)) return true;
  bool about_job = !a->job_id || strcmp(doc.v.job_id, a->job_id) == 0;
  /* offline notices always show */
  if (!about_job && !doc.offline) return true;
  device *d = set_find(set, doc.device, true);
  if (!d) return false;
  /* note_state may take the payload over; it stays valid, held by d */
  const char *payload = m->payload;
  bool show = true;
  if (doc.kind == EF_TOPIC_DEVICE_PROGRESS)
    note_progress(d, &doc.v);
  else
    show = note_state(a, d, &doc, m);
  if (!show) return true;
  d->shown = d->shown || about_job;
  if (live)
    *dirty = true;
  else if (a->json)
    print_json(payload, m->len);
  else
    print_line(&doc);
  return true;
}

/* The exit status once the watch ended (by timeout, interrupt or every
 * device final); says why on stderr. */
static int watch_outcome(const watch_args *a, const device_set *set) {
  if (!a->until_final) return CON_OK;
  if (set_all_final(set)) {
    for (size_t i = 0; i < set->n; i++) {
      const device *d = &set->d[i];
      if (d->watched && ef_state_is_bad(d->last.v.state))
        return con_fail(con_device_error(&d->last.v, EF_ERR_INTERNAL), "job %s on %s: %s%s%s", a->job_id,
                        d->device, ef_state_name(d->last.v.state), *d->last.v.error_detail ? ": " : "",
                        d->last.v.error_detail);
    }
    return CON_OK;
  }
  if (con_interrupted()) return CON_INTERRUPTED;
  char pending[512] = "";
  size_t used = 0, watched = 0;
  for (size_t i = 0; i < set->n && used < sizeof pending; i++) {
    if (!set->d[i].watched) continue;
    watched++;
    if (!set->d[i].final)
      used +=
          (size_t)snprintf(pending + used, sizeof pending - used, "%s%s", used ? ", " : "", set->d[i].device);
  }
  fprintf(stderr, CON_PROGRAM " watch: timed out after %g s: %s%s\n", a->c.timeout_s,
          watched ? "no final state for the job from " : "no device reported on the job", pending);
  return CON_TIMEOUT;
}

int cmd_watch(int argc, char **argv) {
  watch_args a;
  char topics[2 * CON_MAX_DEVICES][EF_TOPIC_MAX];
  const char *topic_ptrs[2 * CON_MAX_DEVICES];
  device_set set = {0};
  con_link *link = NULL;
  bool live = false;
  int rc = parse_watch_args(argc, argv, &a);
  if (rc != CON_OK) goto out;
  rc = CON_FAIL;
  int n_topics = watch_topics(&a, topics, topic_ptrs);
  if (n_topics == 0) goto out;
  for (int i = 0; i < a.n_devices; i++) {
    device *d = set_find(&set, a.devices[i], true);
    if (!d) goto nomem;
    d->watched = d->shown = true;
  }

  setvbuf(stdout, NULL, _IOLBF, 0);
  con_catch_signals();
  const con_common *c = &a.c;
  double connect_s =
      c->timeout_s > 0 && c->timeout_s < CON_CONNECT_TIMEOUT_S ? c->timeout_s : CON_CONNECT_TIMEOUT_S;
  int64_t start = ef_mono_ms();
  if (con_link_open(c, topic_ptrs, (size_t)n_topics, connect_s, &link) != EF_OK) goto out;
  if (!a.no_announce &&
      con_link_announce(link, c->prefix, EF_ANNOUNCE_DEVICES, a.job_id, CON_CONNECT_TIMEOUT_S) != EF_OK)
    goto out;
  int64_t deadline = c->timeout_s > 0 ? start + (int64_t)(c->timeout_s * 1000) : -1;
  live = !a.json && con_term_is_tty();
  if (live) con_term_live_begin();
  bool dirty = live;
  int64_t last_draw = 0;
  for (;;) {
    if (a.until_final && set_all_final(&set)) break;
    int64_t wait_until = deadline;
    if (live) {
      int64_t now = ef_mono_ms();
      if (now - last_draw >= REDRAW_IDLE_MS) dirty = true;
      if (dirty && now - last_draw >= REDRAW_MIN_MS) {
        draw(&a, &set);
        dirty = false;
        last_draw = now;
      }
      int64_t next = last_draw + (dirty ? REDRAW_MIN_MS : REDRAW_IDLE_MS);
      if (deadline < 0 || next < deadline) wait_until = next;
    }
    ef_inbox_msg *m = con_link_next(link, wait_until);
    if (!m) {
      if (con_interrupted() || (deadline >= 0 && ef_mono_ms() >= deadline)) break;
      continue; /* time to draw */
    }
    bool ok = take(&a, &set, m, live, &dirty);
    ef_inbox_msg_free(m);
    if (!ok) goto nomem;
  }
  if (live) {
    draw(&a, &set);
    con_term_live_end();
  }
  rc = watch_outcome(&a, &set);
  goto out;
nomem:
  rc = con_fail(EF_ERR_NOMEM, NULL);
out:
  if (live) con_term_live_end();
  con_link_close(link);
  set_free(&set);
  return rc;
}
