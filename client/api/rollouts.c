/*
 * Rollouts, jobs and the operator's actions over HTTP (docs/api.md).
 *
 * What is shown comes from the store, read beside the controller (fresh
 * within one controller tick); what is asked for is published on the
 * broker through the controller's own session, exactly the documents the
 * console publishes (docs/rollouts.md), so the controller decides and
 * records it in its loop like any other request. The API checks what it
 * can before publishing (the rollout document with the controller's own
 * parser, an id already taken) so that the caller gets the answer, not a
 * status saying "invalid" later.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "espfleet/clock.h"
#include "espfleet/hex.h"
#include "espfleet/log.h"
#include "espfleet/release.h"
#include "espfleet/rollout.h"
#include "espfleet/rollout_doc.h"

/* Longest reason an operator may give (the controller keeps 200 bytes of it). */
#define REASON_MAX 200

/* ---- reading rollouts from the store ---- */

/* What a pass over the stored rollouts collects. */
typedef struct {
  const char *want;   /* one rollout (its id), or NULL for the list */
  const char *job_id; /* a job id to look for among the rollouts' jobs */
  cJSON *list;        /* the list: statuses */
  bool ok;
  int64_t now;
  /* the one rollout */
  bool found;
  char *doc;
  ef_rollout_run run;
  ef_rollout_device *devs;
  size_t n;
  /* the rollout that holds job_id */
  char job_owner[EF_JOB_ID_MAX + 1];
} collect;

/* The status document of a stored rollout, as the controller publishes it. */
static char *status_json(const ef_rollout_spec *spec, const ef_rollout_run *run,
                         const ef_rollout_device *devs, size_t n, int64_t now) {
  ef_rollout_status s;
  ef_rollout_status_of(spec, run, devs, n, now, &s);
  return ef_rollout_status_json(&s);
}

static void collect_one(void *arg, const char *id, const char *doc_json, const ef_rollout_run *run,
                        ef_rollout_device *devs, size_t n) {
  collect *c = arg;
  ef_rollout_spec spec;
  ef_status st = EF_STATUS_INIT;
  bool parsed = false;
  if (c->want) {
    if (strcmp(id, c->want) == 0 && !c->found) {
      c->found = true;
      c->doc = strdup(doc_json);
      c->ok = c->ok && c->doc;
      c->run = *run;
      c->devs = devs; /* taken */
      c->n = n;
      devs = NULL;
    }
  }
  if (c->job_id || c->list) {
    parsed = ef_rollout_spec_parse(doc_json, strlen(doc_json), &spec, &st) == EF_OK;
    if (!parsed) ef_warn("http: stored rollout %s does not parse: %s", id, st.detail);
  }
  if (parsed && c->job_id && strcmp(spec.job.job_id, c->job_id) == 0)
    snprintf(c->job_owner, sizeof c->job_owner, "%s", id);
  if (parsed && c->list) {
    char *text = status_json(&spec, run, devs, n, c->now);
    cJSON *s = text ? cJSON_Parse(text) : NULL;
    free(text);
    c->ok = c->ok && s && cJSON_AddItemToArray(c->list, s);
    if (!c->ok) cJSON_Delete(s);
  }
  if (parsed) ef_rollout_spec_free(&spec);
  free(devs);
}

/* Runs a pass over the stored rollouts; false with an answer queued (*res). */
static bool load(const api_req *r, collect *c, enum MHD_Result *res) {
  ef_status st = EF_STATUS_INIT;
  ef_store *s = api_store_get(r, res);
  if (!s) return false;
  c->ok = true;
  c->now = ef_wall_ms();
  ef_err err = ef_store_load_rollouts(s, collect_one, c, &st);
  api_store_put(r->a);
  if (err != EF_OK) {
    *res = api_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "the rollouts cannot be read: %s",
                           st.detail);
    return false;
  }
  if (!c->ok) {
    *res = api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    return false;
  }
  return true;
}

static void collect_free(collect *c) {
  free(c->doc);
  free(c->devs);
}

enum MHD_Result api_get_rollouts(const api_req *r) {
  enum MHD_Result res = MHD_NO;
  collect c = {0};
  cJSON *o = cJSON_CreateObject();
  c.list = o ? cJSON_AddArrayToObject(o, "rollouts") : NULL;
  if (!c.list) {
    cJSON_Delete(o);
    return api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
  }
  if (!load(r, &c, &res)) {
    cJSON_Delete(o);
    return res;
  }
  return api_reply_json(r, MHD_HTTP_OK, o);
}

/* The rows of the devices document (docs/schema/rollout-devices.schema.json), detached. */
static cJSON *device_rows(const char *id, const ef_rollout_device *devs, size_t n) {
  ef_rollout_device_row *rows = n ? calloc(n, sizeof *rows) : NULL;
  cJSON *doc = NULL, *list = NULL;
  if (n && !rows) return NULL;
  for (size_t i = 0; i < n; i++) ef_rollout_row_of(&devs[i], &rows[i]);
  char *text = ef_rollout_devices_json(id, rows, n);
  doc = text ? cJSON_Parse(text) : NULL;
  list = doc ? cJSON_DetachItemFromObjectCaseSensitive(doc, "devices") : NULL;
  cJSON_Delete(doc);
  free(text);
  free(rows);
  return list;
}

enum MHD_Result api_get_rollout(const api_req *r, const char *id) {
  enum MHD_Result res = MHD_NO;
  collect c = {.want = id};
  ef_rollout_spec spec;
  ef_status st = EF_STATUS_INIT;
  bool parsed = false;
  cJSON *o = NULL;
  if (!load(r, &c, &res)) goto out;
  if (!c.found) {
    res = api_reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no rollout %s", id);
    goto out;
  }
  parsed = ef_rollout_spec_parse(c.doc, strlen(c.doc), &spec, &st) == EF_OK;
  if (!parsed) {
    res = api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                          "the stored rollout does not parse: %s", st.detail);
    goto out;
  }
  char *status = status_json(&spec, &c.run, c.devs, c.n, c.now);
  o = cJSON_CreateObject();
  cJSON *s = status ? cJSON_Parse(status) : NULL;
  free(status);
  bool ok = o && s && cJSON_AddItemToObject(o, "status", s);
  if (!ok) cJSON_Delete(s);
  cJSON *doc = ok ? cJSON_Parse(c.doc) : NULL;
  ok = ok && doc && cJSON_AddItemToObject(o, "rollout", doc);
  if (!ok) cJSON_Delete(doc);
  cJSON *rows = ok ? device_rows(id, c.devs, c.n) : NULL;
  ok = ok && rows && cJSON_AddItemToObject(o, "devices", rows);
  if (!ok) cJSON_Delete(rows);
  cJSON *timers = ok ? cJSON_AddObjectToObject(o, "timers") : NULL;
  ok = ok && timers;
  /* when a done step's soak ends and the next step starts (a window may
   * still hold it), or, after the last step, the rollout completes */
  int64_t soak_until = 0;
  if (c.run.step_done_ms && spec.soak_s > 0 && !ef_rollout_state_is_final(c.run.state))
    soak_until = c.run.step_done_ms + spec.soak_s * 1000;
  ok = ok && api_add_time(timers, "step_started", c.run.step >= 0 ? c.run.step_started_ms : 0) &&
       api_add_time(timers, "step_done", c.run.step_done_ms) &&
       api_add_time(timers, "soak_until", soak_until);
  res = api_reply_built(r, MHD_HTTP_OK, o, ok);
  o = NULL;
out:
  if (parsed) ef_rollout_spec_free(&spec);
  cJSON_Delete(o);
  collect_free(&c);
  return res;
}

/* ---- jobs, from the history ---- */

typedef struct {
  ef_store_history *lines;
  size_t n, cap;
  bool ok;
} lines;

static void add_line(void *arg, const ef_store_history *h) {
  lines *l = arg;
  if (!l->ok) return;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    ef_store_history *grown = realloc(l->lines, cap * sizeof *grown);
    if (!grown) {
      l->ok = false;
      return;
    }
    l->lines = grown;
    l->cap = cap;
  }
  l->lines[l->n++] = *h;
}

/* By device, then by time: a device's last line is its newest result. */
static int cmp_line(const void *x, const void *y) {
  const ef_store_history *a = x, *b = y;
  int c = strcmp(a->device_id, b->device_id);
  if (c) return c;
  return (a->ts_ms > b->ts_ms) - (a->ts_ms < b->ts_ms);
}

enum MHD_Result api_get_job(const api_req *r, const char *job_id) {
  enum MHD_Result res = MHD_NO;
  ef_status st = EF_STATUS_INIT;
  lines l = {NULL, 0, 0, true};
  cJSON *o = NULL;
  ef_store *s = api_store_get(r, &res);
  if (!s) return res;
  ef_err err = ef_store_query_history(s, NULL, job_id, 0, add_line, &l, &st);
  api_store_put(r->a);
  if (err != EF_OK) {
    res = api_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "the history cannot be read: %s",
                          st.detail);
    goto out;
  }
  if (!l.ok) {
    res = api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    goto out;
  }
  if (l.n == 0) {
    res =
        api_reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no device reported a result for job %s", job_id);
    goto out;
  }
  /* each device's newest final state: the history keeps each (device, state) once */
  qsort(l.lines, l.n, sizeof *l.lines, cmp_line);
  o = cJSON_CreateObject();
  cJSON *counts = o ? cJSON_CreateObject() : NULL;
  bool ok =
      counts && cJSON_AddStringToObject(o, "job_id", job_id) && cJSON_AddItemToObject(o, "counts", counts);
  if (!ok) cJSON_Delete(counts);
  cJSON *results = ok ? cJSON_AddArrayToObject(o, "results") : NULL;
  ok = ok && results;
  for (size_t i = 0; ok && i < l.n; i++) {
    const ef_store_history *h = &l.lines[i];
    if (i + 1 < l.n && strcmp(l.lines[i + 1].device_id, h->device_id) == 0) continue;
    cJSON *line = cJSON_CreateObject();
    ok = line && cJSON_AddItemToArray(results, line);
    if (!ok) {
      cJSON_Delete(line);
      break;
    }
    ok = cJSON_AddStringToObject(line, "device_id", h->device_id) &&
         cJSON_AddStringToObject(line, "state", h->state) && api_add_str_or_null(line, "error", h->error) &&
         api_add_time(line, "ts", h->ts_ms);
    cJSON *c = cJSON_GetObjectItemCaseSensitive(counts, h->state);
    if (c)
      cJSON_SetNumberValue(c, c->valuedouble + 1);
    else
      ok = ok && cJSON_AddNumberToObject(counts, h->state, 1);
  }
  res = api_reply_built(r, MHD_HTTP_OK, o, ok);
  o = NULL;
out:
  cJSON_Delete(o);
  free(l.lines);
  return res;
}

/* ---- actions ---- */

/* Publishes through the controller's session; false with a 503 queued (*res). */
static bool publish(const api_req *r, ef_topic_kind kind, const char *id, const char *payload, bool retain,
                    enum MHD_Result *res) {
  char topic[EF_TOPIC_MAX];
  ef_status st = EF_STATUS_INIT;
  if (!ef_topic(topic, sizeof topic, r->a->prefix, kind, id, NULL)) {
    *res = api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "no topic for %s", id);
    return false;
  }
  if (ef_controller_publish(r->a->ctl, topic, payload, strlen(payload), retain, &st) != EF_OK) {
    *res = api_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "the broker cannot be reached: %s",
                           st.detail);
    return false;
  }
  return true;
}

/* {"KEY": "VALUE", ...} as the 202 answer. */
static enum MHD_Result accepted(const api_req *r, const char *k1, const char *v1, const char *k2,
                                const char *v2) {
  cJSON *o = cJSON_CreateObject();
  if (o && (!cJSON_AddStringToObject(o, k1, v1) || (k2 && !cJSON_AddStringToObject(o, k2, v2)))) {
    cJSON_Delete(o);
    o = NULL;
  }
  return api_reply_json(r, MHD_HTTP_ACCEPTED, o);
}

/* A string member that must be a valid id; false with a 400 queued (*res). */
static bool get_id(const api_req *r, const cJSON *o, const char *key, bool required, const char **out,
                   enum MHD_Result *res) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  *out = NULL;
  if (!v && !required) return true;
  if (!v || !cJSON_IsString(v) || !ef_id_valid(v->valuestring)) {
    *res = api_reply_error(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                           "%s: must be 1-%d characters of [A-Za-z0-9._:-]", key, EF_JOB_ID_MAX);
    return false;
  }
  *out = v->valuestring;
  return true;
}

/* The job of a signed release (the manifest as `espfleet sign` writes it)
 * at @p url: what it signed is what the job says, as the console builds it. */
static cJSON *job_from_manifest(const api_req *r, const char *job_id, const cJSON *url, const cJSON *manifest,
                                enum MHD_Result *res) {
  ef_status st = EF_STATUS_INIT;
  ef_manifest m;
  ef_job j;
  char *text = NULL, *job_text = NULL;
  cJSON *job = NULL;
  if (!cJSON_IsString(url) || strlen(url->valuestring) > EF_JOB_URL_MAX) {
    *res = api_reply_error(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                           "url: must be a string of at most %d characters", EF_JOB_URL_MAX);
    goto out;
  }
  if (!cJSON_IsObject(manifest)) {
    *res = api_reply_error(r, MHD_HTTP_BAD_REQUEST, "bad_request", "manifest: must be a manifest object");
    goto out;
  }
  text = cJSON_PrintUnformatted(manifest);
  if (!text) {
    *res = api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    goto out;
  }
  if (ef_manifest_parse(text, strlen(text), &m, &st) != EF_OK) {
    *res = api_reply_error(r, MHD_HTTP_BAD_REQUEST, "bad_request", "manifest: %s", st.detail);
    goto out;
  }
  memset(&j, 0, sizeof j);
  j.chip_id = -1;
  j.rollout_percent = -1; /* the steps choose the devices */
  snprintf(j.job_id, sizeof j.job_id, "%s", job_id);
  snprintf(j.url, sizeof j.url, "%s", url->valuestring);
  memcpy(j.sha256_hex, m.rel.sha256_hex, sizeof j.sha256_hex);
  if (ef_hex_to_sha256(m.rel.sha256_hex, j.sha256) != EF_OK) {
    *res = api_reply_error(r, MHD_HTTP_BAD_REQUEST, "bad_request", "manifest: sha256: must be 64 hex digits");
    goto out;
  }
  j.size = m.rel.size;
  snprintf(j.version, sizeof j.version, "%s", m.rel.version);
  snprintf(j.project, sizeof j.project, "%s", m.rel.project);
  snprintf(j.chip, sizeof j.chip, "%s", m.rel.chip);
  snprintf(j.expect_fw_version, sizeof j.expect_fw_version, "%s", m.rel.hosted_release);
  j.driver_update = m.rel.driver_update;
  j.has_release = true;
  snprintf(j.release_key_id, sizeof j.release_key_id, "%s", m.key_id);
  memcpy(j.release_signature, m.sig, sizeof j.release_signature);
  j.secure_version = m.rel.secure_version;
  j.signed_downgrade = m.rel.allow_downgrade;
  job_text = ef_job_to_json(&j);
  job = job_text ? cJSON_Parse(job_text) : NULL;
  if (!job) *res = api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
out:
  free(text);
  free(job_text);
  return job;
}

/* Moves @p key of @p from to @p to when present; false when out of memory. */
static bool move_item(cJSON *from, cJSON *to, const char *key) {
  cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(from, key);
  if (!v) return true;
  if (cJSON_AddItemToObject(to, key, v)) return true;
  cJSON_Delete(v);
  return false;
}

enum MHD_Result api_post_rollout(const api_req *r) {
  static const char *const keys[] = {"rollout_id", "url",   "manifest", "job_id", "job",
                                     "target",     "steps", "policy",   NULL};
  enum MHD_Result res = MHD_NO;
  ef_status st = EF_STATUS_INIT;
  ef_rollout_spec spec;
  bool parsed = false;
  const char *id = NULL, *job_id = NULL;
  char *text = NULL;
  collect c = {0};
  cJSON *doc = NULL, *job = NULL;
  cJSON *body = api_body_object(r, false, &res);
  if (!body) goto out;
  if (!api_check_keys(r, body, keys, &res) || !get_id(r, body, "rollout_id", true, &id, &res) ||
      !get_id(r, body, "job_id", false, &job_id, &res))
    goto out;
  bool has_job = cJSON_HasObjectItem(body, "job");
  bool has_url = cJSON_HasObjectItem(body, "url"), has_manifest = cJSON_HasObjectItem(body, "manifest");
  if (has_job && (has_url || has_manifest || job_id)) {
    res = api_reply_error(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "job: give either a job, or url and manifest (and job_id)");
    goto out;
  }
  if (!has_job && !(has_url && has_manifest)) {
    res = api_reply_error(r, MHD_HTTP_BAD_REQUEST, "bad_request", "url, manifest: both are needed, or a job");
    goto out;
  }
  doc = cJSON_CreateObject();
  if (!doc || !cJSON_AddStringToObject(doc, "rollout_id", id)) {
    res = api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    goto out;
  }
  if (has_job) {
    job = cJSON_DetachItemFromObjectCaseSensitive(body, "job");
  } else {
    job = job_from_manifest(r, job_id ? job_id : id, cJSON_GetObjectItemCaseSensitive(body, "url"),
                            cJSON_GetObjectItemCaseSensitive(body, "manifest"), &res);
    if (!job) goto out;
  }
  bool ok = cJSON_AddItemToObject(doc, "job", job);
  if (!ok) cJSON_Delete(job);
  ok =
      ok && move_item(body, doc, "target") && move_item(body, doc, "steps") && move_item(body, doc, "policy");
  text = ok ? cJSON_PrintUnformatted(doc) : NULL;
  if (!text) {
    res = api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    goto out;
  }
  /* the controller's own parser: what passes here, the controller accepts */
  if (ef_rollout_spec_parse(text, strlen(text), &spec, &st) != EF_OK) {
    res = api_reply_error(r, st.code == EF_ERR_NOMEM ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_BAD_REQUEST,
                          st.code == EF_ERR_NOMEM ? "internal" : "bad_request", "%s", st.detail);
    goto out;
  }
  parsed = true;
  /* Rollouts are immutable (docs/rollouts.md): the controller would ignore
   * a second document under a held id, and refuse a job of another rollout. */
  c.want = id;
  c.job_id = spec.job.job_id;
  if (!load(r, &c, &res)) goto out;
  if (c.found) {
    res = api_reply_error(r, MHD_HTTP_CONFLICT, "conflict",
                          "rollout %s exists: delete it first, or choose another id", id);
    goto out;
  }
  if (c.job_owner[0]) {
    res = api_reply_error(r, MHD_HTTP_CONFLICT, "conflict", "job %s belongs to rollout %s already",
                          spec.job.job_id, c.job_owner);
    goto out;
  }
  /* retained: the controller reads it after a restart too */
  if (!publish(r, EF_TOPIC_ROLLOUT, id, text, true, &res)) goto out;
  ef_info("http: %s created rollout %s (job %s)", r->who->name, id, spec.job.job_id);
  res = accepted(r, "rollout_id", id, NULL, NULL);
out:
  if (parsed) ef_rollout_spec_free(&spec);
  collect_free(&c);
  free(text);
  cJSON_Delete(doc);
  cJSON_Delete(body);
  return res;
}

/* True when the store holds rollout @p id; false with an answer queued (*res). */
static bool rollout_known(const api_req *r, const char *id, enum MHD_Result *res) {
  collect c = {.want = id};
  bool known = load(r, &c, res);
  if (known && !c.found) {
    *res = api_reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no rollout %s", id);
    known = false;
  }
  collect_free(&c);
  return known;
}

enum MHD_Result api_rollout_action(const api_req *r, const char *id, const char *action) {
  static const char *const keys[] = {"reason", NULL};
  enum MHD_Result res = MHD_NO;
  ef_rollout_action act = EF_ROLLOUT_PAUSE;
  const char *reason = NULL;
  char *text = NULL;
  cJSON *body = api_body_object(r, true, &res);
  if (!body || !api_check_keys(r, body, keys, &res)) goto out;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "reason");
  if (v && (!cJSON_IsString(v) || strlen(v->valuestring) > REASON_MAX)) {
    res = api_reply_error(r, MHD_HTTP_BAD_REQUEST, "bad_request",
                          "reason: must be a string of at most %d bytes", REASON_MAX);
    goto out;
  }
  reason = v && v->valuestring[0] ? v->valuestring : NULL;
  if (strcmp(action, "resume") == 0)
    act = EF_ROLLOUT_RESUME;
  else if (strcmp(action, "abort") == 0)
    act = EF_ROLLOUT_ABORT;
  if (!rollout_known(r, id, &res)) goto out;
  text = ef_rollout_control_json(act, reason);
  if (!text) {
    res = api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    goto out;
  }
  /* not retained: an action is for the controller running now (the console's way) */
  if (!publish(r, EF_TOPIC_ROLLOUT_CONTROL, id, text, false, &res)) goto out;
  ef_info("http: %s asked to %s rollout %s", r->who->name, action, id);
  res = accepted(r, "rollout_id", id, "action", action);
out:
  free(text);
  cJSON_Delete(body);
  return res;
}

enum MHD_Result api_delete_rollout(const api_req *r, const char *id) {
  enum MHD_Result res = MHD_NO;
  /* Not checked against the store: the retained document of a refused
   * rollout (never stored) must be removable too, and clearing what is not
   * there does nothing. */
  if (!publish(r, EF_TOPIC_ROLLOUT, id, "", true, &res)) return res;
  ef_info("http: %s deleted rollout %s", r->who->name, id);
  return accepted(r, "rollout_id", id, NULL, NULL);
}

enum MHD_Result api_cancel(const api_req *r, bool group, const char *id) {
  static const char *const keys[] = {"job_id", NULL};
  enum MHD_Result res = MHD_NO;
  const char *job_id = NULL;
  char *text = NULL;
  cJSON *body = api_body_object(r, false, &res);
  if (!body || !api_check_keys(r, body, keys, &res) || !get_id(r, body, "job_id", true, &job_id, &res))
    goto out;
  text = ef_cancel_json(job_id);
  if (!text) {
    res = api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    goto out;
  }
  if (!publish(r, group ? EF_TOPIC_GROUP_CANCEL : EF_TOPIC_DEVICE_CANCEL, id, text, false, &res)) goto out;
  ef_info("http: %s canceled job %s on %s %s", r->who->name, job_id, group ? "group" : "device", id);
  res = accepted(r, group ? "group" : "device_id", id, "job_id", job_id);
out:
  free(text);
  cJSON_Delete(body);
  return res;
}
