/* The controller's store: round trips of rollouts, their devices, known
 * devices and history; only-dirty saves; the one-process lock; refusals of
 * newer, foreign and garbage files; transactions rolled back, left open at
 * close, and a process killed in the middle of one. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "espfleet/store.h"

static char tmpdir[256];
static char db_path[300];

static int setup(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/test_store.XXXXXX", base && base[0] ? base : "/tmp");
  if (!mkdtemp(tmpdir)) return -1;
  snprintf(db_path, sizeof db_path, "%s/controller.db", tmpdir);
  return 0;
}

/* Removes everything the test made (the database, its WAL, shm and lock files). */
static int teardown(void **state) {
  (void)state;
  DIR *d = opendir(tmpdir);
  if (!d) return -1;
  struct dirent *e;
  char path[600];
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
      snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
      unlink(path);
    }
  closedir(d);
  return rmdir(tmpdir);
}

static ef_store *open_ok(void) {
  ef_store *s = NULL;
  ef_status st = EF_STATUS_INIT;
  ef_err err = ef_store_open(db_path, &s, &st);
  if (err) fprintf(stderr, "open: %s\n", st.detail);
  assert_int_equal(err, EF_OK);
  assert_non_null(s);
  return s;
}

/* ---- what load_rollouts hands over, kept for the checks ---- */

#define MAX_LOADED 8

typedef struct {
  char id[EF_JOB_ID_MAX + 1];
  char *doc;
  ef_rollout_run run;
  ef_rollout_device *devs;
  size_t n;
} loaded_rollout;

typedef struct {
  loaded_rollout r[MAX_LOADED];
  size_t n;
} loaded;

static void on_rollout(void *arg, const char *id, const char *doc, const ef_rollout_run *run,
                       ef_rollout_device *devs, size_t n) {
  loaded *l = arg;
  assert_true(l->n < MAX_LOADED);
  loaded_rollout *r = &l->r[l->n++];
  snprintf(r->id, sizeof r->id, "%s", id);
  r->doc = strdup(doc);
  r->run = *run;
  r->devs = devs; /* ours to free */
  r->n = n;
}

static void loaded_free(loaded *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->r[i].doc);
    free(l->r[i].devs);
  }
  memset(l, 0, sizeof *l);
}

static void load(ef_store *s, loaded *l) {
  ef_status st = EF_STATUS_INIT;
  memset(l, 0, sizeof *l);
  ef_err err = ef_store_load_rollouts(s, on_rollout, l, &st);
  if (err) fprintf(stderr, "load: %s\n", st.detail);
  assert_int_equal(err, EF_OK);
}

/* ---- sample data ---- */

static const char DOC[] = "{\"rollout_id\":\"r1\",\"note\":\"it's \\\"quoted\\\" – ünïcödé ✓\"}";

static ef_rollout_run sample_run(void) {
  ef_rollout_run run;
  memset(&run, 0, sizeof run);
  run.state = EF_RS_HALTED;
  run.step = 2;
  run.created_ms = 1700000000123;
  run.step_started_ms = 1700000100456;
  run.step_done_ms = 1700000200789;
  run.force_next = true;
  run.clear_jobs = true;
  snprintf(run.reason, sizeof run.reason, "step 2: 3 of 10 \"failed\"; O'Brien's Gerät — ≥ 50 %%");
  run.dirty = true;
  return run;
}

static void sample_devices(ef_rollout_device *d, size_t n) {
  memset(d, 0, n * sizeof *d);
  for (size_t i = 0; i < n; i++) {
    snprintf(d[i].device_id, sizeof d[i].device_id, "dev-%04zu", (n - i) * 7 % 10000); /* not sorted by id */
    d[i].step = (int)(i % 3) - 1;
    d[i].state = (ef_rollout_device_state)(i % EF_RD__COUNT);
    snprintf(d[i].job_state, sizeof d[i].job_state, "%s", i % 2 ? "downloading" : "");
    snprintf(d[i].error, sizeof d[i].error, "row %zu: \"hash\" isn't right — Prüfsumme ✗; DROP TABLE x;--",
             i);
    d[i].online = i % 2 == 0;
    d[i].offline_since_ms = i % 2 ? 1700000000000 + (int64_t)i : 0;
    d[i].sent_ms = 1700000000500 + (int64_t)i;
    d[i].updated_ms = 1700000000900 + (int64_t)i;
    d[i].send = i % 3 == 0;
    d[i].cancel = i % 3 == 1;
    d[i].dirty = true;
  }
}

static void assert_device_equal(const ef_rollout_device *a, const ef_rollout_device *b) {
  assert_string_equal(a->device_id, b->device_id);
  assert_int_equal(a->step, b->step);
  assert_int_equal(a->state, b->state);
  assert_string_equal(a->job_state, b->job_state);
  assert_string_equal(a->error, b->error);
  assert_int_equal(a->online, b->online);
  assert_int_equal(a->offline_since_ms, b->offline_since_ms);
  assert_int_equal(a->sent_ms, b->sent_ms);
  assert_int_equal(a->updated_ms, b->updated_ms);
  assert_int_equal(a->send, b->send);
  assert_int_equal(a->cancel, b->cancel);
}

static void put_sample(ef_store *s, const char *id, ef_rollout_device *devs, size_t n) {
  ef_status st = EF_STATUS_INIT;
  ef_rollout_run run = sample_run();
  assert_int_equal(ef_store_put_rollout(s, id, DOC, &run, &st), EF_OK);
  assert_int_equal(ef_store_put_devices(s, id, devs, n, true, &st), EF_OK);
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- tests ---- */

static void test_rollout_round_trip(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_rollout_device devs[9], want[9];
  sample_devices(devs, 9);
  memcpy(want, devs, sizeof devs);
  ef_rollout_run run = sample_run(), want_run = run;
  ef_store *s = open_ok();
  assert_int_equal(ef_store_begin(s, &st), EF_OK);
  assert_int_equal(ef_store_put_rollout(s, "r1", DOC, &run, &st), EF_OK);
  assert_false(run.dirty);
  assert_int_equal(ef_store_put_devices(s, "r1", devs, 9, true, &st), EF_OK);
  for (size_t i = 0; i < 9; i++) assert_false(devs[i].dirty);
  assert_int_equal(ef_store_commit(s, &st), EF_OK);
  ef_store_close(s);

  s = open_ok(); /* from the file, not from a cache */
  loaded l;
  load(s, &l);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.r[0].id, "r1");
  assert_string_equal(l.r[0].doc, DOC);
  const ef_rollout_run *r = &l.r[0].run;
  assert_int_equal(r->state, want_run.state);
  assert_int_equal(r->step, want_run.step);
  assert_int_equal(r->created_ms, want_run.created_ms);
  assert_int_equal(r->step_started_ms, want_run.step_started_ms);
  assert_int_equal(r->step_done_ms, want_run.step_done_ms);
  assert_int_equal(r->force_next, want_run.force_next);
  assert_int_equal(r->clear_jobs, want_run.clear_jobs);
  assert_string_equal(r->reason, want_run.reason);
  assert_false(r->dirty);
  assert_int_equal(l.r[0].n, 9);
  /* rollout order (the array's), not id order; the actions still pending */
  for (size_t i = 0; i < 9; i++) {
    assert_device_equal(&l.r[0].devs[i], &want[i]);
    assert_false(l.r[0].devs[i].dirty);
  }
  loaded_free(&l);
  ef_store_close(s);
}

/* Oldest first, and an update does not move a rollout; an empty rollout loads with no array. */
static void test_rollout_order(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_store *s = open_ok();
  ef_rollout_run run = sample_run();
  const char *ids[] = {"zeta", "alpha", "mid"};
  for (size_t i = 0; i < 3; i++) assert_int_equal(ef_store_put_rollout(s, ids[i], DOC, &run, &st), EF_OK);
  run.state = EF_RS_COMPLETED;
  run.step = 5;
  assert_int_equal(ef_store_put_rollout(s, "zeta", "{\"v\":2}", &run, &st), EF_OK);
  /* a new one after a deletion still comes last */
  assert_int_equal(ef_store_delete_rollout(s, "mid", &st), EF_OK);
  assert_int_equal(ef_store_put_rollout(s, "beta", DOC, &run, &st), EF_OK);
  loaded l;
  load(s, &l);
  assert_int_equal(l.n, 3);
  assert_string_equal(l.r[0].id, "zeta");
  assert_string_equal(l.r[0].doc, "{\"v\":2}");
  assert_int_equal(l.r[0].run.state, EF_RS_COMPLETED);
  assert_int_equal(l.r[0].run.step, 5);
  assert_string_equal(l.r[1].id, "alpha");
  assert_string_equal(l.r[2].id, "beta");
  assert_int_equal(l.r[1].n, 0);
  assert_null(l.r[1].devs);
  loaded_free(&l);
  ef_store_close(s);
}

static void test_only_dirty_rows(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_rollout_device devs[5], saved[5];
  sample_devices(devs, 5);
  memcpy(saved, devs, sizeof devs);
  ef_store *s = open_ok();
  put_sample(s, "r1", devs, 5);
  /* row 1 changed and says so; row 3 changed but is not marked */
  devs[1].state = EF_RD_SUCCEEDED;
  snprintf(devs[1].job_state, sizeof devs[1].job_state, "succeeded");
  devs[1].send = false;
  devs[1].cancel = false;
  devs[1].dirty = true;
  devs[3].state = EF_RD_OFFLINE;
  snprintf(devs[3].error, sizeof devs[3].error, "not saved");
  assert_int_equal(ef_store_put_devices(s, "r1", devs, 5, false, &st), EF_OK);
  assert_false(devs[1].dirty);
  loaded l;
  load(s, &l);
  assert_int_equal(l.r[0].n, 5);
  assert_device_equal(&l.r[0].devs[1], &devs[1]);
  assert_device_equal(&l.r[0].devs[3], &saved[3]); /* as first saved */
  for (size_t i = 0; i < 5; i += 2) assert_device_equal(&l.r[0].devs[i], &saved[i]);
  loaded_free(&l);

  /* all: the array is the whole list again, a row no longer in it goes */
  assert_int_equal(ef_store_put_devices(s, "r1", devs + 2, 3, true, &st), EF_OK);
  load(s, &l);
  assert_int_equal(l.r[0].n, 3);
  for (size_t i = 0; i < 3; i++) assert_device_equal(&l.r[0].devs[i], &devs[2 + i]);
  loaded_free(&l);
  ef_store_close(s);
}

static void count_history(void *arg, const ef_store_history *h) {
  (void)h;
  (*(size_t *)arg)++;
}

static void test_delete_keeps_history(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_rollout_device devs[4];
  sample_devices(devs, 4);
  ef_store *s = open_ok();
  put_sample(s, "r1", devs, 4);
  put_sample(s, "r2", devs, 4);
  ef_store_history h = {.device_id = "dev-1",
                        .job_id = "job-1",
                        .rollout_id = "r1",
                        .state = "succeeded",
                        .attempt = 1,
                        .ts_ms = 10};
  assert_int_equal(ef_store_add_history(s, &h, &st), EF_OK);
  assert_int_equal(ef_store_delete_rollout(s, "r1", &st), EF_OK);
  ef_store_close(s);

  s = open_ok();
  loaded l;
  load(s, &l);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.r[0].id, "r2");
  assert_int_equal(l.r[0].n, 4); /* the other rollout's rows are untouched */
  loaded_free(&l);
  size_t n = 0;
  assert_int_equal(ef_store_query_history(s, NULL, NULL, 0, count_history, &n, &st), EF_OK);
  assert_int_equal(n, 1);
  /* and its device rows are gone with it */
  sqlite3 *raw = NULL;
  sqlite3_stmt *q = NULL;
  assert_int_equal(sqlite3_open_v2(db_path, &raw, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(
      sqlite3_prepare_v2(raw, "SELECT count(*) FROM rollout_devices WHERE rollout_id = 'r1'", -1, &q, NULL),
      SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(q, 0), 0);
  sqlite3_finalize(q);
  sqlite3_close(raw);
  ef_store_close(s);
}

#define MAX_LINES 16

typedef struct {
  ef_store_history h[MAX_LINES];
  size_t n;
} lines;

static void on_line(void *arg, const ef_store_history *h) {
  lines *l = arg;
  assert_true(l->n < MAX_LINES);
  l->h[l->n++] = *h;
}

static lines query(ef_store *s, const char *device, const char *job, size_t limit) {
  ef_status st = EF_STATUS_INIT;
  lines l;
  memset(&l, 0, sizeof l);
  assert_int_equal(ef_store_query_history(s, device, job, limit, on_line, &l, &st), EF_OK);
  return l;
}

static void add_line(ef_store *s, const char *device, const char *job, const char *state, int64_t ts) {
  ef_status st = EF_STATUS_INIT;
  ef_store_history h;
  memset(&h, 0, sizeof h);
  snprintf(h.device_id, sizeof h.device_id, "%s", device);
  snprintf(h.job_id, sizeof h.job_id, "%s", job);
  snprintf(h.state, sizeof h.state, "%s", state);
  snprintf(h.error, sizeof h.error, "%s", strcmp(state, "failed") == 0 ? "\"hash_mismatch\": ✗" : "");
  h.attempt = 2;
  h.ts_ms = ts;
  assert_int_equal(ef_store_add_history(s, &h, &st), EF_OK);
}

static void test_history(void **state) {
  (void)state;
  ef_store *s = open_ok();
  add_line(s, "dev-a", "job-1", "failed", 300);
  add_line(s, "dev-a", "job-1", "failed", 999); /* heard again: the first line stays */
  add_line(s, "dev-a", "job-2", "succeeded", 100);
  add_line(s, "dev-b", "job-1", "succeeded", 200);
  add_line(s, "dev-a", "job-1", "succeeded", 300); /* same ts: insertion order */
  lines l = query(s, NULL, "", 0);
  assert_int_equal(l.n, 4);
  assert_int_equal(l.h[0].ts_ms, 100);
  assert_int_equal(l.h[1].ts_ms, 200);
  assert_string_equal(l.h[2].state, "failed");
  assert_int_equal(l.h[2].ts_ms, 300);
  assert_string_equal(l.h[2].error, "\"hash_mismatch\": ✗");
  assert_int_equal(l.h[2].attempt, 2);
  assert_string_equal(l.h[2].rollout_id, "");
  assert_string_equal(l.h[3].state, "succeeded");

  l = query(s, "dev-a", NULL, 0);
  assert_int_equal(l.n, 3);
  for (size_t i = 0; i < l.n; i++) assert_string_equal(l.h[i].device_id, "dev-a");
  l = query(s, NULL, "job-1", 0);
  assert_int_equal(l.n, 3);
  for (size_t i = 0; i < l.n; i++) assert_string_equal(l.h[i].job_id, "job-1");
  l = query(s, "dev-a", "job-1", 0);
  assert_int_equal(l.n, 2);
  l = query(s, "dev-a", "job-1", 1);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.h[0].state, "failed");
  l = query(s, "dev-c", NULL, 0);
  assert_int_equal(l.n, 0);
  ef_store_close(s);
}

typedef struct {
  ef_store_device d[4];
  size_t n;
} known;

static void on_device(void *arg, const ef_store_device *d) {
  known *k = arg;
  assert_true(k->n < 4);
  k->d[k->n++] = *d;
}

static void test_known_devices(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_store *s = open_ok();
  ef_store_device d;
  memset(&d, 0, sizeof d);
  snprintf(d.device_id, sizeof d.device_id, "gw-2");
  snprintf(d.groups[0], sizeof d.groups[0], "site-a");
  snprintf(d.groups[1], sizeof d.groups[1], "canary:1");
  d.n_groups = 2;
  d.online = true;
  snprintf(d.state, sizeof d.state, "downloading");
  snprintf(d.job_id, sizeof d.job_id, "wifi-2.1.0");
  d.seen_ms = 1700000000001;
  assert_int_equal(ef_store_put_device(s, &d, &st), EF_OK);
  d.online = false;
  d.seen_ms++;
  assert_int_equal(ef_store_put_device(s, &d, &st), EF_OK); /* an update, not a second row */
  ef_store_device e;
  memset(&e, 0, sizeof e);
  snprintf(e.device_id, sizeof e.device_id, "gw-1");
  e.seen_ms = 5;
  assert_int_equal(ef_store_put_device(s, &e, &st), EF_OK);
  ef_store_close(s);

  s = open_ok();
  known k;
  memset(&k, 0, sizeof k);
  assert_int_equal(ef_store_load_devices(s, on_device, &k, &st), EF_OK);
  assert_int_equal(k.n, 2);
  const ef_store_device *got = k.d;
  assert_string_equal(got[0].device_id, "gw-1");
  assert_int_equal(got[0].n_groups, 0);
  assert_int_equal(got[0].seen_ms, 5);
  assert_string_equal(got[1].device_id, "gw-2");
  assert_int_equal(got[1].n_groups, 2);
  assert_string_equal(got[1].groups[0], "site-a");
  assert_string_equal(got[1].groups[1], "canary:1");
  assert_false(got[1].online);
  assert_string_equal(got[1].state, "downloading");
  assert_string_equal(got[1].job_id, "wifi-2.1.0");
  assert_int_equal(got[1].seen_ms, 1700000000002);
  ef_store_close(s);
}

static void count_rollouts(void *arg, const char *id, const char *doc, const ef_rollout_run *run,
                           ef_rollout_device *devs, size_t n) {
  (void)id;
  (void)doc;
  (void)run;
  (void)n;
  free(devs);
  (*(int *)arg)++;
}

static void test_one_process(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_store *a = open_ok(), *b = NULL;
  assert_int_equal(ef_store_open(db_path, &b, &st), EF_ERR_IO);
  assert_null(b);
  assert_non_null(strstr(st.detail, "another espfleet-controller uses"));
  ef_store_close(a);
  b = open_ok();
  ef_store_close(b);
}

/* A reader beside the writer: sees what was committed, creates nothing. */
static void test_reader_beside_writer(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_store *r = NULL;
  assert_int_equal(ef_store_open_reader(db_path, &r, &st), EF_ERR_IO); /* no database yet */
  assert_null(r);
  assert_int_equal(access(db_path, F_OK), -1);
  ef_store *w = open_ok();
  ef_rollout_device devs[3];
  sample_devices(devs, 3);
  assert_int_equal(ef_store_begin(w, &st), EF_OK);
  put_sample(w, "r1", devs, 3);
  assert_int_equal(ef_store_commit(w, &st), EF_OK);
  assert_int_equal(ef_store_open_reader(db_path, &r, &st), EF_OK);
  int count = 0;
  assert_int_equal(ef_store_load_rollouts(r, count_rollouts, &count, &st), EF_OK);
  assert_int_equal(count, 1);
  ef_store_close(r);
  ef_store_close(w);
}

static void test_missing_folder(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_store *s = NULL;
  char path[400];
  snprintf(path, sizeof path, "%s/no-such-folder/controller.db", tmpdir);
  assert_int_equal(ef_store_open(path, &s, &st), EF_ERR_IO);
  assert_null(s);
  assert_non_null(strstr(st.detail, "folder does not exist"));
}

static void test_newer_schema_refused(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_store *s = open_ok();
  ef_store_close(s);
  sqlite3 *raw = NULL;
  assert_int_equal(sqlite3_open(db_path, &raw), SQLITE_OK);
  assert_int_equal(sqlite3_exec(raw, "PRAGMA user_version = 2", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(raw);
  s = NULL;
  assert_int_equal(ef_store_open(db_path, &s, &st), EF_ERR_IO);
  assert_null(s);
  assert_non_null(strstr(st.detail, "made by a newer espfleet-controller"));
}

static void write_file(const char *path, const char *text, size_t reps) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (size_t i = 0; i < reps; i++) fputs(text, f);
  fclose(f);
}

static void test_not_ours_refused(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_store *s = NULL;
  write_file(db_path, "this is a journal, not a database\n", 200);
  assert_int_equal(ef_store_open(db_path, &s, &st), EF_ERR_IO);
  assert_null(s);
  assert_non_null(strstr(st.detail, "not an espfleet-controller database"));
  fprintf(stderr, "garbage: %s\n", st.detail);
  /* and it is left as it was */
  FILE *f = fopen(db_path, "r");
  char first[40] = "";
  assert_non_null(fgets(first, sizeof first, f));
  fclose(f);
  assert_string_equal(first, "this is a journal, not a database\n");

  /* an SQLite database of another program */
  unlink(db_path);
  sqlite3 *raw = NULL;
  assert_int_equal(sqlite3_open(db_path, &raw), SQLITE_OK);
  assert_int_equal(sqlite3_exec(raw, "CREATE TABLE photos(id INT)", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(raw);
  ef_status_clear(&st);
  assert_int_equal(ef_store_open(db_path, &s, &st), EF_ERR_IO);
  assert_null(s);
  assert_non_null(strstr(st.detail, "not an espfleet-controller database"));
}

static void test_rollback_leaves_nothing(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_rollout_device devs[3];
  sample_devices(devs, 3);
  ef_store *s = open_ok();
  assert_int_equal(ef_store_begin(s, &st), EF_OK);
  put_sample(s, "r1", devs, 3);
  add_line(s, "dev-a", "job-1", "failed", 1);
  ef_store_rollback(s);
  ef_store_rollback(s); /* nothing open: harmless */
  loaded l;
  load(s, &l);
  assert_int_equal(l.n, 0);
  assert_int_equal(query(s, NULL, NULL, 0).n, 0);
  /* and the store goes on working */
  assert_int_equal(ef_store_begin(s, &st), EF_OK);
  put_sample(s, "r1", devs, 3);
  assert_int_equal(ef_store_commit(s, &st), EF_OK);
  load(s, &l);
  assert_int_equal(l.n, 1);
  loaded_free(&l);
  ef_store_close(s);
}

/* Rows counted by a connection of our own, beside or after the store. */
static int raw_count(const char *table) {
  sqlite3 *raw = NULL;
  sqlite3_stmt *q = NULL;
  char sql[100];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
  assert_int_equal(sqlite3_open_v2(db_path, &raw, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(raw, sql, -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  int n = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  sqlite3_close(raw);
  return n;
}

static void test_crash_safety(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_rollout_device devs[20];
  sample_devices(devs, 20);
  /* closed without a commit: nothing */
  ef_store *s = open_ok();
  assert_int_equal(ef_store_begin(s, &st), EF_OK);
  put_sample(s, "r1", devs, 20);
  assert_int_equal(raw_count("rollout_devices"), 0); /* another connection sees nothing yet */
  ef_store_close(s);
  s = open_ok();
  loaded l;
  load(s, &l);
  assert_int_equal(l.n, 0);

  /* committed: everything, for another connection at once */
  assert_int_equal(ef_store_begin(s, &st), EF_OK);
  put_sample(s, "r1", devs, 20);
  assert_int_equal(ef_store_commit(s, &st), EF_OK);
  assert_int_equal(raw_count("rollouts"), 1);
  assert_int_equal(raw_count("rollout_devices"), 20);
  ef_store_close(s);

  /* a process killed (SIGKILL) in a transaction, after one it committed: no
   * close, no checkpoint, the WAL as it was; the next open recovers the
   * commit and drops the rest */
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    ef_store *c = NULL;
    ef_rollout_device d2[20];
    sample_devices(d2, 20);
    if (ef_store_open(db_path, &c, NULL) || ef_store_begin(c, NULL)) _exit(2);
    ef_rollout_run run = sample_run();
    if (ef_store_put_rollout(c, "r2", DOC, &run, NULL) || ef_store_put_devices(c, "r2", d2, 20, true, NULL) ||
        ef_store_commit(c, NULL) || ef_store_begin(c, NULL) ||
        ef_store_put_rollout(c, "r3", DOC, &run, NULL) || ef_store_put_devices(c, "r3", d2, 20, true, NULL))
      _exit(3);
    raise(SIGKILL); /* as a power cut would leave it: nothing runs after */
    _exit(4);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (WIFEXITED(status))
    fprintf(stderr, "the child failed before its crash (exit %d)\n", WEXITSTATUS(status));
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGKILL);
  s = open_ok(); /* the dead process's lock went with it */
  load(s, &l);
  assert_int_equal(l.n, 2);
  assert_string_equal(l.r[0].id, "r1");
  assert_string_equal(l.r[1].id, "r2");
  assert_int_equal(l.r[1].n, 20);
  for (size_t i = 0; i < 20; i++) assert_device_equal(&l.r[1].devs[i], &devs[i]);
  loaded_free(&l);
  ef_store_close(s);
}

static void test_thousand_rows(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  enum { N = 1000 };
  ef_rollout_device *devs = calloc(N, sizeof *devs);
  assert_non_null(devs);
  sample_devices(devs, N);
  for (size_t i = 0; i < N; i++)
    snprintf(devs[i].device_id, sizeof devs[i].device_id, "gw-%05zu", (i * 7919) % N);
  ef_store *s = open_ok();
  ef_rollout_run run = sample_run();

  int64_t t0 = now_us();
  assert_int_equal(ef_store_begin(s, &st), EF_OK);
  assert_int_equal(ef_store_put_rollout(s, "big", DOC, &run, &st), EF_OK);
  assert_int_equal(ef_store_put_devices(s, "big", devs, N, true, &st), EF_OK);
  assert_int_equal(ef_store_commit(s, &st), EF_OK);
  int64_t t1 = now_us();
  printf("store: %d device rows put in one transaction (commit included): %.2f ms\n", N,
         (double)(t1 - t0) / 1000.0);

  /* the engine's usual save: a few changed rows of a large rollout */
  for (size_t i = 0; i < N; i += 100) {
    devs[i].state = EF_RD_SUCCEEDED;
    devs[i].dirty = true;
  }
  t0 = now_us();
  assert_int_equal(ef_store_begin(s, &st), EF_OK);
  assert_int_equal(ef_store_put_devices(s, "big", devs, N, false, &st), EF_OK);
  assert_int_equal(ef_store_commit(s, &st), EF_OK);
  t1 = now_us();
  printf("store: 10 dirty rows of %d saved (commit included): %.2f ms\n", N, (double)(t1 - t0) / 1000.0);

  t0 = now_us();
  loaded l;
  load(s, &l);
  t1 = now_us();
  printf("store: %d device rows loaded: %.2f ms\n", N, (double)(t1 - t0) / 1000.0);
  assert_int_equal(l.n, 1);
  assert_int_equal(l.r[0].n, N);
  for (size_t i = 0; i < N; i++) assert_device_equal(&l.r[0].devs[i], &devs[i]);
  loaded_free(&l);
  ef_store_close(s);
  free(devs);
}

static void test_bad_arguments(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  ef_store *s = NULL;
  assert_int_equal(ef_store_open(NULL, &s, &st), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_store_open("", &s, NULL), EF_ERR_INVALID_ARG);
  ef_store_close(NULL);
  s = open_ok();
  ef_rollout_run run = sample_run();
  run.state = EF_RS__COUNT;
  assert_int_equal(ef_store_put_rollout(s, "r1", DOC, &run, NULL), EF_ERR_INVALID_ARG);
  assert_true(run.dirty);
  ef_rollout_device d[2];
  sample_devices(d, 2);
  d[1].state = EF_RD__COUNT;
  assert_int_equal(ef_store_put_devices(s, "r1", d, 2, true, NULL), EF_ERR_INVALID_ARG);
  assert_true(d[0].dirty); /* nothing saved, nothing cleared */
  ef_store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_rollout_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rollout_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_only_dirty_rows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_delete_keeps_history, setup, teardown),
      cmocka_unit_test_setup_teardown(test_history, setup, teardown),
      cmocka_unit_test_setup_teardown(test_known_devices, setup, teardown),
      cmocka_unit_test_setup_teardown(test_one_process, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reader_beside_writer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_missing_folder, setup, teardown),
      cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_ours_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rollback_leaves_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_crash_safety, setup, teardown),
      cmocka_unit_test_setup_teardown(test_thousand_rows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
