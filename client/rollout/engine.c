/*
 * The rollout engine (rollout.h): steps, thresholds, timeouts and windows as
 * one pure state machine. docs/rollouts.md states the rules this follows.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/rollout.h"

void ef_rollout_run_init(ef_rollout_run *run, int64_t now_ms) {
  memset(run, 0, sizeof *run);
  run->state = EF_RS_PENDING;
  run->step = -1;
  run->created_ms = now_ms;
  run->dirty = true;
}

/* ---- order ---- */

/* The job whose canary buckets order the devices; set for the sort's comparator. */
typedef struct {
  uint32_t bucket;
  ef_rollout_device dev;
} ordered;

static int by_bucket(const void *x, const void *y) {
  const ordered *a = x, *b = y;
  if (a->bucket != b->bucket) return a->bucket < b->bucket ? -1 : 1;
  return strcmp(a->dev.device_id, b->dev.device_id);
}

static void reset_row(ef_rollout_device *d) {
  char id[EF_JOB_ID_MAX + 1];
  memcpy(id, d->device_id, sizeof id);
  memset(d, 0, sizeof *d);
  memcpy(d->device_id, id, sizeof id);
  d->step = -1;
  d->state = EF_RD_WAITING;
  d->online = true;
  d->dirty = true;
}

void ef_rollout_order(const ef_rollout_spec *spec, ef_rollout_device *devs, size_t n) {
  ordered *tmp = n ? calloc(n, sizeof *tmp) : NULL;
  for (size_t i = 0; i < n; i++) reset_row(&devs[i]);
  if (!tmp) return; /* out of memory: the given order is a valid order too */
  for (size_t i = 0; i < n; i++) {
    tmp[i].dev = devs[i];
    tmp[i].bucket = ef_canary_bucket(spec->job.job_id, devs[i].device_id);
  }
  qsort(tmp, n, sizeof *tmp, by_bucket);
  for (size_t i = 0; i < n; i++) devs[i] = tmp[i].dev;
  free(tmp);
}

/* ---- observations ---- */

static void set_reason(ef_rollout_run *run, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_reason(ef_rollout_run *run, const char *fmt, ...) {
  char text[sizeof run->reason];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (strcmp(text, run->reason) != 0) {
    memcpy(run->reason, text, sizeof text);
    run->dirty = true;
  }
}

bool ef_rollout_begin(const ef_rollout_spec *spec, ef_rollout_run *run, size_t n, int64_t now_ms) {
  (void)spec;
  if (run->state != EF_RS_PENDING) return false;
  if (n == 0) {
    set_reason(run, "no device of the target is known yet");
    return false;
  }
  run->state = EF_RS_RUNNING;
  run->step = -1;
  run->step_started_ms = now_ms;
  run->reason[0] = '\0';
  run->dirty = true;
  return true;
}

/* The rollout state a device's job state stands for. */
static ef_rollout_device_state from_job_state(ef_job_state s) {
  switch (s) {
  case EF_STATE_SUCCEEDED: return EF_RD_SUCCEEDED;
  case EF_STATE_FAILED:
  case EF_STATE_REJECTED:
  case EF_STATE_CANCELED:
  case EF_STATE_SKIPPED: return EF_RD_FAILED; /* the rollout sent it: not installing it is a failure */
  default: return EF_RD_RUNNING;
  }
}

bool ef_rollout_observe(const ef_rollout_spec *spec, ef_rollout_device *d, const ef_state_view *v,
                        int64_t now_ms) {
  bool changed = false;
  if (v->has_online && v->online != d->online) {
    d->online = v->online;
    d->offline_since_ms = v->online ? 0 : now_ms;
    changed = true;
  }
  /* Only what the device says of this rollout's job, and only once the
   * rollout reached it: a device may run the same job_id from elsewhere. */
  if (d->step >= 0 && v->state_known && strcmp(v->job_id, spec->job.job_id) == 0) {
    ef_rollout_device_state rs = from_job_state(v->state);
    /* A final outcome stands against late non-final documents (a state
     * retained from before, delivered after the result), and so does a
     * device counted out (timed out, offline): it was sent a cancel, and
     * only its final state (canceled, or a late success) says more. */
    bool settled = d->state != EF_RD_SENT && d->state != EF_RD_RUNNING;
    if (!(settled && rs == EF_RD_RUNNING) && (rs != d->state || strcmp(v->state_name, d->job_state) != 0)) {
      d->state = rs;
      snprintf(d->job_state, sizeof d->job_state, "%s", v->state_name);
      if (rs == EF_RD_FAILED)
        snprintf(d->error, sizeof d->error, "%s", v->error_detail[0] ? v->error_detail : v->state_name);
      else if (rs == EF_RD_SUCCEEDED)
        d->error[0] = '\0';
      changed = true;
    }
  }
  if (changed) {
    d->updated_ms = now_ms;
    d->dirty = true;
  }
  return changed;
}

/* ---- the state machine ---- */

typedef struct {
  size_t reached, succeeded, bad, active; /* active: sent or running */
} tally;

static tally count(const ef_rollout_device *devs, size_t n) {
  tally t = {0};
  for (size_t i = 0; i < n; i++) {
    if (devs[i].step < 0) continue;
    t.reached++;
    if (devs[i].state == EF_RD_SUCCEEDED)
      t.succeeded++;
    else if (ef_rollout_device_state_is_bad(devs[i].state))
      t.bad++;
    else
      t.active++;
  }
  return t;
}

/* Devices that stay silent or offline too long count as failed, and are
 * told to cancel: a job that starts hours later, after the rollout counted
 * it failed (and perhaps aborted), must not install after all. */
static bool apply_timeouts(const ef_rollout_spec *spec, ef_rollout_device *devs, size_t n, int64_t now_ms) {
  bool changed = false;
  for (size_t i = 0; i < n; i++) {
    ef_rollout_device *d = &devs[i];
    if (d->step < 0 || (d->state != EF_RD_SENT && d->state != EF_RD_RUNNING)) continue;
    int64_t offline_from = d->offline_since_ms > d->sent_ms ? d->offline_since_ms : d->sent_ms;
    if (now_ms - d->sent_ms >= spec->progress_timeout_s * 1000) {
      d->state = EF_RD_TIMED_OUT;
      snprintf(d->error, sizeof d->error, "not final within in_progress_timeout_s (%lld s)",
               (long long)spec->progress_timeout_s);
    } else if (!d->online && now_ms - offline_from >= spec->offline_timeout_s * 1000) {
      d->state = EF_RD_OFFLINE;
      snprintf(d->error, sizeof d->error, "offline for offline_timeout_s (%lld s)",
               (long long)spec->offline_timeout_s);
    } else {
      continue;
    }
    d->cancel = true;
    d->queued = false; /* the job may be queued still: the cancel goes after it */
    d->updated_ms = now_ms;
    d->dirty = true;
    changed = true;
  }
  return changed;
}

/* Abort: stop for good, cancel what has not finished, and clear the
 * retained jobs so a device that comes back does not start one. */
static void abort_rollout(ef_rollout_run *run, ef_rollout_device *devs, size_t n, int64_t now_ms) {
  run->state = EF_RS_ABORTED;
  run->clear_jobs = true;
  run->dirty = true;
  for (size_t i = 0; i < n; i++) {
    ef_rollout_device *d = &devs[i];
    if (d->step >= 0 && (d->state == EF_RD_SENT || d->state == EF_RD_RUNNING)) {
      d->cancel = true;
      d->send = false;
      d->queued = false; /* what is queued now is the cancel */
      d->updated_ms = now_ms;
      d->dirty = true;
    }
  }
}

static bool abort_threshold(const ef_rollout_spec *spec, ef_rollout_run *run, const tally *t) {
  size_t finished = t->succeeded + t->bad;
  /* Like AWS's abortConfig: judged once enough devices finished, so one
   * early failure among many does not decide alone unless min_finished says so. */
  if (t->bad == 0 || finished < (size_t)spec->abort_min ||
      t->bad * 100 < (size_t)spec->abort_percent * finished)
    return false;
  set_reason(run,
             "abort threshold: %zu of %zu finished devices failed (%zu %% >= %d %%, %d or more finished)",
             t->bad, finished, finished ? t->bad * 100 / finished : 0, spec->abort_percent, spec->abort_min);
  return true;
}

static void start_step(const ef_rollout_spec *spec, ef_rollout_run *run, ef_rollout_device *devs, size_t n,
                       int step, int64_t now_ms) {
  size_t reach = ef_rollout_step_reach(spec, (size_t)step, n);
  for (size_t i = 0; i < reach; i++) {
    ef_rollout_device *d = &devs[i];
    if (d->step >= 0) continue;
    d->step = step;
    d->state = EF_RD_SENT;
    d->sent_ms = now_ms;
    /* offline time before the job was sent does not count against it */
    if (!d->online) d->offline_since_ms = now_ms;
    d->send = true;
    d->updated_ms = now_ms;
    d->dirty = true;
  }
  run->step = step;
  run->step_started_ms = now_ms;
  run->step_done_ms = 0;
  run->force_next = false;
  run->reason[0] = '\0';
  run->dirty = true;
}

/* The current step met its success threshold and soaked, or the operator forced it on. */
static bool step_done(const ef_rollout_spec *spec, ef_rollout_run *run, const tally *t, size_t n,
                      int64_t now_ms) {
  if (run->force_next) return true;
  size_t reach = ef_rollout_step_reach(spec, (size_t)run->step, n);
  if (t->succeeded * 100 < (size_t)spec->success_percent * reach) {
    if (run->step_done_ms) {
      run->step_done_ms = 0; /* a late failure took it back below */
      run->dirty = true;
    }
    if (t->active > 0 && run->state == EF_RS_HALTED) {
      /* a device counted out came back and runs the job: wait for it again */
      run->state = EF_RS_RUNNING;
      run->reason[0] = '\0';
      run->dirty = true;
    } else if (t->active == 0) {
      if (run->state != EF_RS_HALTED) run->dirty = true;
      run->state = EF_RS_HALTED;
      set_reason(
          run, "step %d: %zu of %zu devices succeeded, %d %% needed; no device of the step is still running",
          run->step + 1, t->succeeded, reach, spec->success_percent);
    }
    return false;
  }
  if (!run->step_done_ms) {
    run->step_done_ms = now_ms;
    run->dirty = true;
  }
  if (run->state == EF_RS_HALTED) {
    run->state = EF_RS_RUNNING; /* a late success met the threshold after all */
    run->reason[0] = '\0';
    run->dirty = true;
  }
  if (now_ms - run->step_done_ms < spec->soak_s * 1000) {
    set_reason(run, "step %d: soaking until %lld s after its success threshold was met", run->step + 1,
               (long long)spec->soak_s);
    return false;
  }
  return true;
}

bool ef_rollout_tick(const ef_rollout_spec *spec, ef_rollout_run *run, ef_rollout_device *devs, size_t n,
                     int64_t now_ms) {
  bool was_dirty = run->dirty;
  run->dirty = false;
  bool changed = false;
  if (ef_rollout_state_is_final(run->state) || run->state == EF_RS_PENDING) goto out;
  changed = apply_timeouts(spec, devs, n, now_ms);
  tally t = count(devs, n);
  if (abort_threshold(spec, run, &t)) {
    abort_rollout(run, devs, n, now_ms);
    goto out;
  }
  /* A halted rollout goes on when the operator says so (force_next) or when
   * a late success lifts the step over its threshold after all. */
  if (run->state != EF_RS_RUNNING && run->state != EF_RS_HALTED) goto out;
  if (run->step >= 0 && !step_done(spec, run, &t, n, now_ms)) goto out;
  if (run->state == EF_RS_HALTED) {
    run->state = EF_RS_RUNNING;
    run->dirty = true;
  }
  if (run->step + 1 >= (int)spec->n_steps) {
    run->state = EF_RS_COMPLETED;
    set_reason(run, "%zu of %zu devices succeeded", t.succeeded, n);
    run->dirty = true;
    goto out;
  }
  if (!run->force_next && !ef_rollout_in_window(spec, now_ms / 1000)) {
    set_reason(run, "step %d waits for a maintenance window", run->step + 2);
    goto out;
  }
  start_step(spec, run, devs, n, run->step + 1, now_ms);
out:
  changed = changed || run->dirty;
  run->dirty = run->dirty || was_dirty;
  return changed;
}

ef_err ef_rollout_control(const ef_rollout_spec *spec, ef_rollout_run *run, ef_rollout_device *devs, size_t n,
                          ef_rollout_action action, const char *reason, int64_t now_ms, ef_status *st) {
  (void)spec;
  const char *why = reason && reason[0] ? reason : "by the operator";
  if (ef_rollout_state_is_final(run->state))
    return ef_status_fail(st, EF_ERR_INVALID_ARG, "the rollout is %s", ef_rollout_state_name(run->state));
  switch (action) {
  case EF_ROLLOUT_PAUSE:
    if (run->state == EF_RS_PAUSED) return EF_OK;
    /* A pending rollout has no devices yet: pausing it would skip the
     * moment they are chosen. */
    if (run->state == EF_RS_PENDING)
      return ef_status_fail(st, EF_ERR_INVALID_ARG, "the rollout has not started yet");
    run->state = EF_RS_PAUSED;
    set_reason(run, "paused: %s", why);
    break;
  case EF_ROLLOUT_RESUME:
    if (run->state == EF_RS_HALTED) {
      run->force_next = true; /* the operator accepts the step as it is */
    } else if (run->state != EF_RS_PAUSED) {
      return ef_status_fail(st, EF_ERR_INVALID_ARG, "the rollout is %s, not paused or halted",
                            ef_rollout_state_name(run->state));
    } else {
      run->state = EF_RS_RUNNING;
      run->reason[0] = '\0';
    }
    break;
  case EF_ROLLOUT_ABORT:
    abort_rollout(run, devs, n, now_ms);
    set_reason(run, "aborted: %s", why);
    break;
  case EF_ROLLOUT_DEVICES: return EF_OK; /* a request for rows, not a change */
  }
  run->dirty = true;
  return EF_OK;
}

void ef_rollout_status_of(const ef_rollout_spec *spec, const ef_rollout_run *run,
                          const ef_rollout_device *devs, size_t n, int64_t now_ms, ef_rollout_status *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->rollout_id, sizeof out->rollout_id, "%s", spec->rollout_id);
  snprintf(out->job_id, sizeof out->job_id, "%s", spec->job.job_id);
  out->state = run->state;
  out->step = run->step;
  out->n_steps = (int)spec->n_steps;
  out->devices = (int)n;
  for (size_t i = 0; i < n; i++) {
    out->counts[devs[i].state]++;
    if (devs[i].step >= 0) out->step_devices++;
  }
  snprintf(out->reason, sizeof out->reason, "%s", run->reason);
  out->created_ms = run->created_ms;
  out->updated_ms = now_ms;
}

void ef_rollout_row_of(const ef_rollout_device *d, ef_rollout_device_row *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->device_id, sizeof out->device_id, "%s", d->device_id);
  out->step = d->step;
  out->state = d->state;
  snprintf(out->job_state, sizeof out->job_state, "%s", d->job_state);
  snprintf(out->error, sizeof out->error, "%s", d->error);
  out->updated_ms = d->updated_ms;
}
