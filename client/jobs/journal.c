/*
 * The journal: state_dir/journal.json, replaced atomically on every save.
 *
 * One record per line, each line a JSON object of a fixed layout:
 *
 *   {"kind":"<kind>","crc":"<8 hex digits>","data":<JSON>}
 *
 * where crc is the CRC-32 (zlib's) of the bytes of <JSON> as written. The
 * first line is the header (kind "journal": format and the secure_version
 * floor), the last the end mark (kind "end": how many lines precede it, and
 * the floor again). A line that is damaged, or whose content this version
 * refuses, is dropped alone; the floor survives the loss of either copy.
 * docs/protocol.md ("Crash safety") describes the format for people.
 */
#include "espfleet/journal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "journal_io.h"

#define JOURNAL_FORMAT 2
/* A journal is a few tens of KiB; anything far larger is not ours. */
#define JOURNAL_MAX_BYTES (1024 * 1024)

/* ---- the file I/O seam (journal_io.h) ---- */

static int sys_open(const char *path, int flags, mode_t mode) { return open(path, flags, mode); }

static const ef_journal_io sys_io = {
    .open = sys_open,
    .read = read,
    .write = write,
    .fstat = fstat,
    .fsync = fsync,
    .close = close,
    .rename = rename,
    .unlink = unlink,
    .mkdir = mkdir,
    .stat = stat,
    .statvfs = statvfs,
};
static const ef_journal_io *io = &sys_io;

void ef_journal_io_set(const ef_journal_io *table) { io = table ? table : &sys_io; }

/* ---- small helpers ---- */

static uint32_t crc32_of(const char *p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= (unsigned char)p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

static bool path_in(char *out, size_t n, const char *dir, const char *name) {
  int k = snprintf(out, n, "%s/%s", dir, name);
  return k > 0 && (size_t)k < n;
}

/* Copies @p src into @p dst of @p n bytes only when it fits whole; false for
 * NULL or a longer text (an entry we did not write, not one to cut). */
static bool copy_if_fits(char *dst, size_t n, const char *src) {
  if (!src || strlen(src) >= n) return false;
  memcpy(dst, src, strlen(src) + 1);
  return true;
}

static const char *file_kind(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISLNK(m)) return "a symbolic link";
  return "of an unknown type";
}

/* A growing text buffer; a failed append leaves ok false. */
typedef struct {
  char *p;
  size_t len, cap;
  bool ok;
} text_buf;

static void tb_add(text_buf *b, const char *s, size_t n) {
  if (!b->ok) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->ok = false;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

/*
 * Opens @p path for reading without following a link and without blocking
 * (a FIFO would block open() until a writer came), and refuses anything but
 * a regular file. *fd is -1 with EF_OK when the file does not exist.
 */
static ef_err open_regular(const char *path, int *fd, off_t *size, ef_status *st) {
  struct stat sb;
  *fd = io->open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
  if (*fd < 0) {
    if (errno == ENOENT) return EF_OK;
    if (errno == ELOOP)
      return ef_status_fail(
          st, EF_ERR_IO, "%s is a symbolic link, not a regular file: it is not followed (remove it)", path);
    return ef_status_fail(st, EF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  }
  if (io->fstat(*fd, &sb) != 0) {
    ef_err rc = ef_status_fail(st, EF_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    io->close(*fd);
    *fd = -1;
    return rc;
  }
  if (!S_ISREG(sb.st_mode)) {
    io->close(*fd);
    *fd = -1;
    return ef_status_fail(st, EF_ERR_IO, "%s is %s, not a regular file: it is not read (remove it)", path,
                          file_kind(sb.st_mode));
  }
  if (size) *size = sb.st_size;
  return EF_OK;
}

/* Reads the whole file; *buf is NULL with EF_OK when the file does not exist. */
static ef_err read_file(const char *path, char **buf, size_t *len, bool *too_big, ef_status *st) {
  char *data = NULL;
  size_t used = 0, cap;
  int fd = -1;
  off_t size = 0;
  *buf = NULL;
  *too_big = false;
  ef_err rc = open_regular(path, &fd, &size, st);
  if (rc != EF_OK || fd < 0) goto out;
  /* The size it has now and room to see that it grew, and the NUL; at most
   * one byte more than a journal may have, to tell that it is too big. */
  cap = size > 0 && size < JOURNAL_MAX_BYTES ? (size_t)size + 2 : JOURNAL_MAX_BYTES + 2;
  data = malloc(cap);
  if (!data) {
    rc = ef_status_fail(st, EF_ERR_NOMEM, "cannot read %s", path);
    goto out;
  }
  for (;;) {
    if (used + 1 == cap && cap < JOURNAL_MAX_BYTES + 2) {
      size_t more = cap * 2 < JOURNAL_MAX_BYTES + 2 ? cap * 2 : JOURNAL_MAX_BYTES + 2;
      char *p = realloc(data, more);
      if (!p) {
        rc = ef_status_fail(st, EF_ERR_NOMEM, "cannot read %s", path);
        goto out;
      }
      data = p;
      cap = more;
    }
    ssize_t r = io->read(fd, data + used, cap - 1 - used);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = ef_status_fail(st, EF_ERR_IO, "cannot read %s: %s", path, strerror(errno));
      goto out;
    }
    if (r == 0) break;
    used += (size_t)r;
    if (used > JOURNAL_MAX_BYTES) {
      *too_big = true;
      used = JOURNAL_MAX_BYTES;
      break;
    }
  }
  data[used] = '\0';
  *buf = data;
  *len = used;
  data = NULL;
out:
  if (fd >= 0) io->close(fd);
  free(data);
  return rc;
}

static bool write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = io->write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return false;
    if (w == 0) {
      errno = EIO;
      return false;
    }
    p += w;
    n -= (size_t)w;
  }
  return true;
}

/*
 * Replaces dir/name with @p text so that a crash at any point leaves the old
 * or the new content: the text goes to a new file (created exclusively and
 * never through a link, so nothing planted at the temporary name is written
 * through), which is synced before the rename; the directory is synced after
 * it, since only then is the rename itself durable.
 */
static ef_err write_atomic(const char *dir, const char *name, const char *text, size_t len, ef_status *st) {
  char path[EF_JOURNAL_DIR_MAX + 48], tmp[EF_JOURNAL_DIR_MAX + 64];
  int fd = -1, dfd = -1;
  bool renamed = false;
  const char *step = NULL, *what = NULL; /* what failed, with errno */
  ef_err rc = EF_OK;

  if (!path_in(path, sizeof path, dir, name) || snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return ef_status_fail(st, EF_ERR_INVALID_ARG, "state_dir is too long");
  /* A fixed temporary name: one daemon owns a state_dir, and a file left
   * there by a crash is removed first. */
  if (io->unlink(tmp) != 0 && errno != ENOENT) {
    /* the create below fails and says why */
  }
  step = "create";
  what = tmp;
  fd = io->open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  if (fd < 0) goto fail;
  step = "write";
  if (!write_all(fd, text, len)) goto fail;
  step = "sync";
  if (io->fsync(fd) != 0) goto fail;
  step = "close";
  int c = io->close(fd);
  fd = -1;
  if (c != 0) goto fail;
  step = "rename";
  what = path;
  if (io->rename(tmp, path) != 0) goto fail;
  renamed = true;
  step = "sync the directory of";
  dfd = io->open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (dfd < 0 || io->fsync(dfd) != 0) goto fail;
  goto out;
fail:
  /* errno is still the failed call's: nothing above touched it since */
  rc = ef_status_fail(st, EF_ERR_IO, "cannot %s %s: %s", step, what, strerror(errno));
  if (fd >= 0) io->close(fd);
  if (!renamed) io->unlink(tmp);
out:
  if (dfd >= 0) io->close(dfd);
  return rc;
}

/* ---- records ---- */

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

/*
 * A job as stored: the text of ef_job_to_json as a JSON string (format 2),
 * or that document as an object (format 1), read back with limits wide
 * enough for any job this daemon accepted. The string keeps the text byte
 * for byte: printing a parsed number again may round it (cJSON prints a
 * size near 2^53 with 15 digits). On failure @p why says what ef_job_parse
 * refused, and out->job_id still holds the job_id when it was readable.
 */
static bool decode_job(const cJSON *doc, ef_job *out, char *why, size_t n) {
  ef_job_limits lim = {.max_payload = SIZE_MAX, .max_image_size = UINT64_MAX, .allow_http = true};
  ef_status st = EF_STATUS_INIT;
  char *printed = cJSON_IsObject(doc) ? cJSON_PrintUnformatted(doc) : NULL;
  const char *text = cJSON_IsString(doc) ? doc->valuestring : printed;
  ef_err e = text ? ef_job_parse(text, strlen(text), &lim, out, &st) : EF_ERR_BAD_JOB;
  free(printed);
  if (e != EF_OK) snprintf(why, n, "%s", st.detail[0] ? st.detail : "not a job document");
  return e == EF_OK;
}

/* Adds @p job under @p key as the text ef_job_to_json gives. */
static bool encode_job(cJSON *parent, const char *key, const ef_job *job) {
  char *text = ef_job_to_json(job);
  bool ok = text && cJSON_AddStringToObject(parent, key, text);
  free(text);
  return ok;
}

static void damage_note(ef_journal_damage *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void damage_note(ef_journal_damage *d, const char *fmt, ...) {
  size_t k = strlen(d->summary);
  if (k + 3 >= sizeof d->summary) return;
  if (k) k += (size_t)snprintf(d->summary + k, sizeof d->summary - k, "; ");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->summary + k, sizeof d->summary - k, fmt, ap);
  va_end(ap);
}

/* {"attempt": N, "phase": "...", "job": "<job document>"}. On failure @p id
 * holds the job's job_id when it could be read. */
static bool decode_current(const cJSON *o, ef_journal *j, char *id, char *why, size_t n) {
  ef_job job;
  double v;
  ef_job_state phase;
  bool ok = decode_job(cJSON_GetObjectItemCaseSensitive(o, "job"), &job, why, n);
  if (ok &&
      (!int_of(o, "attempt", 1, 1000000, &v) || ef_state_from_name(str_of(o, "phase"), &phase) != EF_OK)) {
    snprintf(why, n, "attempt or phase missing");
    ok = false;
  }
  if (!ok) {
    copy_if_fits(id, EF_JOB_ID_MAX + 1, job.job_id);
    return false;
  }
  ef_journal_set_current(j, &job, (int)v, phase);
  return true;
}

static bool decode_waiting(const cJSON *job_doc, ef_journal *j, char *id, char *why, size_t n) {
  ef_job job;
  if (!decode_job(job_doc, &job, why, n)) {
    copy_if_fits(id, EF_JOB_ID_MAX + 1, job.job_id);
    return false;
  }
  ef_journal_set_waiting(j, &job);
  return true;
}

static bool decode_installed(const cJSON *o, ef_journal *j, char *why, size_t n) {
  ef_app_info app;
  memset(&app, 0, sizeof app);
  /* an app without a version is none (and would not be written back) */
  if (!cJSON_IsObject(o) || !copy_if_fits(app.version, sizeof app.version, str_of(o, "version")) ||
      !app.version[0] || !copy_if_fits(app.project, sizeof app.project, str_of(o, "project")) ||
      !copy_if_fits(app.sha256_hex, sizeof app.sha256_hex, str_of(o, "sha256"))) {
    snprintf(why, n, "version, project or sha256 missing or too long");
    return false;
  }
  ef_journal_set_installed(j, &app);
  return true;
}

static bool decode_result(const cJSON *it, ef_journal *j, char *why, size_t n) {
  ef_journal_result r;
  double v;
  memset(&r, 0, sizeof r);
  const char *err = str_of(it, "error");
  if (!cJSON_IsObject(it) || !copy_if_fits(r.job_id, sizeof r.job_id, str_of(it, "job_id")) ||
      !copy_if_fits(r.fingerprint, sizeof r.fingerprint, str_of(it, "fingerprint")) ||
      !copy_if_fits(r.message, sizeof r.message, str_of(it, "message")) ||
      ef_state_from_name(str_of(it, "state"), &r.state) != EF_OK || !ef_state_is_final(r.state) || !err ||
      !int_of(it, "ts_ms", -9e15, 9e15, &v)) {
    snprintf(why, n, "a key is missing or wrong");
    return false;
  }
  r.ts_ms = (int64_t)v;
  r.error = ef_err_from_name(err);
  if (r.error == EF_ERR__COUNT) {
    snprintf(why, n, "unknown error code \"%.40s\"", err);
    return false;
  }
  if (!int_of(it, "attempt", 0, 1000000, &v)) {
    snprintf(why, n, "attempt missing");
    return false;
  }
  r.attempt = (int)v;
  ef_journal_record_final(j, &r);
  return true;
}

/* An integer written exactly (cJSON may print a large one rounded). */
static bool add_int(cJSON *o, const char *key, int64_t v) {
  char text[24];
  snprintf(text, sizeof text, "%" PRId64, v);
  return cJSON_AddRawToObject(o, key, text) != NULL;
}

static cJSON *encode_result(const ef_journal_result *r) {
  char ts[32];
  ef_rfc3339_format(r->ts_ms, ts);
  cJSON *o = cJSON_CreateObject();
  bool ok = o && cJSON_AddStringToObject(o, "job_id", r->job_id) &&
            cJSON_AddStringToObject(o, "fingerprint", r->fingerprint) &&
            cJSON_AddStringToObject(o, "state", ef_state_name(r->state)) &&
            cJSON_AddStringToObject(o, "error", ef_err_name(r->error)) &&
            cJSON_AddStringToObject(o, "message", r->message) && add_int(o, "ts_ms", r->ts_ms) &&
            cJSON_AddStringToObject(o, "ts", ts) /* for people reading the file */ &&
            cJSON_AddNumberToObject(o, "attempt", r->attempt);
  if (ok) return o;
  cJSON_Delete(o);
  return NULL;
}

/* Appends one line for @p data (consumed) to @p b. */
static void add_record(text_buf *b, const char *kind, cJSON *data, size_t *lines) {
  char *text = data ? cJSON_PrintUnformatted(data) : NULL;
  cJSON_Delete(data);
  if (!text) {
    b->ok = false;
    return;
  }
  char head[64];
  int k = snprintf(head, sizeof head, "{\"kind\":\"%s\",\"crc\":\"%08" PRIx32 "\",\"data\":", kind,
                   crc32_of(text, strlen(text)));
  tb_add(b, head, (size_t)k);
  tb_add(b, text, strlen(text));
  tb_add(b, "}\n", 2);
  free(text);
  (*lines)++;
}

static cJSON *floor_doc(const char *count_key, double count, uint32_t floor) {
  cJSON *o = cJSON_CreateObject();
  if (o && (!cJSON_AddNumberToObject(o, count_key, count) || !cJSON_AddNumberToObject(o, "floor", floor))) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

static char *encode(const ef_journal *j, size_t *len) {
  text_buf b = {.ok = true};
  size_t lines = 0;
  add_record(&b, "journal", floor_doc("format", JOURNAL_FORMAT, j->floor), &lines);
  if (j->installed.version[0]) {
    cJSON *o = cJSON_CreateObject();
    if (o && !(cJSON_AddStringToObject(o, "version", j->installed.version) &&
               cJSON_AddStringToObject(o, "project", j->installed.project) &&
               cJSON_AddStringToObject(o, "sha256", j->installed.sha256_hex))) {
      cJSON_Delete(o);
      o = NULL;
    }
    add_record(&b, "installed", o, &lines);
  }
  if (j->has_current) {
    cJSON *o = cJSON_CreateObject();
    if (o && !(cJSON_AddNumberToObject(o, "attempt", j->attempt) &&
               cJSON_AddStringToObject(o, "phase", ef_state_name(j->phase)) &&
               encode_job(o, "job", &j->current))) {
      cJSON_Delete(o);
      o = NULL;
    }
    add_record(&b, "current", o, &lines);
  }
  if (j->has_waiting) {
    cJSON *o = cJSON_CreateObject();
    if (o && !encode_job(o, "job", &j->waiting)) {
      cJSON_Delete(o);
      o = NULL;
    }
    add_record(&b, "waiting", o, &lines);
  }
  for (size_t i = 0; i < j->n_results; i++) add_record(&b, "result", encode_result(&j->results[i]), &lines);
  for (size_t i = 0; i < j->n_decisions; i++)
    add_record(&b, "result", encode_result(&j->decisions[i]), &lines);
  add_record(&b, "end", floor_doc("records", (double)lines, j->floor), &lines);
  if (!b.ok) {
    free(b.p);
    return NULL;
  }
  *len = b.len;
  return b.p;
}

/*
 * Splits a line of the fixed layout into its kind and data, and checks the
 * data's CRC. @return NULL when the line is whole, else why not.
 */
static const char *split_line(const char *line, size_t n, char kind[16], const char **data, size_t *dlen) {
  static const char k1[] = "{\"kind\":\"", k2[] = "\",\"crc\":\"", k3[] = "\",\"data\":";
  size_t i = sizeof k1 - 1, kl = 0;
  if (n < sizeof k1 - 1 || memcmp(line, k1, sizeof k1 - 1) != 0) return "not a journal record";
  while (i < n && kl < 15 && ((line[i] >= 'a' && line[i] <= 'z') || line[i] == '_')) kind[kl++] = line[i++];
  kind[kl] = '\0';
  if (kl == 0 || n - i < sizeof k2 - 1 + 8 + sizeof k3 - 1 + 1 || memcmp(line + i, k2, sizeof k2 - 1) != 0)
    return "not a journal record";
  i += sizeof k2 - 1;
  char hex[9];
  memcpy(hex, line + i, 8);
  hex[8] = '\0';
  char *end = NULL;
  unsigned long crc = strtoul(hex, &end, 16);
  if (end != hex + 8 || hex[0] == '+' || hex[0] == '-' || hex[0] == ' ') return "not a journal record";
  i += 8;
  if (memcmp(line + i, k3, sizeof k3 - 1) != 0) return "not a journal record";
  i += sizeof k3 - 1;
  if (n - i < 2 || line[n - 1] != '}') return "not a journal record";
  *data = line + i;
  *dlen = n - 1 - i;
  if (crc32_of(*data, *dlen) != (uint32_t)crc) return "checksum mismatch";
  return NULL;
}

static const cJSON *item(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

/* Reads a file of format 2, line by line. */
static void decode_lines(const char *text, size_t len, ef_journal *j, ef_journal_damage *d) {
  size_t lineno = 0, pos = 0;
  bool have_floor = false, ended = false;
  bool seen_installed = false, seen_current = false, seen_waiting = false;
  while (pos < len && !ended) {
    const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - line) : len - pos;
    pos += n + (nl ? 1 : 0);
    lineno++;
    // cppcheck-suppress knownConditionTrueFalse ; memchr may find the '\n' at line itself: an empty line
    if (n == 0) {
      lineno--;
      continue; /* a blank line: nothing was lost */
    }
    char kind[16], why[EF_STATUS_DETAIL_MAX], jid[EF_JOB_ID_MAX + 1] = "";
    const char *data = NULL;
    size_t dlen = 0;
    const char *bad = nl ? split_line(line, n, kind, &data, &dlen) : "cut short";
    cJSON *o = NULL;
    if (!bad) {
      o = cJSON_ParseWithLength(data, dlen);
      if (!o) bad = "not JSON";
    }
    bool ok = false;
    why[0] = '\0';
    if (bad) {
      snprintf(why, sizeof why, "%s", bad);
      if (!nl) d->truncated = true;
    } else if (strcmp(kind, "journal") == 0 || strcmp(kind, "end") == 0) {
      double v, f = 0;
      bool is_end = kind[0] == 'e';
      if (!int_of(o, "floor", 0, 4294967295.0, &f)) {
        snprintf(why, sizeof why, "floor missing");
      } else if (!is_end && !int_of(o, "format", JOURNAL_FORMAT, JOURNAL_FORMAT, &v)) {
        snprintf(why, sizeof why, "unknown format (a newer espfleetd?)");
      } else {
        ef_journal_set_floor(j, (uint32_t)f);
        have_floor = true;
        ok = true;
        if (is_end) {
          ended = true;
          v = -1;
          if (!int_of(o, "records", 0, 1e9, &v) || (size_t)v != lineno - 1) {
            damage_note(d, "the end record counts %.0f lines before it, found %zu", v, lineno - 1);
            if (v > (double)(lineno - 1)) d->dropped += (size_t)v - (lineno - 1);
          }
        }
      }
    } else if (strcmp(kind, "installed") == 0) {
      ok = !seen_installed && decode_installed(o, j, why, sizeof why);
      if (seen_installed) snprintf(why, sizeof why, "a second one");
      seen_installed = true;
    } else if (strcmp(kind, "current") == 0) {
      ok = !seen_current && decode_current(o, j, jid, why, sizeof why);
      /* The job cannot run again, but it did run: its job_id, when
       * readable, still gets a final state (the caller's). */
      if (!ok && !seen_current) copy_if_fits(d->lost_current, sizeof d->lost_current, jid);
      if (seen_current) snprintf(why, sizeof why, "a second one");
      seen_current = true;
    } else if (strcmp(kind, "waiting") == 0) {
      ok = !seen_waiting && decode_waiting(item(o, "job"), j, jid, why, sizeof why);
      if (seen_waiting) snprintf(why, sizeof why, "a second one");
      seen_waiting = true;
    } else if (strcmp(kind, "result") == 0) {
      ok = decode_result(o, j, why, sizeof why);
    } else {
      snprintf(why, sizeof why, "unknown kind \"%s\" (a newer espfleetd?)", kind);
    }
    if (!ok) {
      d->dropped++;
      const char *id = jid[0] ? jid : o ? str_of(o, "job_id") : NULL;
      if (bad)
        damage_note(d, "line %zu: %s", lineno, why);
      else
        damage_note(d, "line %zu (%s%s%.64s%s): %s", lineno, kind, id ? " \"" : "", id ? id : "",
                    id ? "\"" : "", why);
    }
    cJSON_Delete(o);
  }
  if (!ended) {
    d->truncated = true;
    damage_note(d, "the file ends before its end record");
  }
  if (!have_floor) d->floor_lost = true;
}

/* Reads a file of format 1 (one JSON object), record by record. */
static void decode_v1(const cJSON *root, ef_journal *j, ef_journal_damage *d) {
  char why[EF_STATUS_DETAIL_MAX], jid[EF_JOB_ID_MAX + 1] = "";
  const cJSON *cur = item(root, "current");
  if (cJSON_IsObject(cur) && !decode_current(cur, j, d->lost_current, why, sizeof why)) {
    d->dropped++;
    damage_note(d, "current: %s", why);
  }
  const cJSON *wait = item(root, "waiting");
  if (cJSON_IsObject(wait) && !decode_waiting(wait, j, jid, why, sizeof why)) {
    d->dropped++;
    damage_note(d, "waiting: %s", why);
  }
  const cJSON *app = item(root, "installed");
  if (cJSON_IsObject(app) && !decode_installed(app, j, why, sizeof why)) {
    d->dropped++;
    damage_note(d, "installed: %s", why);
  }
  const cJSON *it;
  size_t i = 0;
  cJSON_ArrayForEach(it, item(root, "results")) {
    if (!decode_result(it, j, why, sizeof why)) {
      d->dropped++;
      damage_note(d, "results[%zu]: %s", i, why);
    }
    i++;
  }
}

static void journal_reset(ef_journal *j) {
  char dir[sizeof j->dir];
  memcpy(dir, j->dir, sizeof dir);
  memset(j, 0, sizeof *j);
  memcpy(j->dir, dir, sizeof dir);
}

ef_err ef_journal_load(ef_journal *j, const char *state_dir, ef_journal_damage *damage, ef_status *st) {
  char path[EF_JOURNAL_DIR_MAX + 32];
  char *buf = NULL;
  size_t len = 0;
  bool too_big = false;
  ef_journal_damage local = {0};
  ef_journal_damage *d = damage ? damage : &local;
  ef_err rc;

  memset(j, 0, sizeof *j);
  memset(d, 0, sizeof *d);
  if (!state_dir || !copy_if_fits(j->dir, sizeof j->dir, state_dir) ||
      !path_in(path, sizeof path, state_dir, EF_JOURNAL_FILE)) {
    rc = ef_status_fail(st, EF_ERR_INVALID_ARG, "state_dir is missing or too long");
    goto out;
  }
  rc = read_file(path, &buf, &len, &too_big, st);
  if (rc != EF_OK || !buf) goto out;

  static const char v2[] = "{\"kind\":\"";
  if (too_big) {
    d->dropped = 1;
    d->truncated = true;
    d->floor_lost = true;
    damage_note(d, "larger than %d bytes: not read", JOURNAL_MAX_BYTES);
  } else if (len >= sizeof v2 - 1 && memcmp(buf, v2, sizeof v2 - 1) == 0) {
    decode_lines(buf, len, j, d);
  } else {
    cJSON *root = cJSON_ParseWithLength(buf, len);
    double v;
    if (cJSON_IsObject(root) && int_of(root, "format", 1, 1, &v)) {
      decode_v1(root, j, d); /* format 1 had no floor: nothing lost */
    } else if (len == 0) {
      d->dropped = 1;
      d->floor_lost = true;
      damage_note(d, "empty");
    } else {
      decode_lines(buf, len, j, d); /* salvages what lines it can */
    }
    cJSON_Delete(root);
  }
  if (d->floor_lost) j->floor = 0;
  if (d->dropped || d->truncated) {
    /* Keep the file as it was for a human to look at; journal.json itself
     * stays until the next save replaces it, so nothing more is lost if the
     * process dies first. */
    ef_status why = EF_STATUS_INIT;
    if (write_atomic(state_dir, EF_JOURNAL_FILE ".corrupt", buf, len, &why) == EF_OK)
      damage_note(d, "a copy is in %s.corrupt", path);
    else
      damage_note(d, "no copy kept: %s", why.detail);
  }
  j->changes = j->saved = 0;
out:
  if (rc != EF_OK) journal_reset(j);
  free(buf);
  return rc;
}

ef_err ef_journal_save(ef_journal *j, ef_status *st) {
  size_t len = 0;
  char *text = encode(j, &len);
  if (!text) return ef_status_fail(st, EF_ERR_NOMEM, "cannot encode the journal");
  ef_err rc = write_atomic(j->dir, EF_JOURNAL_FILE, text, len, st);
  free(text);
  if (rc == EF_OK) j->saved = j->changes;
  return rc;
}

bool ef_journal_durable(const ef_journal *j) { return j->saved == j->changes; }

ef_err ef_journal_check_dir(const char *state_dir, bool create, bool *missing, ef_status *st) {
  char path[EF_JOURNAL_DIR_MAX + 48], probe[EF_JOURNAL_DIR_MAX + 48], name[48];
  struct stat sb;
  struct statvfs vfs;
  int fd = -1;
  if (missing) *missing = false;
  snprintf(name, sizeof name, "journal.probe.%ld", (long)getpid());
  if (!state_dir || !state_dir[0] || !path_in(path, sizeof path, state_dir, EF_JOURNAL_FILE) ||
      !path_in(probe, sizeof probe, state_dir, name))
    return ef_status_fail(st, EF_ERR_INVALID_ARG, "state_dir is missing or too long");
  if (io->stat(state_dir, &sb) != 0 && errno == ENOENT) {
    if (!create) {
      if (missing) *missing = true;
      return EF_OK;
    }
    if (io->mkdir(state_dir, 0700) != 0 && errno != EEXIST)
      return ef_status_fail(st, EF_ERR_IO, "cannot create state_dir %s: %s", state_dir, strerror(errno));
  }
  if (io->stat(state_dir, &sb) != 0)
    return ef_status_fail(st, EF_ERR_IO, "cannot use state_dir %s: %s", state_dir, strerror(errno));
  if (!S_ISDIR(sb.st_mode))
    return ef_status_fail(st, EF_ERR_IO, "state_dir %s is %s, not a directory", state_dir,
                          file_kind(sb.st_mode));
  ef_err rc = open_regular(path, &fd, NULL, st);
  if (fd >= 0) io->close(fd);
  if (rc != EF_OK) return rc;
  if (io->statvfs(state_dir, &vfs) != 0)
    return ef_status_fail(st, EF_ERR_IO, "cannot read the free space of state_dir %s: %s", state_dir,
                          strerror(errno));
  uint64_t free_bytes = (uint64_t)vfs.f_bavail * (vfs.f_frsize ? vfs.f_frsize : vfs.f_bsize);
  if (free_bytes < EF_JOURNAL_MIN_FREE)
    return ef_status_fail(st, EF_ERR_IO,
                          "state_dir %s has %" PRIu64 " KiB free, the journal needs at least %u KiB",
                          state_dir, free_bytes / 1024, EF_JOURNAL_MIN_FREE / 1024);
  if (vfs.f_files > 0 && vfs.f_favail == 0)
    return ef_status_fail(st, EF_ERR_IO, "state_dir %s has no free inodes", state_dir);
  /* Writable is what the file system says when asked to write: permissions,
   * a read-only mount and quotas all answer here, for root too. */
  io->unlink(probe);
  fd = io->open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && write_all(fd, "probe\n", 6) && io->fsync(fd) == 0;
  int err = errno;
  if (fd >= 0) io->close(fd);
  if (fd >= 0) io->unlink(probe);
  if (!ok) return ef_status_fail(st, EF_ERR_IO, "state_dir %s is not writable: %s", state_dir, strerror(err));
  return EF_OK;
}

/* ---- in-memory changes ---- */

void ef_journal_set_current(ef_journal *j, const ef_job *job, int attempt, ef_job_state phase) {
  j->current = *job;
  j->has_current = true;
  j->attempt = attempt;
  j->phase = phase;
  j->changes++;
}

void ef_journal_clear_current(ef_journal *j) {
  j->has_current = false;
  memset(&j->current, 0, sizeof j->current);
  j->attempt = 0;
  j->phase = EF_STATE_IDLE;
  j->changes++;
}

void ef_journal_set_waiting(ef_journal *j, const ef_job *job) {
  j->has_waiting = job != NULL;
  if (job)
    j->waiting = *job;
  else
    memset(&j->waiting, 0, sizeof j->waiting);
  j->changes++;
}

void ef_journal_set_installed(ef_journal *j, const ef_app_info *app) {
  j->installed = *app;
  j->changes++;
}

uint32_t ef_journal_floor(const ef_journal *j) { return j->floor; }

void ef_journal_set_floor(ef_journal *j, uint32_t secure_version) {
  if (secure_version <= j->floor) return;
  j->floor = secure_version;
  j->changes++;
}

/* Results that stand for something that ran (or for an installed or
 * canceled job) are kept apart from refused and skipped documents: those
 * cost a sender nothing, so their number must never push out the others. */
static bool is_decision(const ef_journal_result *r) {
  return r->attempt == 0 && (r->state == EF_STATE_REJECTED || r->state == EF_STATE_SKIPPED);
}

static void remove_at(ef_journal_result *arr, size_t *n, size_t i) {
  memmove(&arr[i], &arr[i + 1], (*n - i - 1) * sizeof arr[0]);
  (*n)--;
}

void ef_journal_forget_final(ef_journal *j, const char *job_id) {
  for (size_t i = 0; i < j->n_results; i++)
    if (strcmp(j->results[i].job_id, job_id) == 0) {
      remove_at(j->results, &j->n_results, i);
      j->changes++;
      return;
    }
  for (size_t i = 0; i < j->n_decisions; i++)
    if (strcmp(j->decisions[i].job_id, job_id) == 0) {
      remove_at(j->decisions, &j->n_decisions, i);
      j->changes++;
      return;
    }
}

void ef_journal_record_final(ef_journal *j, const ef_journal_result *r) {
  /* The older record of this job goes (the new one becomes the newest). */
  ef_journal_forget_final(j, r->job_id);
  bool decision = is_decision(r);
  ef_journal_result *arr = decision ? j->decisions : j->results;
  size_t *n = decision ? &j->n_decisions : &j->n_results;
  // NOLINTNEXTLINE(bugprone-branch-clone): two limits, equal today
  size_t max = decision ? EF_JOURNAL_MAX_DECISIONS : EF_JOURNAL_MAX_RESULTS;
  if (*n == max) remove_at(arr, n, 0);
  arr[(*n)++] = *r;
  j->changes++;
}

const ef_journal_result *ef_journal_find_final(const ef_journal *j, const char *job_id) {
  for (size_t i = 0; i < j->n_results; i++)
    if (strcmp(j->results[i].job_id, job_id) == 0) return &j->results[i];
  for (size_t i = 0; i < j->n_decisions; i++)
    if (strcmp(j->decisions[i].job_id, job_id) == 0) return &j->decisions[i];
  return NULL;
}

const ef_journal_result *ef_journal_last_final(const ef_journal *j) {
  const ef_journal_result *last = NULL;
  for (size_t i = 0; i < j->n_results; i++)
    if (!last || j->results[i].ts_ms >= last->ts_ms) last = &j->results[i];
  for (size_t i = 0; i < j->n_decisions; i++)
    if (!last || j->decisions[i].ts_ms >= last->ts_ms) last = &j->decisions[i];
  return last;
}
