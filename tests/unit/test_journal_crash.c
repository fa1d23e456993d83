/*
 * The journal under a simulated file system, in SQLite's manner
 * (https://sqlite.org/testing.html, "Crash testing"): a power loss at every
 * system call of a save, then the journal must load to the old or the new
 * content, never to neither; once ef_journal_save returned EF_OK, only to
 * the new. And the round trip: every job the parser accepts comes back from
 * a save and a load exactly (random documents, struct equality).
 *
 * The file system model (one directory, /sim): every file has the bytes a
 * reader sees now and the bytes last made durable by fsync; the directory
 * has its entries as of its last fsync plus the log of changes since
 * (create, rename, unlink). A power loss keeps any prefix of that log (file
 * systems commit metadata in order, but not necessarily all of it) and, for
 * the files' contents, either only what was synced (the worst case) or
 * everything written (a process crash, with a torn last write). Writes take
 * at most 61 bytes per call, so a crash lands inside the journal's text too.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cmocka.h>

#include "espfleet/journal.h"
#include "journal_io.h"
#include "journal_same.h"

#define SHA_A       "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define DIR_PATH    "/sim"
#define MAX_INODES  64
#define MAX_ENTRIES 16
#define MAX_FDS     8
#define MAX_LOG     16
#define WRITE_MAX   61

/* ---- the simulated file system ---- */

typedef struct {
  char *data, *durable;
  size_t len, durable_len;
} sim_inode;

typedef struct {
  char name[64];
  int ino;
} sim_entry;

typedef struct {
  sim_entry e[MAX_ENTRIES];
  int n;
} sim_dir;

typedef enum { LOG_LINK, LOG_UNLINK } log_kind; /* a rename is an unlink of the old name and a link */

typedef struct {
  log_kind kind;
  char name[64];
  int ino;
} sim_log;

static sim_inode inodes[MAX_INODES];
static int n_inodes;
static sim_dir now, synced; /* the directory as seen, and as of its last fsync */
static sim_log dlog[MAX_LOG];
static int n_log;
static struct {
  bool used, dir;
  int ino;
  size_t off;
} fds[MAX_FDS];
static long op_count, crash_at = -1;
static bool dead;

static void sim_reset(void) {
  for (int i = 0; i < n_inodes; i++) {
    free(inodes[i].data);
    free(inodes[i].durable);
  }
  memset(inodes, 0, sizeof inodes);
  n_inodes = 0;
  memset(&now, 0, sizeof now);
  memset(&synced, 0, sizeof synced);
  n_log = 0;
  memset(fds, 0, sizeof fds);
  op_count = 0;
  crash_at = -1;
  dead = false;
}

static const char *name_of(const char *path) {
  size_t n = strlen(DIR_PATH);
  if (strncmp(path, DIR_PATH "/", n + 1) != 0) return NULL;
  return path + n + 1;
}

static int find(const sim_dir *d, const char *name) {
  for (int i = 0; i < d->n; i++)
    if (strcmp(d->e[i].name, name) == 0) return i;
  return -1;
}

static void dir_link(sim_dir *d, const char *name, int ino) {
  int i = find(d, name);
  if (i < 0) {
    assert_true(d->n < MAX_ENTRIES);
    i = d->n++;
    snprintf(d->e[i].name, sizeof d->e[i].name, "%s", name);
  }
  d->e[i].ino = ino;
}

static void dir_unlink(sim_dir *d, const char *name) {
  int i = find(d, name);
  if (i < 0) return;
  d->e[i] = d->e[--d->n];
}

static void log_op(log_kind k, const char *name, int ino) {
  assert_true(n_log < MAX_LOG);
  dlog[n_log].kind = k;
  snprintf(dlog[n_log].name, sizeof dlog[n_log].name, "%s", name);
  dlog[n_log].ino = ino;
  n_log++;
}

/* Every call is one step at which the power may go. */
static bool step(void) {
  if (dead) {
    errno = EIO;
    return false;
  }
  if (++op_count == crash_at) {
    dead = true;
    errno = EIO;
    return false;
  }
  return true;
}

static int new_fd(int ino, bool dir) {
  for (int i = 0; i < MAX_FDS; i++)
    if (!fds[i].used) {
      fds[i].used = true;
      fds[i].dir = dir;
      fds[i].ino = ino;
      fds[i].off = 0;
      return 100 + i;
    }
  errno = EMFILE;
  return -1;
}

static int fd_index(int fd) {
  int i = fd - 100;
  if (i < 0 || i >= MAX_FDS || !fds[i].used) return -1;
  return i;
}

static int sim_open(const char *path, int flags, mode_t mode) {
  (void)mode;
  if (!step()) return -1;
  if (strcmp(path, DIR_PATH) == 0) return new_fd(-1, true);
  const char *name = name_of(path);
  if (!name) {
    errno = ENOENT;
    return -1;
  }
  int i = find(&now, name);
  if (i >= 0 && (flags & O_CREAT) && (flags & O_EXCL)) {
    errno = EEXIST;
    return -1;
  }
  if (i < 0) {
    if (!(flags & O_CREAT)) {
      errno = ENOENT;
      return -1;
    }
    assert_true(n_inodes < MAX_INODES);
    int ino = n_inodes++;
    dir_link(&now, name, ino);
    log_op(LOG_LINK, name, ino);
    return new_fd(ino, false);
  }
  int ino = now.e[i].ino;
  if (flags & O_TRUNC) inodes[ino].len = 0;
  return new_fd(ino, false);
}

static ssize_t sim_read(int fd, void *buf, size_t n) {
  int i = fd_index(fd);
  if (!step()) return -1;
  if (i < 0 || fds[i].dir) {
    errno = EBADF;
    return -1;
  }
  sim_inode *f = &inodes[fds[i].ino];
  size_t left = f->len > fds[i].off ? f->len - fds[i].off : 0;
  if (n > left) n = left;
  memcpy(buf, f->data + fds[i].off, n);
  fds[i].off += n;
  return (ssize_t)n;
}

static ssize_t sim_write(int fd, const void *buf, size_t n) {
  int i = fd_index(fd);
  if (i < 0 || fds[i].dir) {
    errno = EBADF;
    return -1;
  }
  if (n > WRITE_MAX) n = WRITE_MAX;
  bool alive = step();
  sim_inode *f = &inodes[fds[i].ino];
  size_t k = alive ? n : (dead && op_count == crash_at ? n / 2 : 0); /* a torn last write */
  if (fds[i].off + k > f->len) {
    f->data = realloc(f->data, fds[i].off + k);
    assert_non_null(f->data);
    f->len = fds[i].off + k;
  }
  memcpy(f->data + fds[i].off, buf, k);
  fds[i].off += k;
  if (!alive) return -1;
  return (ssize_t)n;
}

static int sim_fstat(int fd, struct stat *sb) {
  int i = fd_index(fd);
  if (!step()) return -1;
  if (i < 0) {
    errno = EBADF;
    return -1;
  }
  memset(sb, 0, sizeof *sb);
  sb->st_mode = fds[i].dir ? S_IFDIR | 0700 : S_IFREG | 0600;
  if (!fds[i].dir) sb->st_size = (off_t)inodes[fds[i].ino].len;
  return 0;
}

static int sim_fsync(int fd) {
  int i = fd_index(fd);
  if (!step()) return -1;
  if (i < 0) {
    errno = EBADF;
    return -1;
  }
  if (fds[i].dir) {
    synced = now;
    n_log = 0;
  } else {
    sim_inode *f = &inodes[fds[i].ino];
    free(f->durable);
    f->durable = malloc(f->len + 1);
    memcpy(f->durable, f->data, f->len);
    f->durable_len = f->len;
  }
  return 0;
}

static int sim_close(int fd) {
  int i = fd_index(fd);
  if (i >= 0) fds[i].used = false; /* the descriptor goes even when the call fails */
  if (!step()) return -1;
  return 0;
}

static int sim_rename(const char *from, const char *to) {
  if (!step()) return -1;
  const char *a = name_of(from), *b = name_of(to);
  int i = a ? find(&now, a) : -1;
  if (i < 0 || !b) {
    errno = ENOENT;
    return -1;
  }
  int ino = now.e[i].ino;
  dir_unlink(&now, a);
  dir_link(&now, b, ino);
  log_op(LOG_UNLINK, a, -1);
  log_op(LOG_LINK, b, ino);
  return 0;
}

static int sim_unlink(const char *path) {
  if (!step()) return -1;
  const char *name = name_of(path);
  if (!name || find(&now, name) < 0) {
    errno = ENOENT;
    return -1;
  }
  dir_unlink(&now, name);
  log_op(LOG_UNLINK, name, -1);
  return 0;
}

static int sim_mkdir(const char *path, mode_t mode) {
  (void)path;
  (void)mode;
  errno = EEXIST;
  return -1;
}

static int sim_stat(const char *path, struct stat *sb) {
  memset(sb, 0, sizeof *sb);
  if (strcmp(path, DIR_PATH) == 0) {
    sb->st_mode = S_IFDIR | 0700;
    return 0;
  }
  errno = ENOENT;
  return -1;
}

static int sim_statvfs(const char *path, struct statvfs *s) {
  (void)path;
  memset(s, 0, sizeof *s);
  s->f_bavail = 1u << 20;
  s->f_frsize = 4096;
  return 0;
}

static const ef_journal_io sim_io = {
    .open = sim_open,
    .read = sim_read,
    .write = sim_write,
    .fstat = sim_fstat,
    .fsync = sim_fsync,
    .close = sim_close,
    .rename = sim_rename,
    .unlink = sim_unlink,
    .mkdir = sim_mkdir,
    .stat = sim_stat,
    .statvfs = sim_statvfs,
};

typedef enum { KEEP_SYNCED, KEEP_WRITTEN } data_mode;

/*
 * The power goes: the directory keeps its synced entries plus the first
 * @p keep_log changes since; every file keeps what was synced (KEEP_SYNCED)
 * or what was written (KEEP_WRITTEN). What is left is the new, durable state.
 */
static void power_loss(int keep_log, data_mode mode) {
  sim_dir d = synced;
  for (int i = 0; i < keep_log && i < n_log; i++) {
    if (dlog[i].kind == LOG_LINK)
      dir_link(&d, dlog[i].name, dlog[i].ino);
    else
      dir_unlink(&d, dlog[i].name);
  }
  now = synced = d;
  n_log = 0;
  for (int i = 0; i < n_inodes; i++) {
    sim_inode *f = &inodes[i];
    if (mode == KEEP_SYNCED) {
      free(f->data);
      f->data = f->durable ? malloc(f->durable_len + 1) : NULL;
      if (f->data) memcpy(f->data, f->durable, f->durable_len);
      f->len = f->durable ? f->durable_len : 0;
    } else {
      free(f->durable);
      f->durable = malloc(f->len + 1);
      memcpy(f->durable, f->data, f->len);
      f->durable_len = f->len;
    }
  }
  memset(fds, 0, sizeof fds);
  dead = false;
  crash_at = -1;
}

/* ---- journals to save ---- */

static ef_job job_named(const char *id, const char *not_after) {
  char doc[512];
  ef_job j;
  snprintf(doc, sizeof doc,
           "{\"job_id\":\"%s\",\"url\":\"https://h:8443/%s.bin\",\"sha256\":\"" SHA_A
           "\",\"size\":123456,\"version\":\"2.0.1\",\"project\":\"proj\",\"chip\":\"esp32c3\","
           "\"rollout\":{\"percent\":40},\"not_after\":\"%s\",\"expect_fw_version\":\"FG-1.0.5.0.0\"}",
           id, id, not_after);
  assert_int_equal(ef_job_parse(doc, strlen(doc), NULL, &j, NULL), EF_OK);
  return j;
}

static ef_journal_result result(const char *job_id, ef_job_state st, int attempt, int64_t ts) {
  ef_journal_result r;
  memset(&r, 0, sizeof r);
  snprintf(r.job_id, sizeof r.job_id, "%s", job_id);
  snprintf(r.fingerprint, sizeof r.fingerprint, "%064d", (int)ts);
  r.state = st;
  r.error = st == EF_STATE_FAILED ? EF_ERR_HASH_MISMATCH : st == EF_STATE_REJECTED ? EF_ERR_BAD_JOB : EF_OK;
  snprintf(r.message, sizeof r.message, "detail \"%s\" \\ %lld", job_id, (long long)ts);
  r.ts_ms = ts;
  r.attempt = attempt;
  return r;
}

static void journal_a(ef_journal *j) {
  ef_job cur = job_named("job-a", "1970-01-01T00:00:00+01:00"),
         wait = job_named("job-w", "9999-12-31T23:59:59-01:00");
  ef_journal_set_current(j, &cur, 2, EF_STATE_VERIFYING);
  ef_journal_set_waiting(j, &wait);
  ef_app_info app = {"1.9.0", "proj", SHA_A};
  ef_journal_set_installed(j, &app);
  ef_journal_set_floor(j, 3);
  for (int i = 0; i < 5; i++) {
    char id[16];
    snprintf(id, sizeof id, "old-%d", i);
    ef_journal_result r = result(id, i % 2 ? EF_STATE_FAILED : EF_STATE_SUCCEEDED, 1, 1700000000000LL + i);
    ef_journal_record_final(j, &r);
  }
  ef_journal_result r = result("refused", EF_STATE_REJECTED, 0, 1700000000100LL);
  ef_journal_record_final(j, &r);
}

/* A after its job ended: another app, a higher floor, one more result, no current. */
static void journal_b(ef_journal *j) {
  journal_a(j);
  ef_journal_clear_current(j);
  ef_app_info app = {"2.0.1", "proj", SHA_A};
  ef_journal_set_installed(j, &app);
  ef_journal_set_floor(j, 4);
  ef_journal_result r = result("job-a", EF_STATE_SUCCEEDED, 2, 1700000009999LL);
  ef_journal_record_final(j, &r);
}

static ef_journal *fresh(void) {
  ef_journal *j = calloc(1, sizeof *j);
  assert_non_null(j);
  snprintf(j->dir, sizeof j->dir, "%s", DIR_PATH);
  return j;
}

/* Puts the old state on the simulated disk, durably: a saved journal, or raw bytes. */
typedef void (*setup_fn)(void);

static void setup_none(void) {}
static void setup_saved_a(void) {
  ef_journal *j = fresh();
  journal_a(j);
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  free(j);
}
static void setup_v1(void) {
  /* a journal an espfleetd of format 1 wrote: one JSON object */
  const char *text =
      "{\n\t\"format\":\t1,\n\t\"current\":\tnull,\n\t\"waiting\":\tnull,\n\t\"installed\":\t{\"version\":"
      "\"1.0\","
      "\"project\":\"proj\",\"sha256\":\"" SHA_A
      "\"},\n\t\"results\":\t[{\"job_id\":\"v1-job\",\"fingerprint\":\"\","
      "\"state\":\"succeeded\",\"error\":\"ok\",\"message\":\"\",\"ts_ms\":1,\"ts\":\"x\",\"attempt\":1}]\n}"
      "\n";
  int fd = sim_open(DIR_PATH "/" EF_JOURNAL_FILE, O_WRONLY | O_CREAT, 0600);
  for (size_t off = 0, n = strlen(text); off < n;) off += (size_t)sim_write(fd, text + off, n - off);
  sim_fsync(fd);
  sim_close(fd);
  int dfd = sim_open(DIR_PATH, O_RDONLY | O_DIRECTORY, 0);
  sim_fsync(dfd);
  sim_close(dfd);
}

static ef_journal *load_sim(ef_journal_damage *d) {
  ef_journal *j = malloc(sizeof *j);
  ef_status st = EF_STATUS_INIT;
  if (ef_journal_load(j, DIR_PATH, d, &st) != EF_OK) fail_msg("load failed: %s", st.detail);
  return j;
}

/*
 * For every step of saving @p make's journal over @p setup's, every kept
 * prefix of the directory's changes and both data modes: a power loss
 * leaves the old or the new journal; after EF_OK, the new one.
 */
static void crash_everywhere(setup_fn setup, void (*make)(ef_journal *), const char *label) {
  ef_journal_io_set(&sim_io);
  sim_reset();
  setup();
  ef_journal *old = load_sim(NULL), *want = load_sim(NULL);
  make(want);
  ef_journal_damage d;

  /* how many steps a whole save takes */
  sim_reset();
  setup();
  op_count = 0;
  ef_journal *j = load_sim(NULL);
  make(j);
  long start = op_count;
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  long steps = op_count - start;
  free(j);
  assert_true(steps > 10);

  int runs = 0, olds = 0, news = 0;
  for (long k = 1; k <= steps + 1; k++) {
    for (int keep = 0; keep <= MAX_LOG; keep++) {
      for (int mode = KEEP_SYNCED; mode <= KEEP_WRITTEN; mode++) {
        sim_reset();
        setup();
        j = load_sim(NULL);
        make(j);
        crash_at = op_count + k; /* k == steps + 1: the power goes right after the save returned */
        ef_err rc = ef_journal_save(j, NULL);
        free(j);
        if (keep > n_log) continue; /* every prefix was tried */
        power_loss(keep, (data_mode)mode);
        runs++;
        ef_journal *got = load_sim(&d);
        bool is_old = journal_same(got, old), is_new = journal_same(got, want);
        if (d.dropped || d.truncated || !(is_old || is_new))
          fail_msg(
              "%s: power lost at step %ld of %ld (directory changes kept: %d, file data: %s): the journal "
              "loads to neither the old nor the new content (%zu dropped: %s)",
              label, k, steps, keep, mode == KEEP_SYNCED ? "synced only" : "all written", d.dropped,
              d.summary);
        if (rc == EF_OK && !is_new)
          fail_msg(
              "%s: ef_journal_save returned EF_OK, then a power loss (directory changes kept: %d, file data: "
              "%s) brought back the old journal",
              label, keep, mode == KEEP_SYNCED ? "synced only" : "all written");
        olds += is_old && !is_new;
        news += is_new;
        free(got);
      }
    }
  }
  /* both outcomes occur: the test reached the interesting places */
  assert_true(olds > 0);
  assert_true(news > 0);
  print_message("%s: %ld steps, %d power losses: %d old, %d new\n", label, steps, runs, olds, news);
  free(old);
  free(want);
  sim_reset();
  ef_journal_io_set(NULL);
}

static void test_crash_first_save(void **state) {
  (void)state;
  crash_everywhere(setup_none, journal_a, "first save");
}

static void test_crash_replace(void **state) {
  (void)state;
  crash_everywhere(setup_saved_a, journal_b, "replace");
}

static void test_crash_upgrade_from_format_1(void **state) {
  (void)state;
  crash_everywhere(setup_v1, journal_b, "format 1 -> 2");
}

/* A failed step leaves the old journal and reports it; the next save works. */
static void test_failed_save_keeps_old(void **state) {
  (void)state;
  ef_journal_io_set(&sim_io);
  sim_reset();
  setup_saved_a();
  ef_journal *a = load_sim(NULL), *j = load_sim(NULL);
  journal_b(j);
  for (long k = 1;; k++) {
    crash_at = op_count + k;
    ef_status st = EF_STATUS_INIT;
    ef_err rc = ef_journal_save(j, &st);
    dead = false;
    crash_at = -1;
    synced = now; /* time passes: the directory's changes reach the disk */
    n_log = 0;
    if (rc == EF_OK) break;
    assert_int_equal(rc, EF_ERR_IO);
    assert_false(ef_journal_durable(j));
    assert_non_null(strstr(st.detail, "Input/output error"));
    /* what is on disk now (nothing lost: a failed call, not a power loss) */
    ef_journal *got = load_sim(NULL);
    assert_true(journal_same(got, a) || journal_same(got, j));
    free(got);
  }
  assert_true(ef_journal_durable(j));
  free(a);
  free(j);
  sim_reset();
  ef_journal_io_set(NULL);
}

/* ---- the round trip: parse -> save -> load is the identity ---- */

static uint64_t rng = 0x2545F4914F6CDD1DULL;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static int below(int n) { return (int)(next() % (uint64_t)n); }

/* A JSON string literal of 1..max characters drawn from tricky ones. */
static void rand_string(char *out, size_t n, int max, bool url) {
  static const char *const pieces[] = {"a",
                                       "Z",
                                       "0",
                                       "9",
                                       ".",
                                       "-",
                                       "_",
                                       ":",
                                       "/",
                                       "?",
                                       "=",
                                       "&",
                                       "%",
                                       "\\\"",
                                       "\\\\",
                                       "\\/",
                                       "\\u00e9",
                                       "\xc3\xa9",
                                       "\xe2\x82\xac",
                                       "\xf0\x9f\x94\xa5",
                                       "\\u20ac",
                                       "\\ud83d\\ude00",
                                       "\\t",
                                       "~",
                                       "#",
                                       "'"};
  int len = 1 + below(max), k = 0;
  out[0] = '\0';
  for (int i = 0; i < len; i++) {
    int p = below((int)(sizeof pieces / sizeof pieces[0]));
    if (url && (p == 22)) p = 0; /* no control characters in a URL */
    k += snprintf(out + k, n - (size_t)k, "%s", pieces[p]);
    if ((size_t)k >= n - 8) break;
  }
}

static void rand_time(char *out, size_t n) {
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int y = below(4) == 0 ? (below(2) ? 9999 : below(2) ? 0 : 1970) : 1970 + below(100);
  int mo = 1 + below(12), d = 1 + below(mdays[mo - 1]);
  if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) d = 28;
  int h = below(24), mi = below(60), s = below(61);
  int k = snprintf(out, n, "%04d-%02d-%02d%c%02d:%02d:%02d", y, mo, d, below(2) ? 'T' : 't', h, mi, s);
  if (below(3) == 0) k += snprintf(out + k, n - (size_t)k, ".%d", below(1000000));
  if (below(3) == 0)
    snprintf(out + k, n - (size_t)k, "%c", below(2) ? 'Z' : 'z');
  else
    snprintf(out + k, n - (size_t)k, "%c%02d:%02d", below(2) ? '+' : '-', below(24), below(60));
}

static void b64(const uint8_t *in, size_t n, char *out) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t k = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v =
        (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
    out[k++] = t[v >> 18 & 63];
    out[k++] = t[v >> 12 & 63];
    out[k++] = (char)(i + 1 < n ? t[v >> 6 & 63] : '='); /* ?: makes the chars an int */
    out[k++] = (char)(i + 2 < n ? t[v & 63] : '=');
  }
  out[k] = '\0';
}

static void rand_job(char *doc, size_t n) {
  static const char *const chips[] = {"esp32", "esp32s3", "ESP32-S3", "esp32c3", "esp32c6", "esp32s2"};
  char s[512], id[80];
  int k = 0;
  static const char idc[] = "abcXYZ019._:-";
  int idl = 1 + below(64);
  for (int i = 0; i < idl; i++) id[i] = idc[below((int)sizeof idc - 1)];
  id[idl] = '\0';
  k += snprintf(doc + k, n - (size_t)k, "{\"job_id\":\"%s\"", id);
  rand_string(s, sizeof s, 40, true);
  k += snprintf(doc + k, n - (size_t)k, ",\"url\":\"%s://h%s/%s\"", below(2) ? "https" : "HTTPS",
                below(2) ? ":8443" : "", s);
  char sha[65];
  for (int i = 0; i < 64; i++) sha[i] = "0123456789abcdefABCDEF"[below(22)];
  sha[64] = '\0';
  k += snprintf(doc + k, n - (size_t)k, ",\"sha256\":\"%s\"", sha);
  uint64_t size = below(4) == 0 ? 9007199254740992ULL - (uint64_t)below(3) : 1 + next() % 100000000;
  k += snprintf(doc + k, n - (size_t)k, ",\"size\":%llu", (unsigned long long)size);
  rand_string(s, sizeof s, 12, false);
  k += snprintf(doc + k, n - (size_t)k, ",\"version\":\"%s\"", s);
  if (below(2)) {
    rand_string(s, sizeof s, 12, false);
    k += snprintf(doc + k, n - (size_t)k, ",\"project\":\"%s\"", s);
  }
  if (below(2)) k += snprintf(doc + k, n - (size_t)k, ",\"chip\":\"%s\"", chips[below(6)]);
  if (below(2)) k += snprintf(doc + k, n - (size_t)k, ",\"allow_downgrade\":%s", below(2) ? "true" : "false");
  if (below(2)) k += snprintf(doc + k, n - (size_t)k, ",\"rollout\":{\"percent\":%d}", below(101));
  if (below(4)) {
    rand_time(s, sizeof s);
    k += snprintf(doc + k, n - (size_t)k, ",\"not_after\":\"%s\"", s);
  }
  bool fw = below(2);
  if (fw) k += snprintf(doc + k, n - (size_t)k, ",\"expect_fw_version\":\"FG-1.0.%d.0.0\"", below(10));
  if (fw && below(2)) k += snprintf(doc + k, n - (size_t)k, ",\"driver_update\":true");
  if (below(3) == 0) {
    uint8_t sig[64];
    char sb[89];
    for (int i = 0; i < 64; i++) sig[i] = (uint8_t)next();
    b64(sig, 64, sb);
    k += snprintf(doc + k, n - (size_t)k,
                  ",\"release\":{\"key_id\":\"k%d\",\"signature\":\"%s\",\"secure_version\":%u%s}", below(9),
                  sb, below(2) ? (unsigned)below(10) : 4294967295u,
                  below(2) ? ",\"allow_downgrade\":true" : "");
  }
  if (below(4) == 0) k += snprintf(doc + k, n - (size_t)k, ",\"comment\":{\"ignored\":[1,2,3]}");
  snprintf(doc + k, n - (size_t)k, "}");
}

static void test_round_trip_property(void **state) {
  (void)state;
  ef_journal_io_set(&sim_io);
  sim_reset();
  ef_job_limits lim = {.max_payload = 1 << 20, .max_image_size = UINT64_MAX, .allow_http = false};
  int accepted = 0, tries = 3000;
  for (int i = 0; i < tries; i++) {
    char doc[4096];
    rand_job(doc, sizeof doc);
    ef_job job, other;
    ef_status st = EF_STATUS_INIT;
    if (ef_job_parse(doc, strlen(doc), &lim, &job, &st) != EF_OK) continue;
    accepted++;
    sim_reset();
    ef_journal *j = fresh();
    ef_journal_set_current(j, &job, 1 + below(5), EF_STATE_DOWNLOADING);
    rand_job(doc, sizeof doc);
    bool wait = ef_job_parse(doc, strlen(doc), &lim, &other, NULL) == EF_OK;
    if (wait) ef_journal_set_waiting(j, &other);
    if (ef_journal_save(j, &st) != EF_OK) fail_msg("save: %s", st.detail);
    ef_journal_damage d;
    ef_journal *k = load_sim(&d);
    // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): whole ef_job on purpose, as in journal_same()
    if (d.dropped || !k->has_current || memcmp(&k->current, &job, sizeof job) != 0)
      fail_msg("job %d does not come back from the journal (%s): %s", i, d.summary, doc);
    // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): whole ef_job on purpose, as in journal_same()
    if (wait && (!k->has_waiting || memcmp(&k->waiting, &other, sizeof other) != 0)) {
      char *x = ef_job_to_json(&k->waiting), *y = ef_job_to_json(&other);
      fail_msg("waiting job %d does not come back from the journal:\n%s\n%s\n%s", i, doc, x, y);
    }
    free(j);
    free(k);
  }
  print_message("%d of %d random documents accepted, each came back whole\n", accepted, tries);
  assert_true(accepted > tries / 4);
  sim_reset();
  ef_journal_io_set(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crash_first_save),
      cmocka_unit_test(test_crash_replace),
      cmocka_unit_test(test_crash_upgrade_from_format_1),
      cmocka_unit_test(test_failed_save_keeps_old),
      cmocka_unit_test(test_round_trip_property),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
