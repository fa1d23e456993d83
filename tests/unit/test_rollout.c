/* The rollout engine (rollout.h): steps, thresholds, timeouts, windows and operator actions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "espfleet/rollout.h"

#define JOB                                                            \
  "\"job\":{\"job_id\":\"j1\",\"url\":\"https://h/x.bin\",\"sha256\":" \
  "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\",\"size\":1000,\"version\":\"1.0\"}"

#define N_DEV 10
#define T0    1000000000000LL /* a Unix time in ms, 2001-09-09T01:46:40Z */

typedef struct {
  ef_rollout_spec spec;
  ef_rollout_run run;
  ef_rollout_device devs[N_DEV];
  size_t n;
} fixture;

/* A rollout of N_DEV devices d0..d9 with the given steps and policy JSON. */
static void setup_rollout(fixture *f, const char *steps, const char *policy) {
  char doc[2048];
  snprintf(doc, sizeof doc,
           "{\"rollout_id\":\"r1\"," JOB ",\"target\":{\"groups\":[\"g\"]},\"steps\":%s,\"policy\":%s}",
           steps, policy);
  ef_status st = EF_STATUS_INIT;
  memset(f, 0, sizeof *f);
  assert_int_equal(ef_rollout_spec_parse(doc, strlen(doc), &f->spec, &st), EF_OK);
  f->n = N_DEV;
  for (size_t i = 0; i < N_DEV; i++) snprintf(f->devs[i].device_id, sizeof f->devs[i].device_id, "d%zu", i);
  ef_rollout_order(&f->spec, f->devs, f->n);
  ef_rollout_run_init(&f->run, T0);
  assert_true(ef_rollout_begin(&f->spec, &f->run, f->n, T0));
}

static void teardown_rollout(fixture *f) { ef_rollout_spec_free(&f->spec); }

static bool tick(fixture *f, int64_t t) { return ef_rollout_tick(&f->spec, &f->run, f->devs, f->n, t); }

/* The device reports @p state (with @p online) for job j1. */
static void report(fixture *f, size_t i, const char *state, bool online, int64_t t) {
  ef_state_view v;
  memset(&v, 0, sizeof v);
  snprintf(v.device_id, sizeof v.device_id, "%s", f->devs[i].device_id);
  snprintf(v.job_id, sizeof v.job_id, "j1");
  snprintf(v.state_name, sizeof v.state_name, "%s", state);
  v.state_known = ef_state_from_name(state, &v.state) == EF_OK;
  v.has_online = true;
  v.online = online;
  if (strcmp(state, "failed") == 0) snprintf(v.error_detail, sizeof v.error_detail, "hash_mismatch: x");
  (void)ef_rollout_observe(&f->spec, &f->devs[i], &v, t);
}

static size_t sent(const fixture *f) {
  size_t k = 0;
  for (size_t i = 0; i < f->n; i++) k += f->devs[i].send;
  return k;
}

static size_t reached(const fixture *f) {
  size_t k = 0;
  for (size_t i = 0; i < f->n; i++) k += f->devs[i].step >= 0;
  return k;
}

static void test_failing_canary_aborts(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"count\":1},{\"percent\":100}]", "{}");
  tick(&f, T0);
  assert_int_equal(f.run.state, EF_RS_RUNNING);
  assert_int_equal(f.run.step, 0);
  assert_int_equal(sent(&f), 1);
  assert_true(f.devs[0].send);
  report(&f, 0, "downloading", true, T0 + 1000);
  tick(&f, T0 + 1000);
  assert_int_equal(f.run.state, EF_RS_RUNNING);
  report(&f, 0, "failed", true, T0 + 2000);
  assert_true(tick(&f, T0 + 2000));
  assert_int_equal(f.run.state, EF_RS_ABORTED);
  assert_true(f.run.clear_jobs);
  assert_non_null(strstr(f.run.reason, "abort threshold: 1 of 1"));
  assert_int_equal(reached(&f), 1); /* nobody else ever got the job */
  assert_string_equal(f.devs[0].error, "hash_mismatch: x");
  /* final: nothing changes any more */
  assert_false(tick(&f, T0 + 999999));
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_rollout_control(&f.spec, &f.run, f.devs, f.n, EF_ROLLOUT_RESUME, NULL, T0, &st),
                   EF_ERR_INVALID_ARG);
  teardown_rollout(&f);
}

static void test_all_succeed_completes(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"count\":1},{\"percent\":50},{\"percent\":100}]", "{}");
  int64_t t = T0;
  for (int step = 0; step < 3; step++) {
    tick(&f, t);
    assert_int_equal(f.run.step, step);
    for (size_t i = 0; i < f.n; i++) {
      f.devs[i].send = false;
      if (f.devs[i].step == step) report(&f, i, "succeeded", true, t);
    }
    t += 1000;
  }
  assert_int_equal(reached(&f), N_DEV);
  tick(&f, t);
  assert_int_equal(f.run.state, EF_RS_COMPLETED);
  ef_rollout_status s;
  ef_rollout_status_of(&f.spec, &f.run, f.devs, f.n, t, &s);
  assert_int_equal(s.counts[EF_RD_SUCCEEDED], N_DEV);
  assert_int_equal(s.step, 2);
  assert_int_equal(s.n_steps, 3);
  teardown_rollout(&f);
}

static void test_steps_reach_cumulative_shares(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"percent\":10},{\"percent\":50},{\"percent\":100}]", "{}");
  tick(&f, T0);
  assert_int_equal(reached(&f), 1);
  for (size_t i = 0; i < f.n; i++)
    if (f.devs[i].step >= 0) report(&f, i, "succeeded", true, T0);
  tick(&f, T0 + 1);
  assert_int_equal(reached(&f), 5);
  teardown_rollout(&f);
}

static void test_soak_holds_the_next_step(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"count\":1},{\"percent\":100}]", "{\"soak_s\":60}");
  tick(&f, T0);
  report(&f, 0, "succeeded", true, T0 + 1000);
  tick(&f, T0 + 1000);
  assert_int_equal(f.run.step, 0);
  tick(&f, T0 + 31000);
  assert_int_equal(f.run.step, 0);
  assert_non_null(strstr(f.run.reason, "soaking"));
  tick(&f, T0 + 61000);
  assert_int_equal(f.run.step, 1);
  assert_int_equal(reached(&f), N_DEV);
  teardown_rollout(&f);
}

static void test_silent_device_times_out_and_aborts(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"count\":2},{\"percent\":100}]", "{\"in_progress_timeout_s\":100}");
  tick(&f, T0);
  report(&f, 0, "succeeded", true, T0 + 1000);
  tick(&f, T0 + 99000);
  assert_int_equal(f.run.state, EF_RS_RUNNING);
  tick(&f, T0 + 100000);
  assert_int_equal(f.devs[1].state, EF_RD_TIMED_OUT);
  assert_true(f.devs[1].cancel); /* it must not install later */
  /* 1 of 2 finished failed: 50 % >= 10 % */
  assert_int_equal(f.run.state, EF_RS_ABORTED);
  teardown_rollout(&f);
}

static void test_offline_device_counts_failed(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"count\":1},{\"percent\":100}]",
                "{\"offline_timeout_s\":30,\"abort\":{\"failure_percent\":100,\"min_finished\":5}}");
  tick(&f, T0);
  report(&f, 0, "downloading", false, T0 + 1000); /* its last will: offline */
  tick(&f, T0 + 30000);
  assert_int_equal(f.devs[0].state, EF_RD_RUNNING);
  tick(&f, T0 + 31000);
  assert_int_equal(f.devs[0].state, EF_RD_OFFLINE);
  /* below the abort minimum, and the step cannot succeed: halted */
  assert_int_equal(f.run.state, EF_RS_HALTED);
  /* it comes back and succeeds after all: the step is done and the rollout goes on */
  report(&f, 0, "succeeded", true, T0 + 40000);
  tick(&f, T0 + 40000);
  assert_int_equal(f.run.state, EF_RS_RUNNING);
  assert_int_equal(f.run.step, 1);
  teardown_rollout(&f);
}

static void test_halted_resume_forces_next_step(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"count\":2},{\"percent\":100}]",
                "{\"success_percent\":100,\"abort\":{\"failure_percent\":60,\"min_finished\":1}}");
  tick(&f, T0);
  report(&f, 0, "succeeded", true, T0);
  report(&f, 1, "rejected", true, T0);
  tick(&f, T0 + 1);
  assert_int_equal(f.run.state, EF_RS_HALTED); /* 50 % failed < 60 %: no abort, but not 100 % */
  assert_non_null(strstr(f.run.reason, "1 of 2 devices succeeded"));
  tick(&f, T0 + 100000);
  assert_int_equal(f.run.state, EF_RS_HALTED);
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_rollout_control(&f.spec, &f.run, f.devs, f.n, EF_ROLLOUT_RESUME, NULL, T0, &st), EF_OK);
  tick(&f, T0 + 100001);
  assert_int_equal(f.run.state, EF_RS_RUNNING);
  assert_int_equal(f.run.step, 1);
  teardown_rollout(&f);
}

static void test_pause_resume_abort(void **state) {
  (void)state;
  fixture f;
  ef_status st = EF_STATUS_INIT;
  setup_rollout(&f, "[{\"count\":1},{\"percent\":100}]", "{}");
  tick(&f, T0);
  assert_int_equal(ef_rollout_control(&f.spec, &f.run, f.devs, f.n, EF_ROLLOUT_PAUSE, "night", T0, &st),
                   EF_OK);
  report(&f, 0, "succeeded", true, T0);
  tick(&f, T0 + 5000);
  assert_int_equal(f.run.state, EF_RS_PAUSED);
  assert_int_equal(reached(&f), 1);
  assert_string_equal(f.run.reason, "paused: night");
  assert_int_equal(ef_rollout_control(&f.spec, &f.run, f.devs, f.n, EF_ROLLOUT_RESUME, NULL, T0, &st), EF_OK);
  tick(&f, T0 + 6000);
  assert_int_equal(reached(&f), N_DEV);
  /* abort cancels those not final, not the one that succeeded */
  report(&f, 1, "downloading", true, T0 + 7000);
  assert_int_equal(ef_rollout_control(&f.spec, &f.run, f.devs, f.n, EF_ROLLOUT_ABORT, NULL, T0, &st), EF_OK);
  assert_int_equal(f.run.state, EF_RS_ABORTED);
  assert_false(f.devs[0].cancel);
  for (size_t i = 1; i < f.n; i++) assert_true(f.devs[i].cancel);
  assert_true(f.run.clear_jobs);
  teardown_rollout(&f);
}

static void test_window_holds_steps(void **state) {
  (void)state;
  fixture f;
  /* T0 is 01:46 UTC: outside 02:00-03:00 */
  setup_rollout(&f, "[{\"count\":1},{\"percent\":100}]",
                "{\"windows\":[{\"start\":\"02:00\",\"end\":\"03:00\"}]}");
  tick(&f, T0);
  assert_int_equal(f.run.step, -1);
  assert_non_null(strstr(f.run.reason, "maintenance window"));
  tick(&f, T0 + 15 * 60 * 1000); /* 02:01 */
  assert_int_equal(f.run.step, 0);
  teardown_rollout(&f);
}

static void test_final_result_stands_against_stale_states(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"count\":1},{\"percent\":100}]",
                "{\"abort\":{\"failure_percent\":100,\"min_finished\":9}}");
  tick(&f, T0);
  report(&f, 0, "succeeded", true, T0);
  report(&f, 0, "downloading", true, T0 + 1); /* a stale state delivered late */
  assert_int_equal(f.devs[0].state, EF_RD_SUCCEEDED);
  /* a device not reached yet: its documents about the job do not count */
  report(&f, 5, "failed", true, T0 + 2);
  assert_int_equal(f.devs[5].state, EF_RD_WAITING);
  teardown_rollout(&f);
}

static void test_order_is_per_job_and_stable(void **state) {
  (void)state;
  fixture a, b;
  setup_rollout(&a, "[{\"percent\":100}]", "{}");
  setup_rollout(&b, "[{\"percent\":100}]", "{}");
  for (size_t i = 0; i < N_DEV; i++) assert_string_equal(a.devs[i].device_id, b.devs[i].device_id);
  for (size_t i = 1; i < N_DEV; i++)
    assert_true(ef_canary_bucket("j1", a.devs[i - 1].device_id) <=
                ef_canary_bucket("j1", a.devs[i].device_id));
  teardown_rollout(&a);
  teardown_rollout(&b);
}

static void test_begin_without_devices_waits(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"percent\":100}]", "{}");
  ef_rollout_run run;
  ef_rollout_run_init(&run, T0);
  assert_false(ef_rollout_begin(&f.spec, &run, 0, T0));
  assert_int_equal(run.state, EF_RS_PENDING);
  assert_string_equal(run.reason, "no device of the target is known yet");
  teardown_rollout(&f);
}

static void test_abort_waits_for_min_finished(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"count\":4},{\"percent\":100}]",
                "{\"abort\":{\"failure_percent\":30,\"min_finished\":3}}");
  tick(&f, T0);
  report(&f, 0, "failed", true, T0);
  tick(&f, T0 + 1);
  assert_int_equal(f.run.state, EF_RS_RUNNING); /* 1 finished: too few to judge */
  report(&f, 1, "succeeded", true, T0);
  report(&f, 2, "succeeded", true, T0);
  tick(&f, T0 + 2);
  assert_int_equal(f.run.state, EF_RS_ABORTED); /* 3 finished, 1 of 3 = 33 % >= 30 % */
  teardown_rollout(&f);
}

static void test_timed_out_device_stays_out(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"count\":1},{\"percent\":100}]",
                "{\"in_progress_timeout_s\":10,\"abort\":{\"failure_percent\":100,\"min_finished\":5}}");
  tick(&f, T0);
  tick(&f, T0 + 10000);
  assert_int_equal(f.devs[0].state, EF_RD_TIMED_OUT);
  f.devs[0].cancel = false;
  report(&f, 0, "downloading", true, T0 + 11000); /* it wakes up: still counted out */
  tick(&f, T0 + 11000);
  assert_int_equal(f.devs[0].state, EF_RD_TIMED_OUT);
  assert_false(f.devs[0].cancel); /* no second cancel */
  report(&f, 0, "canceled", true, T0 + 12000);
  assert_int_equal(f.devs[0].state, EF_RD_FAILED);
  teardown_rollout(&f);
}

static void test_pending_cannot_pause(void **state) {
  (void)state;
  fixture f;
  setup_rollout(&f, "[{\"percent\":100}]", "{}");
  ef_rollout_run run;
  ef_rollout_run_init(&run, T0);
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_rollout_control(&f.spec, &run, NULL, 0, EF_ROLLOUT_PAUSE, NULL, T0, &st),
                   EF_ERR_INVALID_ARG);
  assert_string_equal(st.detail, "the rollout has not started yet");
  assert_int_equal(run.state, EF_RS_PENDING);
  teardown_rollout(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_failing_canary_aborts),
      cmocka_unit_test(test_all_succeed_completes),
      cmocka_unit_test(test_steps_reach_cumulative_shares),
      cmocka_unit_test(test_soak_holds_the_next_step),
      cmocka_unit_test(test_silent_device_times_out_and_aborts),
      cmocka_unit_test(test_offline_device_counts_failed),
      cmocka_unit_test(test_halted_resume_forces_next_step),
      cmocka_unit_test(test_pause_resume_abort),
      cmocka_unit_test(test_window_holds_steps),
      cmocka_unit_test(test_final_result_stands_against_stale_states),
      cmocka_unit_test(test_order_is_per_job_and_stable),
      cmocka_unit_test(test_begin_without_devices_waits),
      cmocka_unit_test(test_abort_waits_for_min_finished),
      cmocka_unit_test(test_timed_out_device_stays_out),
      cmocka_unit_test(test_pending_cannot_pause),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
