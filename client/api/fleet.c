/*
 * The devices the API knows of: first those of the store, then every state
 * and progress document the controller hears (its observer). Kept in
 * memory, sorted by id, under the API's lock: the observer runs on the
 * controller's thread and must stay short (a parse outside the lock, then a
 * binary search, a copy and an event), and a request holds it only while
 * it writes out the devices it answers with.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_internal.h"
#include "espfleet/clock.h"
#include "espfleet/log.h"

/* History lines a device's page shows. */
#define DEVICE_HISTORY 100

static int cmp_dev(const void *key, const void *elem) {
  return strcmp(key, ((const api_device *)elem)->device_id);
}

api_device *api_device_find(ef_api *a, const char *id) {
  if (!a->n_devs) return NULL; /* bsearch wants an array, even an empty one */
  return bsearch(id, a->devs, a->n_devs, sizeof *a->devs, cmp_dev);
}

/* The entry of @p id, added when new; NULL when out of memory. Under lock. */
static api_device *device_add(ef_api *a, const char *id) {
  api_device *d = api_device_find(a, id);
  if (d) return d;
  if (a->n_devs == a->cap_devs) {
    size_t cap = a->cap_devs ? a->cap_devs * 2 : 64;
    api_device *grown = realloc(a->devs, cap * sizeof *grown);
    if (!grown) return NULL;
    a->devs = grown;
    a->cap_devs = cap;
  }
  size_t lo = 0, hi = a->n_devs;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (strcmp(a->devs[mid].device_id, id) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  memmove(&a->devs[lo + 1], &a->devs[lo], (a->n_devs - lo) * sizeof *a->devs);
  d = &a->devs[lo];
  memset(d, 0, sizeof *d);
  snprintf(d->device_id, sizeof d->device_id, "%s", id);
  a->n_devs++;
  return d;
}

static void load_one(void *arg, const ef_store_device *sd) {
  ef_api *a = arg;
  /* what was heard since the start is newer than the store's */
  if (api_device_find(a, sd->device_id)) return;
  api_device *d = device_add(a, sd->device_id);
  if (!d) return;
  d->online = sd->online;
  snprintf(d->state, sizeof d->state, "%s", sd->state);
  snprintf(d->job_id, sizeof d->job_id, "%s", sd->job_id);
  memcpy(d->groups, sd->groups, sizeof d->groups);
  d->n_groups = sd->n_groups;
  d->updated_ms = sd->seen_ms;
}

void api_devices_ensure(ef_api *a) {
  pthread_mutex_lock(&a->store_lock);
  /* a store that cannot be read yet is tried again at the next request */
  if (a->reader || ef_store_open_reader(a->database, &a->reader, NULL) == EF_OK) {
    if (!a->devices_loaded) api_devices_load(a, a->reader);
  }
  pthread_mutex_unlock(&a->store_lock);
}

void api_devices_load(ef_api *a, ef_store *s) {
  ef_status st = EF_STATUS_INIT;
  pthread_mutex_lock(&a->lock);
  ef_err err = ef_store_load_devices(s, load_one, a, &st);
  pthread_mutex_unlock(&a->lock);
  if (err != EF_OK)
    ef_warn("http: the devices of the store could not be read: %s", st.detail);
  else
    a->devices_loaded = true;
}

/* A state document: the whole entry, except for a last will ("online":
 * false and nothing else), which only says the device went away (as the
 * controller reads it: its last state stays what it was). */
static void take_state(api_device *d, const ef_state_view *v, int64_t now) {
  bool will = v->has_online && !v->online && !v->job_id[0] && !v->state_name[0];
  d->online = !v->has_online || v->online;
  d->updated_ms = v->ts_ms ? v->ts_ms : now;
  if (will) return;
  snprintf(d->state, sizeof d->state, "%s", v->state_name);
  snprintf(d->job_id, sizeof d->job_id, "%s", v->job_id);
  memcpy(d->groups, v->groups, sizeof d->groups);
  d->n_groups = v->n_groups;
  snprintf(d->fw_version, sizeof d->fw_version, "%s", v->fw_version);
  snprintf(d->app_version, sizeof d->app_version, "%s", v->app_version);
  snprintf(d->error_code, sizeof d->error_code, "%s", v->error_code);
  snprintf(d->error_detail, sizeof d->error_detail, "%s", v->error_detail);
  /* a new job's progress starts with its first progress document */
  if (strcmp(d->progress_job, d->job_id) != 0) d->has_progress = false;
}

void api_observe(void *arg, ef_controller_event ev, const char *id, const char *json, size_t len) {
  ef_api *a = arg;
  ef_state_view v;
  if (ev == EF_CONTROLLER_ROLLOUT) {
    char *copy = NULL;
    if (len) {
      copy = malloc(len + 1);
      if (!copy) return;
      memcpy(copy, json, len);
      copy[len] = '\0';
    }
    pthread_mutex_lock(&a->lock);
    (void)api_event_push(a, API_EV_ROLLOUT, id, copy);
    pthread_mutex_unlock(&a->lock);
    return;
  }
  /* parsed (and escaped) before the lock: the lock is held for copies only */
  if (ef_state_view_parse(json, len, &v, NULL) != EF_OK) return;
  int64_t now = ef_wall_ms(), mono = ef_mono_ms();
  pthread_mutex_lock(&a->lock);
  /* a device is known by its state documents; progress only adds numbers */
  api_device *d = ev == EF_CONTROLLER_DEVICE ? device_add(a, id) : api_device_find(a, id);
  if (d && ev == EF_CONTROLLER_DEVICE) {
    take_state(d, &v, now);
    d->device_seq = api_event_push(a, API_EV_DEVICE, id, NULL);
  } else if (d && ev == EF_CONTROLLER_PROGRESS && v.job_id[0]) {
    /* the numbers only: online and updated are the state document's to say */
    bool new_job = !d->has_progress || strcmp(d->progress_job, v.job_id) != 0;
    d->has_progress = true;
    snprintf(d->progress_job, sizeof d->progress_job, "%s", v.job_id);
    d->bytes = v.bytes;
    d->total = v.total;
    d->percent = v.percent < 0 ? 0 : v.percent > 100 ? 100 : v.percent;
    /* one event a second at most per device: the event carries the newest numbers when it is sent */
    if (new_job || v.percent >= 100 || mono - d->progress_event_ms >= API_PROGRESS_EVENT_MS) {
      d->progress_event_ms = mono;
      d->progress_seq = api_event_push(a, API_EV_PROGRESS, id, NULL);
    }
  }
  pthread_mutex_unlock(&a->lock);
}

cJSON *api_device_json(const api_device *d) {
  cJSON *o = cJSON_CreateObject();
  bool ok = o && cJSON_AddStringToObject(o, "device_id", d->device_id) &&
            cJSON_AddBoolToObject(o, "online", d->online) && api_add_str_or_null(o, "state", d->state) &&
            api_add_str_or_null(o, "job_id", d->job_id);
  cJSON *groups = ok ? cJSON_AddArrayToObject(o, "groups") : NULL;
  ok = ok && groups;
  for (size_t i = 0; ok && i < d->n_groups; i++) {
    cJSON *g = cJSON_CreateString(d->groups[i]);
    ok = g && cJSON_AddItemToArray(groups, g);
    if (!ok) cJSON_Delete(g);
  }
  ok = ok && api_add_str_or_null(o, "fw_version", d->fw_version) &&
       api_add_str_or_null(o, "app_version", d->app_version);
  if (ok && (d->error_code[0] || d->error_detail[0])) {
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    ok = e && cJSON_AddStringToObject(e, "code", d->error_code) &&
         cJSON_AddStringToObject(e, "detail", d->error_detail);
  } else if (ok) {
    ok = cJSON_AddNullToObject(o, "error") != NULL;
  }
  /* progress belongs to a download that runs: afterwards the state says how it ended */
  if (ok && d->has_progress && strcmp(d->state, "downloading") == 0 &&
      strcmp(d->progress_job, d->job_id) == 0) {
    cJSON *p = cJSON_AddObjectToObject(o, "progress");
    ok = p && cJSON_AddStringToObject(p, "job_id", d->progress_job) &&
         cJSON_AddNumberToObject(p, "bytes", (double)d->bytes) &&
         cJSON_AddNumberToObject(p, "total", (double)d->total) &&
         cJSON_AddNumberToObject(p, "percent", d->percent);
  } else if (ok) {
    ok = cJSON_AddNullToObject(o, "progress") != NULL;
  }
  ok = ok && api_add_time(o, "updated", d->updated_ms);
  if (!ok) {
    cJSON_Delete(o);
    o = NULL;
  }
  return o;
}

/* The state a device counts under: "offline" for one that is away, whatever it did last. */
static const char *count_state(const api_device *d) {
  if (!d->online) return "offline";
  return d->state[0] ? d->state : "unknown";
}

static bool has_group(const api_device *d, const char *g) {
  for (size_t i = 0; i < d->n_groups; i++)
    if (strcmp(d->groups[i], g) == 0) return true;
  return false;
}

/* Case-insensitive substring of the device id. */
static bool id_contains(const char *id, const char *q) {
  size_t n = strlen(q);
  for (const char *p = id; *p; p++)
    if (strncasecmp(p, q, n) == 0) return true;
  return n == 0;
}

enum MHD_Result api_get_devices(const api_req *r) {
  ef_api *a = r->a;
  const char *state = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "state");
  const char *group = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "group");
  const char *job = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "job");
  const char *q = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "q");
  api_devices_ensure(a);
  cJSON *o = cJSON_CreateObject();
  cJSON *list = o ? cJSON_AddArrayToObject(o, "devices") : NULL;
  cJSON *counts = list ? cJSON_AddObjectToObject(o, "counts") : NULL;
  bool ok = counts != NULL;
  pthread_mutex_lock(&a->lock);
  size_t total = a->n_devs;
  for (size_t i = 0; ok && i < a->n_devs; i++) {
    const api_device *d = &a->devs[i];
    const char *cs = count_state(d);
    cJSON *c = cJSON_GetObjectItemCaseSensitive(counts, cs);
    if (c)
      cJSON_SetNumberValue(c, c->valuedouble + 1);
    else
      ok = cJSON_AddNumberToObject(counts, cs, 1) != NULL;
    if (state && state[0] && strcmp(state, cs) != 0) continue;
    if (group && group[0] && !has_group(d, group)) continue;
    if (job && job[0] && strcmp(job, d->job_id) != 0) continue;
    if (q && !id_contains(d->device_id, q)) continue;
    cJSON *dj = api_device_json(d);
    ok = dj && cJSON_AddItemToArray(list, dj);
    if (!ok) cJSON_Delete(dj);
  }
  pthread_mutex_unlock(&a->lock);
  ok = ok && cJSON_AddNumberToObject(o, "total", (double)total);
  if (!ok) {
    cJSON_Delete(o);
    return api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
  }
  return api_reply_json(r, MHD_HTTP_OK, o);
}

typedef struct {
  ef_store_history lines[DEVICE_HISTORY];
  size_t n, next; /* a ring of the newest lines */
} history_tail;

static void keep_line(void *arg, const ef_store_history *h) {
  history_tail *t = arg;
  t->lines[t->next] = *h;
  t->next = (t->next + 1) % DEVICE_HISTORY;
  if (t->n < DEVICE_HISTORY) t->n++;
}

enum MHD_Result api_get_device(const api_req *r, const char *id) {
  ef_api *a = r->a;
  enum MHD_Result res = MHD_NO;
  ef_status st = EF_STATUS_INIT;
  history_tail *tail = calloc(1, sizeof *tail);
  cJSON *o = NULL;
  if (!tail) return api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
  ef_store *s = api_store_get(r, &res);
  if (!s) goto out;
  ef_err err = ef_store_query_history(s, id, NULL, 0, keep_line, tail, &st);
  api_store_put(a);
  if (err != EF_OK) {
    res = api_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "the history cannot be read: %s",
                          st.detail);
    goto out;
  }
  pthread_mutex_lock(&a->lock);
  const api_device *d = api_device_find(a, id);
  o = d ? api_device_json(d) : NULL;
  pthread_mutex_unlock(&a->lock);
  if (!d) {
    res = api_reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no device %s is known", id);
    goto out;
  }
  cJSON *hist = o ? cJSON_AddArrayToObject(o, "history") : NULL;
  bool ok = hist != NULL;
  /* newest first */
  for (size_t k = 0; ok && k < tail->n; k++) {
    const ef_store_history *h = &tail->lines[(tail->next + DEVICE_HISTORY - 1 - k) % DEVICE_HISTORY];
    cJSON *line = cJSON_CreateObject();
    ok = line && cJSON_AddItemToArray(hist, line);
    if (!ok) {
      cJSON_Delete(line);
      break;
    }
    ok = cJSON_AddStringToObject(line, "job_id", h->job_id) &&
         api_add_str_or_null(line, "rollout_id", h->rollout_id) &&
         cJSON_AddStringToObject(line, "state", h->state) && api_add_str_or_null(line, "error", h->error) &&
         cJSON_AddNumberToObject(line, "attempt", h->attempt) && api_add_time(line, "ts", h->ts_ms);
  }
  res = api_reply_built(r, MHD_HTTP_OK, o, ok);
  o = NULL;
out:
  cJSON_Delete(o);
  free(tail);
  return res;
}
