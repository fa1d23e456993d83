/* The journal: round trip, atomic save, damaged records, results kept apart
 * from refused documents, the secure_version floor, state_dir checks, and
 * files that are not what they seem (FIFO, links, devices). Crash
 * consistency is test_journal_crash.c's. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>

#include "espfleet/journal.h"
#include "journal_io.h"

#define SHA_A "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static char tmpdir[256];

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmpdir, name); }

static int setup(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/test_journal.XXXXXX", base && base[0] ? base : "/tmp");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  const char *names[] = {"journal.json",
                         "journal.json.tmp",
                         "journal.json.corrupt",
                         "journal.json.corrupt.tmp",
                         "victim",
                         "sub/journal.json",
                         "sub"};
  char path[512];
  ef_journal_io_set(NULL);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    path_of(path, sizeof path, names[i]);
    if (unlink(path) != 0 && errno == EISDIR) rmdir(path);
    rmdir(path);
  }
  return rmdir(tmpdir);
}

static void write_text(const char *name, const char *text) {
  char path[512];
  path_of(path, sizeof path, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* The file's bytes (malloc'ed, NUL-terminated), NULL when missing. */
static char *read_text(const char *name) {
  char path[512];
  path_of(path, sizeof path, name);
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  char *buf = calloc(1, 1 << 20);
  assert_non_null(buf);
  size_t n = fread(buf, 1, (1 << 20) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static bool exists(const char *name) {
  char path[512];
  path_of(path, sizeof path, name);
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

static ef_journal *load_ok(ef_journal_damage *d) {
  ef_journal *j = malloc(sizeof *j);
  assert_non_null(j);
  ef_status st = EF_STATUS_INIT;
  if (ef_journal_load(j, tmpdir, d, &st) != EF_OK) fail_msg("load: %s", st.detail);
  return j;
}

/* A journal with one of everything, saved. */
static ef_journal *full_journal(void) {
  ef_journal *j = load_ok(NULL);
  ef_job job = sample_job(), next = sample_job();
  strcpy(next.job_id, "next-job");
  ef_journal_set_current(j, &job, 2, EF_STATE_DOWNLOADING);
  ef_journal_set_waiting(j, &next);
  ef_app_info app = {"1.9.0", "proj", SHA_A};
  ef_journal_set_installed(j, &app);
  ef_journal_set_floor(j, 7);
  ef_journal_result r1 = result("old-1", EF_STATE_FAILED, EF_ERR_HASH_MISMATCH, 1700000000123LL);
  ef_journal_result r2 = result("old-2", EF_STATE_SUCCEEDED, EF_OK, 1700000001000LL);
  ef_journal_result r3 = result("bad-doc", EF_STATE_REJECTED, EF_ERR_BAD_JOB, 1700000002000LL);
  r2.attempt = 3;
  r3.attempt = 0;
  ef_journal_record_final(j, &r1);
  ef_journal_record_final(j, &r2);
  ef_journal_record_final(j, &r3);
  assert_false(ef_journal_durable(j));
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  assert_true(ef_journal_durable(j));
  return j;
}

static void test_missing_file_is_empty(void **state) {
  (void)state;
  ef_journal_damage d;
  ef_journal *j = load_ok(&d);
  assert_int_equal(d.dropped, 0);
  assert_false(d.truncated);
  assert_false(d.floor_lost);
  assert_false(j->has_current);
  assert_int_equal(j->n_results, 0);
  assert_int_equal(ef_journal_floor(j), 0);
  assert_string_equal(j->installed.version, "");
  assert_null(ef_journal_find_final(j, "anything"));
  assert_null(ef_journal_last_final(j));
  assert_true(ef_journal_durable(j));
  free(j);
}

static void test_round_trip(void **state) {
  (void)state;
  ef_journal *j = full_journal();
  ef_journal_damage d;
  ef_journal *k = load_ok(&d);
  assert_int_equal(d.dropped, 0);
  assert_false(d.truncated);
  assert_false(exists("journal.json.tmp"));
  assert_false(exists("journal.json.corrupt"));
  assert_true(k->has_current);
  assert_memory_equal(&k->current, &j->current, sizeof j->current);
  assert_int_equal(k->current.rollout_percent, 40);
  assert_true(k->has_waiting);
  assert_memory_equal(&k->waiting, &j->waiting, sizeof j->waiting);
  assert_int_equal(k->attempt, 2);
  assert_int_equal(k->phase, EF_STATE_DOWNLOADING);
  assert_memory_equal(&k->installed, &j->installed, sizeof j->installed);
  assert_int_equal(ef_journal_floor(k), 7);
  assert_int_equal(k->n_results, 2);
  assert_int_equal(k->n_decisions, 1);
  assert_memory_equal(k->results, j->results, 2 * sizeof j->results[0]);
  assert_memory_equal(k->decisions, j->decisions, sizeof j->decisions[0]);
  const ef_journal_result *f = ef_journal_find_final(k, "old-1");
  assert_non_null(f);
  assert_int_equal(f->error, EF_ERR_HASH_MISMATCH);
  assert_int_equal(f->ts_ms, 1700000000123LL);
  assert_string_equal(ef_journal_find_final(k, "bad-doc")->message, "detail for bad-doc");
  assert_string_equal(ef_journal_last_final(k)->job_id, "bad-doc");

  /* clearing the current job survives a save too */
  ef_journal_clear_current(k);
  ef_journal_set_waiting(k, NULL);
  assert_int_equal(ef_journal_save(k, NULL), EF_OK);
  free(j);
  j = load_ok(NULL);
  assert_false(j->has_current);
  assert_false(j->has_waiting);
  assert_int_equal(j->n_results, 2);
  free(j);
  free(k);
}

/* One record per line, each with the CRC-32 of its data (zlib's; `python3
 * -c 'import zlib; print(hex(zlib.crc32(b"...")))'` agrees), the floor in
 * the first and the last line: the documented format (protocol.md). */
static void test_file_format(void **state) {
  (void)state;
  free(full_journal());
  char *text = read_text("journal.json");
  assert_non_null(text);
  assert_true(strncmp(text, "{\"kind\":\"journal\",\"crc\":\"", 25) == 0);
  assert_non_null(strstr(text, "\"data\":{\"format\":2,\"floor\":7}}\n"));
  assert_non_null(strstr(text, "{\"kind\":\"end\",\"crc\":\""));
  assert_non_null(strstr(text, "\"data\":{\"records\":7,\"floor\":7}}\n"));
  /* CRC-32 of {"format":2,"floor":7} */
  if (strncmp(text + 25, "99f5a8de", 8) != 0) fail_msg("header: %.60s", text);
  int lines = 0;
  for (const char *p = text; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, 8);
  free(text);
}

/* A leftover temp file from a crash mid-save does not affect the journal,
 * and the next save replaces it. */
static void test_stale_temp_file(void **state) {
  (void)state;
  write_text("journal.json.tmp", "{\"format\":1,\"cur");
  ef_journal_damage d;
  ef_journal *j = load_ok(&d);
  assert_int_equal(d.dropped, 0);
  ef_journal_result r = result("x", EF_STATE_CANCELED, EF_OK, 5);
  ef_journal_record_final(j, &r);
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  assert_false(exists("journal.json.tmp"));
  free(j);
  j = load_ok(NULL);
  assert_non_null(ef_journal_find_final(j, "x"));
  free(j);
}

/* Replaces the first occurrence of @p from in the journal file by @p to. */
static void damage_file(const char *from, const char *to) {
  char *text = read_text("journal.json");
  assert_non_null(text);
  char *at = strstr(text, from);
  if (!at) fail_msg("%s not in the journal", from);
  size_t n = strlen(text) + strlen(to) + 1;
  char *out = malloc(n);
  snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
  write_text("journal.json", out);
  free(out);
  free(text);
}

/* Red-team finding 1: a journal of the first format (one JSON object) that
 * an older daemon wrote with a not_after no parser reads. Today's loader
 * keeps everything else, and names the interrupted job. */
static void test_v1_bad_job_keeps_the_rest(void **state) {
  (void)state;
  write_text(
      "journal.json",
      "{\"format\":1,\"current\":{\"job\":{\"job_id\":\"far\",\"url\":\"https://h/x\",\"sha256\":\"" SHA_A
      "\",\"size\":1,\"version\":\"3.0\",\"not_after\":\"10000-01-01T00:59:59Z\"},\"attempt\":1,"
      "\"phase\":\"downloading\"},\"waiting\":null,"
      "\"installed\":{\"version\":\"2.0\",\"project\":\"p\",\"sha256\":\"" SHA_A
      "\"},"
      "\"results\":[{\"job_id\":\"rollback\",\"fingerprint\":\"\",\"state\":\"succeeded\",\"error\":\"ok\","
      "\"message\":\"\",\"ts_ms\":5,\"attempt\":1},"
      "{\"job_id\":\"odd\",\"fingerprint\":\"\",\"state\":\"failed\",\"error\":\"no_such_code\","
      "\"message\":\"\",\"ts_ms\":6,\"attempt\":1}]}");
  ef_journal_damage d;
  ef_journal *j = load_ok(&d);
  assert_int_equal(d.dropped, 2);
  assert_false(d.floor_lost); /* format 1 had none */
  assert_string_equal(d.lost_current, "far");
  assert_non_null(strstr(d.summary, "current: not_after"));
  assert_non_null(strstr(d.summary, "results[1]: unknown error code"));
  assert_false(j->has_current);
  assert_string_equal(j->installed.version, "2.0");
  assert_non_null(ef_journal_find_final(j, "rollback"));
  assert_null(ef_journal_find_final(j, "odd"));
  /* the damaged file is kept for a human, and stays until the next save */
  assert_true(exists("journal.json.corrupt"));
  assert_true(exists("journal.json"));
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  free(j);
  j = load_ok(&d);
  assert_int_equal(d.dropped, 0);
  assert_string_equal(j->installed.version, "2.0");
  assert_non_null(ef_journal_find_final(j, "rollback"));
  free(j);
}

/* Damage to any one line of a format-2 journal costs that record only. */
static void test_damaged_line_costs_one_record(void **state) {
  (void)state;
  ef_journal *j = full_journal();
  ef_journal_damage d;

  /* a flipped character in the current job's data: the CRC tells */
  damage_file("2.0.1", "2.0.2");
  ef_journal *k = load_ok(&d);
  assert_int_equal(d.dropped, 1);
  assert_false(d.truncated);
  assert_non_null(strstr(d.summary, "line 3: checksum mismatch"));
  assert_string_equal(d.lost_current, ""); /* nothing read from a record that failed its CRC */
  assert_false(k->has_current);
  assert_true(k->has_waiting); /* the same text in "waiting" was not touched */
  assert_memory_equal(&k->installed, &j->installed, sizeof j->installed);
  assert_int_equal(k->n_results, 2);
  assert_int_equal(k->n_decisions, 1);
  assert_int_equal(ef_journal_floor(k), 7);
  assert_true(exists("journal.json.corrupt"));
  free(k);

  /* a record whose CRC holds but whose job this version refuses (a job the
   * parser of an older or newer version wrote) names its job */
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  char *text = read_text("journal.json");
  char *line = strstr(text, "{\"kind\":\"current\"");
  assert_non_null(line);
  *strchr(line, '\n') = '\0';
  const char *bad_data =
      "{\"job\":{\"job_id\":\"job-7\",\"url\":\"ftp://x\"},\"attempt\":2,\"phase\":\"downloading\"}";
  char fixed[512];
  /* CRC-32 of bad_data, computed as the loader does */
  uint32_t c = 0xFFFFFFFFu;
  for (const char *p = bad_data; *p; p++) {
    c ^= (unsigned char)*p;
    for (int b = 0; b < 8; b++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  snprintf(fixed, sizeof fixed, "{\"kind\":\"current\",\"crc\":\"%08x\",\"data\":%s}", ~c, bad_data);
  damage_file(line, fixed);
  free(text);
  k = load_ok(&d);
  assert_int_equal(d.dropped, 1);
  assert_string_equal(d.lost_current, "job-7");
  assert_non_null(strstr(d.summary, "line 3 (current \"job-7\"): url"));
  assert_int_equal(k->n_results, 2);
  free(k);

  /* the header, then the end record: the floor comes from the other copy */
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  damage_file("{\"format\":2,\"floor\":7}", "{\"format\":2,\"floor\":8}");
  k = load_ok(&d);
  assert_int_equal(d.dropped, 1);
  assert_false(d.floor_lost);
  assert_int_equal(ef_journal_floor(k), 7);
  assert_true(k->has_current);
  free(k);
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  damage_file("{\"records\":7,\"floor\":7}", "{\"records\":7,\"floor\":0}");
  k = load_ok(&d);
  assert_int_equal(d.dropped, 1);
  assert_int_equal(ef_journal_floor(k), 7);
  free(k);
  /* both copies: the floor is lost, and said so */
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  damage_file("{\"format\":2,\"floor\":7}", "{\"format\":2,\"floor\":8}");
  damage_file("{\"records\":7,\"floor\":7}", "{\"records\":7,\"floor\":0}");
  k = load_ok(&d);
  assert_int_equal(d.dropped, 2);
  assert_true(d.floor_lost);
  assert_int_equal(ef_journal_floor(k), 0);
  assert_true(k->has_current);
  assert_int_equal(k->n_results, 2);
  free(k);

  /* a line of an unknown kind (a newer daemon's) is dropped alone */
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  damage_file("{\"kind\":\"installed\"",
              "{\"kind\":\"future\",\"crc\":\"a3a6bf43\",\"data\":{}}\n{\"kind\":\"installed\"");
  k = load_ok(&d);
  assert_int_equal(d.dropped, 1);
  assert_non_null(strstr(d.summary, "line 2 (future): unknown kind \"future\""));
  assert_non_null(strstr(d.summary, "the end record counts 7 lines before it, found 8"));
  assert_string_equal(k->installed.version, "1.9.0");
  free(k);
  free(j);
}

/* A file cut short keeps every whole line before the cut. */
static void test_cut_short(void **state) {
  (void)state;
  ef_journal *j = full_journal();
  char *text = read_text("journal.json");
  char *last = strstr(text, "{\"kind\":\"result\",\"crc\"");
  assert_non_null(last);
  last[30] = '\0'; /* inside the first result */
  write_text("journal.json", text);
  free(text);
  ef_journal_damage d;
  ef_journal *k = load_ok(&d);
  assert_true(d.truncated);
  assert_int_equal(d.dropped, 1);
  assert_int_equal(ef_journal_floor(k), 7);
  assert_true(k->has_current);
  assert_true(k->has_waiting);
  assert_string_equal(k->installed.version, "1.9.0");
  assert_int_equal(k->n_results, 0);
  free(k);
  free(j);
}

static void test_unreadable_files(void **state) {
  (void)state;
  static const char *bad[] = {
      "",                                               /* empty */
      "not json at all",                                /* garbage */
      "[]",                                             /* not an object */
      "{\"format\":3,\"current\":null,\"results\":[]}", /* unknown format */
      "{\"format\":1,\"current\":nu",                   /* a format-1 file cut short */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_text("journal.json", bad[i]);
    ef_journal_damage d;
    ef_journal *j = load_ok(&d);
    if (d.dropped == 0 && !d.truncated) fail_msg("case %zu not reported as damaged: %s", i, bad[i]);
    assert_true(d.floor_lost);
    assert_false(j->has_current);
    assert_int_equal(j->n_results, 0);
    char *copy = read_text("journal.json.corrupt");
    assert_non_null(copy);
    assert_string_equal(copy, bad[i]);
    free(copy);
    /* the empty journal can be saved over it */
    assert_int_equal(ef_journal_save(j, NULL), EF_OK);
    free(j);
    j = load_ok(&d);
    assert_int_equal(d.dropped, 0);
    assert_false(d.truncated);
    free(j);
  }
}

/* A file larger than any journal is not read (nor held in memory whole). */
static void test_too_big(void **state) {
  (void)state;
  free(full_journal());
  char *text = read_text("journal.json");
  size_t n = (1 << 20) + 10, k = strlen(text);
  char *big = malloc(n + 1);
  assert_non_null(big);
  memcpy(big, text, k); /* a whole journal first: it is still not read */
  memset(big + k, ' ', n - k);
  big[n] = '\0';
  write_text("journal.json", big);
  ef_journal_damage d;
  ef_journal *j = load_ok(&d);
  assert_true(d.dropped > 0);
  assert_true(d.floor_lost);
  assert_non_null(strstr(d.summary, "larger than 1048576 bytes: not read"));
  assert_false(j->has_current);
  free(j);
  free(big);
  free(text);
}

static void test_results_bounded_and_replaced(void **state) {
  (void)state;
  ef_journal *j = load_ok(NULL);
  char id[32];
  for (int i = 0; i < EF_JOURNAL_MAX_RESULTS + 10; i++) {
    snprintf(id, sizeof id, "job-%d", i);
    ef_journal_result r = result(id, EF_STATE_SUCCEEDED, EF_OK, i);
    ef_journal_record_final(j, &r);
  }
  assert_int_equal(j->n_results, EF_JOURNAL_MAX_RESULTS);
  assert_null(ef_journal_find_final(j, "job-9")); /* oldest dropped */
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
  free(j);
  j = load_ok(NULL);
  assert_int_equal(j->n_results, EF_JOURNAL_MAX_RESULTS);
  assert_string_equal(j->results[0].job_id, "job-11");
  assert_int_equal(ef_journal_find_final(j, "job-10")->error, EF_ERR_INTERRUPTED);
  free(j);
}

/* Red-team finding 3: 80 malformed documents with valid job_ids evicted a
 * real result, and a retained rollback job ran again after a restart.
 * Refused and skipped documents now only push out each other. */
static void test_refusals_never_evict_results(void **state) {
  (void)state;
  ef_journal *j = load_ok(NULL);
  char id[32];
  ef_journal_result rollback = result("rollback", EF_STATE_SUCCEEDED, EF_OK, 1);
  ef_journal_record_final(j, &rollback);
  ef_journal_result installed = result("installed", EF_STATE_SUCCEEDED, EF_OK, 2);
  installed.attempt = 0; /* already installed: succeeded without running */
  ef_journal_record_final(j, &installed);
  ef_journal_result header = result("header-mismatch", EF_STATE_REJECTED, EF_ERR_CHIP_MISMATCH, 3);
  ef_journal_record_final(j, &header); /* refused after it started: it ran */
  for (int i = 0; i < 1000; i++) {
    snprintf(id, sizeof id, "flood-%d", i);
    ef_journal_result r =
        result(id, i % 3 ? EF_STATE_REJECTED : EF_STATE_SKIPPED, i % 3 ? EF_ERR_BAD_JOB : EF_OK, 10 + i);
    r.attempt = 0;
    ef_journal_record_final(j, &r);
  }
  assert_int_equal(j->n_results, 3);
  assert_int_equal(j->n_decisions, EF_JOURNAL_MAX_DECISIONS);
  assert_non_null(ef_journal_find_final(j, "rollback"));
  assert_non_null(ef_journal_find_final(j, "installed"));
  assert_non_null(ef_journal_find_final(j, "header-mismatch"));
  assert_null(ef_journal_find_final(j, "flood-0"));
  assert_non_null(ef_journal_find_final(j, "flood-999"));
  assert_string_equal(ef_journal_last_final(j)->job_id, "flood-999");
  /* a result of a job that later ran replaces its refusal */
  ef_journal_result ran = result("flood-999", EF_STATE_SUCCEEDED, EF_OK, 5000);
  ef_journal_record_final(j, &ran);
  assert_int_equal(j->n_decisions, EF_JOURNAL_MAX_DECISIONS - 1);
  assert_int_equal(j->n_results, 4);
  ef_journal_forget_final(j, "installed");
  assert_null(ef_journal_find_final(j, "installed"));
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  free(j);
  /* and after a restart */
  j = load_ok(NULL);
  assert_int_equal(j->n_results, 3);
  assert_int_equal(j->n_decisions, EF_JOURNAL_MAX_DECISIONS - 1);
  assert_int_equal(ef_journal_find_final(j, "rollback")->state, EF_STATE_SUCCEEDED);
  assert_int_equal(ef_journal_find_final(j, "flood-999")->state, EF_STATE_SUCCEEDED);
  free(j);
}

static void test_floor(void **state) {
  (void)state;
  ef_journal *j = load_ok(NULL);
  assert_int_equal(ef_journal_floor(j), 0);
  ef_journal_set_floor(j, 5);
  assert_false(ef_journal_durable(j));
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  ef_journal_set_floor(j, 3); /* never lowered, and not a change */
  assert_true(ef_journal_durable(j));
  assert_int_equal(ef_journal_floor(j), 5);
  ef_journal_set_floor(j, UINT32_MAX);
  assert_int_equal(ef_journal_save(j, NULL), EF_OK);
  free(j);
  j = load_ok(NULL);
  assert_int_equal(ef_journal_floor(j), UINT32_MAX);
  free(j);
}

static void test_unwritable_dir(void **state) {
  (void)state;
  ef_journal *j = malloc(sizeof *j);
  char missing[512];
  snprintf(missing, sizeof missing, "%s/does-not-exist", tmpdir);
  assert_int_equal(ef_journal_load(j, missing, NULL, NULL), EF_OK);
  /* the caller is told what failed and why, not only the log */
  ef_status st = EF_STATUS_INIT;
  ef_journal_set_floor(j, 1);
  assert_int_equal(ef_journal_save(j, &st), EF_ERR_IO);
  assert_false(ef_journal_durable(j));
  assert_int_equal(st.code, EF_ERR_IO);
  assert_non_null(strstr(st.detail, "cannot create"));
  assert_non_null(strstr(st.detail, missing));
  assert_non_null(strstr(st.detail, "No such file or directory"));
  assert_int_equal(ef_journal_save(j, NULL), EF_ERR_IO);
  free(j);
}

/* ---- files that are not what they seem (finding 7: a FIFO hung open()) ---- */

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "test_journal: a journal call blocked (FIFO?)\n";
  if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
  _exit(3);
}

static void test_fifo_link_device(void **state) {
  (void)state;
  char path[512], victim[512];
  ef_status st = EF_STATUS_INIT;
  ef_journal *j = malloc(sizeof *j);
  path_of(path, sizeof path, "journal.json");
  path_of(victim, sizeof victim, "victim");
  signal(SIGALRM, on_alarm);
  alarm(10); /* a blocking open() would hang here forever */

  assert_int_equal(mkfifo(path, 0600), 0);
  assert_int_equal(ef_journal_load(j, tmpdir, NULL, &st), EF_ERR_IO);
  assert_non_null(strstr(st.detail, "is a FIFO, not a regular file"));
  ef_status_clear(&st);
  assert_int_equal(ef_journal_check_dir(tmpdir, false, NULL, &st), EF_ERR_IO);
  assert_non_null(strstr(st.detail, "is a FIFO"));
  unlink(path);

  /* a link is never followed, to read or to write */
  write_text("victim", "precious\n");
  assert_int_equal(symlink(victim, path), 0);
  ef_status_clear(&st);
  assert_int_equal(ef_journal_load(j, tmpdir, NULL, &st), EF_ERR_IO);
  assert_non_null(strstr(st.detail, "is a symbolic link"));
  ef_status_clear(&st);
  assert_int_equal(ef_journal_check_dir(tmpdir, false, NULL, &st), EF_ERR_IO);
  unlink(path);
  ef_journal *k = load_ok(NULL); /* an empty journal for this directory */
  assert_int_equal(symlink(victim, path), 0);
  ef_journal_set_floor(k, 2);
  assert_int_equal(ef_journal_save(k, NULL), EF_OK); /* replaces the link itself */
  struct stat sb;
  assert_int_equal(lstat(path, &sb), 0);
  assert_true(S_ISREG(sb.st_mode));
  char *v = read_text("victim");
  assert_string_equal(v, "precious\n");
  free(v);
  /* nor is one planted at the temporary name */
  char tmp[512];
  path_of(tmp, sizeof tmp, "journal.json.tmp");
  assert_int_equal(symlink(victim, tmp), 0);
  assert_int_equal(ef_journal_save(k, NULL), EF_OK);
  v = read_text("victim");
  assert_string_equal(v, "precious\n");
  free(v);
  free(k);
  unlink(path);

  /* a device node (as root; elsewhere the FIFO and link cases stand) */
  if (mknod(path, S_IFCHR | 0600, makedev(1, 3)) == 0) {
    ef_status_clear(&st);
    assert_int_equal(ef_journal_load(j, tmpdir, NULL, &st), EF_ERR_IO);
    assert_non_null(strstr(st.detail, "is a character device"));
    unlink(path);
  }
  /* a directory */
  assert_int_equal(mkdir(path, 0700), 0);
  ef_status_clear(&st);
  assert_int_equal(ef_journal_load(j, tmpdir, NULL, &st), EF_ERR_IO);
  rmdir(path);
  alarm(0);
  free(j);
}

/* ---- state_dir checks (finding 2: a read-only state_dir was "valid") ---- */

static int fake_errno;
static int (*real_open)(const char *, int, mode_t);
static int open_refusing_creates(const char *path, int flags, mode_t mode) {
  if (flags & O_CREAT) {
    errno = fake_errno;
    return -1;
  }
  return real_open(path, flags, mode);
}
static unsigned long fake_bavail;
static int statvfs_small(const char *path, struct statvfs *s) {
  int r = statvfs(path, s);
  s->f_bavail = fake_bavail;
  s->f_frsize = 4096;
  return r;
}
static int sys_open3(const char *path, int flags, mode_t mode) { return open(path, flags, mode); }

static void test_check_dir(void **state) {
  (void)state;
  ef_status st = EF_STATUS_INIT;
  bool missing = false;
  char sub[512];
  path_of(sub, sizeof sub, "sub");
  /* missing: fine for --check-config (the daemon creates it), created at start */
  assert_int_equal(ef_journal_check_dir(sub, false, &missing, &st), EF_OK);
  assert_true(missing);
  assert_int_equal(ef_journal_check_dir(sub, true, &missing, &st), EF_OK);
  assert_false(missing);
  struct stat sb;
  assert_int_equal(stat(sub, &sb), 0);
  assert_true(S_ISDIR(sb.st_mode));
  assert_int_equal(sb.st_mode & 0777, 0700);
  assert_int_equal(ef_journal_check_dir(sub, false, &missing, &st), EF_OK);
  assert_false(missing);
  rmdir(sub);
  /* not a directory */
  write_text("sub", "x");
  assert_int_equal(ef_journal_check_dir(sub, true, NULL, &st), EF_ERR_IO);
  assert_non_null(strstr(st.detail, "not a directory"));
  unlink(sub);

  /* read-only, full: what the file system answers to a write (as root too) */
  ef_journal_io io = {.open = sys_open3,
                      .read = read,
                      .write = write,
                      .fstat = fstat,
                      .fsync = fsync,
                      .close = close,
                      .rename = rename,
                      .unlink = unlink,
                      .mkdir = mkdir,
                      .stat = stat,
                      .statvfs = statvfs};
  real_open = sys_open3;
  io.open = open_refusing_creates;
  ef_journal_io_set(&io);
  fake_errno = EROFS;
  ef_status_clear(&st);
  assert_int_equal(ef_journal_check_dir(tmpdir, false, NULL, &st), EF_ERR_IO);
  assert_non_null(strstr(st.detail, "is not writable: Read-only file system"));
  fake_errno = EACCES;
  ef_status_clear(&st);
  assert_int_equal(ef_journal_check_dir(tmpdir, true, NULL, &st), EF_ERR_IO);
  assert_non_null(strstr(st.detail, "is not writable: Permission denied"));
  io.open = sys_open3;
  io.statvfs = statvfs_small;
  fake_bavail = 100; /* 400 KiB */
  ef_journal_io_set(&io);
  ef_status_clear(&st);
  assert_int_equal(ef_journal_check_dir(tmpdir, true, NULL, &st), EF_ERR_IO);
  assert_non_null(strstr(st.detail, "has 400 KiB free, the journal needs at least 2048 KiB"));
  fake_bavail = 1000;
  ef_status_clear(&st);
  assert_int_equal(ef_journal_check_dir(tmpdir, true, NULL, &st), EF_OK);
  ef_journal_io_set(NULL);
  /* and the probe left nothing behind */
  DIR *dir = opendir(tmpdir);
  assert_non_null(dir);
  for (struct dirent *e; (e = readdir(dir));)
    if (strncmp(e->d_name, "journal.probe", 13) == 0) fail_msg("left behind: %s", e->d_name);
  closedir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_missing_file_is_empty, setup, teardown),
      cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_format, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stale_temp_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_v1_bad_job_keeps_the_rest, setup, teardown),
      cmocka_unit_test_setup_teardown(test_damaged_line_costs_one_record, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cut_short, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unreadable_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
      cmocka_unit_test_setup_teardown(test_results_bounded_and_replaced, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refusals_never_evict_results, setup, teardown),
      cmocka_unit_test_setup_teardown(test_floor, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unwritable_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fifo_link_device, setup, teardown),
      cmocka_unit_test_setup_teardown(test_check_dir, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
