/*
 * The controller's store (store.h) in one SQLite database.
 *
 * WAL journal with synchronous=FULL: a commit is one fsync of the WAL and
 * survives power loss, and a reader (the sqlite3 shell, a backup) never
 * blocks the controller. The schema's version is PRAGMA user_version; a
 * database of a newer version is refused rather than half understood.
 * States are stored by name, not by enum value, so reordering an enum never
 * changes what a stored row means.
 *
 * One process at a time: an exclusive flock() on <path>.lock, held from open
 * to close. SQLite's own locks would let a second controller open the file
 * and wait for its turn; two controllers acting on the same rollouts would
 * publish twice, so the second one must fail at once instead. The lock file
 * is never removed: unlinking it would let a third process lock a new file
 * while the second still holds the old one.
 */
#include "espfleet/store.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "espfleet/rollout_doc.h"

#define STORE_SCHEMA 1
#define STR_(x)      #x
#define STR(x)       STR_(x)
/* The flock makes the database ours alone; the timeout only covers a reader
 * of another process (the sqlite3 shell, a backup) holding it for a moment. */
#define STORE_BUSY_MS 250

struct ef_store {
  sqlite3 *db;
  int lock_fd;
  /* the hot paths, prepared once: the engine saves after every change */
  sqlite3_stmt *put_rollout, *put_row, *del_rows, *put_device, *add_history;
};

static const char SCHEMA_SQL[] =
    "CREATE TABLE rollouts(id TEXT PRIMARY KEY, doc TEXT NOT NULL, state TEXT, step INT, created_ms INT,"
    " step_started_ms INT, step_done_ms INT, force_next INT, clear_jobs INT, reason TEXT, seq INTEGER);"
    "CREATE TABLE rollout_devices(rollout_id TEXT, device_id TEXT, position INT, step INT, state TEXT,"
    " job_state TEXT, error TEXT, online INT, offline_since_ms INT, sent_ms INT, updated_ms INT, send INT,"
    " cancel INT, PRIMARY KEY(rollout_id, device_id));"
    /* groups: a JSON array of strings */
    "CREATE TABLE devices(device_id TEXT PRIMARY KEY, \"groups\" TEXT, online INT, state TEXT, job_id TEXT,"
    " seen_ms INT);"
    "CREATE TABLE history(id INTEGER PRIMARY KEY, device_id TEXT, job_id TEXT, rollout_id TEXT, state TEXT,"
    " error TEXT, attempt INT, ts_ms INT, UNIQUE(device_id, job_id, state));"
    "CREATE INDEX history_device ON history(device_id);"
    "CREATE INDEX history_job ON history(job_id);"
    "PRAGMA user_version = " STR(STORE_SCHEMA) ";";

/* seq is set on insert only, so an update never moves a rollout in the load
 * order; the implicit rowid would not do, VACUUM may renumber it. */
static const char PUT_ROLLOUT_SQL[] =
    "INSERT INTO rollouts(id, doc, state, step, created_ms, step_started_ms, step_done_ms, force_next,"
    " clear_jobs, reason, seq) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
    " (SELECT IFNULL(MAX(seq), 0) + 1 FROM rollouts))"
    " ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, state = excluded.state, step = excluded.step,"
    " created_ms = excluded.created_ms, step_started_ms = excluded.step_started_ms,"
    " step_done_ms = excluded.step_done_ms, force_next = excluded.force_next,"
    " clear_jobs = excluded.clear_jobs, reason = excluded.reason";

static const char PUT_ROW_SQL[] =
    "INSERT INTO rollout_devices(rollout_id, device_id, position, step, state, job_state, error, online,"
    " offline_since_ms, sent_ms, updated_ms, send, cancel)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    " ON CONFLICT(rollout_id, device_id) DO UPDATE SET position = excluded.position, step = excluded.step,"
    " state = excluded.state, job_state = excluded.job_state, error = excluded.error,"
    " online = excluded.online, offline_since_ms = excluded.offline_since_ms, sent_ms = excluded.sent_ms,"
    " updated_ms = excluded.updated_ms, send = excluded.send, cancel = excluded.cancel";

static const char DEL_ROWS_SQL[] = "DELETE FROM rollout_devices WHERE rollout_id = ?1";

static const char PUT_DEVICE_SQL[] =
    "INSERT INTO devices(device_id, \"groups\", online, state, job_id, seen_ms) VALUES(?1, ?2, ?3, ?4, ?5, "
    "?6)"
    " ON CONFLICT(device_id) DO UPDATE SET \"groups\" = excluded.\"groups\", online = excluded.online,"
    " state = excluded.state, job_id = excluded.job_id, seen_ms = excluded.seen_ms";

static const char ADD_HISTORY_SQL[] =
    "INSERT OR IGNORE INTO history(device_id, job_id, rollout_id, state, error, attempt, ts_ms)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/* ---- small helpers ---- */

/* EF_ERR_IO with "<what>: <SQLite's words>"; call it before anything else
 * touches the connection, which would replace sqlite3_errmsg. */
__attribute__((format(printf, 3, 4))) static ef_err sql_fail(sqlite3 *db, ef_status *st, const char *fmt,
                                                             ...) {
  char what[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return ef_status_fail(st, EF_ERR_IO, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

static ef_err exec(ef_store *s, const char *sql, const char *what, ef_status *st) {
  if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK) return EF_OK;
  return sql_fail(s->db, st, "%s", what);
}

/* Copies a text column into @p dst of @p n bytes; NULL reads as "". Longer
 * texts are cut: every one was written from a buffer of the same size. */
static void col_text(sqlite3_stmt *q, int i, char *dst, size_t n) {
  const unsigned char *t = sqlite3_column_text(q, i);
  snprintf(dst, n, "%s", t ? (const char *)t : "");
}

static bool bind_text(sqlite3_stmt *q, int i, const char *t) {
  return sqlite3_bind_text(q, i, t ? t : "", -1, SQLITE_STATIC) == SQLITE_OK;
}

static bool bind_int(sqlite3_stmt *q, int i, int64_t v) { return sqlite3_bind_int64(q, i, v) == SQLITE_OK; }

/* rollout_doc.h reads rollout states by name but not device states: the
 * documents carry them only outward. */
static bool device_state_from_name(const char *name, ef_rollout_device_state *out) {
  for (int i = 0; name && i < EF_RD__COUNT; i++)
    if (strcmp(name, ef_rollout_device_state_name((ef_rollout_device_state)i)) == 0) {
      *out = (ef_rollout_device_state)i;
      return true;
    }
  return false;
}

/* Makes a new database file's directory entry durable: SQLite syncs the
 * directory for the WAL it creates, not for the main file. */
static ef_err sync_parent(const char *path, ef_status *st) {
  ef_err err = EF_OK;
  char *dir = strdup(path);
  int fd = -1;
  if (!dir) {
    err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory");
    goto out;
  }
  const char *folder = "."; /* of a bare file name */
  char *slash = strrchr(dir, '/');
  if (slash) {
    slash[slash == dir ? 1 : 0] = '\0'; /* "/x.db" is in "/" */
    folder = dir;
  }
  fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync(fd) != 0)
    err = ef_status_fail(st, EF_ERR_IO, "cannot sync the folder %s of the new database: %s", folder,
                         strerror(errno));
out:
  if (fd >= 0) close(fd);
  free(dir);
  return err;
}

/* ---- open, close ---- */

/* Takes <path>.lock, failing at once when another process holds it. */
static ef_err take_lock(ef_store *s, const char *path, ef_status *st) {
  ef_err err = EF_OK;
  size_t n = strlen(path) + sizeof ".lock";
  char *lock_path = malloc(n);
  if (!lock_path) {
    err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory");
    goto out;
  }
  snprintf(lock_path, n, "%s.lock", path);
  s->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (s->lock_fd < 0) {
    if (errno == ENOENT)
      err = ef_status_fail(st, EF_ERR_IO, "cannot open the database %s: its folder does not exist", path);
    else
      err = ef_status_fail(st, EF_ERR_IO, "cannot create the lock file %s: %s", lock_path, strerror(errno));
    goto out;
  }
  if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      err = ef_status_fail(st, EF_ERR_IO, "another espfleet-controller uses %s", path);
    else
      err = ef_status_fail(st, EF_ERR_IO, "cannot lock %s: %s", lock_path, strerror(errno));
  }
out:
  free(lock_path);
  return err;
}

/* Reads the schema version; refuses a file that is not SQLite, and an SQLite
 * database of another program (version 0 with tables in it). */
static ef_err read_version(ef_store *s, const char *path, int *version, ef_status *st) {
  ef_err err = EF_OK;
  sqlite3_stmt *q = NULL;
  int rc = sqlite3_prepare_v2(
      s->db, "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)",
      -1, &q, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(q);
  if (rc != SQLITE_ROW) {
    if ((sqlite3_errcode(s->db) & 0xff) == SQLITE_NOTADB)
      err = sql_fail(s->db, st, "%s is not an espfleet-controller database", path);
    else
      err = sql_fail(s->db, st, "cannot read the schema version of %s", path);
    goto out;
  }
  *version = sqlite3_column_int(q, 0);
  if (*version == 0 && sqlite3_column_int(q, 1) > 0) {
    err = ef_status_fail(st, EF_ERR_IO,
                         "%s is not an espfleet-controller database: an SQLite database with tables of"
                         " another program",
                         path);
    goto out;
  }
  if (*version > STORE_SCHEMA)
    err = ef_status_fail(st, EF_ERR_IO,
                         "%s was made by a newer espfleet-controller (schema %d; this one reads up to %d)",
                         path, *version, STORE_SCHEMA);
out:
  sqlite3_finalize(q);
  return err;
}

static ef_err set_wal(ef_store *s, const char *path, ef_status *st) {
  ef_err err = EF_OK;
  sqlite3_stmt *q = NULL;
  int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &q, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(q);
  if (rc != SQLITE_ROW) {
    err = sql_fail(s->db, st, "cannot switch %s to the WAL journal", path);
    goto out;
  }
  /* SQLite answers with the mode it kept when it cannot switch; without WAL
   * a commit is not the single fsync store.h promises */
  const unsigned char *mode = sqlite3_column_text(q, 0);
  if (!mode || strcmp((const char *)mode, "wal") != 0)
    err = ef_status_fail(st, EF_ERR_IO, "cannot switch %s to the WAL journal: SQLite kept \"%s\"", path,
                         mode ? (const char *)mode : "");
out:
  sqlite3_finalize(q);
  return err;
}

static ef_err create_schema(ef_store *s, const char *path, ef_status *st) {
  /* one transaction with the version: a crash leaves no half schema */
  if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_exec(s->db, SCHEMA_SQL, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    ef_err err = sql_fail(s->db, st, "cannot create the tables of %s", path);
    ef_store_rollback(s);
    return err;
  }
  return sync_parent(path, st);
}

static ef_err prepare_all(ef_store *s, ef_status *st) {
  const struct {
    const char *sql;
    sqlite3_stmt **q;
  } all[] = {
      {PUT_ROLLOUT_SQL, &s->put_rollout}, {PUT_ROW_SQL, &s->put_row},         {DEL_ROWS_SQL, &s->del_rows},
      {PUT_DEVICE_SQL, &s->put_device},   {ADD_HISTORY_SQL, &s->add_history},
  };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (sqlite3_prepare_v3(s->db, all[i].sql, -1, SQLITE_PREPARE_PERSISTENT, all[i].q, NULL) != SQLITE_OK)
      return sql_fail(s->db, st, "cannot prepare the store's statements");
  return EF_OK;
}

/*
 * Opens @p path as the writer (the lock, WAL, synchronous=FULL, the schema
 * when new, prepared statements) or as a reader (read-only, no lock: WAL lets
 * it read beside the writer, an existing database only).
 */
static ef_err open_store(const char *path, bool writer, ef_store **out, ef_status *st) {
  ef_err err = EF_OK;
  ef_store *s = NULL;
  int version = 0;
  if (out) *out = NULL;
  if (!path || !path[0] || !out) {
    err = ef_status_fail(st, EF_ERR_INVALID_ARG, "the store needs a database path");
    goto out;
  }
  s = calloc(1, sizeof *s);
  if (!s) {
    err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory");
    goto out;
  }
  s->lock_fd = -1;
  if (writer && (err = take_lock(s, path, st)) != EF_OK) goto out;
  int flags = writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
  if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
    err = sql_fail(s->db, st, "cannot open the database %s", path);
    goto out;
  }
  sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
  /* the version first: a newer or foreign database is left untouched, not
   * even switched to WAL */
  err = read_version(s, path, &version, st);
  if (!err && !writer && version == 0)
    err = ef_status_fail(st, EF_ERR_IO, "%s: not an espfleet-controller database (no schema yet)", path);
  if (!err && writer) err = set_wal(s, path, st);
  if (!err && writer) err = exec(s, "PRAGMA synchronous = FULL", "cannot set synchronous=FULL", st);
  if (!err && writer && version == 0) err = create_schema(s, path, st);
  if (!err && writer) err = prepare_all(s, st);
  if (err) goto out;
  *out = s;
  s = NULL;
out:
  ef_store_close(s);
  return err;
}

ef_err ef_store_open(const char *path, ef_store **out, ef_status *st) {
  return open_store(path, true, out, st);
}

ef_err ef_store_open_reader(const char *path, ef_store **out, ef_status *st) {
  return open_store(path, false, out, st);
}

void ef_store_close(ef_store *s) {
  if (!s) return;
  sqlite3_finalize(s->put_rollout);
  sqlite3_finalize(s->put_row);
  sqlite3_finalize(s->del_rows);
  sqlite3_finalize(s->put_device);
  sqlite3_finalize(s->add_history);
  /* an open transaction is rolled back here; closed before the lock is
   * released so the next controller never meets our final checkpoint */
  sqlite3_close(s->db);
  if (s->lock_fd >= 0) close(s->lock_fd);
  free(s);
}

/* ---- transactions ---- */

ef_err ef_store_begin(ef_store *s, ef_status *st) {
  if (!s) return ef_status_fail(st, EF_ERR_INVALID_ARG, "no store");
  /* IMMEDIATE: the write lock now, so no statement inside fails on it later */
  return exec(s, "BEGIN IMMEDIATE", "cannot start a transaction in the store", st);
}

ef_err ef_store_commit(ef_store *s, ef_status *st) {
  if (!s) return ef_status_fail(st, EF_ERR_INVALID_ARG, "no store");
  ef_err err = exec(s, "COMMIT", "cannot commit to the store", st);
  /* a failed COMMIT may leave the transaction open; store.h says it is gone */
  if (err) ef_store_rollback(s);
  return err;
}

void ef_store_rollback(ef_store *s) {
  if (s && !sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- rollouts ---- */

ef_err ef_store_put_rollout(ef_store *s, const char *rollout_id, const char *doc_json, ef_rollout_run *run,
                            ef_status *st) {
  ef_err err = EF_OK;
  sqlite3_stmt *q = s ? s->put_rollout : NULL;
  if (!s || !rollout_id || !doc_json || !run || (size_t)run->state >= EF_RS__COUNT) {
    err = ef_status_fail(st, EF_ERR_INVALID_ARG, "put_rollout: missing rollout, document or state");
    goto out;
  }
  if (!bind_text(q, 1, rollout_id) || !bind_text(q, 2, doc_json) ||
      !bind_text(q, 3, ef_rollout_state_name(run->state)) || !bind_int(q, 4, run->step) ||
      !bind_int(q, 5, run->created_ms) || !bind_int(q, 6, run->step_started_ms) ||
      !bind_int(q, 7, run->step_done_ms) || !bind_int(q, 8, run->force_next) ||
      !bind_int(q, 9, run->clear_jobs) || !bind_text(q, 10, run->reason) || sqlite3_step(q) != SQLITE_DONE) {
    err = sql_fail(s->db, st, "cannot save rollout %s", rollout_id);
    goto out;
  }
  run->dirty = false;
out:
  sqlite3_reset(q);
  return err;
}

static bool put_row(ef_store *s, const char *rollout_id, const ef_rollout_device *d, size_t position) {
  sqlite3_stmt *q = s->put_row;
  bool ok = bind_text(q, 1, rollout_id) && bind_text(q, 2, d->device_id) &&
            bind_int(q, 3, (int64_t)position) && bind_int(q, 4, d->step) &&
            bind_text(q, 5, ef_rollout_device_state_name(d->state)) && bind_text(q, 6, d->job_state) &&
            bind_text(q, 7, d->error) && bind_int(q, 8, d->online) && bind_int(q, 9, d->offline_since_ms) &&
            bind_int(q, 10, d->sent_ms) && bind_int(q, 11, d->updated_ms) && bind_int(q, 12, d->send) &&
            bind_int(q, 13, d->cancel) && sqlite3_step(q) == SQLITE_DONE;
  /* reset only on success: it would replace the error sqlite3_errmsg reports */
  if (ok) sqlite3_reset(q);
  return ok;
}

/*
 * With @p all the array is the rollout's whole device list: rows of devices
 * no longer in it are deleted, so a load returns exactly what was saved.
 * A savepoint makes the call atomic on its own and one transaction when the
 * caller has none open (one fsync for the rows, not one per row).
 */
ef_err ef_store_put_devices(ef_store *s, const char *rollout_id, ef_rollout_device *devs, size_t n, bool all,
                            ef_status *st) {
  ef_err err = EF_OK;
  bool in_savepoint = false;
  if (!s || !rollout_id || (n && !devs)) {
    err = ef_status_fail(st, EF_ERR_INVALID_ARG, "put_devices: missing rollout or devices");
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    if ((size_t)devs[i].state >= EF_RD__COUNT) {
      err = ef_status_fail(st, EF_ERR_INVALID_ARG, "put_devices: device %s of rollout %s has no valid state",
                           devs[i].device_id, rollout_id);
      goto out;
    }
  err = exec(s, "SAVEPOINT put_devices", "cannot start saving the devices", st);
  if (err) goto out;
  in_savepoint = true;
  if (all) {
    if (!bind_text(s->del_rows, 1, rollout_id) || sqlite3_step(s->del_rows) != SQLITE_DONE) {
      err = sql_fail(s->db, st, "cannot replace the devices of rollout %s", rollout_id);
      goto out;
    }
    sqlite3_reset(s->del_rows);
  }
  for (size_t i = 0; i < n; i++) {
    if (!all && !devs[i].dirty) continue;
    if (!put_row(s, rollout_id, &devs[i], i)) {
      err = sql_fail(s->db, st, "cannot save device %s of rollout %s", devs[i].device_id, rollout_id);
      goto out;
    }
  }
  err = exec(s, "RELEASE put_devices", "cannot save the devices", st);
  if (err) goto out;
  in_savepoint = false;
  /* only now: a failure above leaves the rows marked as still to be saved */
  for (size_t i = 0; i < n; i++) devs[i].dirty = false;
out:
  if (s) {
    sqlite3_reset(s->del_rows);
    sqlite3_reset(s->put_row);
  }
  if (in_savepoint) sqlite3_exec(s->db, "ROLLBACK TO put_devices; RELEASE put_devices", NULL, NULL, NULL);
  return err;
}

ef_err ef_store_delete_rollout(ef_store *s, const char *rollout_id, ef_status *st) {
  ef_err err = EF_OK;
  bool in_savepoint = false;
  sqlite3_stmt *q = NULL;
  if (!s || !rollout_id) {
    err = ef_status_fail(st, EF_ERR_INVALID_ARG, "delete_rollout: no rollout");
    goto out;
  }
  err = exec(s, "SAVEPOINT delete_rollout", "cannot start deleting a rollout", st);
  if (err) goto out;
  in_savepoint = true;
  if (!bind_text(s->del_rows, 1, rollout_id) || sqlite3_step(s->del_rows) != SQLITE_DONE) {
    err = sql_fail(s->db, st, "cannot delete the devices of rollout %s", rollout_id);
    goto out;
  }
  if (sqlite3_prepare_v2(s->db, "DELETE FROM rollouts WHERE id = ?1", -1, &q, NULL) != SQLITE_OK ||
      !bind_text(q, 1, rollout_id) || sqlite3_step(q) != SQLITE_DONE) {
    err = sql_fail(s->db, st, "cannot delete rollout %s", rollout_id);
    goto out;
  }
  err = exec(s, "RELEASE delete_rollout", "cannot delete a rollout", st);
  if (err) goto out;
  in_savepoint = false;
out:
  sqlite3_finalize(q);
  if (s) sqlite3_reset(s->del_rows);
  if (in_savepoint)
    sqlite3_exec(s->db, "ROLLBACK TO delete_rollout; RELEASE delete_rollout", NULL, NULL, NULL);
  return err;
}

/* Reads one rollout's run (q: the SELECT of load_rollouts, on its row). */
static ef_err read_run(sqlite3_stmt *q, const char *id, ef_rollout_run *run, ef_status *st) {
  memset(run, 0, sizeof *run);
  const char *state = (const char *)sqlite3_column_text(q, 1);
  if (ef_rollout_state_from_name(state, &run->state) != EF_OK)
    return ef_status_fail(st, EF_ERR_IO, "rollout %s in the store has an unknown state \"%.32s\"", id,
                          state ? state : "");
  run->step = sqlite3_column_int(q, 2);
  run->created_ms = sqlite3_column_int64(q, 3);
  run->step_started_ms = sqlite3_column_int64(q, 4);
  run->step_done_ms = sqlite3_column_int64(q, 5);
  run->force_next = sqlite3_column_int(q, 6) != 0;
  run->clear_jobs = sqlite3_column_int(q, 7) != 0;
  col_text(q, 8, run->reason, sizeof run->reason);
  run->dirty = false;
  return EF_OK;
}

/* Reads the device rows of rollout @p id in rollout order into a malloc'ed
 * array (NULL when there are none). */
static ef_err read_rows(ef_store *s, sqlite3_stmt *q, const char *id, ef_rollout_device **out, size_t *n_out,
                        ef_status *st) {
  ef_err err = EF_OK;
  ef_rollout_device *devs = NULL;
  size_t n = 0, cap = 0;
  int rc;
  if (!bind_text(q, 1, id)) {
    err = sql_fail(s->db, st, "cannot read the devices of rollout %s", id);
    goto out;
  }
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      ef_rollout_device *p = realloc(devs, ncap * sizeof *p);
      if (!p) {
        err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory reading the devices of rollout %s", id);
        goto out;
      }
      devs = p;
      cap = ncap;
    }
    ef_rollout_device *d = &devs[n];
    memset(d, 0, sizeof *d);
    col_text(q, 0, d->device_id, sizeof d->device_id);
    d->step = sqlite3_column_int(q, 1);
    const char *state = (const char *)sqlite3_column_text(q, 2);
    if (!device_state_from_name(state, &d->state)) {
      err =
          ef_status_fail(st, EF_ERR_IO, "device %s of rollout %s in the store has an unknown state \"%.32s\"",
                         d->device_id, id, state ? state : "");
      goto out;
    }
    col_text(q, 3, d->job_state, sizeof d->job_state);
    col_text(q, 4, d->error, sizeof d->error);
    d->online = sqlite3_column_int(q, 5) != 0;
    d->offline_since_ms = sqlite3_column_int64(q, 6);
    d->sent_ms = sqlite3_column_int64(q, 7);
    d->updated_ms = sqlite3_column_int64(q, 8);
    /* pending actions: the controller carries them out after a restart */
    d->send = sqlite3_column_int(q, 9) != 0;
    d->cancel = sqlite3_column_int(q, 10) != 0;
    n++;
  }
  if (rc != SQLITE_DONE) {
    err = sql_fail(s->db, st, "cannot read the devices of rollout %s", id);
    goto out;
  }
  *out = devs;
  *n_out = n;
  devs = NULL;
out:
  sqlite3_reset(q);
  free(devs);
  return err;
}

/* The ids of every rollout, oldest first (malloc'ed strings in a malloc'ed array). */
static ef_err read_ids(ef_store *s, char ***out, size_t *n_out, ef_status *st) {
  ef_err err = EF_OK;
  sqlite3_stmt *q = NULL;
  char **ids = NULL;
  size_t n = 0, cap = 0;
  int rc = sqlite3_prepare_v2(s->db, "SELECT id FROM rollouts ORDER BY seq, rowid", -1, &q, NULL);
  /* rc: SQLITE_OK when prepared (and bound), the failure otherwise */
  for (rc = rc == SQLITE_OK ? sqlite3_step(q) : rc; rc == SQLITE_ROW; rc = sqlite3_step(q)) {
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      char **p = realloc(ids, ncap * sizeof *p);
      if (!p) {
        err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory reading the rollouts");
        goto out;
      }
      ids = p;
      cap = ncap;
    }
    const unsigned char *id = sqlite3_column_text(q, 0);
    ids[n] = strdup(id ? (const char *)id : "");
    if (!ids[n]) {
      err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory reading the rollouts");
      goto out;
    }
    n++;
  }
  if (rc != SQLITE_DONE) {
    err = sql_fail(s->db, st, "cannot read the list of rollouts");
    goto out;
  }
  *out = ids;
  *n_out = n;
  ids = NULL;
  n = 0;
out:
  for (size_t i = 0; i < n; i++) free(ids[i]);
  free(ids);
  sqlite3_finalize(q);
  return err;
}

/*
 * The ids are read first and no statement is active while a callback runs,
 * so a callback may write to the store (fix a rollout up, delete it).
 */
ef_err ef_store_load_rollouts(ef_store *s, ef_store_rollout_cb cb, void *arg, ef_status *st) {
  ef_err err = EF_OK;
  char **ids = NULL;
  size_t n_ids = 0;
  sqlite3_stmt *q = NULL, *qd = NULL;
  char *doc = NULL;
  ef_rollout_device *devs = NULL;
  if (!s || !cb) {
    err = ef_status_fail(st, EF_ERR_INVALID_ARG, "load_rollouts: no store or callback");
    goto out;
  }
  err = read_ids(s, &ids, &n_ids, st);
  if (err) goto out;
  if (sqlite3_prepare_v2(s->db,
                         "SELECT doc, state, step, created_ms, step_started_ms, step_done_ms, force_next,"
                         " clear_jobs, reason FROM rollouts WHERE id = ?1",
                         -1, &q, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(s->db,
                         "SELECT device_id, step, state, job_state, error, online, offline_since_ms, sent_ms,"
                         " updated_ms, send, cancel FROM rollout_devices WHERE rollout_id = ?1"
                         " ORDER BY position, device_id",
                         -1, &qd, NULL) != SQLITE_OK) {
    err = sql_fail(s->db, st, "cannot read the rollouts");
    goto out;
  }
  for (size_t i = 0; i < n_ids; i++) {
    ef_rollout_run run;
    size_t n = 0;
    int rc = SQLITE_MISUSE;
    if (bind_text(q, 1, ids[i])) rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) { /* deleted by an earlier callback */
      sqlite3_reset(q);
      continue;
    }
    if (rc != SQLITE_ROW) {
      err = sql_fail(s->db, st, "cannot read rollout %s", ids[i]);
      goto out;
    }
    const unsigned char *text = sqlite3_column_text(q, 0);
    doc = strdup(text ? (const char *)text : "");
    if (!doc) {
      err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory reading rollout %s", ids[i]);
      goto out;
    }
    err = read_run(q, ids[i], &run, st);
    sqlite3_reset(q);
    if (!err) err = read_rows(s, qd, ids[i], &devs, &n, st);
    if (err) goto out;
    cb(arg, ids[i], doc, &run, devs, n);
    devs = NULL; /* the callee's now */
    free(doc);
    doc = NULL;
  }
out:
  free(devs);
  free(doc);
  sqlite3_finalize(q);
  sqlite3_finalize(qd);
  for (size_t i = 0; i < n_ids; i++) free(ids[i]);
  free(ids);
  return err;
}

/* ---- devices the controller knows ---- */

ef_err ef_store_put_device(ef_store *s, const ef_store_device *d, ef_status *st) {
  ef_err err = EF_OK;
  sqlite3_stmt *q = s ? s->put_device : NULL;
  cJSON *groups = NULL;
  char *groups_json = NULL;
  if (!s || !d || d->n_groups > EF_PROTO_MAX_GROUPS) {
    err = ef_status_fail(st, EF_ERR_INVALID_ARG, "put_device: no device, or too many groups");
    goto out;
  }
  groups = cJSON_CreateArray();
  for (size_t i = 0; groups && i < d->n_groups; i++) {
    cJSON *g = cJSON_CreateString(d->groups[i]);
    if (!g || !cJSON_AddItemToArray(groups, g)) {
      cJSON_Delete(g);
      cJSON_Delete(groups);
      groups = NULL;
    }
  }
  groups_json = groups ? cJSON_PrintUnformatted(groups) : NULL;
  if (!groups_json) {
    err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory saving device %s", d->device_id);
    goto out;
  }
  if (!bind_text(q, 1, d->device_id) || !bind_text(q, 2, groups_json) || !bind_int(q, 3, d->online) ||
      !bind_text(q, 4, d->state) || !bind_text(q, 5, d->job_id) || !bind_int(q, 6, d->seen_ms) ||
      sqlite3_step(q) != SQLITE_DONE) {
    err = sql_fail(s->db, st, "cannot save device %s", d->device_id);
    goto out;
  }
out:
  sqlite3_reset(q);
  cJSON_Delete(groups);
  free(groups_json);
  return err;
}

/* Reads the JSON array of group names put_device wrote. */
static bool read_groups(const char *json, ef_store_device *d) {
  bool ok = false;
  cJSON *arr = json ? cJSON_Parse(json) : NULL;
  const cJSON *g;
  if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > EF_PROTO_MAX_GROUPS) goto out;
  cJSON_ArrayForEach(g, arr) {
    if (!cJSON_IsString(g) || strlen(g->valuestring) > EF_JOB_ID_MAX) goto out;
    snprintf(d->groups[d->n_groups++], sizeof d->groups[0], "%s", g->valuestring);
  }
  ok = true;
out:
  cJSON_Delete(arr);
  return ok;
}

ef_err ef_store_load_devices(ef_store *s, ef_store_device_cb cb, void *arg, ef_status *st) {
  ef_err err = EF_OK;
  sqlite3_stmt *q = NULL;
  int rc;
  if (!s || !cb) {
    err = ef_status_fail(st, EF_ERR_INVALID_ARG, "load_devices: no store or callback");
    goto out;
  }
  rc = sqlite3_prepare_v2(s->db,
                          "SELECT device_id, \"groups\", online, state, job_id, seen_ms FROM devices"
                          " ORDER BY device_id",
                          -1, &q, NULL);
  for (rc = rc == SQLITE_OK ? sqlite3_step(q) : rc; rc == SQLITE_ROW; rc = sqlite3_step(q)) {
    ef_store_device d;
    memset(&d, 0, sizeof d);
    col_text(q, 0, d.device_id, sizeof d.device_id);
    if (!read_groups((const char *)sqlite3_column_text(q, 1), &d)) {
      err = ef_status_fail(
          st, EF_ERR_IO, "device %s in the store has groups espfleet-controller did not write", d.device_id);
      goto out;
    }
    d.online = sqlite3_column_int(q, 2) != 0;
    col_text(q, 3, d.state, sizeof d.state);
    col_text(q, 4, d.job_id, sizeof d.job_id);
    d.seen_ms = sqlite3_column_int64(q, 5);
    cb(arg, &d);
  }
  if (rc != SQLITE_DONE) err = sql_fail(s->db, st, "cannot read the known devices");
out:
  sqlite3_finalize(q);
  return err;
}

/* ---- history ---- */

ef_err ef_store_add_history(ef_store *s, const ef_store_history *h, ef_status *st) {
  ef_err err = EF_OK;
  sqlite3_stmt *q = s ? s->add_history : NULL;
  if (!s || !h) {
    err = ef_status_fail(st, EF_ERR_INVALID_ARG, "add_history: no line");
    goto out;
  }
  if (!bind_text(q, 1, h->device_id) || !bind_text(q, 2, h->job_id) || !bind_text(q, 3, h->rollout_id) ||
      !bind_text(q, 4, h->state) || !bind_text(q, 5, h->error) || !bind_int(q, 6, h->attempt) ||
      !bind_int(q, 7, h->ts_ms) || sqlite3_step(q) != SQLITE_DONE) {
    err = sql_fail(s->db, st, "cannot add to the history of device %s (job %s)", h->device_id, h->job_id);
    goto out;
  }
out:
  sqlite3_reset(q);
  return err;
}

ef_err ef_store_query_history(ef_store *s, const char *device_id, const char *job_id, size_t limit,
                              ef_store_history_cb cb, void *arg, ef_status *st) {
  ef_err err = EF_OK;
  sqlite3_stmt *q = NULL;
  char sql[320];
  bool by_device = device_id && device_id[0], by_job = job_id && job_id[0];
  int rc;
  if (!s || !cb) {
    err = ef_status_fail(st, EF_ERR_INVALID_ARG, "query_history: no store or callback");
    goto out;
  }
  /* only the filters asked for, so SQLite can use the index of each */
  snprintf(sql, sizeof sql,
           "SELECT device_id, job_id, rollout_id, state, error, attempt, ts_ms FROM history WHERE 1%s%s"
           " ORDER BY ts_ms, id LIMIT ?3",
           by_device ? " AND device_id = ?1" : "", by_job ? " AND job_id = ?2" : "");
  rc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
  if (rc == SQLITE_OK && by_device && !bind_text(q, 1, device_id)) rc = SQLITE_ERROR;
  if (rc == SQLITE_OK && by_job && !bind_text(q, 2, job_id)) rc = SQLITE_ERROR;
  /* a negative LIMIT is none */
  if (rc == SQLITE_OK &&
      !bind_int(q, 3, limit > 0 && (uint64_t)limit <= (uint64_t)INT64_MAX ? (int64_t)limit : -1))
    rc = SQLITE_ERROR;
  for (rc = rc == SQLITE_OK ? sqlite3_step(q) : rc; rc == SQLITE_ROW; rc = sqlite3_step(q)) {
    ef_store_history h;
    memset(&h, 0, sizeof h);
    col_text(q, 0, h.device_id, sizeof h.device_id);
    col_text(q, 1, h.job_id, sizeof h.job_id);
    col_text(q, 2, h.rollout_id, sizeof h.rollout_id);
    col_text(q, 3, h.state, sizeof h.state);
    col_text(q, 4, h.error, sizeof h.error);
    h.attempt = sqlite3_column_int(q, 5);
    h.ts_ms = sqlite3_column_int64(q, 6);
    cb(arg, &h);
  }
  if (rc != SQLITE_DONE) err = sql_fail(s->db, st, "cannot read the history");
out:
  sqlite3_finalize(q);
  return err;
}
