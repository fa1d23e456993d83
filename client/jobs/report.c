/* State, progress and last-will documents, and the progress rate limiter. */
#include "espfleet/report.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const state_names[EF_STATE__COUNT] = {
    [EF_STATE_IDLE] = "idle",           [EF_STATE_DOWNLOADING] = "downloading",
    [EF_STATE_VERIFYING] = "verifying", [EF_STATE_ACTIVATING] = "activating",
    [EF_STATE_REBOOTING] = "rebooting", [EF_STATE_SUCCEEDED] = "succeeded",
    [EF_STATE_FAILED] = "failed",       [EF_STATE_REJECTED] = "rejected",
    [EF_STATE_CANCELED] = "canceled",   [EF_STATE_SKIPPED] = "skipped",
};

const char *ef_state_name(ef_job_state s) {
  if ((int)s < 0 || s >= EF_STATE__COUNT) return "unknown";
  return state_names[s];
}

ef_err ef_state_from_name(const char *name, ef_job_state *out) {
  for (int i = 0; name && i < EF_STATE__COUNT; i++) {
    if (strcmp(state_names[i], name) == 0) {
      *out = (ef_job_state)i;
      return EF_OK;
    }
  }
  return EF_ERR_INVALID_ARG;
}

bool ef_state_is_final(ef_job_state s) {
  switch (s) {
  case EF_STATE_SUCCEEDED:
  case EF_STATE_FAILED:
  case EF_STATE_REJECTED:
  case EF_STATE_CANCELED:
  case EF_STATE_SKIPPED: return true;
  default: return false;
  }
}

void ef_state_init(ef_state *s, const char *device_id) {
  memset(s, 0, sizeof *s);
  snprintf(s->device_id, sizeof s->device_id, "%s", device_id ? device_id : "");
  s->online = true;
  s->state = EF_STATE_IDLE;
  s->error = EF_OK;
}

void ef_rfc3339_format(int64_t ts_ms, char out[32]) {
  struct tm tm;
  int64_t ms = ts_ms % 1000;
  time_t t = (time_t)(ts_ms / 1000);
  if (ms < 0) {
    ms += 1000;
    t -= 1;
  }
  if (!gmtime_r(&t, &tm)) {
    snprintf(out, 32, "1970-01-01T00:00:00.000Z");
    return;
  }
  size_t k = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + k, 32 - k, ".%03dZ", (int)ms);
}

void ef_report_error_detail(ef_err err, const char *detail, char *out, size_t n) {
  if (detail && detail[0])
    snprintf(out, n, "%s: %s", ef_err_name(err), detail);
  else
    snprintf(out, n, "%s", ef_err_name(err));
}

/* "" is "not known": JSON null, so consumers need not guess what "" means. */
static bool add_str_or_null(cJSON *o, const char *key, const char *v) {
  return v && v[0] ? cJSON_AddStringToObject(o, key, v) != NULL : cJSON_AddNullToObject(o, key) != NULL;
}

static char *print_and_free(cJSON *o, bool ok) {
  char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s;
}

char *ef_report_state_json(const ef_state *s) {
  char ts[32];
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  ef_rfc3339_format(s->ts_ms, ts);
  bool ok =
      cJSON_AddStringToObject(o, "device_id", s->device_id) &&
      cJSON_AddBoolToObject(o, "online", s->online) &&
      cJSON_AddStringToObject(o, "state", ef_state_name(s->state)) &&
      add_str_or_null(o, "job_id", s->job_id) && add_str_or_null(o, "fw_version", s->fw_version) &&
      add_str_or_null(o, "driver_release", s->driver_release) &&
      cJSON_AddStringToObject(o, "driver_release_source",
                              s->driver_release[0] ? ef_driver_source_name(s->driver_source) : "unknown") &&
      cJSON_AddBoolToObject(o, "signed_releases", s->signed_releases);
  if (ok) {
    if (s->app.version[0]) {
      cJSON *app = cJSON_AddObjectToObject(o, "app");
      ok = app && cJSON_AddStringToObject(app, "version", s->app.version) &&
           add_str_or_null(app, "project", s->app.project) &&
           add_str_or_null(app, "sha256", s->app.sha256_hex);
    } else {
      ok = cJSON_AddNullToObject(o, "app") != NULL;
    }
  }
  cJSON *groups = ok ? cJSON_AddArrayToObject(o, "groups") : NULL;
  ok = ok && groups;
  for (size_t i = 0; ok && i < s->n_groups; i++) {
    cJSON *g = cJSON_CreateString(s->groups[i]);
    ok = g && cJSON_AddItemToArray(groups, g);
    if (!ok) cJSON_Delete(g);
  }
  ok = ok && cJSON_AddNumberToObject(o, "bytes", (double)s->bytes) &&
       cJSON_AddNumberToObject(o, "total", (double)s->total) &&
       cJSON_AddNumberToObject(o, "attempt", s->attempt);
  /* canceled carries error only with a reason (a job replaced while it waited) */
  if (ok && (s->state == EF_STATE_FAILED || s->state == EF_STATE_REJECTED ||
             (s->state == EF_STATE_CANCELED && s->error != EF_OK))) {
    /* The contract promises an error object in these states; a missing code is our bug. */
    ef_err err = s->error != EF_OK ? s->error : EF_ERR_INTERNAL;
    char detail[384];
    ef_report_error_detail(err, s->detail, detail, sizeof detail);
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    ok = e && cJSON_AddStringToObject(e, "code", ef_err_class(err)) &&
         cJSON_AddStringToObject(e, "message", ef_err_message(err)) &&
         cJSON_AddStringToObject(e, "detail", detail);
  }
  ok = ok && cJSON_AddStringToObject(o, "ts", ts) &&
       cJSON_AddStringToObject(o, "client_version", ESPFLEET_VERSION);
  return print_and_free(o, ok);
}

char *ef_report_progress_json(const char *device_id, const char *job_id, uint64_t bytes, uint64_t total,
                              int64_t ts_ms) {
  char ts[32];
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  ef_rfc3339_format(ts_ms, ts);
  int percent = 0;
  if (total > 0) percent = bytes >= total ? 100 : (int)((double)bytes * 100.0 / (double)total);
  bool ok = cJSON_AddStringToObject(o, "device_id", device_id) &&
            cJSON_AddStringToObject(o, "job_id", job_id) &&
            cJSON_AddNumberToObject(o, "bytes", (double)bytes) &&
            cJSON_AddNumberToObject(o, "total", (double)total) &&
            cJSON_AddNumberToObject(o, "percent", percent) && cJSON_AddStringToObject(o, "ts", ts);
  return print_and_free(o, ok);
}

char *ef_report_offline_json(const char *device_id) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  bool ok = cJSON_AddStringToObject(o, "device_id", device_id) && cJSON_AddFalseToObject(o, "online") &&
            cJSON_AddStringToObject(o, "client_version", ESPFLEET_VERSION);
  return print_and_free(o, ok);
}

void ef_progress_limiter_init(ef_progress_limiter *l) { memset(l, 0, sizeof *l); }

bool ef_progress_due(ef_progress_limiter *l, int64_t now_ms, uint64_t bytes, uint64_t total) {
  bool due;
  if (l->final_sent) return false; /* the transfer is over; state documents take it from here */
  if (total > 0 && bytes >= total) {
    due = true;
    l->final_sent = true;
  } else if (!l->published) {
    due = true;
  } else {
    int64_t elapsed = now_ms - l->last_ms;
    due = elapsed >= EF_PROGRESS_MAX_INTERVAL_MS ||
          (elapsed >= EF_PROGRESS_MIN_INTERVAL_MS && bytes != l->last_bytes);
  }
  if (due) {
    l->published = true;
    l->last_ms = now_ms;
    l->last_bytes = bytes;
  }
  return due;
}
