/* Job documents: strict parsing of the keys we know, a fingerprint of the
 * content, and the JSON form kept in the journal. */
#include "espfleet/job.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "espfleet/hex.h"
#include "espfleet/image.h"

/* Largest integer a JSON number (IEEE double in cJSON) carries exactly. */
#define EF_JSON_MAX_EXACT_INT 9007199254740992.0

void ef_job_limits_default(ef_job_limits *lim) {
  lim->max_payload = EF_JOB_MAX_PAYLOAD;
  lim->max_image_size = EF_JOB_DEFAULT_MAX_IMAGE_SIZE;
  lim->allow_http = false;
}

bool ef_id_valid(const char *s) {
  if (!s) return false;
  size_t n = strlen(s);
  if (n < 1 || n > EF_JOB_ID_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(isascii(c) && isalnum(c)) && c != '.' && c != '_' && c != ':' && c != '-') return false;
  }
  return true;
}

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF) and no NUL bytes:
 * cJSON checks neither, and a NUL would silently truncate the document. */
static bool utf8_valid(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    size_t need;
    uint32_t cp;
    if (c == 0) return false;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (len - i - 1 < need) return false;
    for (size_t k = 1; k <= need; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += need + 1;
  }
  return true;
}

static int digits(const char *s, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)s[i])) return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

static bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* Days from 1970-01-01 to the proleptic Gregorian date (H. Hinnant's
 * days_from_civil): exact for every year RFC 3339 can write, with no time
 * zone, no libc range and no 32-bit time_t in the way. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* The instants "0000-01-01T00:00:00Z" and "9999-12-31T23:59:59Z". */
#define RFC3339_MIN_Z      (-62167219200LL)
#define RFC3339_MAX_Z      253402300799LL
#define RFC3339_MAX_OFFSET (23 * 3600 + 59 * 60)

ef_err ef_rfc3339_parse(const char *s, time_t *out) {
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (!s || strlen(s) < 20) return EF_ERR_INVALID_ARG;
  if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
    return EF_ERR_INVALID_ARG;
  int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
  int h = digits(s + 11, 2), mi = digits(s + 14, 2), sec = digits(s + 17, 2);
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
    return EF_ERR_INVALID_ARG;
  if (d > mdays[mo - 1] + (mo == 2 && leap(y))) return EF_ERR_INVALID_ARG;
  const char *p = s + 19;
  if (*p == '.') {
    p++;
    if (!isdigit((unsigned char)*p)) return EF_ERR_INVALID_ARG;
    while (isdigit((unsigned char)*p)) p++;
  }
  long offset = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    /* In this order: each character is read only once the ones before it
     * were digits, so a string that ends early ("...T00:00:00+") is never
     * read past its terminator. */
    int oh = digits(p + 1, 2);
    if (oh < 0 || oh > 23 || p[3] != ':') return EF_ERR_INVALID_ARG;
    int om = digits(p + 4, 2);
    if (om < 0 || om > 59) return EF_ERR_INVALID_ARG;
    offset = (*p == '+' ? 1 : -1) * (oh * 3600L + om * 60L);
    p += 6;
  } else {
    return EF_ERR_INVALID_ARG;
  }
  if (*p) return EF_ERR_INVALID_ARG;
  /* A leap second counts as the second before. */
  int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (sec == 60 ? 59 : sec) - offset;
  if ((int64_t)(time_t)t != t) return EF_ERR_INVALID_ARG; /* a 32-bit time_t */
  *out = (time_t)t;
  return EF_OK;
}

bool ef_rfc3339_format_seconds(time_t t, char out[32]) {
  int64_t local = (int64_t)t, off = 0;
  /* Instants beyond year 9999 (or before year 0) in UTC still have a name
   * with an offset of up to 23:59: "9999-12-31T23:59:59-01:00". */
  if (local > RFC3339_MAX_Z)
    off = -((local - RFC3339_MAX_Z + 59) / 60 * 60);
  else if (local < RFC3339_MIN_Z)
    off = (RFC3339_MIN_Z - local + 59) / 60 * 60;
  out[0] = '\0';
  if (off > RFC3339_MAX_OFFSET || off < -RFC3339_MAX_OFFSET) return false;
  local += off;
  int64_t days = (local >= 0 ? local : local - 86399) / 86400, secs = local - days * 86400;
  int y, m, d;
  civil_from_days(days, &y, &m, &d);
  int k = snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d", y, m, d, (int)(secs / 3600),
                   (int)(secs / 60 % 60), (int)(secs % 60));
  int64_t a = off < 0 ? -off : off;
  if (off == 0)
    snprintf(out + k, 32 - (size_t)k, "Z");
  else
    snprintf(out + k, 32 - (size_t)k, "%c%02d:%02d", off < 0 ? '-' : '+', (int)(a / 3600),
             (int)(a / 60 % 60));
  return true;
}

/* Sets the reason once: the first problem found is the one reported. */
static void fail(char *reason, size_t n, bool *failed, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(char *reason, size_t n, bool *failed, const char *fmt, ...) {
  if (*failed) return;
  *failed = true;
  if (!reason || n == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, n, fmt, ap);
  va_end(ap);
}

/* Known keys given twice make the document ambiguous (cJSON would read the
 * first one, another parser the last), so they are refused. */
static const cJSON *get_unique(const cJSON *root, const char *key, bool *dup) {
  const cJSON *found = NULL;
  /* cJSON_ArrayForEach written out, so that static analysers follow it */
  for (const cJSON *it = root ? root->child : NULL; it; it = it->next) {
    if (it->string && strcmp(it->string, key) == 0) {
      if (found)
        *dup = true;
      else
        found = it;
    }
  }
  return found;
}

/* Optional string of 1..max characters; returns false (with a reason) when present but wrong. */
static bool opt_string(const cJSON *it, const char *key, size_t max, char *dst, char *reason, size_t n,
                       bool *failed) {
  if (!it) return true;
  if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) > max) {
    fail(reason, n, failed, "%s: must be a string of 1-%zu characters", key, max);
    return false;
  }
  memcpy(dst, it->valuestring, strlen(it->valuestring) + 1); /* checked above: at most max */
  return true;
}

static bool is_uint(const cJSON *it, double max) {
  return cJSON_IsNumber(it) && isfinite(it->valuedouble) && it->valuedouble >= 0 && it->valuedouble <= max &&
         floor(it->valuedouble) == it->valuedouble;
}

/* Scheme prefix and a non-empty host; the full syntax check is the download module's. */
static bool url_ok(const char *url, bool allow_http) {
  const char *rest = NULL;
  if (strncasecmp(url, "https://", 8) == 0)
    rest = url + 8;
  else if (allow_http && strncasecmp(url, "http://", 7) == 0)
    rest = url + 7;
  if (!rest) return false;
  if (*rest == '\0' || *rest == '/' || *rest == ':' || *rest == '?' || *rest == '#') return false;
  for (const char *p = url; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f) return false;
  return true;
}

/* "release": {"key_id", "signature", "secure_version", "allow_downgrade"} */
static void parse_release(const cJSON *root, ef_job *out, char *reason, size_t n, bool *failed) {
  static const char *const known[] = {"key_id", "signature", "secure_version", "allow_downgrade"};
  bool dup = false;
  const cJSON *r = get_unique(root, "release", &dup);
  if (!r) return;
  if (!cJSON_IsObject(r)) {
    fail(reason, n, failed,
         "release: must be an object {key_id, signature, secure_version, allow_downgrade}");
    return;
  }
  for (const cJSON *c = r->child; c; c = c->next) {
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) ok = ok || strcmp(c->string, known[i]) == 0;
    /* the release object is signed content: nothing unknown may ride along */
    if (!ok) fail(reason, n, failed, "release.%s: unknown key", c->string);
  }
  const cJSON *id = get_unique(r, "key_id", &dup), *sig = get_unique(r, "signature", &dup);
  const cJSON *sv = get_unique(r, "secure_version", &dup), *dg = get_unique(r, "allow_downgrade", &dup);
  if (!cJSON_IsString(id) || !ef_release_key_id_valid(id->valuestring))
    fail(reason, n, failed, "release.key_id: must be 1-64 characters of [A-Za-z0-9._:-]");
  else
    snprintf(out->release_key_id, sizeof out->release_key_id, "%s", id->valuestring);
  if (!cJSON_IsString(sig) || !ef_release_sig_from_base64(sig->valuestring, out->release_signature))
    fail(reason, n, failed, "release.signature: must be the base64 of a 64-byte Ed25519 signature");
  if (!is_uint(sv, 4294967295.0))
    fail(reason, n, failed, "release.secure_version: must be an integer 0..4294967295");
  else
    out->secure_version = (uint32_t)sv->valuedouble;
  if (dg && !cJSON_IsBool(dg))
    fail(reason, n, failed, "release.allow_downgrade: must be true or false");
  else
    out->signed_downgrade = cJSON_IsTrue(dg);
  out->has_release = true;
}

/* What gets installed: the image's hash, size and identity. */
static void parse_image_fields(const cJSON *root, const ef_job_limits *lim, ef_job *out, char *reason,
                               size_t n, bool *failed, bool *too_large) {
  bool dup = false;
  const cJSON *it;
  it = get_unique(root, "sha256", &dup);
  if (!it)
    fail(reason, n, failed, "sha256: required");
  else if (!cJSON_IsString(it) || strlen(it->valuestring) != 64 ||
           ef_hex_to_sha256(it->valuestring, out->sha256) != EF_OK)
    fail(reason, n, failed, "sha256: must be 64 hex digits");
  else
    ef_hex(out->sha256, 32, out->sha256_hex);

  it = get_unique(root, "size", &dup);
  if (!it)
    fail(reason, n, failed, "size: required");
  else if (!is_uint(it, EF_JSON_MAX_EXACT_INT) || it->valuedouble < 1)
    fail(reason, n, failed,
         "size: must be a positive integer no larger than esp.max_image_size (%" PRIu64 ")",
         lim->max_image_size);
  else {
    out->size = (uint64_t)it->valuedouble;
    if (out->size > lim->max_image_size) {
      *too_large = true;
      /* Written now but only returned when nothing else is wrong. */
      if (!*failed && reason && n)
        snprintf(reason, n, "size: %" PRIu64 " bytes is larger than esp.max_image_size (%" PRIu64 ")",
                 out->size, lim->max_image_size);
    }
  }

  it = get_unique(root, "version", &dup);
  if (!it)
    fail(reason, n, failed, "version: required");
  else
    opt_string(it, "version", EF_JOB_VERSION_MAX, out->version, reason, n, failed);

  opt_string(get_unique(root, "project", &dup), "project", EF_JOB_PROJECT_MAX, out->project, reason, n,
             failed);

  it = get_unique(root, "chip", &dup);
  if (it) {
    uint16_t id;
    if (!cJSON_IsString(it) || ef_chip_from_name(it->valuestring, &id) != EF_OK || !ef_chip_name(id)) {
      fail(reason, n, failed, "chip: must be a known chip name such as \"esp32\" or \"esp32s3\"");
    } else {
      out->chip_id = id;
      snprintf(out->chip, sizeof out->chip, "%s", ef_chip_name(id));
    }
  }
}

/* How the device may take it: downgrade, rollout, deadline, releases. */
static void parse_policy_fields(const cJSON *root, ef_job *out, char *reason, size_t n, bool *failed) {
  bool dup = false;
  const cJSON *it;
  it = get_unique(root, "allow_downgrade", &dup);
  if (it) {
    if (!cJSON_IsBool(it))
      fail(reason, n, failed, "allow_downgrade: must be true or false");
    else
      out->allow_downgrade = cJSON_IsTrue(it);
  }

  it = get_unique(root, "rollout", &dup);
  if (it) {
    bool pdup = false;
    const cJSON *pc = cJSON_IsObject(it) ? get_unique(it, "percent", &pdup) : NULL;
    if (!cJSON_IsObject(it))
      fail(reason, n, failed, "rollout: must be an object {\"percent\": 0..100}");
    else if (!pc)
      fail(reason, n, failed, "rollout.percent: required in rollout");
    else if (pdup)
      fail(reason, n, failed, "rollout.percent: given more than once");
    else if (!is_uint(pc, 100))
      fail(reason, n, failed, "rollout.percent: must be 0..100");
    else
      out->rollout_percent = (int)pc->valuedouble;
  }

  it = get_unique(root, "not_after", &dup);
  if (it) {
    time_t t;
    if (!cJSON_IsString(it) || ef_rfc3339_parse(it->valuestring, &t) != EF_OK)
      fail(reason, n, failed, "not_after: must be an RFC 3339 time (e.g. 2025-01-31T12:00:00Z)");
    else
      out->not_after = t == 0 ? 1 : t; /* 0 means "no deadline" */
  }

  opt_string(get_unique(root, "expect_fw_version", &dup), "expect_fw_version", EF_JOB_FW_VERSION_MAX,
             out->expect_fw_version, reason, n, failed);

  it = get_unique(root, "driver_update", &dup);
  if (it) {
    if (!cJSON_IsBool(it))
      fail(reason, n, failed, "driver_update: must be true or false");
    else
      out->driver_update = cJSON_IsTrue(it);
    /* It lifts the driver gate for the release the job names; without one
     * there is nothing to lift, and the sender likely forgot it. */
    bool edup = false;
    if (out->driver_update && !get_unique(root, "expect_fw_version", &edup))
      fail(reason, n, failed,
           "driver_update: needs expect_fw_version (the release the updated driver accepts)");
  }
}

static void parse_fields(const cJSON *root, const ef_job_limits *lim, ef_job *out, char *reason, size_t n,
                         bool *failed, bool *too_large) {
  static const char *const known[] = {"job_id",
                                      "url",
                                      "sha256",
                                      "size",
                                      "version",
                                      "project",
                                      "chip",
                                      "allow_downgrade",
                                      "rollout",
                                      "not_after",
                                      "expect_fw_version",
                                      "driver_update",
                                      "release"};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    bool dup = false;
    (void)get_unique(root, known[i], &dup);
    if (dup) fail(reason, n, failed, "%s: given more than once", known[i]);
  }
  bool dup = false;

  const cJSON *it = get_unique(root, "job_id", &dup);
  bool id_dup = dup;
  if (!it)
    fail(reason, n, failed, "job_id: required");
  else if (!cJSON_IsString(it) || !ef_id_valid(it->valuestring))
    fail(reason, n, failed, "job_id: must be 1-64 characters of [A-Za-z0-9._:-]");
  else if (!id_dup)
    snprintf(out->job_id, sizeof out->job_id, "%s", it->valuestring);

  it = get_unique(root, "url", &dup);
  if (!it)
    fail(reason, n, failed, "url: required");
  else if (!cJSON_IsString(it) || strlen(it->valuestring) > EF_JOB_URL_MAX)
    fail(reason, n, failed, "url: must be a string of at most %d characters", EF_JOB_URL_MAX);
  else if (!url_ok(it->valuestring, lim->allow_http))
    fail(reason, n, failed,
         lim->allow_http ? "url: must be an http or https URL with a host"
                         : "url: must be https (https://host/...)");
  else
    snprintf(out->url, sizeof out->url, "%s", it->valuestring);

  parse_image_fields(root, lim, out, reason, n, failed, too_large);
  parse_policy_fields(root, out, reason, n, failed);
  parse_release(root, out, reason, n, failed);
}

void ef_job_manifest(const ef_job *job, ef_manifest *out) {
  memset(out, 0, sizeof *out);
  memcpy(out->rel.sha256_hex, job->sha256_hex, sizeof out->rel.sha256_hex);
  out->rel.size = job->size;
  snprintf(out->rel.version, sizeof out->rel.version, "%s", job->version);
  snprintf(out->rel.project, sizeof out->rel.project, "%s", job->project);
  snprintf(out->rel.chip, sizeof out->rel.chip, "%s", job->chip);
  out->rel.secure_version = job->secure_version;
  snprintf(out->rel.hosted_release, sizeof out->rel.hosted_release, "%s", job->expect_fw_version);
  out->rel.driver_update = job->driver_update;
  out->rel.allow_downgrade = job->signed_downgrade;
  snprintf(out->key_id, sizeof out->key_id, "%s", job->release_key_id);
  memcpy(out->sig, job->release_signature, sizeof out->sig);
}

/* True when a JSON string in @p json escapes a NUL ("\u0000"): cJSON would
 * end the string there, so "j1\u0000x" would read as "j1" and a key
 * "version\u0000" as "version". */
static bool has_escaped_nul(const char *json, size_t len) {
  for (size_t i = 0; i + 1 < len; i++) {
    if (json[i] != '\\') continue;
    if (json[i + 1] == 'u' && len - i >= 6 && memcmp(json + i + 2, "0000", 4) == 0) return true;
    i++; /* the escaped character: "\\u0000" is a backslash and "u0000" */
  }
  return false;
}

static void job_clear(ef_job *j) {
  memset(j, 0, sizeof *j);
  j->chip_id = -1;
  j->rollout_percent = -1;
}

ef_err ef_job_parse(const char *json, size_t len, const ef_job_limits *lim, ef_job *out, ef_status *st) {
  ef_job_limits deflim;
  char *copy = NULL;
  cJSON *root = NULL;
  bool failed = false, too_large = false;
  ef_err rc = EF_ERR_BAD_JOB;
  char reason[EF_STATUS_DETAIL_MAX] = "";
  const size_t n = sizeof reason;

  if (!lim) {
    ef_job_limits_default(&deflim);
    lim = &deflim;
  }
  job_clear(out);
  /* Before the NULL check: a caller may drop an oversized payload unread. */
  if (len > lim->max_payload) {
    fail(reason, n, &failed, "payload: too large (%zu bytes, at most %zu)", len, lim->max_payload);
    goto out;
  }
  if (!json || len == 0) {
    fail(reason, n, &failed, "payload: empty");
    goto out;
  }
  if (!utf8_valid((const unsigned char *)json, len)) {
    fail(reason, n, &failed, "payload: not valid UTF-8 text");
    goto out;
  }
  if (has_escaped_nul(json, len)) {
    fail(reason, n, &failed, "payload: \\u0000 is not allowed (a NUL would cut a string short)");
    goto out;
  }
  /* cJSON wants the terminator inside the length to reject trailing garbage. */
  copy = malloc(len + 1);
  if (!copy) {
    rc = EF_ERR_NOMEM;
    fail(reason, n, &failed, "payload: out of memory");
    goto out;
  }
  memcpy(copy, json, len);
  copy[len] = '\0';
  const char *end = NULL;
  root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
  if (!root) {
    fail(reason, n, &failed, "payload: not valid JSON (near byte %td)", end ? end - copy : (ptrdiff_t)0);
    goto out;
  }
  if (!cJSON_IsObject(root)) {
    fail(reason, n, &failed, "payload: must be a JSON object");
    goto out;
  }
  parse_fields(root, lim, out, reason, n, &failed, &too_large);
  if (!failed) rc = too_large ? EF_ERR_TOO_LARGE : EF_OK;

out:
  if (rc != EF_OK) {
    ef_status_fail(st, rc, "%s", reason);
    /* Keep only the job_id so nobody runs a half-parsed job. */
    char id[sizeof out->job_id];
    memcpy(id, out->job_id, sizeof id);
    job_clear(out);
    memcpy(out->job_id, id, sizeof id);
  }
  cJSON_Delete(root);
  free(copy);
  return rc;
}

/* One "key=length:value" line per field: lengths keep the encoding
 * unambiguous whatever characters the values contain. */
static void fp_field(EVP_MD_CTX *ctx, const char *key, const char *value) {
  char head[64];
  int k = snprintf(head, sizeof head, "%s=%zu:", key, strlen(value));
  EVP_DigestUpdate(ctx, head, (size_t)k);
  EVP_DigestUpdate(ctx, value, strlen(value));
  EVP_DigestUpdate(ctx, "\n", 1);
}

void ef_job_fingerprint(const ef_job *job, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  char num[32];
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  out[0] = '\0';
  if (!ctx) return;
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) goto out;
  /* rollout.percent is deliberately absent: widening a rollout is the same job. */
  fp_field(ctx, "format", "espfleet-job-1");
  fp_field(ctx, "job_id", job->job_id);
  fp_field(ctx, "url", job->url);
  fp_field(ctx, "sha256", job->sha256_hex);
  snprintf(num, sizeof num, "%" PRIu64, job->size);
  fp_field(ctx, "size", num);
  fp_field(ctx, "version", job->version);
  fp_field(ctx, "project", job->project);
  fp_field(ctx, "chip", job->chip);
  fp_field(ctx, "allow_downgrade", job->allow_downgrade ? "true" : "false");
  snprintf(num, sizeof num, "%lld", (long long)job->not_after);
  fp_field(ctx, "not_after", num);
  fp_field(ctx, "expect_fw_version", job->expect_fw_version);
  /* Only when set, so jobs without the key keep the fingerprints recorded
   * in journals before it existed. */
  if (job->driver_update) fp_field(ctx, "driver_update", "true");
  if (job->has_release) {
    char sig[89];
    ef_release_sig_to_base64(job->release_signature, sig);
    fp_field(ctx, "release.key_id", job->release_key_id);
    fp_field(ctx, "release.signature", sig);
    snprintf(num, sizeof num, "%" PRIu32, job->secure_version);
    fp_field(ctx, "release.secure_version", num);
    fp_field(ctx, "release.allow_downgrade", job->signed_downgrade ? "true" : "false");
  }
  if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) goto out;
  ef_hex(md, 32, out);
out:
  EVP_MD_CTX_free(ctx);
}

/* An integer written exactly: cJSON prints numbers with 15 significant
 * digits when they compare equal within its tolerance, and a size near
 * 2^53 would then read back as another size. */
static bool add_uint(cJSON *o, const char *key, uint64_t v) {
  char text[24];
  snprintf(text, sizeof text, "%" PRIu64, v);
  return cJSON_AddRawToObject(o, key, text) != NULL;
}

char *ef_job_to_json(const ef_job *job) {
  char *s = NULL;
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  bool ok = cJSON_AddStringToObject(o, "job_id", job->job_id) &&
            cJSON_AddStringToObject(o, "url", job->url) &&
            cJSON_AddStringToObject(o, "sha256", job->sha256_hex) && add_uint(o, "size", job->size) &&
            cJSON_AddStringToObject(o, "version", job->version);
  if (ok && job->project[0]) ok = cJSON_AddStringToObject(o, "project", job->project);
  if (ok && job->chip[0]) ok = cJSON_AddStringToObject(o, "chip", job->chip);
  if (ok && job->allow_downgrade) ok = cJSON_AddTrueToObject(o, "allow_downgrade");
  if (ok && job->rollout_percent >= 0) {
    cJSON *r = cJSON_AddObjectToObject(o, "rollout");
    ok = r && cJSON_AddNumberToObject(r, "percent", job->rollout_percent);
  }
  if (ok && job->not_after) {
    /* ef_rfc3339_parse reads this back to the same instant, whatever offset
     * the job was written with: the journal depends on it. */
    char ts[32];
    ok = ef_rfc3339_format_seconds(job->not_after, ts) && cJSON_AddStringToObject(o, "not_after", ts);
  }
  if (ok && job->expect_fw_version[0])
    ok = cJSON_AddStringToObject(o, "expect_fw_version", job->expect_fw_version);
  if (ok && job->driver_update) ok = cJSON_AddTrueToObject(o, "driver_update");
  if (ok && job->has_release) {
    char sig[89];
    cJSON *r = cJSON_AddObjectToObject(o, "release");
    ef_release_sig_to_base64(job->release_signature, sig);
    ok = r && cJSON_AddStringToObject(r, "key_id", job->release_key_id) &&
         cJSON_AddStringToObject(r, "signature", sig) &&
         cJSON_AddNumberToObject(r, "secure_version", job->secure_version) &&
         cJSON_AddBoolToObject(r, "allow_downgrade", job->signed_downgrade);
  }
  if (ok) s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}
