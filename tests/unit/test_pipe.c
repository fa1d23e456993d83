/*
 * The bounded pipe: ordering and integrity under concurrent random-sized
 * writes and reads, end-of-stream and error propagation, abort, and the
 * capacity bound.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "espfleet/clock.h"
#include "espfleet/pipe.h"

/* A pattern whose period (251, prime) never lines up with chunk sizes or
 * the capacity, so a lost, repeated or reordered block shows. */
static uint8_t pattern(uint64_t i) { return (uint8_t)((i * 7 + (i >> 11)) % 251); }

/* Joins @p t, failing the test when it does not finish within @p ms. */
static void join_within(pthread_t t, int ms) {
  struct timespec ts = ef_ms_timespec(ef_wall_ms() + ms); /* pthread_timedjoin_np: CLOCK_REALTIME */
  int rc = pthread_timedjoin_np(t, NULL, &ts);
  if (rc == ETIMEDOUT) fail_msg("thread did not finish within %d ms", ms);
  assert_int_equal(rc, 0);
}

static void test_new_rejects_zero_capacity(void **state) {
  ef_pipe *p = (ef_pipe *)1;
  assert_int_equal(ef_pipe_new(0, &p), EF_ERR_INVALID_ARG);
  assert_null(p);
}

/* ---- concurrent stream ---- */

struct stream {
  ef_pipe *p;
  size_t capacity;
  uint64_t total;
  unsigned seed;
  ef_err write_rc;
};

static void *producer(void *arg) {
  struct stream *s = arg;
  uint8_t *chunk = malloc(3 * s->capacity + 1);
  unsigned seed = s->seed;
  uint64_t off = 0;

  s->write_rc = EF_OK;
  while (off < s->total) {
    /* from single bytes to several times the capacity */
    size_t n = (size_t)(rand_r(&seed) % (3 * s->capacity)) + 1;
    if (n > s->total - off) n = (size_t)(s->total - off);
    for (size_t i = 0; i < n; i++) chunk[i] = pattern(off + i);
    s->write_rc = ef_pipe_write(s->p, chunk, n);
    if (s->write_rc != EF_OK) break;
    off += n;
    if (rand_r(&seed) % 64 == 0) usleep(200); /* let the reader catch up and wait */
  }
  ef_pipe_close(s->p, NULL);
  free(chunk);
  return NULL;
}

static void run_stream(size_t capacity, uint64_t total, unsigned seed) {
  struct stream s = {.capacity = capacity, .total = total, .seed = seed};
  uint8_t *buf = malloc(4 * capacity);
  unsigned rseed = seed * 31 + 7;
  uint64_t off = 0;
  pthread_t t;
  ef_source src;

  assert_int_equal(ef_pipe_new(capacity, &s.p), EF_OK);
  ef_pipe_source(s.p, &src);
  assert_int_equal(pthread_create(&t, NULL, producer, &s), 0);
  for (;;) {
    size_t want = (size_t)(rand_r(&rseed) % (4 * capacity)) + 1;
    size_t got = 0;
    /* alternate the direct call and the ef_source adapter */
    ef_status st = EF_STATUS_INIT;
    ef_err rc = (off & 1) ? ef_pipe_read(s.p, buf, want, &got, &st) : src.read(&src, buf, want, &got, &st);
    assert_int_equal(st.code, rc);
    assert_int_equal(rc, EF_OK);
    if (got == 0) break;
    assert_true(got <= want);
    assert_true(got <= capacity);
    for (size_t i = 0; i < got; i++) {
      if (buf[i] != pattern(off + i)) fail_msg("byte %llu differs", (unsigned long long)(off + i));
    }
    off += got;
    if (rand_r(&rseed) % 64 == 0) usleep(200); /* let the writer fill up and wait */
  }
  join_within(t, 10000);
  assert_int_equal(s.write_rc, EF_OK);
  assert_int_equal(off, total);
  ef_pipe_free(s.p);
  free(buf);
}

static void test_stream_small_capacity(void **state) { run_stream(4099, 4u << 20, 1); }
static void test_stream_tiny_capacity(void **state) { run_stream(7, 200000, 2); }
static void test_stream_large_capacity(void **state) { run_stream(256 * 1024, 32u << 20, 3); }

/* ---- end of stream ---- */

static void test_error_after_buffered_data(void **state) {
  ef_pipe *p;
  uint8_t in[1000], out[4000];
  size_t got = 0;
  ef_source src;

  for (size_t i = 0; i < sizeof(in); i++) in[i] = pattern(i);
  assert_int_equal(ef_pipe_new(4096, &p), EF_OK);
  assert_int_equal(ef_pipe_write(p, in, sizeof(in)), EF_OK);
  ef_status why = EF_STATUS_INIT, st = EF_STATUS_INIT;
  ef_status_fail_r(&why, EF_ERR_SIZE_MISMATCH, false, "server sent more than 1000 bytes");
  ef_pipe_close(p, &why);
  ef_status other = EF_STATUS_INIT;
  ef_status_fail_r(&other, EF_ERR_DOWNLOAD_FAILED, true, "second close is ignored");
  ef_pipe_close(p, &other);
  assert_int_equal(ef_pipe_write(p, in, 1), EF_ERR_INVALID_ARG);

  ef_pipe_source(p, &src);
  /* the bytes before the error are delivered first, intact */
  assert_int_equal(src.read(&src, out, 600, &got, &st), EF_OK);
  assert_int_equal(got, 600);
  assert_int_equal(src.read(&src, out + 600, sizeof(out) - 600, &got, &st), EF_OK);
  assert_int_equal(got, 400);
  assert_memory_equal(in, out, sizeof(in));
  assert_int_equal(st.code, EF_OK);
  /* then the error, every time it is asked, with the producer's status */
  assert_int_equal(src.read(&src, out, sizeof(out), &got, &st), EF_ERR_SIZE_MISMATCH);
  assert_int_equal(got, 0);
  assert_int_equal(st.code, EF_ERR_SIZE_MISMATCH);
  assert_false(st.retryable);
  assert_string_equal(st.detail, "server sent more than 1000 bytes");
  ef_status_clear(&st);
  assert_int_equal(ef_pipe_read(p, out, sizeof(out), &got, &st), EF_ERR_SIZE_MISMATCH);
  assert_string_equal(st.detail, "server sent more than 1000 bytes");
  assert_int_equal(ef_pipe_read(p, out, sizeof(out), &got, NULL), EF_ERR_SIZE_MISMATCH);
  ef_pipe_free(p);
}

static void test_clean_end_after_wraparound(void **state) {
  ef_pipe *p;
  uint8_t in[10], out[16];
  size_t got = 0;

  for (size_t i = 0; i < sizeof(in); i++) in[i] = (uint8_t)i;
  assert_int_equal(ef_pipe_new(16, &p), EF_OK);
  assert_int_equal(ef_pipe_write(p, in, 10), EF_OK);
  assert_int_equal(ef_pipe_read(p, out, 10, &got, NULL), EF_OK);
  assert_int_equal(got, 10);
  /* 10 more bytes wrap around the 16-byte ring */
  assert_int_equal(ef_pipe_write(p, in, 10), EF_OK);
  ef_pipe_close(p, NULL);
  assert_int_equal(ef_pipe_read(p, out, sizeof(out), &got, NULL), EF_OK);
  assert_int_equal(got, 10);
  assert_memory_equal(in, out, 10);
  assert_int_equal(ef_pipe_read(p, out, sizeof(out), &got, NULL), EF_OK);
  assert_int_equal(got, 0);
  assert_int_equal(ef_pipe_read(p, out, sizeof(out), &got, NULL), EF_OK);
  assert_int_equal(got, 0);
  ef_pipe_free(p);
}

/* ---- capacity and abort ---- */

struct blocked_writer {
  ef_pipe *p;
  size_t len;
  atomic_bool done;
  ef_err rc;
};

static void *write_all(void *arg) {
  struct blocked_writer *w = arg;
  uint8_t *data = malloc(w->len);
  for (size_t i = 0; i < w->len; i++) data[i] = pattern(i);
  w->rc = ef_pipe_write(w->p, data, w->len);
  atomic_store(&w->done, true);
  free(data);
  return NULL;
}

static void test_capacity_is_never_exceeded(void **state) {
  enum { CAP = 1000 };
  struct blocked_writer w = {.len = CAP + 123};
  uint8_t out[4 * CAP];
  size_t got = 0;
  pthread_t t;

  assert_int_equal(ef_pipe_new(CAP, &w.p), EF_OK);
  assert_int_equal(pthread_create(&t, NULL, write_all, &w), 0);
  usleep(100 * 1000);
  /* the pipe holds CAP bytes; the writer must still be waiting to put the rest */
  assert_false(atomic_load(&w.done));
  assert_int_equal(ef_pipe_read(w.p, out, sizeof(out), &got, NULL), EF_OK);
  assert_int_equal(got, CAP);
  join_within(t, 5000);
  assert_int_equal(w.rc, EF_OK);
  assert_int_equal(ef_pipe_read(w.p, out + CAP, sizeof(out) - CAP, &got, NULL), EF_OK);
  assert_int_equal(got, 123);
  for (size_t i = 0; i < CAP + 123; i++) assert_int_equal(out[i], pattern(i));
  ef_pipe_free(w.p);
}

static void test_abort_wakes_blocked_writer(void **state) {
  struct blocked_writer w = {.len = 3 * 4096};
  uint8_t out[16];
  size_t got = 0;
  pthread_t t;

  assert_int_equal(ef_pipe_new(4096, &w.p), EF_OK);
  assert_false(ef_pipe_aborted(w.p));
  assert_int_equal(pthread_create(&t, NULL, write_all, &w), 0);
  usleep(50 * 1000);
  assert_false(atomic_load(&w.done));
  ef_pipe_abort(w.p);
  join_within(t, 2000);
  assert_int_equal(w.rc, EF_ERR_CANCELED);
  assert_true(ef_pipe_aborted(w.p));
  /* once aborted, every further write and read fails at once */
  assert_int_equal(ef_pipe_write(w.p, out, sizeof(out)), EF_ERR_CANCELED);
  assert_int_equal(ef_pipe_read(w.p, out, sizeof(out), &got, NULL), EF_ERR_CANCELED);
  ef_pipe_abort(w.p); /* idempotent */
  ef_pipe_free(w.p);
}

struct blocked_reader {
  ef_pipe *p;
  ef_err rc;
  ef_status st;
};

static void *read_one(void *arg) {
  struct blocked_reader *r = arg;
  uint8_t buf[64];
  size_t got = 0;
  r->rc = ef_pipe_read(r->p, buf, sizeof(buf), &got, &r->st);
  return NULL;
}

static void test_close_wakes_blocked_reader(void **state) {
  struct blocked_reader r = {.rc = EF_OK};
  pthread_t t;

  assert_int_equal(ef_pipe_new(64, &r.p), EF_OK);
  assert_int_equal(pthread_create(&t, NULL, read_one, &r), 0);
  usleep(50 * 1000);
  ef_status why = EF_STATUS_INIT;
  ef_status_fail_r(&why, EF_ERR_DOWNLOAD_FAILED, true, "HTTP 503 from https://127.0.0.1:1");
  ef_pipe_close(r.p, &why);
  join_within(t, 2000);
  assert_int_equal(r.rc, EF_ERR_DOWNLOAD_FAILED);
  assert_int_equal(r.st.code, EF_ERR_DOWNLOAD_FAILED);
  assert_true(r.st.retryable);
  assert_string_equal(r.st.detail, "HTTP 503 from https://127.0.0.1:1");
  ef_pipe_free(r.p);
}

static void test_abort_wakes_blocked_reader(void **state) {
  struct blocked_reader r = {.rc = EF_OK};
  pthread_t t;

  assert_int_equal(ef_pipe_new(64, &r.p), EF_OK);
  assert_int_equal(pthread_create(&t, NULL, read_one, &r), 0);
  usleep(50 * 1000);
  ef_pipe_abort(r.p);
  join_within(t, 2000);
  assert_int_equal(r.rc, EF_ERR_CANCELED);
  ef_pipe_free(r.p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_rejects_zero_capacity),  cmocka_unit_test(test_stream_small_capacity),
      cmocka_unit_test(test_stream_tiny_capacity),       cmocka_unit_test(test_stream_large_capacity),
      cmocka_unit_test(test_error_after_buffered_data),  cmocka_unit_test(test_clean_end_after_wraparound),
      cmocka_unit_test(test_capacity_is_never_exceeded), cmocka_unit_test(test_abort_wakes_blocked_writer),
      cmocka_unit_test(test_close_wakes_blocked_reader), cmocka_unit_test(test_abort_wakes_blocked_reader),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
