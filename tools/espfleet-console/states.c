/* State and progress documents as received: the fields the console shows. */
#include <stdio.h>
#include <string.h>

#include "console.h"
#include "espfleet/text.h"

/* The string member @p key of @p obj into @p out (cut to @p n bytes), or ""
 * when it is missing or not a string: documents from other versions show.
 * Whatever a device sent is escaped here, the one way into the console's
 * text: a state document with "\u001b]0;..." must not drive the operator's
 * terminal. */
static void copy_member_or_empty(char *out, size_t n, const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  ef_text_escape(cJSON_IsString(v) ? v->valuestring : "", out, n);
}

static uint64_t get_u64(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsNumber(v) && v->valuedouble > 0 ? (uint64_t)v->valuedouble : 0;
}

bool con_doc_parse(const con_msg *m, const char *prefix, con_doc *d) {
  memset(d, 0, sizeof *d);
  if (m->len == 0 || !con_topic_parse(m->topic, prefix, d->device, &d->progress)) return false;
  d->doc = cJSON_ParseWithLength(m->payload, m->len);
  if (!cJSON_IsObject(d->doc)) {
    con_doc_clear(d);
    return false;
  }
  const cJSON *online = cJSON_GetObjectItemCaseSensitive(d->doc, "online");
  d->has_online = cJSON_IsBool(online);
  d->online = cJSON_IsTrue(online);
  copy_member_or_empty(d->state_name, sizeof d->state_name, d->doc, "state");
  d->state_known = *d->state_name && ef_state_from_name(d->state_name, &d->state) == EF_OK;
  copy_member_or_empty(d->job_id, sizeof d->job_id, d->doc, "job_id");
  copy_member_or_empty(d->fw_version, sizeof d->fw_version, d->doc, "fw_version");
  copy_member_or_empty(d->ts, sizeof d->ts, d->doc, "ts");
  const cJSON *app = cJSON_GetObjectItemCaseSensitive(d->doc, "app");
  if (cJSON_IsObject(app)) copy_member_or_empty(d->app_version, sizeof d->app_version, app, "version");
  const cJSON *error = cJSON_GetObjectItemCaseSensitive(d->doc, "error");
  if (cJSON_IsObject(error)) {
    copy_member_or_empty(d->error_code, sizeof d->error_code, error, "code");
    copy_member_or_empty(d->error_detail, sizeof d->error_detail, error, "detail");
  }
  d->bytes = get_u64(d->doc, "bytes");
  d->total = get_u64(d->doc, "total");
  const cJSON *pct = cJSON_GetObjectItemCaseSensitive(d->doc, "percent");
  d->percent = cJSON_IsNumber(pct) ? pct->valueint : (d->total ? (int)(d->bytes * 100 / d->total) : 0);
  return true;
}

void con_doc_clear(con_doc *d) {
  cJSON_Delete(d->doc);
  d->doc = NULL;
}

bool con_doc_final_for(const con_doc *d, const char *job_id) {
  return !d->progress && d->state_known && ef_state_is_final(d->state) && strcmp(d->job_id, job_id) == 0;
}

bool con_state_is_bad(ef_job_state s) {
  return s == EF_STATE_FAILED || s == EF_STATE_REJECTED || s == EF_STATE_CANCELED;
}

ef_err con_doc_error(const con_doc *d, ef_err fallback) {
  if (d->state_known && d->state == EF_STATE_CANCELED) return EF_ERR_CANCELED;
  ef_err e = ef_err_from_name(d->error_code);
  return e == EF_ERR__COUNT || e == EF_OK ? fallback : e;
}
