/*
 * ef_swarm_emu: many emulated devices in one process, speaking espfleetd's
 * MQTT contract (docs/protocol.md), for tools/bench-fleet.sh.
 *
 * It does no download and no flashing, and has no ESP: a job only walks
 * through the states a real device reports, on a timer (--job-ms), so that a
 * benchmark of espfleet-controller and the broker is not bounded by the
 * devices. Everything a controller can see is as espfleetd does it:
 *  - one MQTT session per device (clean_session=false, client id = device
 *    id), its last will the offline document, retained, on its state topic;
 *  - exact subscriptions (no wildcards) to its job and cancel topics, its
 *    group's job and cancel topics and P/announce;
 *  - its state document (with its group) retained on every connection;
 *  - a job: downloading (two progress documents, QoS 0), verifying,
 *    activating, rebooting, then succeeded, or failed (boot_verify_failed)
 *    on the devices --fail names; every state retained on the state topic,
 *    the final one also retained on P/devices/ID/jobs/JOB_ID;
 *  - intake by ef_job_decide, the daemon's own pure decision: a finished
 *    job_id delivered again re-publishes its result, a job_id with other
 *    content is refused (job_conflict), the canary gate, one job waiting
 *    (a newer one replaces it, which ends job_replaced);
 *  - a cancel ends the job canceled while downloading or verifying, and is
 *    ignored from activating on (OTA end sent);
 *  - an announce re-publishes the state, and the result of its job_id.
 * The last 16 results per device are remembered (the daemon keeps 64 in its
 * journal); nothing survives the process.
 *
 * Threads: the sessions share Paho's two threads (one receive thread polls
 * every socket), plus one small reconnect thread per session (ef_mqtt's
 * supervisor). The MQTT callbacks only queue a copy of each message, tagged
 * with its device, into one ef_inbox; the main thread owns every device,
 * takes the messages and ticks every device's timer each TICK_MS, and is the
 * only one that publishes. So no device state is shared between threads,
 * and nothing is published from inside a Paho callback (Paho may hold its
 * own lock there).
 *
 * Output: warnings on stderr (--log-level info for more); on stdout, one
 * line "ready N" once every session connected for the first time, and at
 * the end one JSON line of counters. Exit status 0; 1 when sessions could
 * not be started; 2 for bad usage.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "espfleet/clock.h"
#include "espfleet/inbox.h"
#include "espfleet/job.h"
#include "espfleet/log.h"
#include "espfleet/mqtt.h"
#include "espfleet/protocol.h"
#include "espfleet/report.h"

#define PROGRAM "ef_swarm_emu"

#define TICK_MS     20      /* timer resolution of every device's job */
#define RESULTS_MAX 16      /* results a device remembers (idempotence) */
#define INBOX_MAX   1000000 /* queued messages before the oldest are dropped (counted) */
#define COUNT_MAX   65536
#define STATS_MS    10000 /* an info line this often */
/* The tag on_connected queues: no topic of the contract starts with '$'. */
#define CONNECTED_MARK "$connected"
#define FAIL_DETAIL    "emulated failure (ef_swarm_emu --fail)"

/* A job's steps, at these thousandths of --job-ms after it started. */
enum { PH_HALF, PH_FULL, PH_VERIFYING, PH_ACTIVATING, PH_REBOOTING, PH_FINAL, PH__COUNT };
static const int phase_at[PH__COUNT] = {250, 500, 500, 650, 750, 1000};

/* How report_final publishes (as the daemon's report_final_locked). */
typedef enum {
  REPORT_RECORD,  /* remember the result, publish it on the result topic and the state */
  REPORT_AGAIN,   /* a remembered result said again */
  REPORT_REFUSAL, /* not retained: the retained state and the result stay the first's */
} report_how;

typedef struct {
  char job_id[EF_JOB_ID_MAX + 1];
  char fingerprint[65];
  ef_job_state state;
  ef_err error;
  char detail[160];
  int attempt;
  int64_t ts_ms;
} result;

struct emu;

typedef struct {
  struct emu *owner; /* for the callbacks, which get only the device */
  size_t index;
  char id[EF_JOB_ID_MAX + 1];
  ef_mqtt *mqtt;
  bool fails;
  bool ever_connected;
  ef_state state; /* the retained state document */
  bool running;
  ef_job job; /* the running job (kept after it ends: its bytes belong to the last state) */
  int64_t job_start_ms;
  int phase;
  bool has_waiting;
  ef_job waiting;
  result results[RESULTS_MAX];
  size_t n_results, next_result;
} device;

typedef struct emu {
  const char *prefix;
  int job_ms;
  size_t n;
  device *devs;
  ef_inbox *inbox;
  ef_job_limits limits;
  size_t connected; /* sessions that connected at least once */
  /* counters for the summary line */
  long messages, published, publish_errors, started, succeeded, failed, canceled, repeats, skipped, rejected;
} emu;

static atomic_bool stop_flag;
static void on_signal(int sig) {
  (void)sig;
  atomic_store(&stop_flag, true);
}
static bool should_stop(void) { return atomic_load(&stop_flag); }

static void copy(char *dst, size_t n, const char *src) { snprintf(dst, n, "%s", src ? src : ""); }

/* ---- MQTT callbacks (Paho's threads): tag with the device and queue ---- */

static void on_message(void *arg, const char *topic, const void *payload, size_t len) {
  device *d = arg;
  char tagged[EF_TOPIC_MAX + 32];
  int k = snprintf(tagged, sizeof tagged, "%zu %s", d->index, topic);
  if (k < 0 || (size_t)k >= sizeof tagged) return; /* longer than any topic of ours */
  ef_inbox_on_message(d->owner->inbox, tagged, payload, len);
}

static void on_connected(void *arg, bool reconnect) {
  (void)reconnect;
  on_message(arg, CONNECTED_MARK, "", 0);
}

/* ---- publishing (main thread only) ---- */

static void publish_text(emu *e, device *d, const char *topic, const char *payload, int qos, bool retain) {
  ef_status st = EF_STATUS_INIT;
  if (ef_mqtt_publish(d->mqtt, topic, payload, strlen(payload), qos, retain, &st) == EF_OK) {
    e->published++;
  } else {
    e->publish_errors++;
    ef_warn("%s: could not queue a message on %s: %s", d->id, topic, st.detail);
  }
}

static void publish_doc(emu *e, device *d, ef_topic_kind kind, const char *sub, const ef_state *s,
                        bool retain) {
  char topic[EF_TOPIC_MAX];
  char *json = ef_report_state_json(s);
  if (json && ef_topic(topic, sizeof topic, e->prefix, kind, d->id, sub))
    publish_text(e, d, topic, json, 1, retain);
  else
    e->publish_errors++;
  free(json);
}

static void publish_state(emu *e, device *d) {
  d->state.ts_ms = ef_wall_ms();
  publish_doc(e, d, EF_TOPIC_DEVICE_STATE, NULL, &d->state, true);
}

static void publish_progress(emu *e, device *d, uint64_t bytes) {
  char topic[EF_TOPIC_MAX];
  char *json = ef_report_progress_json(d->id, d->job.job_id, bytes, d->job.size, ef_wall_ms());
  if (json && ef_topic(topic, sizeof topic, e->prefix, EF_TOPIC_DEVICE_PROGRESS, d->id, NULL))
    publish_text(e, d, topic, json, 0, false);
  free(json);
}

/* ---- results ---- */

static result *find_result(device *d, const char *job_id) {
  for (size_t i = 0; i < d->n_results; i++)
    if (strcmp(d->results[i].job_id, job_id) == 0) return &d->results[i];
  return NULL;
}

/* One entry per job_id (a skipped job decided again replaces its entry);
 * the oldest goes when all are taken. */
static void record(device *d, const char *job_id, const char *fp, ef_job_state st, ef_err err,
                   const char *detail, int attempt) {
  result *r = find_result(d, job_id);
  if (!r) {
    r = &d->results[d->next_result];
    d->next_result = (d->next_result + 1) % RESULTS_MAX;
    if (d->n_results < RESULTS_MAX) d->n_results++;
  }
  copy(r->job_id, sizeof r->job_id, job_id);
  copy(r->fingerprint, sizeof r->fingerprint, fp);
  r->state = st;
  r->error = err;
  copy(r->detail, sizeof r->detail, detail);
  r->attempt = attempt;
  r->ts_ms = ef_wall_ms();
}

/* A job's final state, published as the daemon does: the result topic
 * (unless refused), then the state topic; while another job runs, the
 * running job's state follows so the retained document shows it. */
static void report_final(emu *e, device *d, const char *job_id, const char *fp, ef_job_state st, ef_err err,
                         const char *detail, int attempt, report_how how) {
  if (how == REPORT_RECORD && job_id[0]) record(d, job_id, fp, st, err, detail, attempt);
  ef_state doc = d->state;
  copy(doc.job_id, sizeof doc.job_id, job_id);
  doc.state = st;
  doc.error = err;
  copy(doc.detail, sizeof doc.detail, detail);
  doc.attempt = attempt;
  if (strcmp(job_id, d->job.job_id) != 0 || strcmp(job_id, d->state.job_id) != 0) doc.bytes = doc.total = 0;
  doc.ts_ms = ef_wall_ms();
  if (how == REPORT_REFUSAL) {
    publish_doc(e, d, EF_TOPIC_DEVICE_STATE, NULL, &doc, false);
    return;
  }
  if (job_id[0]) publish_doc(e, d, EF_TOPIC_DEVICE_RESULT, job_id, &doc, true);
  if (d->running) {
    publish_doc(e, d, EF_TOPIC_DEVICE_STATE, NULL, &doc, true);
    publish_state(e, d);
  } else {
    d->state = doc;
    publish_doc(e, d, EF_TOPIC_DEVICE_STATE, NULL, &d->state, true);
  }
}

/* ---- job intake: the daemon's decisions (ef_job_decide) ---- */

static ef_job_facts facts(const device *d, const char *job_id, bool starting) {
  ef_job_facts f;
  memset(&f, 0, sizeof f);
  f.starting = starting;
  f.device_id = d->id;
  f.chip_id = -1; /* no ESP: any chip */
  f.installed_version = d->state.app.version;
  f.installed_sha256_hex = d->state.app.sha256_hex;
  f.driver_release = ""; /* unknown: jobs are not checked against it */
  f.running = d->running ? &d->job : NULL;
  f.waiting = d->has_waiting ? &d->waiting : NULL;
  const result *r = NULL;
  for (size_t i = 0; job_id[0] && i < d->n_results && !r; i++)
    if (strcmp(d->results[i].job_id, job_id) == 0) r = &d->results[i];
  f.has_final = r != NULL;
  f.final_skipped = r && r->state == EF_STATE_SKIPPED;
  f.final_fingerprint = r ? r->fingerprint : NULL;
  f.now = time(NULL);
  return f;
}

/* Carries out a decision that ends the intake; false for run and wait. */
static bool settle(emu *e, device *d, ef_job_decision dec, const ef_job *job, const char *fp,
                   const ef_status *st) {
  switch (dec) {
  case EF_DECISION_SKIP:
    e->skipped++;
    report_final(e, d, job->job_id, fp, EF_STATE_SKIPPED, EF_OK, "outside the rollout percentage", 0,
                 REPORT_RECORD);
    return true;
  case EF_DECISION_INSTALLED:
    e->succeeded++;
    report_final(e, d, job->job_id, fp, EF_STATE_SUCCEEDED, EF_OK, "this image is already installed", 0,
                 REPORT_RECORD);
    return true;
  case EF_DECISION_REJECT:
  case EF_DECISION_REFUSE:
    e->rejected++;
    report_final(e, d, job->job_id, fp, EF_STATE_REJECTED, st->code, st->detail, 0,
                 dec == EF_DECISION_REJECT ? REPORT_RECORD : REPORT_REFUSAL);
    return true;
  case EF_DECISION_IGNORE: return true; /* the running job delivered again */
  case EF_DECISION_REPEAT: {
    const result *r = find_result(d, job->job_id);
    e->repeats++;
    if (r)
      report_final(e, d, r->job_id, r->fingerprint, r->state, r->error, r->detail, r->attempt, REPORT_AGAIN);
    return true;
  }
  case EF_DECISION_RUN:
  case EF_DECISION_WAIT: break;
  }
  return false;
}

/* The waiting job's turn: decided again (as the daemon does), then run. */
static void start_waiting(emu *e, device *d) {
  ef_job job = d->waiting;
  ef_status st = EF_STATUS_INIT;
  char fp[65];
  d->has_waiting = false;
  ef_job_fingerprint(&job, fp);
  ef_job_facts f = facts(d, job.job_id, true);
  if (settle(e, d, ef_job_decide(&job, NULL, &f, &st), &job, fp, &st)) return;
  d->job = job;
  d->running = true;
  d->phase = 0;
  d->job_start_ms = ef_mono_ms();
  d->state.state = EF_STATE_DOWNLOADING;
  copy(d->state.job_id, sizeof d->state.job_id, job.job_id);
  d->state.bytes = 0;
  d->state.total = job.size;
  d->state.attempt = 1;
  d->state.error = EF_OK;
  d->state.detail[0] = '\0';
  e->started++;
  publish_state(e, d);
}

static void on_job(emu *e, device *d, const char *payload, size_t len) {
  ef_job job;
  ef_status parsed = EF_STATUS_INIT, st = EF_STATUS_INIT;
  char fp[65] = ""; /* a document that did not parse has none */
  if (ef_job_parse(payload, len, &e->limits, &job, &parsed) == EF_OK) ef_job_fingerprint(&job, fp);
  ef_job_facts f = facts(d, job.job_id, false);
  if (settle(e, d, ef_job_decide(&job, &parsed, &f, &st), &job, fp, &st)) return;
  if (d->has_waiting && strcmp(d->waiting.job_id, job.job_id) != 0) {
    char old_fp[65], why[EF_JOB_ID_MAX + 48];
    ef_job_fingerprint(&d->waiting, old_fp);
    snprintf(why, sizeof why, "replaced by job %s while it waited", job.job_id);
    e->canceled++;
    report_final(e, d, d->waiting.job_id, old_fp, EF_STATE_CANCELED, EF_ERR_JOB_REPLACED, why, 0,
                 REPORT_RECORD);
  }
  d->waiting = job;
  d->has_waiting = true;
  if (!d->running) start_waiting(e, d);
}

static void on_cancel(emu *e, device *d, const char *payload, size_t len) {
  char id[EF_JOB_ID_MAX + 1];
  char fp[65];
  if (ef_cancel_parse(payload, len, id, NULL) != EF_OK) return;
  if (d->running && strcmp(id, d->job.job_id) == 0) {
    /* From activating on OTA end was sent: the job runs to its end. */
    if (d->state.state != EF_STATE_DOWNLOADING && d->state.state != EF_STATE_VERIFYING) return;
    d->running = false;
    ef_job_fingerprint(&d->job, fp);
    e->canceled++;
    report_final(e, d, d->job.job_id, fp, EF_STATE_CANCELED, EF_OK, "canceled", 1, REPORT_RECORD);
    if (d->has_waiting) start_waiting(e, d);
  } else if (d->has_waiting && strcmp(id, d->waiting.job_id) == 0) {
    d->has_waiting = false;
    ef_job_fingerprint(&d->waiting, fp);
    e->canceled++;
    report_final(e, d, d->waiting.job_id, fp, EF_STATE_CANCELED, EF_OK, "canceled while waiting", 0,
                 REPORT_RECORD);
  }
}

static void on_announce(emu *e, device *d, const char *payload, size_t len) {
  ef_announce a;
  if (ef_announce_parse(payload, len, &a, NULL) != EF_OK || a.scope == EF_ANNOUNCE_ROLLOUTS) return;
  d->state.online = true;
  publish_doc(e, d, EF_TOPIC_DEVICE_STATE, NULL, &d->state, true);
  const result *r = a.job_id[0] ? find_result(d, a.job_id) : NULL;
  if (!r) return;
  if (strcmp(r->job_id, d->state.job_id) == 0) {
    publish_doc(e, d, EF_TOPIC_DEVICE_RESULT, r->job_id, &d->state, true);
    return;
  }
  ef_state doc = d->state;
  copy(doc.job_id, sizeof doc.job_id, r->job_id);
  doc.state = r->state;
  doc.error = r->error;
  copy(doc.detail, sizeof doc.detail, r->detail);
  doc.attempt = r->attempt;
  doc.bytes = doc.total = 0;
  doc.ts_ms = r->ts_ms;
  publish_doc(e, d, EF_TOPIC_DEVICE_RESULT, r->job_id, &doc, true);
}

static void on_connect(emu *e, device *d) {
  if (!d->ever_connected) {
    d->ever_connected = true;
    if (++e->connected == e->n) {
      printf("ready %zu\n", e->n);
      fflush(stdout);
    }
  }
  d->state.online = true;
  publish_state(e, d);
}

static void handle(emu *e, const ef_inbox_msg *m) {
  char *end;
  unsigned long long idx = strtoull(m->topic, &end, 10);
  if (end == m->topic || *end != ' ' || idx >= e->n) return;
  device *d = &e->devs[idx];
  const char *topic = end + 1;
  char id[EF_JOB_ID_MAX + 1], sub[EF_JOB_ID_MAX + 1];
  e->messages++;
  if (strcmp(topic, CONNECTED_MARK) == 0) {
    on_connect(e, d);
    return;
  }
  switch (ef_topic_parse(topic, e->prefix, id, sub)) {
  case EF_TOPIC_DEVICE_JOB:
  case EF_TOPIC_GROUP_JOB:
    /* an empty payload clears a retained job: nothing to do */
    if (m->len) on_job(e, d, m->payload, m->len);
    break;
  case EF_TOPIC_DEVICE_CANCEL:
  case EF_TOPIC_GROUP_CANCEL: on_cancel(e, d, m->payload, m->len); break;
  case EF_TOPIC_ANNOUNCE: on_announce(e, d, m->payload, m->len); break;
  default: break;
  }
}

/* ---- the job timer ---- */

static void finish(emu *e, device *d) {
  char fp[65];
  ef_job_fingerprint(&d->job, fp);
  d->running = false;
  if (d->fails) {
    e->failed++;
    report_final(e, d, d->job.job_id, fp, EF_STATE_FAILED, EF_ERR_BOOT_VERIFY_FAILED, FAIL_DETAIL, 1,
                 REPORT_RECORD);
  } else {
    copy(d->state.app.version, sizeof d->state.app.version, d->job.version);
    copy(d->state.app.project, sizeof d->state.app.project, d->job.project);
    copy(d->state.app.sha256_hex, sizeof d->state.app.sha256_hex, d->job.sha256_hex);
    if (d->job.expect_fw_version[0])
      copy(d->state.fw_version, sizeof d->state.fw_version, d->job.expect_fw_version);
    e->succeeded++;
    report_final(e, d, d->job.job_id, fp, EF_STATE_SUCCEEDED, EF_OK, "", 1, REPORT_RECORD);
  }
  if (d->has_waiting) start_waiting(e, d);
}

static void set_state(emu *e, device *d, ef_job_state st) {
  d->state.state = st;
  publish_state(e, d);
}

static void advance(emu *e, device *d) {
  switch (d->phase++) {
  case PH_HALF:
    d->state.bytes = d->job.size / 2;
    publish_progress(e, d, d->state.bytes);
    break;
  case PH_FULL:
    d->state.bytes = d->job.size;
    publish_progress(e, d, d->state.bytes);
    break;
  case PH_VERIFYING: set_state(e, d, EF_STATE_VERIFYING); break;
  case PH_ACTIVATING: set_state(e, d, EF_STATE_ACTIVATING); break;
  case PH_REBOOTING: set_state(e, d, EF_STATE_REBOOTING); break;
  default: finish(e, d); break;
  }
}

static void tick(emu *e, int64_t now) {
  for (size_t i = 0; i < e->n; i++) {
    device *d = &e->devs[i];
    int64_t elapsed = now - d->job_start_ms;
    while (d->running && d->phase < PH__COUNT && elapsed * 1000 >= (int64_t)phase_at[d->phase] * e->job_ms)
      advance(e, d);
  }
}

/* ---- set-up ---- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: " PROGRAM
          " --broker URI [--prefix P] [--count N] [--id-format emu-%%04d] [--group G]\n"
          "       [--fail ID,ID,... | --fail PERCENT%%] [--job-ms MS] [--keepalive S] [--log-level LEVEL]\n"
          "\n"
          "Emulates N espfleetd devices (ids from --id-format with 0..N-1) on one MQTT broker. No\n"
          "download, no flashing: a job walks through its states in --job-ms (default 2000).\n"
          "Prints \"ready N\" when every session connected, and a JSON line of counters at exit\n"
          "(SIGTERM or SIGINT).\n");
}

/* Splits "emu-%04d" into what comes before and after the number and its
 * width, so no format string from the command line reaches printf. */
static bool parse_id_format(const char *fmt, char *pre, char *post, size_t n, int *width, bool *zero) {
  const char *pct = strchr(fmt, '%');
  if (!pct || (size_t)(pct - fmt) >= n) return false;
  const char *p = pct + 1;
  *zero = *p == '0';
  if (*zero) p++;
  char *end;
  long w = strtol(p, &end, 10);
  if (end == p) w = 0;
  if (w < 0 || w > 20 || *end != 'd' || strchr(end + 1, '%') || strlen(end + 1) >= n) return false;
  memcpy(pre, fmt, (size_t)(pct - fmt));
  pre[pct - fmt] = '\0';
  copy(post, n, end + 1);
  *width = (int)w;
  return true;
}

/* --fail: "P%" spreads floor(N*P/100) failing devices evenly; otherwise a
 * comma-separated list of device ids. */
static bool mark_failing(emu *e, const char *spec) {
  size_t len = strlen(spec);
  if (len && spec[len - 1] == '%') {
    char *end;
    long p = strtol(spec, &end, 10);
    if (end == spec || *end != '%' || p < 0 || p > 100) return false;
    for (size_t i = 0; i < e->n; i++) e->devs[i].fails = (i * (size_t)p) / 100 != ((i + 1) * (size_t)p) / 100;
    return true;
  }
  char *list = strdup(spec), *save = NULL;
  bool ok = list != NULL;
  for (char *tok = list ? strtok_r(list, ",", &save) : NULL; ok && tok; tok = strtok_r(NULL, ",", &save)) {
    bool found = false;
    for (size_t i = 0; i < e->n && !found; i++)
      if (strcmp(e->devs[i].id, tok) == 0) found = e->devs[i].fails = true;
    if (!found) {
      fprintf(stderr, PROGRAM ": --fail: no device %s among the %zu emulated\n", tok, e->n);
      ok = false;
    }
  }
  free(list);
  return ok;
}

/* 1000 sessions need 1000 sockets: take the hard limit. */
static void raise_nofile(size_t need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
    ef_warn("open files are limited to %llu, %zu sessions need about %zu: raise ulimit -n",
            (unsigned long long)rl.rlim_cur, need - 64, need);
}

static ef_err start_session(emu *e, device *d, const char *uri, const char *group, int keepalive_s,
                            ef_status *st) {
  char topics[5][EF_TOPIC_MAX], will_topic[EF_TOPIC_MAX];
  ef_mqtt_subscription subs[5];
  char *will = ef_report_offline_json(d->id);
  ef_err err = EF_ERR_NOMEM;
  if (!will) goto out;
  err = EF_ERR_CONFIG;
  if (!ef_topic(topics[0], sizeof topics[0], e->prefix, EF_TOPIC_DEVICE_JOB, d->id, NULL) ||
      !ef_topic(topics[1], sizeof topics[1], e->prefix, EF_TOPIC_DEVICE_CANCEL, d->id, NULL) ||
      !ef_topic(topics[2], sizeof topics[2], e->prefix, EF_TOPIC_GROUP_JOB, group, NULL) ||
      !ef_topic(topics[3], sizeof topics[3], e->prefix, EF_TOPIC_GROUP_CANCEL, group, NULL) ||
      !ef_topic(topics[4], sizeof topics[4], e->prefix, EF_TOPIC_ANNOUNCE, NULL, NULL) ||
      !ef_topic(will_topic, sizeof will_topic, e->prefix, EF_TOPIC_DEVICE_STATE, d->id, NULL)) {
    ef_status_fail(st, err, "prefix '%s' makes topics too long", e->prefix);
    goto out;
  }
  for (size_t i = 0; i < 5; i++) subs[i] = (ef_mqtt_subscription){topics[i], 1};
  ef_mqtt_options o = {
      .uri = uri,
      .client_id = d->id,
      .keepalive_s = keepalive_s,
      .clean_session = false,
      .will_topic = will_topic,
      .will_payload = will,
      .will_qos = 1,
      .will_retain = true,
      .subscriptions = subs,
      .n_subscriptions = 5,
      .on_message = on_message,
      .on_connected = on_connected,
      .arg = d,
  };
  err = ef_mqtt_start(&o, &d->mqtt, st);
out:
  free(will);
  return err;
}

int main(int argc, char **argv) {
  enum { O_BROKER = 256, O_PREFIX, O_COUNT, O_IDFMT, O_GROUP, O_FAIL, O_JOBMS, O_KEEPALIVE, O_LOG };
  static const struct option opts[] = {
      {"broker", required_argument, NULL, O_BROKER},
      {"prefix", required_argument, NULL, O_PREFIX},
      {"count", required_argument, NULL, O_COUNT},
      {"id-format", required_argument, NULL, O_IDFMT},
      {"group", required_argument, NULL, O_GROUP},
      {"fail", required_argument, NULL, O_FAIL},
      {"job-ms", required_argument, NULL, O_JOBMS},
      {"keepalive", required_argument, NULL, O_KEEPALIVE},
      {"log-level", required_argument, NULL, O_LOG},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *broker = NULL, *id_format = "emu-%04d", *group = "bench", *fail = NULL;
  long count = 1, job_ms = 2000, keepalive = 30;
  int level = EF_LOG_WARN, c, status = 2;
  emu e = {.prefix = EF_DEFAULT_TOPIC_PREFIX};
  char pre[EF_JOB_ID_MAX + 1], post[EF_JOB_ID_MAX + 1];
  int width = 0;
  bool zero = false;
  size_t started = 0;
  int64_t next_tick, next_stats;

  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    char *end = NULL;
    switch (c) {
    case O_BROKER: broker = optarg; break;
    case O_PREFIX: e.prefix = optarg; break;
    case O_COUNT: count = strtol(optarg, &end, 10); break;
    case O_IDFMT: id_format = optarg; break;
    case O_GROUP: group = optarg; break;
    case O_FAIL: fail = optarg; break;
    case O_JOBMS: job_ms = strtol(optarg, &end, 10); break;
    case O_KEEPALIVE: keepalive = strtol(optarg, &end, 10); break;
    case O_LOG: level = ef_log_level_parse(optarg); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
    if (end && (*end || end == optarg)) {
      fprintf(stderr, PROGRAM ": not a number: %s\n", optarg);
      return 2;
    }
  }
  if (!broker || optind != argc || count < 1 || count > COUNT_MAX || job_ms < 0 || job_ms > 3600000 ||
      keepalive < 1 || keepalive > 3600 || level < 0 || !ef_id_valid(group) || !e.prefix[0]) {
    usage(stderr);
    return 2;
  }
  if (!parse_id_format(id_format, pre, post, sizeof pre, &width, &zero)) {
    fprintf(stderr, PROGRAM ": --id-format needs exactly one %%d, as in emu-%%04d\n");
    return 2;
  }
  ef_log_set_ident(PROGRAM);
  ef_log_set_level((ef_log_level)level);
  e.n = (size_t)count;
  e.job_ms = (int)job_ms;
  ef_job_limits_default(&e.limits);
  e.devs = calloc(e.n, sizeof *e.devs);
  e.inbox = ef_inbox_new(INBOX_MAX, should_stop);
  if (!e.devs || !e.inbox) {
    fprintf(stderr, PROGRAM ": out of memory\n");
    status = 1;
    goto out;
  }
  for (size_t i = 0; i < e.n; i++) {
    device *d = &e.devs[i];
    d->owner = &e;
    d->index = i;
    int k = zero ? snprintf(d->id, sizeof d->id, "%s%0*zu%s", pre, width, i, post)
                 : snprintf(d->id, sizeof d->id, "%s%*zu%s", pre, width, i, post);
    if (k < 0 || (size_t)k >= sizeof d->id || !ef_id_valid(d->id)) {
      fprintf(stderr, PROGRAM ": --id-format makes '%s', not a device id\n", d->id);
      goto out;
    }
    ef_state_init(&d->state, d->id);
    copy(d->state.groups[0], sizeof d->state.groups[0], group);
    d->state.n_groups = 1;
  }
  if (fail && !mark_failing(&e, fail)) {
    fprintf(stderr, PROGRAM ": --fail wants ID,ID,... or a percentage such as 5%%\n");
    goto out;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  raise_nofile(e.n + 64);

  status = 1;
  for (; started < e.n && !should_stop(); started++) {
    ef_status st = EF_STATUS_INIT;
    if (start_session(&e, &e.devs[started], broker, group, (int)keepalive, &st) != EF_OK) {
      fprintf(stderr, PROGRAM ": %s: cannot start its MQTT session: %s\n", e.devs[started].id, st.detail);
      goto out;
    }
  }
  ef_info("%zu sessions started", started);

  next_tick = ef_mono_ms() + TICK_MS;
  next_stats = ef_mono_ms() + STATS_MS;
  while (!should_stop()) {
    ef_inbox_msg *m;
    /* Messages until the tick is due; a burst never starves the timers. */
    while (ef_mono_ms() < next_tick && (m = ef_inbox_next(e.inbox, next_tick))) {
      handle(&e, m);
      ef_inbox_msg_free(m);
    }
    int64_t now = ef_mono_ms();
    tick(&e, now);
    next_tick = now + TICK_MS;
    if (now >= next_stats) {
      ef_info(
          "%zu of %zu connected; %ld messages in, %ld published; jobs: %ld started, %ld succeeded, %ld "
          "failed",
          e.connected, e.n, e.messages, e.published, e.started, e.succeeded, e.failed);
      next_stats = now + STATS_MS;
    }
  }
  status = 0;
out:
  /* Sessions first: their callbacks feed the inbox until they are stopped.
   * A clean disconnect, so the broker does not publish the wills. */
  for (size_t i = 0; i < started; i++)
    ef_mqtt_stop(e.devs[i].mqtt, ef_mqtt_is_connected(e.devs[i].mqtt) ? 500 : 0);
  if (started)
    printf(
        "{\"devices\":%zu,\"connected\":%zu,\"messages_in\":%ld,\"published\":%ld,\"publish_errors\":%ld,"
        "\"inbox_dropped\":%ld,\"jobs_started\":%ld,\"succeeded\":%ld,\"failed\":%ld,\"canceled\":%ld,"
        "\"repeats\":%ld,\"skipped\":%ld,\"rejected\":%ld}\n",
        e.n, e.connected, e.messages, e.published, e.publish_errors, e.inbox ? ef_inbox_dropped(e.inbox) : 0,
        e.started, e.succeeded, e.failed, e.canceled, e.repeats, e.skipped, e.rejected);
  if (e.inbox) ef_inbox_free(e.inbox);
  free(e.devs);
  return status;
}
