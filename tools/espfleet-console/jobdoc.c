/*
 * Job documents as docs/protocol.md defines them, built from an image's
 * facts and the operator's options, then read back with ef_job_parse: the
 * console never publishes a document the daemon's own parser would refuse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"

/* Keeps characters a job_id allows, turns others into '_', stops at @p max. */
static size_t id_part(char *out, const char *in, size_t max) {
  size_t n = 0;
  for (; in[n] && n < max; n++) {
    char ch = in[n];
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == ':' || ch == '-';
    out[n] = ok ? ch : '_';
  }
  out[n] = '\0';
  return n;
}

void con_job_default_id(const con_image *img, char out[EF_JOB_ID_MAX + 1]) {
  /* "-<8 hex>" takes 9 of the 64 characters; project and version share the rest. */
  char project[EF_JOB_PROJECT_MAX + 1], version[EF_JOB_VERSION_MAX + 1];
  size_t pl = id_part(project, *img->project ? img->project : "image", 27);
  id_part(version, img->version, EF_JOB_ID_MAX - 9 - 1 - pl);
  char id[128];
  snprintf(id, sizeof id, "%s-%s-%.8s", project, *version ? version : "0", img->sha256_hex);
  snprintf(out, EF_JOB_ID_MAX + 1, "%.64s", id); /* fits already; the bound is for the compiler */
}

ef_err con_job_build(const con_image *img, const con_job_opts *o, char **json, ef_job *job, char *reason,
                     size_t n) {
  ef_err err = EF_ERR_NOMEM;
  char id[EF_JOB_ID_MAX + 1];
  char *text = NULL;
  ef_job parsed;
  cJSON *doc = cJSON_CreateObject();
  *json = NULL;
  reason[0] = '\0';
  if (!doc) goto out;
  if (o->job_id) snprintf(id, sizeof id, "%s", o->job_id);
  else con_job_default_id(img, id);
  /* An over-long --job-id must reach the parser whole, so it is refused
   * rather than cut short. */
  bool ok = cJSON_AddStringToObject(doc, "job_id", o->job_id ? o->job_id : id) &&
            cJSON_AddStringToObject(doc, "url", o->url ? o->url : "") &&
            cJSON_AddStringToObject(doc, "sha256", img->sha256_hex) &&
            cJSON_AddNumberToObject(doc, "size", (double)img->size) &&
            cJSON_AddStringToObject(doc, "version", img->version);
  if (ok && *img->project) ok = cJSON_AddStringToObject(doc, "project", img->project) != NULL;
  if (ok && *img->chip) ok = cJSON_AddStringToObject(doc, "chip", img->chip) != NULL;
  if (ok && o->allow_downgrade) ok = cJSON_AddTrueToObject(doc, "allow_downgrade") != NULL;
  if (ok && o->percent >= 0) {
    cJSON *r = cJSON_AddObjectToObject(doc, "rollout");
    ok = r && cJSON_AddNumberToObject(r, "percent", o->percent);
  }
  if (ok && o->not_after) ok = cJSON_AddStringToObject(doc, "not_after", o->not_after) != NULL;
  if (ok && o->expect_fw_version) ok = cJSON_AddStringToObject(doc, "expect_fw_version", o->expect_fw_version) != NULL;
  if (ok && o->driver_update) ok = cJSON_AddTrueToObject(doc, "driver_update") != NULL;
  if (!ok || !(text = cJSON_PrintUnformatted(doc))) goto out;

  /* The device decides about the image size (its esp.max_image_size) and,
   * with download.allow_http, about plain http; the console checks the rest. */
  ef_job_limits lim;
  ef_job_limits_default(&lim);
  lim.max_image_size = UINT64_MAX;
  lim.allow_http = o->allow_http;
  ef_status st = EF_STATUS_INIT;
  err = ef_job_parse(text, strlen(text), &lim, &parsed, &st);
  if (err != EF_OK) {
    snprintf(reason, n, "%s", st.detail);
    goto out;
  }
  if (job) *job = parsed;
  *json = text;
  text = NULL;
out:
  cJSON_Delete(doc);
  free(text);
  return err;
}
