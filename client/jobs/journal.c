/* The journal: state_dir/journal.json, replaced atomically on every save. */
#include "espfleet/journal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "espfleet/log.h"

#define JOURNAL_FORMAT 1
/* A journal is a few tens of KiB; anything far larger is not ours. */
#define JOURNAL_MAX_BYTES (1024 * 1024)

static void journal_empty(ef_journal *j) {
  char dir[sizeof j->dir];
  memcpy(dir, j->dir, sizeof dir);
  memset(j, 0, sizeof *j);
  memcpy(j->dir, dir, sizeof dir);
}

static bool path_in(char *out, size_t n, const char *dir, const char *name) {
  int k = snprintf(out, n, "%s/%s", dir, name);
  return k > 0 && (size_t)k < n;
}

/* Reads the whole file; *buf is NULL with EF_OK when the file does not exist. */
static ef_err read_file(const char *path, char **buf, size_t *len, bool *too_big, ef_status *st) {
  ef_err rc = EF_OK;
  char *data = NULL;
  size_t used = 0;
  *buf = NULL;
  *too_big = false;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) rc = ef_status_fail(st, EF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  data = malloc(JOURNAL_MAX_BYTES + 1);
  if (!data) {
    rc = ef_status_fail(st, EF_ERR_NOMEM, "cannot read %s", path);
    goto out;
  }
  for (;;) {
    ssize_t r = read(fd, data + used, JOURNAL_MAX_BYTES + 1 - used);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = ef_status_fail(st, EF_ERR_IO, "cannot read %s: %s", path, strerror(errno));
      goto out;
    }
    if (r == 0) break;
    used += (size_t)r;
    if (used > JOURNAL_MAX_BYTES) {
      *too_big = true;
      break;
    }
  }
  data[used < JOURNAL_MAX_BYTES ? used : JOURNAL_MAX_BYTES] = '\0';
  *buf = data;
  *len = used;
  data = NULL;
  rc = EF_OK;
out:
  if (fd >= 0) close(fd);
  free(data);
  return rc;
}

static const char *str_of(const cJSON *o, const char *key) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(it) ? it->valuestring : NULL;
}

static bool int_of(const cJSON *o, const char *key, double lo, double hi, double *v) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(it) || it->valuedouble < lo || it->valuedouble > hi) return false;
  *v = it->valuedouble;
  return true;
}

/* Copies @p src into @p dst of @p n bytes only when it fits whole; false for
 * NULL or a longer text (an entry we did not write, not one to cut). */
static bool copy_if_fits(char *dst, size_t n, const char *src) {
  if (!src || strlen(src) >= n) return false;
  memcpy(dst, src, strlen(src) + 1);
  return true;
}

/* A job as stored by ef_job_to_json, read back with limits wide enough for
 * any job this daemon accepted. */
static bool decode_job(const cJSON *doc, ef_job *out) {
  ef_job_limits lim = {.max_payload = SIZE_MAX, .max_image_size = UINT64_MAX, .allow_http = true};
  char *text = cJSON_IsObject(doc) ? cJSON_PrintUnformatted(doc) : NULL;
  ef_err e = text ? ef_job_parse(text, strlen(text), &lim, out, NULL) : EF_ERR_BAD_JOB;
  free(text);
  return e == EF_OK;
}

/* Adds @p job under @p key as the JSON ef_job_to_json gives. */
static bool encode_job(cJSON *parent, const char *key, const ef_job *job) {
  char *text = ef_job_to_json(job);
  cJSON *doc = text ? cJSON_Parse(text) : NULL;
  free(text);
  if (doc && cJSON_AddItemToObject(parent, key, doc)) return true;
  cJSON_Delete(doc);
  return false;
}

/* Fills @p j from the document; false when anything is missing or wrong. */
static bool decode(const cJSON *root, ef_journal *j) {
  double v;
  if (!cJSON_IsObject(root) || !int_of(root, "format", JOURNAL_FORMAT, JOURNAL_FORMAT, &v)) return false;

  const cJSON *cur = cJSON_GetObjectItemCaseSensitive(root, "current");
  if (cJSON_IsObject(cur)) {
    if (!decode_job(cJSON_GetObjectItemCaseSensitive(cur, "job"), &j->current)) return false;
    if (!int_of(cur, "attempt", 1, 1000000, &v)) return false;
    j->attempt = (int)v;
    if (ef_state_from_name(str_of(cur, "phase"), &j->phase) != EF_OK) return false;
    j->has_current = true;
  } else if (cur && !cJSON_IsNull(cur)) {
    return false;
  }

  /* "waiting" came with the second version of the daemon: optional */
  const cJSON *wait = cJSON_GetObjectItemCaseSensitive(root, "waiting");
  if (cJSON_IsObject(wait)) {
    if (!decode_job(wait, &j->waiting)) return false;
    j->has_waiting = true;
  } else if (wait && !cJSON_IsNull(wait)) {
    return false;
  }

  const cJSON *app = cJSON_GetObjectItemCaseSensitive(root, "installed");
  if (cJSON_IsObject(app)) {
    if (!copy_if_fits(j->installed.version, sizeof j->installed.version, str_of(app, "version")) ||
        !copy_if_fits(j->installed.project, sizeof j->installed.project, str_of(app, "project")) ||
        !copy_if_fits(j->installed.sha256_hex, sizeof j->installed.sha256_hex, str_of(app, "sha256")))
      return false;
  } else if (app && !cJSON_IsNull(app)) {
    return false;
  }

  const cJSON *results = cJSON_GetObjectItemCaseSensitive(root, "results");
  if (!cJSON_IsArray(results)) return false;
  const cJSON *it;
  cJSON_ArrayForEach(it, results) {
    ef_journal_result r = {0};
    const char *err = str_of(it, "error");
    if (!cJSON_IsObject(it) || !copy_if_fits(r.job_id, sizeof r.job_id, str_of(it, "job_id")) ||
        !copy_if_fits(r.fingerprint, sizeof r.fingerprint, str_of(it, "fingerprint")) ||
        !copy_if_fits(r.message, sizeof r.message, str_of(it, "message")) ||
        ef_state_from_name(str_of(it, "state"), &r.state) != EF_OK || !err ||
        !int_of(it, "ts_ms", -9e15, 9e15, &v))
      return false;
    r.ts_ms = (int64_t)v;
    r.error = ef_err_from_name(err);
    if (r.error == EF_ERR__COUNT || !int_of(it, "attempt", 0, 1000000, &v)) return false;
    r.attempt = (int)v;
    ef_journal_record_final(j, &r);
  }
  return true;
}

ef_err ef_journal_load(ef_journal *j, const char *state_dir, bool *recovered, ef_status *st) {
  char path[EF_JOURNAL_DIR_MAX + 32], aside[EF_JOURNAL_DIR_MAX + 48];
  char *buf = NULL;
  size_t len = 0;
  bool too_big = false;
  cJSON *root = NULL;
  ef_err rc;

  memset(j, 0, sizeof *j);
  if (recovered) *recovered = false;
  if (!state_dir || !copy_if_fits(j->dir, sizeof j->dir, state_dir) ||
      !path_in(path, sizeof path, state_dir, EF_JOURNAL_FILE) ||
      !path_in(aside, sizeof aside, state_dir, EF_JOURNAL_FILE ".corrupt")) {
    rc = ef_status_fail(st, EF_ERR_INVALID_ARG, "state_dir is missing or too long");
    goto out;
  }
  rc = read_file(path, &buf, &len, &too_big, st);
  if (rc != EF_OK || !buf) goto out;
  if (!too_big) root = cJSON_ParseWithLengthOpts(buf, len + 1, NULL, 1);
  if (root && decode(root, j)) goto out;

  /* Keep the damaged file for a human to look at, and start over. */
  journal_empty(j);
  if (rename(path, aside) != 0) {
    rc = ef_status_fail(st, EF_ERR_IO, "%s is damaged and cannot be moved aside: %s", path, strerror(errno));
    goto out;
  }
  ef_warn("journal: %s was corrupt; moved to %s, starting with an empty journal", path, aside);
  if (recovered) *recovered = true;
out:
  cJSON_Delete(root);
  free(buf);
  return rc;
}

static cJSON *encode(const ef_journal *j) {
  cJSON *root = cJSON_CreateObject();
  bool ok = root && cJSON_AddNumberToObject(root, "format", JOURNAL_FORMAT);
  if (ok && j->has_current) {
    cJSON *cur = cJSON_AddObjectToObject(root, "current");
    ok = cur && encode_job(cur, "job", &j->current) && cJSON_AddNumberToObject(cur, "attempt", j->attempt) &&
         cJSON_AddStringToObject(cur, "phase", ef_state_name(j->phase));
  } else if (ok) {
    ok = cJSON_AddNullToObject(root, "current") != NULL;
  }
  if (ok && j->has_waiting)
    ok = encode_job(root, "waiting", &j->waiting);
  else if (ok)
    ok = cJSON_AddNullToObject(root, "waiting") != NULL;
  if (ok && j->installed.version[0]) {
    cJSON *app = cJSON_AddObjectToObject(root, "installed");
    ok = app && cJSON_AddStringToObject(app, "version", j->installed.version) &&
         cJSON_AddStringToObject(app, "project", j->installed.project) &&
         cJSON_AddStringToObject(app, "sha256", j->installed.sha256_hex);
  } else if (ok) {
    ok = cJSON_AddNullToObject(root, "installed") != NULL;
  }
  cJSON *arr = ok ? cJSON_AddArrayToObject(root, "results") : NULL;
  ok = ok && arr;
  for (size_t i = 0; ok && i < j->n_results; i++) {
    const ef_journal_result *r = &j->results[i];
    char ts[32];
    ef_rfc3339_format(r->ts_ms, ts);
    cJSON *o = cJSON_CreateObject();
    ok = o && cJSON_AddItemToArray(arr, o);
    if (!ok) {
      cJSON_Delete(o);
      break;
    }
    ok = cJSON_AddStringToObject(o, "job_id", r->job_id) &&
         cJSON_AddStringToObject(o, "fingerprint", r->fingerprint) &&
         cJSON_AddStringToObject(o, "state", ef_state_name(r->state)) &&
         cJSON_AddStringToObject(o, "error", ef_err_name(r->error)) &&
         cJSON_AddStringToObject(o, "message", r->message) &&
         cJSON_AddNumberToObject(o, "ts_ms", (double)r->ts_ms) &&
         cJSON_AddStringToObject(o, "ts", ts) /* for people reading the file */ &&
         cJSON_AddNumberToObject(o, "attempt", r->attempt);
  }
  if (!ok) {
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

static bool write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

ef_err ef_journal_save(const ef_journal *j, ef_status *st) {
  char path[EF_JOURNAL_DIR_MAX + 32], tmp[EF_JOURNAL_DIR_MAX + 48];
  ef_err rc = EF_ERR_IO;
  int fd = -1, dfd = -1;
  char *text = NULL;
  cJSON *root = NULL;
  const char *step = NULL; /* what failed, with errno */

  if (!path_in(path, sizeof path, j->dir, EF_JOURNAL_FILE) ||
      !path_in(tmp, sizeof tmp, j->dir, EF_JOURNAL_FILE ".tmp")) {
    rc = ef_status_fail(st, EF_ERR_INVALID_ARG, "state_dir is too long");
    goto out;
  }
  root = encode(j);
  text = root ? cJSON_Print(root) : NULL;
  if (!text) {
    rc = ef_status_fail(st, EF_ERR_NOMEM, "cannot encode the journal");
    goto out;
  }
  /* A fixed temp name: one daemon owns a state_dir, and a temp file left by a
   * crash is simply overwritten by the next save. */
  step = "create";
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) goto fail;
  step = "write";
  if (!write_all(fd, text, strlen(text)) || !write_all(fd, "\n", 1) || fsync(fd) != 0) goto fail;
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  step = "rename";
  if (rename(tmp, path) != 0) goto fail;
  /* The rename itself is durable only once the directory is synced. */
  step = "sync the directory of";
  dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || fsync(dfd) != 0) goto fail;
  rc = EF_OK;
  goto out;
fail:
  /* errno is still the failed call's: nothing above touched it since */
  rc = ef_status_fail(st, EF_ERR_IO, "cannot %s %s: %s", step, path, strerror(errno));
  if (fd >= 0) unlink(tmp);
out:
  if (fd >= 0) close(fd);
  if (dfd >= 0) close(dfd);
  free(text);
  cJSON_Delete(root);
  return rc;
}

void ef_journal_set_current(ef_journal *j, const ef_job *job, int attempt, ef_job_state phase) {
  j->current = *job;
  j->has_current = true;
  j->attempt = attempt;
  j->phase = phase;
}

void ef_journal_clear_current(ef_journal *j) {
  j->has_current = false;
  memset(&j->current, 0, sizeof j->current);
  j->attempt = 0;
  j->phase = EF_STATE_IDLE;
}

void ef_journal_set_waiting(ef_journal *j, const ef_job *job) {
  j->has_waiting = job != NULL;
  if (job)
    j->waiting = *job;
  else
    memset(&j->waiting, 0, sizeof j->waiting);
}

void ef_journal_set_installed(ef_journal *j, const ef_app_info *app) { j->installed = *app; }

void ef_journal_record_final(ef_journal *j, const ef_journal_result *r) {
  size_t i;
  /* Drop the older record of this job (it becomes the newest), else the oldest one when full. */
  for (i = 0; i < j->n_results; i++)
    if (strcmp(j->results[i].job_id, r->job_id) == 0) break;
  if (i == j->n_results && j->n_results == EF_JOURNAL_MAX_RESULTS) i = 0;
  if (i < j->n_results) {
    memmove(&j->results[i], &j->results[i + 1], (j->n_results - i - 1) * sizeof j->results[0]);
    j->n_results--;
  }
  j->results[j->n_results++] = *r;
}

const ef_journal_result *ef_journal_find_final(const ef_journal *j, const char *job_id) {
  for (size_t i = 0; i < j->n_results; i++)
    if (strcmp(j->results[i].job_id, job_id) == 0) return &j->results[i];
  return NULL;
}
