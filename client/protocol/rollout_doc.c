/* Rollout, control, status and devices documents (docs/rollouts.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "espfleet/report.h"
#include "espfleet/rollout_doc.h"
#include "espfleet/text.h"

/* ---- reading the rollout document ---- */

/* True when every member of @p obj is one of @p keys (NULL-terminated);
 * otherwise says which one is not, under @p where. */
static bool only_keys(const cJSON *obj, const char *where, const char *const *keys, ef_status *st) {
  const cJSON *m;
  cJSON_ArrayForEach(m, obj) {
    size_t i = 0;
    while (keys[i] && strcmp(keys[i], m->string) != 0) i++;
    if (!keys[i]) {
      char shown[48];
      ef_text_escape(m->string, shown, sizeof shown);
      ef_status_fail(st, EF_ERR_BAD_JOB, "%s%s: unknown key", where, shown);
      return false;
    }
  }
  return true;
}

/* An optional integer member within [min, max]; @p out keeps its default when absent. */
static bool get_int(const cJSON *obj, const char *where, const char *key, int64_t min, int64_t max,
                    int64_t *out, ef_status *st) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!v) return true;
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)min ||
      v->valuedouble > (double)max) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "%s%s: must be an integer %lld..%lld", where, key, (long long)min,
                   (long long)max);
    return false;
  }
  *out = (int64_t)v->valuedouble;
  return true;
}

/* "HH:MM" to minutes after midnight, -1 when it is not one. Each position
 * is checked: sscanf's %u would also take " 9:05" and "+9:05". */
static int hhmm(const cJSON *v) {
  const char *s = cJSON_IsString(v) ? v->valuestring : "";
  if (strlen(s) != 5 || s[2] != ':') return -1;
  for (int i = 0; i < 5; i++)
    if (i != 2 && (s[i] < '0' || s[i] > '9')) return -1;
  int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
  return h > 23 || m > 59 ? -1 : h * 60 + m;
}

/* Reads a list of ids into fixed slots or a malloc'ed array. */
static bool read_ids(const cJSON *arr, const char *where, size_t max, char (*fixed)[EF_JOB_ID_MAX + 1],
                     char (**grown)[EF_JOB_ID_MAX + 1], size_t *n, ef_status *st) {
  if (!cJSON_IsArray(arr)) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "%s: must be an array of ids", where);
    return false;
  }
  size_t count = (size_t)cJSON_GetArraySize(arr);
  if (count > max) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "%s: at most %zu entries (%zu given)", where, max, count);
    return false;
  }
  char(*ids)[EF_JOB_ID_MAX + 1] = fixed;
  if (grown) {
    *grown = count ? calloc(count, sizeof **grown) : NULL;
    if (count && !*grown) {
      ef_status_fail(st, EF_ERR_NOMEM, "%s: out of memory", where);
      return false;
    }
    ids = *grown;
  }
  size_t i = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, arr) {
    if (!cJSON_IsString(v) || !ef_id_valid(v->valuestring)) {
      ef_status_fail(st, EF_ERR_BAD_JOB, "%s[%zu]: must be 1-64 characters of [A-Za-z0-9._:-]", where, i);
      return false;
    }
    for (size_t j = 0; j < i; j++)
      if (strcmp(ids[j], v->valuestring) == 0) {
        ef_status_fail(st, EF_ERR_BAD_JOB, "%s[%zu]: %s is listed twice", where, i, v->valuestring);
        return false;
      }
    snprintf(ids[i++], EF_JOB_ID_MAX + 1, "%s", v->valuestring);
  }
  *n = i;
  return true;
}

static bool read_target(const cJSON *target, ef_rollout_spec *s, ef_status *st) {
  static const char *const KEYS[] = {"groups", "devices", NULL};
  if (!cJSON_IsObject(target)) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "target: must be an object with groups and/or devices");
    return false;
  }
  if (!only_keys(target, "target.", KEYS, st)) return false;
  const cJSON *groups = cJSON_GetObjectItemCaseSensitive(target, "groups");
  const cJSON *devices = cJSON_GetObjectItemCaseSensitive(target, "devices");
  if (groups && !read_ids(groups, "target.groups", EF_ROLLOUT_MAX_GROUPS, s->groups, NULL, &s->n_groups, st))
    return false;
  if (devices &&
      !read_ids(devices, "target.devices", EF_ROLLOUT_MAX_DEVICES, NULL, &s->devices, &s->n_devices, st))
    return false;
  if (s->n_groups + s->n_devices == 0) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "target: names no group and no device");
    return false;
  }
  return true;
}

static bool read_step(const cJSON *v, size_t i, ef_rollout_step *out, ef_status *st) {
  static const char *const KEYS[] = {"percent", "count", NULL};
  char where[32];
  snprintf(where, sizeof where, "steps[%zu].", i);
  if (!cJSON_IsObject(v) || !only_keys(v, where, KEYS, st)) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "steps[%zu]: must be {\"percent\": P} or {\"count\": N}", i);
    return false;
  }
  int64_t percent = 0, count = 0;
  if (!get_int(v, where, "percent", 1, 100, &percent, st) ||
      !get_int(v, where, "count", 1, 1000000, &count, st))
    return false;
  if ((percent != 0) == (count != 0)) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "steps[%zu]: needs exactly one of percent and count", i);
    return false;
  }
  out->percent = (int)percent;
  out->count = (int)count;
  return true;
}

static bool read_steps(const cJSON *steps, ef_rollout_spec *s, ef_status *st) {
  if (!steps) {
    s->steps[0].percent = 100;
    s->n_steps = 1;
    return true;
  }
  int n = cJSON_GetArraySize(steps);
  if (!cJSON_IsArray(steps) || n < 1 || n > EF_ROLLOUT_MAX_STEPS) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "steps: must be an array of 1-%d steps", EF_ROLLOUT_MAX_STEPS);
    return false;
  }
  int last_percent = 0, last_count = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, steps) {
    ef_rollout_step *step = &s->steps[s->n_steps];
    if (!read_step(v, s->n_steps, step, st)) return false;
    /* Steps only widen: a step no wider than one before it would never run. */
    if ((step->percent && step->percent <= last_percent) || (step->count && step->count <= last_count)) {
      ef_status_fail(st, EF_ERR_BAD_JOB, "steps[%zu]: must reach more devices than the steps before it",
                     s->n_steps);
      return false;
    }
    if (step->percent) last_percent = step->percent;
    if (step->count) last_count = step->count;
    s->n_steps++;
  }
  if (s->steps[s->n_steps - 1].percent != 100) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "steps: the last step must be {\"percent\": 100}");
    return false;
  }
  return true;
}

static bool read_windows(const cJSON *arr, ef_rollout_spec *s, ef_status *st) {
  static const char *const KEYS[] = {"start", "end", NULL};
  if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > EF_ROLLOUT_MAX_WINDOWS) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "policy.windows: must be an array of at most %d windows",
                   EF_ROLLOUT_MAX_WINDOWS);
    return false;
  }
  const cJSON *w;
  cJSON_ArrayForEach(w, arr) {
    char where[40];
    snprintf(where, sizeof where, "policy.windows[%zu].", s->n_windows);
    if (!cJSON_IsObject(w) || !only_keys(w, where, KEYS, st)) {
      ef_status_fail(st, EF_ERR_BAD_JOB, "%s: must be {\"start\": \"HH:MM\", \"end\": \"HH:MM\"}", where);
      return false;
    }
    int start = hhmm(cJSON_GetObjectItemCaseSensitive(w, "start"));
    int end = hhmm(cJSON_GetObjectItemCaseSensitive(w, "end"));
    if (start < 0 || end < 0) {
      ef_status_fail(st, EF_ERR_BAD_JOB, "%sstart, end: must be UTC times \"HH:MM\"", where);
      return false;
    }
    s->windows[s->n_windows++] = (ef_rollout_window){start, end};
  }
  return true;
}

static bool read_policy(const cJSON *policy, ef_rollout_spec *s, ef_status *st) {
  static const char *const KEYS[] = {"success_percent",   "abort",   "soak_s", "in_progress_timeout_s",
                                     "offline_timeout_s", "windows", NULL};
  static const char *const ABORT_KEYS[] = {"failure_percent", "min_finished", NULL};
  int64_t success = EF_ROLLOUT_DEFAULT_SUCCESS_PERCENT, abort_pct = EF_ROLLOUT_DEFAULT_ABORT_PERCENT,
          abort_min = EF_ROLLOUT_DEFAULT_ABORT_MIN;
  s->soak_s = EF_ROLLOUT_DEFAULT_SOAK_S;
  s->progress_timeout_s = EF_ROLLOUT_DEFAULT_PROGRESS_TIMEOUT;
  s->offline_timeout_s = EF_ROLLOUT_DEFAULT_OFFLINE_TIMEOUT;
  if (policy) {
    if (!cJSON_IsObject(policy)) {
      ef_status_fail(st, EF_ERR_BAD_JOB, "policy: must be an object");
      return false;
    }
    const cJSON *abort_obj = cJSON_GetObjectItemCaseSensitive(policy, "abort");
    const cJSON *windows = cJSON_GetObjectItemCaseSensitive(policy, "windows");
    if (!only_keys(policy, "policy.", KEYS, st) ||
        !get_int(policy, "policy.", "success_percent", 1, 100, &success, st) ||
        !get_int(policy, "policy.", "soak_s", 0, 30 * 86400, &s->soak_s, st) ||
        !get_int(policy, "policy.", "in_progress_timeout_s", 10, 30 * 86400, &s->progress_timeout_s, st) ||
        !get_int(policy, "policy.", "offline_timeout_s", 10, 30 * 86400, &s->offline_timeout_s, st))
      return false;
    if (abort_obj && (!cJSON_IsObject(abort_obj) || !only_keys(abort_obj, "policy.abort.", ABORT_KEYS, st) ||
                      !get_int(abort_obj, "policy.abort.", "failure_percent", 1, 100, &abort_pct, st) ||
                      !get_int(abort_obj, "policy.abort.", "min_finished", 1, 1000000, &abort_min, st))) {
      ef_status_fail(st, EF_ERR_BAD_JOB,
                     "policy.abort: must be {\"failure_percent\": P, \"min_finished\": N}");
      return false;
    }
    if (windows && !read_windows(windows, s, st)) return false;
  }
  s->success_percent = (int)success;
  s->abort_percent = (int)abort_pct;
  s->abort_min = (int)abort_min;
  return true;
}

/* The embedded job: a job document without rollout.percent (the controller
 * decides who gets it), checked by the devices' own parser. */
static bool read_job(const cJSON *job, ef_rollout_spec *s, ef_status *st) {
  if (!cJSON_IsObject(job)) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "job: must be a job document (docs/protocol.md)");
    return false;
  }
  if (cJSON_GetObjectItemCaseSensitive(job, "rollout")) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "job.rollout: not allowed, the rollout's steps choose the devices");
    return false;
  }
  s->job_json = cJSON_PrintUnformatted(job);
  if (!s->job_json) {
    ef_status_fail(st, EF_ERR_NOMEM, "job: out of memory");
    return false;
  }
  /* Wide limits: each device applies its own (image size, http). */
  ef_job_limits lim;
  ef_job_limits_default(&lim);
  lim.max_image_size = UINT64_MAX;
  lim.allow_http = true;
  ef_status why = EF_STATUS_INIT;
  if (ef_job_parse(s->job_json, strlen(s->job_json), &lim, &s->job, &why) != EF_OK) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "job.%s", why.detail);
    return false;
  }
  return true;
}

ef_err ef_rollout_spec_parse(const char *json, size_t len, ef_rollout_spec *s, ef_status *st) {
  static const char *const KEYS[] = {"rollout_id", "job", "target", "steps", "policy", NULL};
  ef_status why = EF_STATUS_INIT;
  memset(s, 0, sizeof *s);
  cJSON *doc = NULL;
  if (len > EF_ROLLOUT_MAX_PAYLOAD) {
    ef_status_fail(&why, EF_ERR_BAD_JOB, "payload: too large (%zu bytes, at most %d)", len,
                   EF_ROLLOUT_MAX_PAYLOAD);
    goto out;
  }
  doc = len ? cJSON_ParseWithLength(json, len) : NULL;
  if (!cJSON_IsObject(doc)) {
    ef_status_fail(&why, EF_ERR_BAD_JOB, "payload: not a JSON object");
    goto out;
  }
  if (!only_keys(doc, "", KEYS, &why)) goto out;
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "rollout_id");
  if (!cJSON_IsString(id) || !ef_id_valid(id->valuestring)) {
    ef_status_fail(&why, EF_ERR_BAD_JOB, "rollout_id: must be 1-64 characters of [A-Za-z0-9._:-]");
    goto out;
  }
  snprintf(s->rollout_id, sizeof s->rollout_id, "%s", id->valuestring);
  if (!read_job(cJSON_GetObjectItemCaseSensitive(doc, "job"), s, &why) ||
      !read_target(cJSON_GetObjectItemCaseSensitive(doc, "target"), s, &why) ||
      !read_steps(cJSON_GetObjectItemCaseSensitive(doc, "steps"), s, &why) ||
      !read_policy(cJSON_GetObjectItemCaseSensitive(doc, "policy"), s, &why))
    goto out;
out:
  cJSON_Delete(doc);
  if (why.code != EF_OK) {
    ef_rollout_spec_free(s);
    ef_status_copy(st, &why);
  }
  return why.code;
}

void ef_rollout_spec_free(ef_rollout_spec *s) {
  if (!s) return;
  free(s->job_json);
  free(s->devices);
  s->job_json = NULL;
  s->devices = NULL;
  s->n_devices = 0;
}

/* ---- writing the rollout document ---- */

static cJSON *ids_array(const char (*ids)[EF_JOB_ID_MAX + 1], size_t n) {
  cJSON *arr = cJSON_CreateArray();
  for (size_t i = 0; arr && i < n; i++) {
    cJSON *v = cJSON_CreateString(ids[i]);
    if (!v || !cJSON_AddItemToArray(arr, v)) {
      cJSON_Delete(v);
      cJSON_Delete(arr);
      return NULL;
    }
  }
  return arr;
}

static cJSON *policy_object(const ef_rollout_spec *s) {
  cJSON *p = cJSON_CreateObject(), *abort_obj = cJSON_CreateObject(), *windows = cJSON_CreateArray();
  bool ok = p && abort_obj && windows && cJSON_AddNumberToObject(p, "success_percent", s->success_percent) &&
            cJSON_AddNumberToObject(abort_obj, "failure_percent", s->abort_percent) &&
            cJSON_AddNumberToObject(abort_obj, "min_finished", s->abort_min) &&
            cJSON_AddItemToObject(p, "abort", abort_obj);
  if (!ok) goto fail;
  abort_obj = NULL;
  ok = cJSON_AddNumberToObject(p, "soak_s", (double)s->soak_s) &&
       cJSON_AddNumberToObject(p, "in_progress_timeout_s", (double)s->progress_timeout_s) &&
       cJSON_AddNumberToObject(p, "offline_timeout_s", (double)s->offline_timeout_s);
  for (size_t i = 0; ok && i < s->n_windows; i++) {
    char a[24], b[24];
    snprintf(a, sizeof a, "%02d:%02d", s->windows[i].start_min / 60, s->windows[i].start_min % 60);
    snprintf(b, sizeof b, "%02d:%02d", s->windows[i].end_min / 60, s->windows[i].end_min % 60);
    cJSON *w = cJSON_CreateObject();
    if (!w || !cJSON_AddItemToArray(windows, w)) {
      cJSON_Delete(w);
      goto fail;
    }
    ok = cJSON_AddStringToObject(w, "start", a) && cJSON_AddStringToObject(w, "end", b);
  }
  if (!ok || !cJSON_AddItemToObject(p, "windows", windows)) goto fail;
  return p;
fail:
  cJSON_Delete(abort_obj);
  cJSON_Delete(windows);
  cJSON_Delete(p);
  return NULL;
}

char *ef_rollout_spec_json(const ef_rollout_spec *s) {
  char *out = NULL;
  cJSON *doc = cJSON_CreateObject(), *target = cJSON_CreateObject(), *steps = cJSON_CreateArray();
  cJSON *job = s->job_json ? cJSON_Parse(s->job_json) : NULL;
  if (!doc || !target || !steps || !job || !cJSON_AddStringToObject(doc, "rollout_id", s->rollout_id))
    goto out;
  cJSON_AddItemToObject(doc, "job", job);
  job = NULL;
  if (s->n_groups && !cJSON_AddItemToObject(target, "groups", ids_array(s->groups, s->n_groups))) goto out;
  if (s->n_devices && !cJSON_AddItemToObject(target, "devices", ids_array(s->devices, s->n_devices)))
    goto out;
  cJSON_AddItemToObject(doc, "target", target);
  target = NULL;
  for (size_t i = 0; i < s->n_steps; i++) {
    cJSON *step = cJSON_CreateObject();
    if (!step || !cJSON_AddItemToArray(steps, step)) {
      cJSON_Delete(step);
      goto out;
    }
    if (!cJSON_AddNumberToObject(step, s->steps[i].percent ? "percent" : "count",
                                 s->steps[i].percent ? s->steps[i].percent : s->steps[i].count))
      goto out;
  }
  cJSON_AddItemToObject(doc, "steps", steps);
  steps = NULL;
  cJSON *policy = policy_object(s);
  if (!policy || !cJSON_AddItemToObject(doc, "policy", policy)) {
    cJSON_Delete(policy);
    goto out;
  }
  out = cJSON_PrintUnformatted(doc);
out:
  cJSON_Delete(job);
  cJSON_Delete(target);
  cJSON_Delete(steps);
  cJSON_Delete(doc);
  return out;
}

size_t ef_rollout_step_reach(const ef_rollout_spec *s, size_t step, size_t n) {
  size_t reach = 0;
  for (size_t i = 0; i <= step && i < s->n_steps; i++) {
    size_t r = s->steps[i].percent ? (n * (size_t)s->steps[i].percent + 99) / 100 : (size_t)s->steps[i].count;
    if (r > n) r = n;
    if (r > reach) reach = r;
  }
  return reach;
}

bool ef_rollout_in_window(const ef_rollout_spec *s, int64_t now) {
  if (s->n_windows == 0) return true;
  int minute = (int)(((now % 86400) + 86400) % 86400 / 60);
  for (size_t i = 0; i < s->n_windows; i++) {
    const ef_rollout_window *w = &s->windows[i];
    bool inside = w->start_min == w->end_min ||
                  (w->start_min < w->end_min ? minute >= w->start_min && minute < w->end_min
                                             : minute >= w->start_min || minute < w->end_min);
    if (inside) return true;
  }
  return false;
}

/* ---- control ---- */

static const char *const ACTIONS[] = {
    [EF_ROLLOUT_PAUSE] = "pause",
    [EF_ROLLOUT_RESUME] = "resume",
    [EF_ROLLOUT_ABORT] = "abort",
    [EF_ROLLOUT_DEVICES] = "devices",
};
#define N_ACTIONS (sizeof ACTIONS / sizeof ACTIONS[0])

const char *ef_rollout_action_name(ef_rollout_action a) {
  return (size_t)a < N_ACTIONS ? ACTIONS[a] : "unknown";
}

char *ef_rollout_control_json(ef_rollout_action a, const char *reason) {
  cJSON *doc = cJSON_CreateObject();
  char *out = NULL;
  if (doc && cJSON_AddStringToObject(doc, "action", ef_rollout_action_name(a)) &&
      (!reason || !reason[0] || cJSON_AddStringToObject(doc, "reason", reason)))
    out = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  return out;
}

ef_err ef_rollout_control_parse(const char *json, size_t len, ef_rollout_action *out, char *reason, size_t n,
                                ef_status *st) {
  ef_err err = EF_ERR_INVALID_ARG;
  if (n) reason[0] = '\0';
  cJSON *doc = len ? cJSON_ParseWithLength(json, len) : NULL;
  const cJSON *action = cJSON_GetObjectItemCaseSensitive(doc, "action");
  for (size_t i = 0; cJSON_IsString(action) && i < N_ACTIONS; i++)
    if (strcmp(action->valuestring, ACTIONS[i]) == 0) {
      *out = (ef_rollout_action)i;
      err = EF_OK;
    }
  if (err != EF_OK) {
    ef_status_fail(st, err, "action: must be \"pause\", \"resume\", \"abort\" or \"devices\"");
    goto out;
  }
  const cJSON *why = cJSON_GetObjectItemCaseSensitive(doc, "reason");
  if (cJSON_IsString(why) && n) ef_text_escape(why->valuestring, reason, n);
out:
  cJSON_Delete(doc);
  return err;
}

/* ---- status ---- */

static const char *const STATES[] = {
    [EF_RS_PENDING] = "pending", [EF_RS_RUNNING] = "running",     [EF_RS_PAUSED] = "paused",
    [EF_RS_HALTED] = "halted",   [EF_RS_COMPLETED] = "completed", [EF_RS_ABORTED] = "aborted",
    [EF_RS_INVALID] = "invalid",
};

static const char *const DEVICE_STATES[] = {
    [EF_RD_WAITING] = "waiting",     [EF_RD_SENT] = "sent",     [EF_RD_RUNNING] = "running",
    [EF_RD_SUCCEEDED] = "succeeded", [EF_RD_FAILED] = "failed", [EF_RD_TIMED_OUT] = "timed_out",
    [EF_RD_OFFLINE] = "offline",
};

const char *ef_rollout_state_name(ef_rollout_state s) {
  return (size_t)s < EF_RS__COUNT ? STATES[s] : "unknown";
}

ef_err ef_rollout_state_from_name(const char *name, ef_rollout_state *out) {
  for (size_t i = 0; name && i < EF_RS__COUNT; i++)
    if (strcmp(name, STATES[i]) == 0) {
      *out = (ef_rollout_state)i;
      return EF_OK;
    }
  return EF_ERR_INVALID_ARG;
}

bool ef_rollout_state_is_final(ef_rollout_state s) {
  return s == EF_RS_COMPLETED || s == EF_RS_ABORTED || s == EF_RS_INVALID;
}

const char *ef_rollout_device_state_name(ef_rollout_device_state s) {
  return (size_t)s < EF_RD__COUNT ? DEVICE_STATES[s] : "unknown";
}

static ef_rollout_device_state device_state_from_name(const char *name) {
  for (size_t i = 0; i < EF_RD__COUNT; i++)
    if (strcmp(name, DEVICE_STATES[i]) == 0) return (ef_rollout_device_state)i;
  return EF_RD_WAITING;
}

bool ef_rollout_device_state_is_bad(ef_rollout_device_state s) {
  return s == EF_RD_FAILED || s == EF_RD_TIMED_OUT || s == EF_RD_OFFLINE;
}

static bool add_ts(cJSON *doc, const char *key, int64_t ms) {
  char ts[32];
  ef_rfc3339_format(ms, ts);
  return cJSON_AddStringToObject(doc, key, ts) != NULL;
}

char *ef_rollout_status_json(const ef_rollout_status *s) {
  char *out = NULL;
  cJSON *doc = cJSON_CreateObject(), *counts = cJSON_CreateObject();
  bool ok = doc && counts && cJSON_AddStringToObject(doc, "rollout_id", s->rollout_id) &&
            (s->job_id[0] ? cJSON_AddStringToObject(doc, "job_id", s->job_id) != NULL
                          : cJSON_AddNullToObject(doc, "job_id") != NULL) &&
            cJSON_AddStringToObject(doc, "state", ef_rollout_state_name(s->state)) &&
            cJSON_AddNumberToObject(doc, "step", s->step) &&
            cJSON_AddNumberToObject(doc, "steps", s->n_steps) &&
            cJSON_AddNumberToObject(doc, "devices", s->devices) &&
            cJSON_AddNumberToObject(doc, "step_devices", s->step_devices);
  for (size_t i = 0; ok && i < EF_RD__COUNT; i++)
    ok = cJSON_AddNumberToObject(counts, DEVICE_STATES[i], s->counts[i]);
  if (!ok || !cJSON_AddItemToObject(doc, "counts", counts)) goto out;
  counts = NULL;
  ok = (s->reason[0] ? cJSON_AddStringToObject(doc, "reason", s->reason) != NULL
                     : cJSON_AddNullToObject(doc, "reason") != NULL) &&
       add_ts(doc, "created", s->created_ms) && add_ts(doc, "updated", s->updated_ms) &&
       cJSON_AddStringToObject(doc, "controller_version", ESPFLEET_VERSION);
  if (ok) out = cJSON_PrintUnformatted(doc);
out:
  cJSON_Delete(counts);
  cJSON_Delete(doc);
  return out;
}

static int get_count(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsNumber(v) && v->valuedouble >= -1 && v->valuedouble < 1e9 ? v->valueint : 0;
}

static int64_t get_ts(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  time_t t;
  return cJSON_IsString(v) && ef_rfc3339_parse(v->valuestring, &t) == EF_OK ? (int64_t)t * 1000 : 0;
}

static void get_text(const cJSON *obj, const char *key, char *out, size_t n) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  ef_text_escape(cJSON_IsString(v) ? v->valuestring : "", out, n);
}

ef_err ef_rollout_status_parse(const char *json, size_t len, ef_rollout_status *s, ef_status *st) {
  ef_err err = EF_ERR_INVALID_ARG;
  memset(s, 0, sizeof *s);
  cJSON *doc = len ? cJSON_ParseWithLength(json, len) : NULL;
  const cJSON *state = cJSON_GetObjectItemCaseSensitive(doc, "state");
  get_text(doc, "rollout_id", s->rollout_id, sizeof s->rollout_id);
  if (!cJSON_IsObject(doc) || !s->rollout_id[0] || !cJSON_IsString(state) ||
      ef_rollout_state_from_name(state->valuestring, &s->state) != EF_OK) {
    ef_status_fail(st, err, "not a rollout status document");
    goto out;
  }
  get_text(doc, "job_id", s->job_id, sizeof s->job_id);
  get_text(doc, "reason", s->reason, sizeof s->reason);
  s->step = get_count(doc, "step");
  s->n_steps = get_count(doc, "steps");
  s->devices = get_count(doc, "devices");
  s->step_devices = get_count(doc, "step_devices");
  const cJSON *counts = cJSON_GetObjectItemCaseSensitive(doc, "counts");
  for (size_t i = 0; i < EF_RD__COUNT; i++) s->counts[i] = get_count(counts, DEVICE_STATES[i]);
  s->created_ms = get_ts(doc, "created");
  s->updated_ms = get_ts(doc, "updated");
  err = EF_OK;
out:
  cJSON_Delete(doc);
  return err;
}

/* ---- per-device rows ---- */

char *ef_rollout_devices_json(const char *rollout_id, const ef_rollout_device_row *rows, size_t n) {
  return ef_rollout_devices_part_json(rollout_id, rows, n, 0, 0);
}

void ef_rollout_devices_parts(const char *json, size_t len, int *part, int *parts) {
  cJSON *doc = len ? cJSON_ParseWithLength(json, len) : NULL;
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(doc, "part"),
              *b = cJSON_GetObjectItemCaseSensitive(doc, "parts");
  *part = cJSON_IsNumber(a) && a->valuedouble >= 1 && a->valuedouble <= 1e6 ? a->valueint : 1;
  *parts = cJSON_IsNumber(b) && b->valuedouble >= *part && b->valuedouble <= 1e6 ? b->valueint : 1;
  cJSON_Delete(doc);
}

char *ef_rollout_devices_part_json(const char *rollout_id, const ef_rollout_device_row *rows, size_t n,
                                   int part, int parts) {
  char *out = NULL;
  cJSON *doc = cJSON_CreateObject(), *arr = cJSON_CreateArray();
  if (!doc || !arr || !cJSON_AddStringToObject(doc, "rollout_id", rollout_id)) goto out;
  for (size_t i = 0; i < n; i++) {
    const ef_rollout_device_row *r = &rows[i];
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(arr, o)) {
      cJSON_Delete(o);
      goto out;
    }
    if (!cJSON_AddStringToObject(o, "device_id", r->device_id) ||
        !cJSON_AddNumberToObject(o, "step", r->step) ||
        !cJSON_AddStringToObject(o, "state", ef_rollout_device_state_name(r->state)) ||
        !(r->job_state[0] ? cJSON_AddStringToObject(o, "job_state", r->job_state)
                          : cJSON_AddNullToObject(o, "job_state")) ||
        !(r->error[0] ? cJSON_AddStringToObject(o, "error", r->error) : cJSON_AddNullToObject(o, "error")) ||
        !add_ts(o, "updated", r->updated_ms))
      goto out;
  }
  cJSON_AddItemToObject(doc, "devices", arr);
  arr = NULL;
  if (parts > 0 &&
      (!cJSON_AddNumberToObject(doc, "part", part) || !cJSON_AddNumberToObject(doc, "parts", parts)))
    goto out;
  out = cJSON_PrintUnformatted(doc);
out:
  cJSON_Delete(arr);
  cJSON_Delete(doc);
  return out;
}

ef_err ef_rollout_devices_parse(const char *json, size_t len, ef_rollout_device_row **rows, size_t *n,
                                ef_status *st) {
  ef_err err = EF_ERR_INVALID_ARG;
  *rows = NULL;
  *n = 0;
  cJSON *doc = len ? cJSON_ParseWithLength(json, len) : NULL;
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "devices");
  if (!cJSON_IsArray(arr)) {
    ef_status_fail(st, err, "not a rollout devices document");
    goto out;
  }
  size_t count = (size_t)cJSON_GetArraySize(arr);
  if (count) {
    *rows = calloc(count, sizeof **rows);
    if (!*rows) {
      err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory");
      goto out;
    }
  }
  const cJSON *o;
  cJSON_ArrayForEach(o, arr) {
    ef_rollout_device_row *r = &(*rows)[(*n)++];
    char state[24];
    get_text(o, "device_id", r->device_id, sizeof r->device_id);
    r->step = get_count(o, "step");
    get_text(o, "state", state, sizeof state);
    r->state = device_state_from_name(state);
    get_text(o, "job_state", r->job_state, sizeof r->job_state);
    get_text(o, "error", r->error, sizeof r->error);
    r->updated_ms = get_ts(o, "updated");
  }
  err = EF_OK;
out:
  cJSON_Delete(doc);
  return err;
}
