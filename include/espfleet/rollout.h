/**
 * @file rollout.h
 * @brief The rollout engine: a pure state machine that decides, from a
 *        rollout document, what the devices reported and the time, which
 *        step runs, which devices get the job or a cancel, and when the
 *        rollout is done or aborted (docs/rollouts.md).
 *
 * No clock, no network, no database inside: the controller feeds it
 * observations and the time, persists what changed (store.h), then carries
 * out the actions the engine left in the device rows (send, cancel). Because
 * those actions are recorded in the rows before they are carried out, a
 * controller killed in between carries them out after its restart, and
 * because devices treat a job_id idempotently, carrying one out twice is
 * harmless: no step is repeated or skipped.
 */
#ifndef ESPFLEET_ROLLOUT_H
#define ESPFLEET_ROLLOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/protocol.h"
#include "espfleet/rollout_doc.h"

/** One device of a rollout. */
typedef struct {
  char device_id[EF_JOB_ID_MAX + 1];
  int step; /**< the step that reached it; -1 = not reached yet */
  ef_rollout_device_state state;
  char job_state[24];       /**< its last state for the rollout's job, "" = none */
  char error[256];          /**< error.detail of a failure, or why it timed out */
  bool online;              /**< as its last state document said (true until told otherwise) */
  int64_t offline_since_ms; /**< when it was seen going offline; 0 = online */
  int64_t sent_ms;          /**< when its job was sent; 0 = not sent */
  int64_t updated_ms;       /**< last change of this row */
  bool send;                /**< action: publish the job to it (then clear) */
  bool cancel;              /**< action: publish a cancel to it (then clear) */
  bool dirty;               /**< changed since the controller last saved it */
  bool queued;              /**< in memory only: send/cancel handed to the MQTT session, not yet
                                 acknowledged by the broker (the flags stay set until it is) */
} ef_rollout_device;

/** A rollout's progress: what the controller persists besides the devices. */
typedef struct {
  ef_rollout_state state;
  int step;                /**< the step started last; -1 before the first */
  int64_t created_ms;      /**< accepted by the controller */
  int64_t step_started_ms; /**< the current step started */
  int64_t step_done_ms;    /**< the current step met its success threshold; 0 = not yet */
  bool force_next;         /**< resume of a halted rollout: the next step starts regardless */
  bool clear_jobs;         /**< action: clear the retained job of every reached device (then clear) */
  bool clear_queued;       /**< in memory only: clear_jobs handed to the MQTT session */
  char reason[256];        /**< why it waits, halted, paused or aborted; "" when it just runs */
  bool dirty;              /**< changed since the controller last saved it */
} ef_rollout_run;

/** A new rollout's run: pending, no step, created at @p now_ms. */
void ef_rollout_run_init(ef_rollout_run *run, int64_t now_ms);

/**
 * Puts the target's devices in rollout order: by canary bucket of the
 * rollout's job (ef_canary_bucket), so each job draws its own sample of the
 * fleet, then by id. Every row is reset to "waiting".
 */
void ef_rollout_order(const ef_rollout_spec *spec, ef_rollout_device *devs, size_t n);

/**
 * Starts a pending rollout over @p n devices (already ordered): running,
 * step -1 (the first tick starts step 0). With no devices it stays pending
 * and says so in the reason. @return true when it started.
 */
bool ef_rollout_begin(const ef_rollout_spec *spec, ef_rollout_run *run, size_t n, int64_t now_ms);

/**
 * Takes in a state or per-job result document of the device @p d. Only
 * documents about the rollout's job change its state (a late success after a
 * timeout counts: it is what the device runs); every document updates
 * whether the device is online. @return true when the row changed.
 */
bool ef_rollout_observe(const ef_rollout_spec *spec, ef_rollout_device *d, const ef_state_view *v,
                        int64_t now_ms);

/**
 * One step of the state machine at @p now_ms: timeouts, the abort threshold,
 * the success threshold, soak time and maintenance windows, and starting the
 * next step. Leaves actions in the rows (send, cancel) and the run
 * (clear_jobs) and marks what changed dirty. @return true when anything changed.
 */
bool ef_rollout_tick(const ef_rollout_spec *spec, ef_rollout_run *run, ef_rollout_device *devs, size_t n,
                     int64_t now_ms);

/**
 * An operator's action: pause (running or halted → paused), resume (paused →
 * running; halted → running with the next step forced), abort (any state
 * that is not final → aborted, with cancels for the devices not final).
 * @param reason the operator's words, may be NULL
 * @param st why it does not apply ("the rollout is completed"); may be NULL
 * @return EF_OK; EF_ERR_INVALID_ARG when the action does not apply now.
 */
ef_err ef_rollout_control(const ef_rollout_spec *spec, ef_rollout_run *run, ef_rollout_device *devs, size_t n,
                          ef_rollout_action action, const char *reason, int64_t now_ms,
                          ef_status *st) EF_MUST_CHECK;

/** The status document's content for this rollout. */
void ef_rollout_status_of(const ef_rollout_spec *spec, const ef_rollout_run *run,
                          const ef_rollout_device *devs, size_t n, int64_t now_ms, ef_rollout_status *out);

/** A device's row for the devices document. */
void ef_rollout_row_of(const ef_rollout_device *d, ef_rollout_device_row *out);

#endif
