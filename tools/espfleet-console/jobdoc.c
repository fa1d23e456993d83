/*
 * Job documents as docs/protocol.md defines them: an ef_job built from an
 * image's facts and the operator's options, written by the library's own
 * writer (ef_job_to_json) and read back with ef_job_parse, so the console
 * never publishes a document the daemon's parser would refuse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"

/* Keeps characters a job_id allows, turns others into '_', stops at @p max. */
static size_t id_part(char *out, const char *in, size_t max) {
  size_t n = 0;
  for (; n < max && in[n]; n++) {
    char ch = in[n];
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == ':' || ch == '-';
    out[n] = (char)(ok ? ch : '_'); /* both are chars; ?: makes them int */
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

/* The manifest must describe the image the job installs. */
static ef_err manifest_matches(const con_image *img, const ef_release *r, char *reason, size_t n) {
  ef_err err = EF_OK;
  if (strcmp(r->sha256_hex, img->sha256_hex) != 0)
    err = EF_ERR_HASH_MISMATCH;
  else if (r->size != img->size)
    err = EF_ERR_SIZE_MISMATCH;
  else if (strcmp(r->chip, img->chip) != 0)
    err = EF_ERR_CHIP_MISMATCH;
  else if (strcmp(r->project, img->project) != 0)
    err = EF_ERR_PROJECT_MISMATCH;
  else if (strcmp(r->version, img->version) != 0 || r->secure_version != img->secure_version)
    err = EF_ERR_VERSION_MISMATCH;
  if (err != EF_OK)
    snprintf(reason, n, "the manifest describes another image (%s %s, sha256 %.12s...)", r->project,
             r->version, r->sha256_hex);
  return err;
}

ef_err con_job_release(const con_image *img, const con_job_opts *o, ef_manifest *release, bool *have,
                       char *reason, size_t n) {
  ef_status st = EF_STATUS_INIT;
  ef_release_key *k = NULL;
  ef_err err = EF_OK;
  *have = false;
  memset(release, 0, sizeof *release);
  if (!o->manifest && !o->sign_key) return EF_OK;
  if (o->manifest && o->sign_key) {
    snprintf(reason, n, "--manifest and --sign-key: choose one");
    return EF_ERR_BAD_JOB;
  }
  if (o->manifest) {
    char buf[4096];
    FILE *f = fopen(o->manifest, "r");
    size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    if (!f || len == sizeof buf) {
      snprintf(reason, n, "cannot read the manifest %s", o->manifest);
      return EF_ERR_IO;
    }
    err = ef_manifest_parse(buf, len, release, &st);
    if (err == EF_OK)
      err = manifest_matches(img, &release->rel, reason, n);
    else
      snprintf(reason, n, "%s: %s", o->manifest, st.detail);
    /* what the manifest signed is what the job says */
    if (err == EF_OK && o->expect_fw_version &&
        strcmp(o->expect_fw_version, release->rel.hosted_release) != 0) {
      snprintf(reason, n, "--expect-fw-version %s differs from the manifest's hosted_release \"%s\"",
               o->expect_fw_version, release->rel.hosted_release);
      err = EF_ERR_BAD_JOB;
    }
  } else {
    if (!o->key_id || !ef_release_key_id_valid(o->key_id)) {
      snprintf(reason, n, "--sign-key needs --key-id ID (1-64 characters of [A-Za-z0-9._:-])");
      return EF_ERR_BAD_JOB;
    }
    ef_release *r = &release->rel;
    snprintf(release->key_id, sizeof release->key_id, "%s", o->key_id);
    memcpy(r->sha256_hex, img->sha256_hex, sizeof r->sha256_hex);
    r->size = img->size;
    snprintf(r->version, sizeof r->version, "%s", img->version);
    snprintf(r->project, sizeof r->project, "%s", img->project);
    snprintf(r->chip, sizeof r->chip, "%s", img->chip);
    r->secure_version = img->secure_version;
    snprintf(r->hosted_release, sizeof r->hosted_release, "%s",
             o->expect_fw_version ? o->expect_fw_version : "");
    r->driver_update = o->driver_update;
    r->allow_downgrade = o->allow_downgrade;
    err = ef_release_key_load(o->sign_key, &k, &st);
    if (err == EF_OK) err = ef_release_sign(release, k, &st);
    if (err != EF_OK) snprintf(reason, n, "%s", st.detail);
    ef_release_key_free(k);
  }
  *have = err == EF_OK;
  return err;
}

/* The options a job holds as text must fit its fields whole: a cut value
 * would pass the parser as another value. Said in the parser's words. */
static ef_err check_fits(const con_job_opts *o, const char *id, char *reason, size_t n) {
  if (!ef_id_valid(id)) {
    snprintf(reason, n, "job_id: must be 1-64 characters of [A-Za-z0-9._:-]");
    return EF_ERR_BAD_JOB;
  }
  if (o->url && strlen(o->url) > EF_JOB_URL_MAX) {
    snprintf(reason, n, "url: must be a string of at most %d characters", EF_JOB_URL_MAX);
    return EF_ERR_BAD_JOB;
  }
  if (o->expect_fw_version &&
      (!*o->expect_fw_version || strlen(o->expect_fw_version) > EF_JOB_FW_VERSION_MAX)) {
    snprintf(reason, n, "expect_fw_version: must be a string of 1-%d characters", EF_JOB_FW_VERSION_MAX);
    return EF_ERR_BAD_JOB;
  }
  return EF_OK;
}

ef_err con_job_build(const con_image *img, const con_job_opts *o, const ef_manifest *release, char **json,
                     ef_job *job, char *reason, size_t n) {
  ef_err err = EF_ERR_BAD_JOB;
  char id[EF_JOB_ID_MAX + 1] = "";
  char *text = NULL;
  ef_job j, parsed;
  *json = NULL;
  reason[0] = '\0';
  if (!o->job_id) con_job_default_id(img, id);
  if ((err = check_fits(o, o->job_id ? o->job_id : id, reason, n)) != EF_OK) goto out;
  if (o->job_id) snprintf(id, sizeof id, "%s", o->job_id); /* fits: checked */

  memset(&j, 0, sizeof j);
  j.chip_id = -1;
  j.rollout_percent = o->percent;
  memcpy(j.job_id, id, sizeof j.job_id);
  snprintf(j.url, sizeof j.url, "%s", o->url ? o->url : "");
  memcpy(j.sha256_hex, img->sha256_hex, sizeof j.sha256_hex);
  j.size = img->size;
  snprintf(j.version, sizeof j.version, "%s", img->version);
  snprintf(j.project, sizeof j.project, "%s", img->project);
  snprintf(j.chip, sizeof j.chip, "%s", img->chip);
  j.allow_downgrade = o->allow_downgrade;
  if (o->not_after) {
    time_t t;
    if (ef_rfc3339_parse(o->not_after, &t) != EF_OK) {
      snprintf(reason, n, "not_after: must be an RFC 3339 time (e.g. 2025-01-31T12:00:00Z)");
      goto out;
    }
    j.not_after = t == 0 ? 1 : t; /* as ef_job_parse reads it: 0 means "no deadline" */
  }
  /* a signed job says what its release signed, nothing else */
  if (release) {
    snprintf(j.expect_fw_version, sizeof j.expect_fw_version, "%s", release->rel.hosted_release);
    j.driver_update = release->rel.driver_update;
    j.has_release = true;
    snprintf(j.release_key_id, sizeof j.release_key_id, "%s", release->key_id);
    memcpy(j.release_signature, release->sig, sizeof j.release_signature);
    j.secure_version = release->rel.secure_version;
    j.signed_downgrade = release->rel.allow_downgrade;
  } else {
    snprintf(j.expect_fw_version, sizeof j.expect_fw_version, "%s",
             o->expect_fw_version ? o->expect_fw_version : "");
    j.driver_update = o->driver_update;
  }
  err = EF_ERR_NOMEM;
  if (!(text = ef_job_to_json(&j))) goto out;

  /* Read back with the daemon's own parser, so the console never publishes
   * a document a device would refuse. The device decides about the image
   * size (its esp.max_image_size) and, with download.allow_http, about
   * plain http; the console checks the rest. */
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
  free(text);
  return err;
}
