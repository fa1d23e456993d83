/* Readers and writers of the state view, cancel and announce documents. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "espfleet/protocol.h"
#include "espfleet/text.h"

/* The string member @p key of @p obj, escaped into @p out (cut to @p n), or
 * "" when missing or not a string. Everything a reader copies out of a
 * document passes here: a state document with "\u001b]0;..." must not
 * drive a terminal. */
static void copy_member(char *out, size_t n, const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  ef_text_escape(cJSON_IsString(v) ? v->valuestring : "", out, n);
}

static uint64_t get_u64(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsNumber(v) && v->valuedouble > 0 ? (uint64_t)v->valuedouble : 0;
}

/* Unix milliseconds of an RFC 3339 text, 0 when it is not one. */
static int64_t ts_ms_of(const char *s) {
  time_t t;
  if (!s[0] || ef_rfc3339_parse(s, &t) != EF_OK) return 0;
  int64_t ms = (int64_t)t * 1000;
  const char *frac = strchr(s, '.');
  if (frac && frac[1] >= '0' && frac[1] <= '9') {
    int scale = 100;
    for (const char *p = frac + 1; *p >= '0' && *p <= '9' && scale; p++, scale /= 10)
      ms += (*p - '0') * scale;
  }
  return ms;
}

static void read_groups(const cJSON *doc, ef_state_view *v) {
  const cJSON *groups = cJSON_GetObjectItemCaseSensitive(doc, "groups");
  const cJSON *g;
  cJSON_ArrayForEach(g, groups) {
    if (v->n_groups == EF_PROTO_MAX_GROUPS) break;
    if (cJSON_IsString(g) && ef_id_valid(g->valuestring))
      snprintf(v->groups[v->n_groups++], sizeof v->groups[0], "%s", g->valuestring);
  }
}

ef_err ef_state_view_parse(const char *json, size_t len, ef_state_view *v, ef_status *st) {
  ef_err err = EF_ERR_INVALID_ARG;
  memset(v, 0, sizeof *v);
  cJSON *doc = len ? cJSON_ParseWithLength(json, len) : NULL;
  if (!len) {
    ef_status_fail(st, err, "payload: empty (a cleared retained message)");
    goto out;
  }
  if (!cJSON_IsObject(doc)) {
    ef_status_fail(st, err, "payload: not a JSON object");
    goto out;
  }
  copy_member(v->device_id, sizeof v->device_id, doc, "device_id");
  const cJSON *online = cJSON_GetObjectItemCaseSensitive(doc, "online");
  v->has_online = cJSON_IsBool(online);
  v->online = cJSON_IsTrue(online);
  copy_member(v->state_name, sizeof v->state_name, doc, "state");
  v->state_known = v->state_name[0] && ef_state_from_name(v->state_name, &v->state) == EF_OK;
  copy_member(v->job_id, sizeof v->job_id, doc, "job_id");
  copy_member(v->fw_version, sizeof v->fw_version, doc, "fw_version");
  copy_member(v->ts, sizeof v->ts, doc, "ts");
  v->ts_ms = ts_ms_of(v->ts);
  const cJSON *app = cJSON_GetObjectItemCaseSensitive(doc, "app");
  if (cJSON_IsObject(app)) copy_member(v->app_version, sizeof v->app_version, app, "version");
  const cJSON *error = cJSON_GetObjectItemCaseSensitive(doc, "error");
  if (cJSON_IsObject(error)) {
    copy_member(v->error_code, sizeof v->error_code, error, "code");
    copy_member(v->error_detail, sizeof v->error_detail, error, "detail");
  }
  v->bytes = get_u64(doc, "bytes");
  v->total = get_u64(doc, "total");
  const cJSON *attempt = cJSON_GetObjectItemCaseSensitive(doc, "attempt");
  v->attempt = cJSON_IsNumber(attempt) ? attempt->valueint : 0;
  const cJSON *pct = cJSON_GetObjectItemCaseSensitive(doc, "percent");
  if (cJSON_IsNumber(pct) && pct->valuedouble >= 0 && pct->valuedouble <= 100)
    v->percent = pct->valueint;
  else
    v->percent = v->total ? (int)(v->bytes > v->total ? 100 : v->bytes * 100 / v->total) : 0;
  read_groups(doc, v);
  err = EF_OK;
out:
  cJSON_Delete(doc);
  return err;
}

bool ef_state_is_bad(ef_job_state s) {
  return s == EF_STATE_FAILED || s == EF_STATE_REJECTED || s == EF_STATE_CANCELED;
}

char *ef_cancel_json(const char *job_id) {
  cJSON *doc = cJSON_CreateObject();
  char *out = NULL;
  if (doc && cJSON_AddStringToObject(doc, "job_id", job_id)) out = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  return out;
}

ef_err ef_cancel_parse(const char *json, size_t len, char job_id[EF_JOB_ID_MAX + 1], ef_status *st) {
  ef_err err = EF_ERR_BAD_JOB;
  job_id[0] = '\0';
  cJSON *doc = len ? cJSON_ParseWithLength(json, len) : NULL;
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "job_id");
  if (!cJSON_IsString(id) || !ef_id_valid(id->valuestring)) {
    ef_status_fail(st, err, "job_id: a cancel needs a valid job_id");
    goto out;
  }
  snprintf(job_id, EF_JOB_ID_MAX + 1, "%s", id->valuestring);
  err = EF_OK;
out:
  cJSON_Delete(doc);
  return err;
}

static const char *const SCOPES[] = {
    [EF_ANNOUNCE_ALL] = "all", [EF_ANNOUNCE_DEVICES] = "devices", [EF_ANNOUNCE_ROLLOUTS] = "rollouts"};

char *ef_announce_json(const ef_announce *a) {
  cJSON *doc = cJSON_CreateObject();
  char *out = NULL;
  if (!doc || !cJSON_AddStringToObject(doc, "scope", SCOPES[a->scope])) goto out;
  if (a->job_id[0] && !cJSON_AddStringToObject(doc, "job_id", a->job_id)) goto out;
  out = cJSON_PrintUnformatted(doc);
out:
  cJSON_Delete(doc);
  return out;
}

ef_err ef_announce_parse(const char *json, size_t len, ef_announce *out, ef_status *st) {
  ef_err err = EF_ERR_INVALID_ARG;
  memset(out, 0, sizeof *out);
  cJSON *doc = NULL;
  if (len == 0) return EF_OK;
  doc = cJSON_ParseWithLength(json, len);
  if (!cJSON_IsObject(doc)) {
    ef_status_fail(st, err, "payload: not a JSON object");
    goto out;
  }
  const cJSON *scope = cJSON_GetObjectItemCaseSensitive(doc, "scope");
  if (scope) {
    size_t i = 0;
    while (i < sizeof SCOPES / sizeof SCOPES[0] &&
           !(cJSON_IsString(scope) && strcmp(scope->valuestring, SCOPES[i]) == 0))
      i++;
    if (i == sizeof SCOPES / sizeof SCOPES[0]) {
      ef_status_fail(st, err, "scope: must be \"all\", \"devices\" or \"rollouts\"");
      goto out;
    }
    out->scope = (ef_announce_scope)i;
  }
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "job_id");
  if (id && !(cJSON_IsString(id) && ef_id_valid(id->valuestring))) {
    ef_status_fail(st, err, "job_id: must be 1-64 characters of [A-Za-z0-9._:-]");
    goto out;
  }
  if (id) snprintf(out->job_id, sizeof out->job_id, "%s", id->valuestring);
  err = EF_OK;
out:
  cJSON_Delete(doc);
  return err;
}

ef_err ef_read_secret_file(const char *path, char *out, size_t n, ef_status *st) {
  ef_err err = EF_ERR_IO;
  char line[1024];
  out[0] = '\0';
  FILE *f = fopen(path, "re");
  if (!f) {
    ef_status_fail(st, err, "cannot read %s: %s", path, strerror(errno));
    goto out;
  }
  if (!fgets(line, sizeof line, f)) line[0] = '\0';
  /* A first line longer than the buffer would come back cut short, and a
   * cut password fails later as a wrong one: refuse it here. */
  bool whole = strchr(line, '\n') || feof(f);
  /* Editors and `echo` add a newline that is not part of the secret. */
  line[strcspn(line, "\r\n")] = '\0';
  if (!whole || strlen(line) >= n) {
    err = EF_ERR_CONFIG;
    ef_status_fail(st, err, "%s: the secret must be one line of at most %zu bytes", path,
                   n - 1 < sizeof line - 2 ? n - 1 : sizeof line - 2);
    goto out;
  }
  memcpy(out, line, strlen(line) + 1);
  err = EF_OK;
out:
  explicit_bzero(line, sizeof line);
  if (f) fclose(f);
  return err;
}
