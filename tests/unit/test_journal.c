/* The journal: round trip, atomic save, corrupt file, bounded results. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "espfleet/journal.h"

#define SHA_A "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/test_journal.XXXXXX", base && base[0] ? base : "/tmp");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  const char *names[] = {"journal.json", "journal.json.tmp", "journal.json.corrupt"};
  char path[512];
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
    unlink(path);
  }
  return rmdir(tmpdir);
}

static void write_text(const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static bool exists(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  return access(path, F_OK) == 0;
}

static ef_job sample_job(void) {
  ef_job j;
  const char *doc = "{\"job_id\":\"job-7\",\"url\":\"https://h:8443/fw.bin\",\"sha256\":\"" SHA_A
                    "\",\"size\":123456,\"version\":\"2.0.1\",\"project\":\"proj\",\"chip\":\"esp32c3\","
                    "\"rollout\":{\"percent\":40},\"not_after\":\"2031-05-06T07:08:09Z\","
                    "\"expect_fw_version\":\"FG-1.0.5.0.0\",\"allow_downgrade\":true}";
  assert_int_equal(ef_job_parse(doc, strlen(doc), NULL, &j, NULL), EF_OK);
  return j;
}

static ef_journal_result result(const char *job_id, ef_job_state st, ef_err err, int64_t ts) {
  ef_journal_result r;
  memset(&r, 0, sizeof r);
  snprintf(r.job_id, sizeof r.job_id, "%s", job_id);
  snprintf(r.fingerprint, sizeof r.fingerprint, "%064d", 7);
  r.state = st;
  r.error = err;
  snprintf(r.message, sizeof r.message, "detail for %s", job_id);
  r.ts_ms = ts;
  r.attempt = 1;
  return r;
}

static void test_missing_file_is_empty(void **state) {
  (void)state;
  ef_journal *j = malloc(sizeof *j);
  bool recovered = true;
  assert_int_equal(ef_journal_load(j, tmpdir, &recovered, NULL), EF_OK);
  assert_false(recovered);
  assert_false(j->has_current);
  assert_int_equal(j->n_results, 0);
  assert_string_equal(j->installed.version, "");
  assert_null(ef_journal_find_final(j, "anything"));
  free(j);
}

static void test_round_trip(void **state) {
  (void)state;
  ef_journal *j = malloc(sizeof *j), *k = malloc(sizeof *k);
  bool recovered;
  assert_int_equal(ef_journal_load(j, tmpdir, &recovered, NULL), EF_OK);
  ef_job job = sample_job();
  ef_journal_set_current(j, &job, 2, EF_STATE_DOWNLOADING);
  ef_job next = sample_job();
  strcpy(next.job_id, "next-job");
  ef_journal_set_waiting(j, &next);
  ef_app_info app = {"1.9.0", "proj", SHA_A};
  ef_journal_set_installed(j, &app);
  ef_journal_result r1 = result("old-1", EF_STATE_FAILED, EF_ERR_HASH_MISMATCH, 1700000000123LL);
  ef_journal_result r2 = result("old-2", EF_STATE_SUCCEEDED, EF_OK, 1700000001000LL);
  r2.attempt = 3;
  ef_journal_record_final(j, &r1);
  ef_journal_record_final(j, &r2);
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  assert_false(exists("journal.json.tmp"));

  assert_int_equal(ef_journal_load(k, tmpdir, &recovered, NULL), EF_OK);
  assert_false(recovered);
  assert_true(k->has_current);
  char *want = ef_job_to_json(&job), *got = ef_job_to_json(&k->current);
  assert_non_null(want);
  assert_non_null(got);
  assert_string_equal(got, want);
  free(want);
  free(got);
  assert_int_equal(k->current.rollout_percent, 40);
  assert_true(k->has_waiting);
  assert_string_equal(k->waiting.job_id, "next-job");
  assert_string_equal(k->waiting.url, job.url);
  assert_int_equal(k->attempt, 2);
  assert_int_equal(k->phase, EF_STATE_DOWNLOADING);
  assert_string_equal(k->installed.version, "1.9.0");
  assert_string_equal(k->installed.project, "proj");
  assert_string_equal(k->installed.sha256_hex, SHA_A);
  assert_int_equal(k->n_results, 2);
  const ef_journal_result *f = ef_journal_find_final(k, "old-1");
  assert_non_null(f);
  assert_int_equal(f->state, EF_STATE_FAILED);
  assert_int_equal(f->error, EF_ERR_HASH_MISMATCH);
  assert_string_equal(f->message, "detail for old-1");
  assert_int_equal(f->ts_ms, 1700000000123LL);
  assert_string_equal(f->fingerprint, r1.fingerprint);
  f = ef_journal_find_final(k, "old-2");
  assert_non_null(f);
  assert_int_equal(f->attempt, 3);
  assert_int_equal(f->error, EF_OK);

  /* clearing the current job survives a save too */
  ef_journal_clear_current(k);
  ef_journal_set_waiting(k, NULL);
  assert_int_equal(ef_journal_save(k, NULL), EF_OK);
  assert_int_equal(ef_journal_load(j, tmpdir, &recovered, NULL), EF_OK);
  assert_false(j->has_current);
  assert_false(j->has_waiting);
  assert_int_equal(j->n_results, 2);
  free(j);
  free(k);
}

/* A leftover temp file from a crash mid-save does not affect the journal,
 * and the next save replaces it. */
static void test_stale_temp_file(void **state) {
  (void)state;
  ef_journal *j = malloc(sizeof *j);
  bool recovered;
  write_text("journal.json.tmp", "{\"format\":1,\"cur");
  assert_int_equal(ef_journal_load(j, tmpdir, &recovered, NULL), EF_OK);
  assert_false(recovered);
  ef_journal_result r = result("x", EF_STATE_CANCELED, EF_OK, 5);
  ef_journal_record_final(j, &r);
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  assert_false(exists("journal.json.tmp"));
  assert_int_equal(ef_journal_load(j, tmpdir, &recovered, NULL), EF_OK);
  assert_non_null(ef_journal_find_final(j, "x"));
  free(j);
}

static void test_corrupt_file(void **state) {
  (void)state;
  static const char *bad[] = {
      "{\"format\":1,\"current\":nu",                         /* truncated */
      "not json at all",                                     /* garbage */
      "[]",                                                  /* not an object */
      "{\"format\":2,\"current\":null,\"results\":[]}",      /* unknown format */
      "{\"format\":1,\"current\":{\"job\":{\"job_id\":\"x\"},\"attempt\":1,\"phase\":\"downloading\"},\"results\":[]}",
      "{\"format\":1,\"current\":null,\"results\":[{\"job_id\":\"a\"}]}",
      "{\"format\":1,\"current\":null,\"results\":[{\"job_id\":\"a\",\"fingerprint\":\"\",\"state\":\"failed\","
      "\"error\":\"no_such_code\",\"message\":\"\",\"ts_ms\":1,\"attempt\":1}]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ef_journal *j = malloc(sizeof *j);
    bool recovered = false;
    write_text("journal.json", bad[i]);
    assert_int_equal(ef_journal_load(j, tmpdir, &recovered, NULL), EF_OK);
    if (!recovered) fail_msg("case %zu not detected as corrupt: %s", i, bad[i]);
    assert_false(j->has_current);
    assert_int_equal(j->n_results, 0);
    assert_false(exists("journal.json"));
    assert_true(exists("journal.json.corrupt"));
    /* the empty journal can be saved over it */
    assert_int_equal(ef_journal_save(j, NULL), EF_OK);
    assert_int_equal(ef_journal_load(j, tmpdir, &recovered, NULL), EF_OK);
    assert_false(recovered);
    free(j);
  }
}

static void test_results_bounded_and_replaced(void **state) {
  (void)state;
  ef_journal *j = malloc(sizeof *j);
  bool recovered;
  char id[32];
  assert_int_equal(ef_journal_load(j, tmpdir, &recovered, NULL), EF_OK);
  for (int i = 0; i < EF_JOURNAL_MAX_RESULTS + 10; i++) {
    snprintf(id, sizeof id, "job-%d", i);
    ef_journal_result r = result(id, EF_STATE_SUCCEEDED, EF_OK, i);
    ef_journal_record_final(j, &r);
  }
  assert_int_equal(j->n_results, EF_JOURNAL_MAX_RESULTS);
  assert_null(ef_journal_find_final(j, "job-9"));        /* oldest dropped */
  assert_non_null(ef_journal_find_final(j, "job-10"));
  assert_non_null(ef_journal_find_final(j, "job-73"));
  /* a newer result of the same job replaces the old one and becomes newest */
  ef_journal_result again = result("job-10", EF_STATE_FAILED, EF_ERR_INTERRUPTED, 999);
  ef_journal_record_final(j, &again);
  assert_int_equal(j->n_results, EF_JOURNAL_MAX_RESULTS);
  assert_int_equal(ef_journal_find_final(j, "job-10")->state, EF_STATE_FAILED);
  assert_string_equal(j->results[EF_JOURNAL_MAX_RESULTS - 1].job_id, "job-10");
  assert_non_null(ef_journal_find_final(j, "job-11"));
  /* and it survives a save */
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  assert_int_equal(ef_journal_load(j, tmpdir, &recovered, NULL), EF_OK);
  assert_int_equal(j->n_results, EF_JOURNAL_MAX_RESULTS);
  assert_string_equal(j->results[0].job_id, "job-11");
  assert_int_equal(ef_journal_find_final(j, "job-10")->error, EF_ERR_INTERRUPTED);
  free(j);
}

static void test_unwritable_dir(void **state) {
  (void)state;
  ef_journal *j = malloc(sizeof *j);
  char missing[512];
  bool recovered;
  snprintf(missing, sizeof missing, "%s/does-not-exist", tmpdir);
  assert_int_equal(ef_journal_load(j, missing, &recovered, NULL), EF_OK);
  /* the caller is told what failed and why, not only the log */
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_journal_save(j, &st), EF_ERR_IO);
  assert_int_equal(st.code, EF_ERR_IO);
  assert_non_null(strstr(st.detail, "cannot create"));
  assert_non_null(strstr(st.detail, missing));
  assert_non_null(strstr(st.detail, "No such file or directory"));
  assert_int_equal(ef_journal_save(j, NULL), EF_ERR_IO);
  free(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_missing_file_is_empty, setup, teardown),
      cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stale_temp_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_results_bounded_and_replaced, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unwritable_dir, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
