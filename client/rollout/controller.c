/*
 * espfleet-controller's loop (controller.h). One thread: take a batch of
 * messages, let the engine tick, save every change in one transaction, then
 * publish. docs/rollouts.md describes the behaviour; this file is its
 * plumbing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/clock.h"
#include "espfleet/controller.h"
#include "espfleet/inbox.h"
#include "espfleet/log.h"
#include "espfleet/protocol.h"
#include "espfleet/rollout.h"
#include "espfleet/store.h"

/* Messages taken before the engine ticks and the batch is saved: large
 * enough that a burst of states costs one transaction, small enough that a
 * tick is never late by much. */
#define BATCH_MAX    500
#define BATCH_MS     100
#define INBOX_MAX    100000
#define STATUS_MS    1000 /* a rollout's status at most once a second (a change of state at once) */
#define MAX_ROLLOUTS 256
#define MAX_UNACKED  200000 /* publishes in flight: a few per device of the largest fleet we plan for */

typedef struct {
  ef_rollout_spec spec;
  char *doc;
  ef_rollout_run run;
  ef_rollout_device *devs;
  size_t n;
  size_t *by_id; /* indices of devs sorted by device_id */
  bool status_due;
  /* Deletion in three stages, so that a controller killed half way has
   * either not deleted yet or already cleared what devices could act on: the
   * abort (with clear_jobs) is saved first like any abort; then the cleared
   * documents are published; once the broker acknowledged them the row
   * goes from the store. */
  bool deleted;          /* its document was cleared */
  bool delete_published; /* the cleared jobs, results and status are queued */
  bool delete_done;      /* ... and acknowledged: remove it at the next save */
  char *next_doc;        /* a new document for the id that came while it was being deleted */
  size_t next_len;
  ef_rollout_state published_state;
  int published_step;
  int64_t status_ms;
} rollout;

typedef struct {
  ef_store_device d;
  bool dirty;
} known_device;

struct ef_controller {
  ef_controller_config cfg;
  ef_store *store;
  ef_mqtt *mqtt;
  ef_inbox *inbox;
  rollout *rollouts[MAX_ROLLOUTS];
  size_t n_rollouts;
  known_device *known; /* sorted by device_id */
  size_t n_known, cap_known;
  ef_store_history *history; /* lines heard since the last save */
  size_t n_history, cap_history;
  atomic_bool connected_flag; /* set by the MQTT thread on every (re)connection */
  int64_t connected_ms;       /* the first connection; 0 before */
  long dropped_seen;          /* the inbox's dropped count when last looked at */
  ef_controller_observer observer;
  void *observer_arg;
  /* ef_controller_publish from other threads: the session while it runs,
   * under session_lock so that it is never stopped under a publish */
  pthread_mutex_t session_lock;
  ef_mqtt *session;
  bool (*stop)(void);
};

/* ---- known devices ---- */

static int cmp_known(const void *key, const void *elem) {
  return strcmp(key, ((const known_device *)elem)->d.device_id);
}

static known_device *find_known(ef_controller *c, const char *id) {
  if (!c->n_known) return NULL; /* bsearch's array must not be NULL, even when empty */
  return bsearch(id, c->known, c->n_known, sizeof *c->known, cmp_known);
}

static known_device *add_known(ef_controller *c, const char *id) {
  known_device *k = find_known(c, id);
  if (k) return k;
  if (c->n_known == c->cap_known) {
    size_t cap = c->cap_known ? c->cap_known * 2 : 256;
    known_device *grown = realloc(c->known, cap * sizeof *grown);
    if (!grown) return NULL;
    c->known = grown;
    c->cap_known = cap;
  }
  size_t i = 0;
  while (i < c->n_known && strcmp(c->known[i].d.device_id, id) < 0) i++;
  memmove(&c->known[i + 1], &c->known[i], (c->n_known - i) * sizeof *c->known);
  memset(&c->known[i], 0, sizeof c->known[i]);
  snprintf(c->known[i].d.device_id, sizeof c->known[i].d.device_id, "%s", id);
  c->n_known++;
  return &c->known[i];
}

static void load_known(void *arg, const ef_store_device *d) {
  ef_controller *c = arg;
  known_device *k = add_known(c, d->device_id);
  if (k) k->d = *d;
}

/* ---- rollouts in memory ---- */

static const rollout *sort_target;
static int cmp_dev_index(const void *x, const void *y) {
  return strcmp(sort_target->devs[*(const size_t *)x].device_id,
                sort_target->devs[*(const size_t *)y].device_id);
}

static bool index_devices(rollout *r) {
  free(r->by_id);
  r->by_id = r->n ? malloc(r->n * sizeof *r->by_id) : NULL;
  if (r->n && !r->by_id) return false;
  for (size_t i = 0; i < r->n; i++) r->by_id[i] = i;
  sort_target = r; /* one thread: qsort has no argument for it */
  if (r->n) qsort(r->by_id, r->n, sizeof *r->by_id, cmp_dev_index); /* never qsort(NULL, 0, ...) */
  return true;
}

static ef_rollout_device *find_device(rollout *r, const char *id) {
  size_t lo = 0, hi = r->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(id, r->devs[r->by_id[mid]].device_id);
    if (c == 0) return &r->devs[r->by_id[mid]];
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

static void rollout_free(rollout *r) {
  if (!r) return;
  ef_rollout_spec_free(&r->spec);
  free(r->doc);
  free(r->next_doc);
  free(r->devs);
  free(r->by_id);
  free(r);
}

static rollout *find_rollout(ef_controller *c, const char *id) {
  for (size_t i = 0; i < c->n_rollouts; i++)
    if (strcmp(c->rollouts[i]->spec.rollout_id, id) == 0) return c->rollouts[i];
  return NULL;
}

/* Builds a rollout from its document; the run and rows are the caller's. */
static rollout *rollout_new(const char *doc, size_t len, ef_status *st) {
  rollout *r = calloc(1, sizeof *r);
  if (!r) {
    ef_status_fail(st, EF_ERR_NOMEM, "out of memory");
    return NULL;
  }
  r->doc = malloc(len + 1);
  if (!r->doc) {
    ef_status_fail(st, EF_ERR_NOMEM, "out of memory");
    free(r);
    return NULL;
  }
  memcpy(r->doc, doc, len);
  r->doc[len] = '\0';
  if (ef_rollout_spec_parse(doc, len, &r->spec, st) != EF_OK) {
    free(r->doc);
    free(r);
    return NULL;
  }
  r->status_due = true;
  r->published_state = EF_RS__COUNT;
  r->published_step = -2;
  return r;
}

static void load_rollout(void *arg, const char *id, const char *doc_json, const ef_rollout_run *run,
                         ef_rollout_device *devs, size_t n) {
  ef_controller *c = arg;
  ef_status st = EF_STATUS_INIT;
  rollout *r = c->n_rollouts < MAX_ROLLOUTS ? rollout_new(doc_json, strlen(doc_json), &st) : NULL;
  if (!r) {
    ef_error("rollout %s in the store cannot be resumed: %s", id,
             st.detail[0] ? st.detail : "too many rollouts");
    free(devs);
    return;
  }
  r->run = *run;
  r->devs = devs;
  r->n = n;
  if (!index_devices(r)) {
    rollout_free(r);
    return;
  }
  c->rollouts[c->n_rollouts++] = r;
  ef_info("rollout %s resumed: %s, step %d of %zu", id, ef_rollout_state_name(run->state), run->step + 1,
          r->spec.n_steps);
}

/* ---- publishing ---- */

static void publish(ef_controller *c, ef_topic_kind kind, const char *id, const char *sub,
                    const char *payload, bool retain) {
  char topic[EF_TOPIC_MAX];
  ef_status st = EF_STATUS_INIT;
  if (!ef_topic(topic, sizeof topic, c->cfg.topic_prefix, kind, id, sub)) return;
  if (ef_mqtt_publish(c->mqtt, topic, payload, payload ? strlen(payload) : 0, 1, retain, &st) != EF_OK)
    ef_warn("could not queue a message on %s: %s", topic, st.detail);
}

static void publish_status(ef_controller *c, rollout *r, int64_t now) {
  ef_rollout_status s;
  ef_rollout_status_of(&r->spec, &r->run, r->devs, r->n, now, &s);
  char *json = ef_rollout_status_json(&s);
  if (json) publish(c, EF_TOPIC_ROLLOUT_STATUS, r->spec.rollout_id, NULL, json, true);
  if (json && c->observer)
    c->observer(c->observer_arg, EF_CONTROLLER_ROLLOUT, r->spec.rollout_id, json, strlen(json));
  free(json);
  if (r->published_state != r->run.state)
    ef_info("rollout %s: %s%s%s", r->spec.rollout_id, ef_rollout_state_name(r->run.state),
            r->run.reason[0] ? ": " : "", r->run.reason);
  r->published_state = r->run.state;
  r->published_step = r->run.step;
  r->status_ms = now;
  r->status_due = false;
}

static void publish_rows(ef_controller *c, rollout *r) {
  ef_rollout_device_row *rows = r->n ? calloc(r->n, sizeof *rows) : NULL;
  if (r->n && !rows) return;
  for (size_t i = 0; i < r->n; i++) ef_rollout_row_of(&r->devs[i], &rows[i]);
  /* In parts: a thousand rows in one message would pass brokers' packet limits. */
  int parts = (int)((r->n + EF_ROLLOUT_ROWS_PER_PART - 1) / EF_ROLLOUT_ROWS_PER_PART);
  if (parts == 0) parts = 1;
  for (int p = 0; p < parts; p++) {
    size_t off = (size_t)p * EF_ROLLOUT_ROWS_PER_PART;
    size_t k = r->n - off < EF_ROLLOUT_ROWS_PER_PART ? r->n - off : EF_ROLLOUT_ROWS_PER_PART;
    char *json = ef_rollout_devices_part_json(r->spec.rollout_id, rows ? rows + off : NULL, k, p + 1, parts);
    if (json) publish(c, EF_TOPIC_ROLLOUT_DEVICES, r->spec.rollout_id, NULL, json, false);
    free(json);
  }
  free(rows);
}

/* Carries out the actions the engine recorded (and the store saved): jobs,
 * cancels, cleared jobs. A flag stays set, and saved, until the broker has
 * acknowledged what it asked for (settle_actions): a controller killed
 * while the broker was away sends them again after its restart. Sending
 * twice is harmless, devices take a job_id once. */
static void carry_out(ef_controller *c, rollout *r) {
  char *cancel = ef_cancel_json(r->spec.job.job_id);
  for (size_t i = 0; i < r->n; i++) {
    ef_rollout_device *d = &r->devs[i];
    if (d->queued || (!d->send && !d->cancel)) continue;
    /* Retained: a device that is offline now gets it when it comes back. */
    if (d->send) publish(c, EF_TOPIC_DEVICE_JOB, d->device_id, NULL, r->spec.job_json, true);
    if (d->cancel && cancel) publish(c, EF_TOPIC_DEVICE_CANCEL, d->device_id, NULL, cancel, false);
    d->queued = true;
  }
  if (r->run.clear_jobs && !r->run.clear_queued) {
    for (size_t i = 0; i < r->n; i++)
      if (r->devs[i].step >= 0) publish(c, EF_TOPIC_DEVICE_JOB, r->devs[i].device_id, NULL, "", true);
    r->run.clear_queued = true;
  }
  free(cancel);
}

/* Once the broker acknowledged everything queued so far, the actions
 * carried out are done: their flags are cleared (and saved with the next
 * batch). */
static void settle_actions(ef_controller *c) {
  if (ef_mqtt_flush(c->mqtt, 0, NULL) != EF_OK) return;
  for (size_t k = 0; k < c->n_rollouts; k++) {
    rollout *r = c->rollouts[k];
    for (size_t i = 0; i < r->n; i++) {
      ef_rollout_device *d = &r->devs[i];
      if (!d->queued) continue;
      d->send = d->cancel = d->queued = false;
      d->dirty = true;
    }
    if (r->run.clear_queued) {
      r->run.clear_jobs = r->run.clear_queued = false;
      r->run.dirty = true;
    }
    if (r->delete_published) r->delete_done = true;
  }
}

/* ---- messages ---- */

static void add_history(ef_controller *c, const char *device, const ef_state_view *v) {
  if (c->n_history == c->cap_history) {
    size_t cap = c->cap_history ? c->cap_history * 2 : 256;
    ef_store_history *grown = realloc(c->history, cap * sizeof *grown);
    if (!grown) return;
    c->history = grown;
    c->cap_history = cap;
  }
  ef_store_history *h = &c->history[c->n_history++];
  memset(h, 0, sizeof *h);
  snprintf(h->device_id, sizeof h->device_id, "%s", device);
  snprintf(h->job_id, sizeof h->job_id, "%s", v->job_id);
  snprintf(h->state, sizeof h->state, "%s", v->state_name);
  snprintf(h->error, sizeof h->error, "%s", v->error_detail);
  h->attempt = v->attempt;
  h->ts_ms = v->ts_ms ? v->ts_ms : ef_wall_ms();
  for (size_t i = 0; i < c->n_rollouts; i++) {
    rollout *r = c->rollouts[i];
    if (strcmp(r->spec.job.job_id, v->job_id) == 0 && find_device(r, device))
      snprintf(h->rollout_id, sizeof h->rollout_id, "%s", r->spec.rollout_id);
  }
}

static void on_device_doc(ef_controller *c, ef_topic_kind kind, const char *device, const char *sub,
                          const ef_inbox_msg *m, int64_t now) {
  ef_state_view v;
  if (ef_state_view_parse(m->payload, m->len, &v, NULL) != EF_OK) return;
  /* The topic names the device (the broker's ACL vouches for it), not the document. */
  if (kind == EF_TOPIC_DEVICE_RESULT && strcmp(v.job_id, sub) != 0) return;
  if (kind == EF_TOPIC_DEVICE_STATE) {
    known_device *k = add_known(c, device);
    if (k) {
      if (v.job_id[0] || !v.has_online || v.online) {
        /* the last will carries no groups: keep those a full state said */
        memcpy(k->d.groups, v.groups, sizeof v.groups);
        k->d.n_groups = v.n_groups;
        snprintf(k->d.state, sizeof k->d.state, "%s", v.state_name);
        snprintf(k->d.job_id, sizeof k->d.job_id, "%s", v.job_id);
      }
      k->d.online = !v.has_online || v.online;
      k->d.seen_ms = now;
      k->dirty = true;
    }
  }
  if (v.state_known && ef_state_is_final(v.state) && v.job_id[0]) add_history(c, device, &v);
  for (size_t i = 0; i < c->n_rollouts; i++) {
    rollout *r = c->rollouts[i];
    ef_rollout_device *d = find_device(r, device);
    if (d && ef_rollout_observe(&r->spec, d, &v, now)) r->status_due = true;
  }
}

/* The devices of the target that the controller knows of now, in rollout order. */
static bool resolve_target(ef_controller *c, rollout *r) {
  ef_rollout_device *devs = calloc(r->spec.n_devices + c->n_known + 1, sizeof *devs);
  size_t n = 0;
  if (!devs) return false;
  for (size_t i = 0; i < r->spec.n_devices; i++) {
    snprintf(devs[n].device_id, sizeof devs[n].device_id, "%s", r->spec.devices[i]);
    n++;
  }
  for (size_t k = 0; k < c->n_known; k++) {
    const ef_store_device *d = &c->known[k].d;
    bool member = false;
    for (size_t g = 0; g < d->n_groups && !member; g++)
      for (size_t j = 0; j < r->spec.n_groups && !member; j++)
        member = strcmp(d->groups[g], r->spec.groups[j]) == 0;
    bool listed = false;
    for (size_t i = 0; i < r->spec.n_devices && !listed; i++)
      listed = strcmp(r->spec.devices[i], d->device_id) == 0;
    if (member && !listed) {
      snprintf(devs[n].device_id, sizeof devs[n].device_id, "%s", d->device_id);
      n++;
    }
  }
  ef_rollout_order(&r->spec, devs, n);
  int64_t now = ef_wall_ms();
  for (size_t i = 0; i < n; i++) {
    /* A device never heard of, or last heard offline, is offline from now:
     * the offline timeout starts when its job is sent. */
    known_device *k = find_known(c, devs[i].device_id);
    if (!k || !k->d.online) {
      devs[i].online = false;
      devs[i].offline_since_ms = now;
    }
  }
  free(r->devs);
  r->devs = devs;
  r->n = n;
  return index_devices(r);
}

/* A refused rollout document: its status says why (nothing is stored). */
static void publish_invalid(ef_controller *c, const char *id, const char *why, int64_t now) {
  ef_rollout_status s;
  memset(&s, 0, sizeof s);
  snprintf(s.rollout_id, sizeof s.rollout_id, "%s", id);
  s.state = EF_RS_INVALID;
  s.step = -1;
  snprintf(s.reason, sizeof s.reason, "%s", why);
  s.created_ms = s.updated_ms = now;
  char *json = ef_rollout_status_json(&s);
  if (json) publish(c, EF_TOPIC_ROLLOUT_STATUS, id, NULL, json, true);
  free(json);
  ef_warn("rollout %s refused: %s", id, why);
}

static void on_rollout_doc(ef_controller *c, const char *id, const ef_inbox_msg *m, int64_t now) {
  ef_status st = EF_STATUS_INIT;
  rollout *r = find_rollout(c, id);
  if (m->len == 0) {
    /* The operator cleared the document: the rollout is deleted. */
    if (!r) {
      /* an unknown id: perhaps a refused document, whose status goes too */
      publish(c, EF_TOPIC_ROLLOUT_STATUS, id, NULL, "", true);
      return;
    }
    if (r->deleted) { /* deleted again before a new document was taken up */
      free(r->next_doc);
      r->next_doc = NULL;
      r->next_len = 0;
      return;
    }
    /* jobs not final are canceled: a deleted rollout installs nothing more */
    if (!ef_rollout_state_is_final(r->run.state) &&
        ef_rollout_control(&r->spec, &r->run, r->devs, r->n, EF_ROLLOUT_ABORT, "the rollout was deleted", now,
                           &st) != EF_OK)
      ef_warn("rollout %s: %s", id, st.detail);
    r->deleted = true;
    return;
  }
  if (r && !r->deleted) {
    /* A retained document delivered again (a restart, a reconnect): nothing new. */
    if (strlen(r->doc) != m->len || memcmp(r->doc, m->payload, m->len) != 0)
      ef_warn(
          "rollout %s: a changed document is ignored (rollouts are immutable: delete it and create another)",
          id);
    return;
  }
  if (r) {
    /* Being deleted: the new document is taken up once the old rollout is
     * gone (act puts it back into the inbox), the newest one if several. */
    char *copy = malloc(m->len);
    if (!copy) return;
    memcpy(copy, m->payload, m->len);
    free(r->next_doc);
    r->next_doc = copy;
    r->next_len = m->len;
    return;
  }
  if (c->n_rollouts == MAX_ROLLOUTS) {
    publish_invalid(c, id, "too many rollouts: delete finished ones first", now);
    return;
  }
  r = rollout_new(m->payload, m->len, &st);
  if (!r) {
    publish_invalid(c, id, st.detail, now);
    return;
  }
  if (strcmp(r->spec.rollout_id, id) != 0) {
    publish_invalid(c, id, "rollout_id: differs from the topic's", now);
    rollout_free(r);
    return;
  }
  for (size_t i = 0; i < c->n_rollouts; i++)
    if (strcmp(c->rollouts[i]->spec.job.job_id, r->spec.job.job_id) == 0) {
      char why[200];
      snprintf(why, sizeof why, "job.job_id: job %s belongs to rollout %s already", r->spec.job.job_id,
               c->rollouts[i]->spec.rollout_id);
      publish_invalid(c, id, why, now);
      rollout_free(r);
      return;
    }
  ef_rollout_run_init(&r->run, now);
  c->rollouts[c->n_rollouts++] = r;
  ef_info("rollout %s accepted: job %s, %zu step(s)", id, r->spec.job.job_id, r->spec.n_steps);
}

static void on_control(ef_controller *c, const char *id, const ef_inbox_msg *m, int64_t now) {
  ef_rollout_action action;
  char reason[200];
  ef_status st = EF_STATUS_INIT;
  rollout *r = find_rollout(c, id);
  if (!r || r->deleted) {
    ef_warn("control for unknown rollout %s ignored", id);
    return;
  }
  if (ef_rollout_control_parse(m->payload, m->len, &action, reason, sizeof reason, &st) != EF_OK) {
    ef_warn("rollout %s: control refused: %s", id, st.detail);
    return;
  }
  if (action == EF_ROLLOUT_DEVICES) {
    publish_rows(c, r);
    return;
  }
  if (ef_rollout_control(&r->spec, &r->run, r->devs, r->n, action, reason, now, &st) != EF_OK) {
    ef_warn("rollout %s: %s refused: %s", id, ef_rollout_action_name(action), st.detail);
    r->status_ms = 0; /* say the state again: whoever asked sees it did not change */
  } else {
    ef_info("rollout %s: %s%s%s", id, ef_rollout_action_name(action), reason[0] ? ": " : "", reason);
  }
  r->status_due = true;
}

static void on_announce(ef_controller *c, const ef_inbox_msg *m) {
  ef_announce a;
  if (ef_announce_parse(m->payload, m->len, &a, NULL) != EF_OK || a.scope == EF_ANNOUNCE_DEVICES) return;
  for (size_t i = 0; i < c->n_rollouts; i++) {
    c->rollouts[i]->status_due = true;
    c->rollouts[i]->status_ms = 0;
  }
}

static void handle(ef_controller *c, const ef_inbox_msg *m, int64_t now) {
  char id[EF_JOB_ID_MAX + 1], sub[EF_JOB_ID_MAX + 1];
  ef_topic_kind kind = ef_topic_parse(m->topic, c->cfg.topic_prefix, id, sub);
  switch (kind) {
  case EF_TOPIC_DEVICE_STATE:
    if (c->observer) c->observer(c->observer_arg, EF_CONTROLLER_DEVICE, id, m->payload, m->len);
    on_device_doc(c, kind, id, sub, m, now);
    break;
  case EF_TOPIC_DEVICE_RESULT: on_device_doc(c, kind, id, sub, m, now); break;
  case EF_TOPIC_DEVICE_PROGRESS:
    if (c->observer) c->observer(c->observer_arg, EF_CONTROLLER_PROGRESS, id, m->payload, m->len);
    break;
  case EF_TOPIC_ROLLOUT: on_rollout_doc(c, id, m, now); break;
  case EF_TOPIC_ROLLOUT_CONTROL: on_control(c, id, m, now); break;
  case EF_TOPIC_ANNOUNCE: on_announce(c, m); break;
  default: break;
  }
}

/* ---- the loop ---- */

/* After each (re)connection: ask devices what they know (the retained
 * documents may be missing on this broker node), and say every status again. */
static void on_each_connection(ef_controller *c, int64_t now) {
  ef_announce a = {.scope = EF_ANNOUNCE_DEVICES};
  size_t asked = 0;
  for (size_t i = 0; i < c->n_rollouts; i++) {
    rollout *r = c->rollouts[i];
    r->status_due = true;
    r->status_ms = 0;
    if (ef_rollout_state_is_final(r->run.state)) continue;
    /* with the job: devices also say their result of it, if they moved on */
    snprintf(a.job_id, sizeof a.job_id, "%s", r->spec.job.job_id);
    char *json = ef_announce_json(&a);
    if (json) publish(c, EF_TOPIC_ANNOUNCE, NULL, NULL, json, false);
    free(json);
    asked++;
  }
  if (!asked) {
    a.job_id[0] = '\0';
    char *json = ef_announce_json(&a);
    if (json) publish(c, EF_TOPIC_ANNOUNCE, NULL, NULL, json, false);
    free(json);
  }
  if (!c->connected_ms) c->connected_ms = now;
}

static void tick_all(ef_controller *c, int64_t now) {
  bool discovered = c->connected_ms && now - c->connected_ms >= (int64_t)c->cfg.discovery_s * 1000;
  for (size_t i = 0; i < c->n_rollouts; i++) {
    rollout *r = c->rollouts[i];
    if (r->deleted) continue;
    if (r->run.state == EF_RS_PENDING && discovered && resolve_target(c, r) &&
        ef_rollout_begin(&r->spec, &r->run, r->n, now))
      ef_info("rollout %s started over %zu device(s)", r->spec.rollout_id, r->n);
    if (ef_rollout_tick(&r->spec, &r->run, r->devs, r->n, now) || r->run.dirty) r->status_due = true;
  }
}

/* Saves everything that changed in one transaction. */
static ef_err save(ef_controller *c, ef_status *st) {
  ef_err err = ef_store_begin(c->store, st);
  if (err != EF_OK) return err;
  for (size_t i = 0; i < c->n_rollouts && err == EF_OK; i++) {
    rollout *r = c->rollouts[i];
    if (r->delete_done) {
      err = ef_store_delete_rollout(c->store, r->spec.rollout_id, st);
      continue;
    }
    if (r->run.dirty) err = ef_store_put_rollout(c->store, r->spec.rollout_id, r->doc, &r->run, st);
    if (err == EF_OK) err = ef_store_put_devices(c->store, r->spec.rollout_id, r->devs, r->n, false, st);
  }
  for (size_t i = 0; i < c->n_known && err == EF_OK; i++)
    if (c->known[i].dirty) {
      err = ef_store_put_device(c->store, &c->known[i].d, st);
      c->known[i].dirty = false;
    }
  for (size_t i = 0; i < c->n_history && err == EF_OK; i++)
    err = ef_store_add_history(c->store, &c->history[i], st);
  c->n_history = 0;
  if (err != EF_OK) {
    ef_store_rollback(c->store);
    return err;
  }
  return ef_store_commit(c->store, st);
}

/* What the saved decisions say to do, now that they are durable. */
static void act(ef_controller *c, int64_t now) {
  for (size_t i = 0; i < c->n_rollouts;) {
    rollout *r = c->rollouts[i];
    if (r->delete_done) {
      ef_info("rollout %s deleted", r->spec.rollout_id);
      char topic[EF_TOPIC_MAX];
      if (r->next_doc &&
          ef_topic(topic, sizeof topic, c->cfg.topic_prefix, EF_TOPIC_ROLLOUT, r->spec.rollout_id, NULL))
        ef_inbox_on_message(c->inbox, topic, r->next_doc, r->next_len);
      rollout_free(r);
      c->rollouts[i] = c->rollouts[--c->n_rollouts];
      continue;
    }
    if (r->deleted && !r->delete_published) {
      ef_info("rollout %s deleted: clearing its jobs, results and status", r->spec.rollout_id);
      carry_out(c, r);
      for (size_t k = 0; k < r->n; k++)
        if (r->devs[k].step >= 0) {
          publish(c, EF_TOPIC_DEVICE_JOB, r->devs[k].device_id, NULL, "", true);
          publish(c, EF_TOPIC_DEVICE_RESULT, r->devs[k].device_id, r->spec.job.job_id, "", true);
        }
      publish(c, EF_TOPIC_ROLLOUT_STATUS, r->spec.rollout_id, NULL, "", true);
      if (c->observer) c->observer(c->observer_arg, EF_CONTROLLER_ROLLOUT, r->spec.rollout_id, "", 0);
      r->delete_published = true;
    }
    if (r->deleted) {
      i++;
      continue;
    }
    carry_out(c, r);
    /* a new state or step at once, counts at most once a second */
    if (r->status_due && (r->published_state != r->run.state || r->published_step != r->run.step ||
                          now - r->status_ms >= STATUS_MS))
      publish_status(c, r, now);
    i++;
  }
}

ef_err ef_controller_new(const ef_controller_config *cfg, ef_controller **out, ef_status *st) {
  ef_err err = EF_ERR_NOMEM;
  ef_controller *c = calloc(1, sizeof *c);
  *out = NULL;
  if (!c) return ef_status_fail(st, err, "out of memory");
  c->cfg = *cfg;
  pthread_mutex_init(&c->session_lock, NULL);
  err = ef_store_open(cfg->database, &c->store, st);
  if (err != EF_OK) goto out;
  err = ef_store_load_devices(c->store, load_known, c, st);
  if (err == EF_OK) err = ef_store_load_rollouts(c->store, load_rollout, c, st);
out:
  if (err != EF_OK) {
    ef_controller_free(c);
    c = NULL;
  }
  *out = c;
  return err;
}

static void on_message(void *arg, const char *topic, const void *payload, size_t len) {
  ef_controller *c = arg;
  ef_inbox_on_message(c->inbox, topic, payload, len);
}

static void on_connected(void *arg, bool reconnect) {
  ef_controller *c = arg;
  (void)reconnect;
  atomic_store(&c->connected_flag, true);
  ef_inbox_wake(c->inbox);
}

ef_err ef_controller_run(ef_controller *c, bool (*stop)(void), ef_status *st) {
  ef_err err = EF_ERR_NOMEM;
  char topics[6][EF_TOPIC_MAX];
  const char *p = c->cfg.topic_prefix;
  c->stop = stop;
  c->inbox = ef_inbox_new(INBOX_MAX, stop);
  if (!c->inbox) return ef_status_fail(st, err, "out of memory");
  (void)ef_topic(topics[0], sizeof topics[0], p, EF_TOPIC_DEVICE_STATE, "+", NULL);
  (void)ef_topic(topics[1], sizeof topics[1], p, EF_TOPIC_DEVICE_RESULT, "+", "+");
  (void)ef_topic(topics[2], sizeof topics[2], p, EF_TOPIC_ROLLOUT, "+", NULL);
  (void)ef_topic(topics[3], sizeof topics[3], p, EF_TOPIC_ROLLOUT_CONTROL, "+", NULL);
  (void)ef_topic(topics[4], sizeof topics[4], p, EF_TOPIC_ANNOUNCE, NULL, NULL);
  /* progress only for an observer (QoS 0, as devices send it) */
  (void)ef_topic(topics[5], sizeof topics[5], p, EF_TOPIC_DEVICE_PROGRESS, "+", NULL);
  size_t n_subs = c->observer ? 6 : 5;
  ef_mqtt_subscription subs[6];
  for (size_t i = 0; i < n_subs; i++) subs[i] = (ef_mqtt_subscription){topics[i], i == 5 ? 0 : 1};
  ef_mqtt_options o = c->cfg.mqtt;
  o.clean_session = false;
  /* A step may send a job to every device at once: the session must keep
   * them all until acknowledged (its default would drop the oldest). */
  if (o.max_buffered < MAX_UNACKED) o.max_buffered = MAX_UNACKED;
  o.subscriptions = subs;
  o.n_subscriptions = n_subs;
  o.on_message = on_message;
  o.on_connected = on_connected;
  o.on_disconnected = NULL;
  o.arg = c;
  err = ef_mqtt_start(&o, &c->mqtt, st);
  if (err != EF_OK) goto out;
  pthread_mutex_lock(&c->session_lock);
  c->session = c->mqtt;
  pthread_mutex_unlock(&c->session_lock);
  while (!stop()) {
    int64_t now = ef_wall_ms();
    if (atomic_exchange(&c->connected_flag, false)) on_each_connection(c, now);
    int64_t deadline = ef_mono_ms() + c->cfg.tick_ms;
    int64_t batch_end = -1;
    for (size_t k = 0; k < BATCH_MAX && !stop(); k++) {
      ef_inbox_msg *m = ef_inbox_next(c->inbox, batch_end >= 0 ? batch_end : deadline);
      if (!m) break;
      if (batch_end < 0) batch_end = ef_mono_ms() + BATCH_MS;
      handle(c, m, ef_wall_ms());
      ef_inbox_msg_free(m);
    }
    long dropped = ef_inbox_dropped(c->inbox);
    if (dropped != c->dropped_seen) {
      /* Messages were lost: ask the devices again rather than wait for timeouts. */
      ef_error("%ld message(s) dropped: more arrived than the controller could take; asking devices again",
               dropped - c->dropped_seen);
      c->dropped_seen = dropped;
      atomic_store(&c->connected_flag, true);
    }
    now = ef_wall_ms();
    settle_actions(c);
    tick_all(c, now);
    if ((err = save(c, st)) != EF_OK) {
      ef_error("the store failed, stopping rather than act on unsaved decisions: %s", st ? st->detail : "");
      goto out;
    }
    act(c, now);
  }
  err = save(c, st);
out:
  pthread_mutex_lock(&c->session_lock);
  c->session = NULL;
  pthread_mutex_unlock(&c->session_lock);
  if (c->mqtt) ef_mqtt_stop(c->mqtt, 3000);
  c->mqtt = NULL;
  return err;
}

void ef_controller_set_observer(ef_controller *c, ef_controller_observer cb, void *arg) {
  c->observer = cb;
  c->observer_arg = arg;
}

ef_err ef_controller_publish(ef_controller *c, const char *topic, const char *payload, size_t len,
                             bool retain, ef_status *st) {
  ef_err err;
  /* ef_mqtt_publish never waits for the network: holding the lock is brief */
  pthread_mutex_lock(&c->session_lock);
  if (!c->session)
    err = ef_status_fail(st, EF_ERR_MQTT, "the controller is not running");
  else
    err = ef_mqtt_publish(c->session, topic, payload, len, 1, retain, st);
  pthread_mutex_unlock(&c->session_lock);
  return err;
}

const char *ef_controller_prefix(const ef_controller *c) { return c->cfg.topic_prefix; }

void ef_controller_free(ef_controller *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n_rollouts; i++) rollout_free(c->rollouts[i]);
  ef_store_close(c->store);
  ef_inbox_free(c->inbox);
  free(c->known);
  free(c->history);
  pthread_mutex_destroy(&c->session_lock);
  free(c);
}
