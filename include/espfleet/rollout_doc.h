/**
 * @file rollout_doc.h
 * @brief The rollout documents of docs/rollouts.md: the rollout an operator
 *        publishes (P/rollouts/R), the control message (P/rollouts/R/control)
 *        and the status the controller publishes (P/rollouts/R/status).
 *
 * Part of the protocol module: the console writes rollouts and reads
 * statuses, the controller reads rollouts and writes statuses, with the same
 * code. Pure: no clock, no network.
 */
#ifndef ESPFLEET_ROLLOUT_DOC_H
#define ESPFLEET_ROLLOUT_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/job.h"
#include "espfleet/status.h"

#define EF_ROLLOUT_MAX_STEPS   16
#define EF_ROLLOUT_MAX_GROUPS  16
#define EF_ROLLOUT_MAX_WINDOWS 8
/** Most devices a rollout lists by name (groups reach any number). */
#define EF_ROLLOUT_MAX_DEVICES 2000
/** Largest rollout document read, bytes. */
#define EF_ROLLOUT_MAX_PAYLOAD (256 * 1024)

/* Policy defaults (docs/rollouts.md). */
#define EF_ROLLOUT_DEFAULT_SUCCESS_PERCENT  100
#define EF_ROLLOUT_DEFAULT_ABORT_PERCENT    10
#define EF_ROLLOUT_DEFAULT_ABORT_MIN        1
#define EF_ROLLOUT_DEFAULT_SOAK_S           0
#define EF_ROLLOUT_DEFAULT_PROGRESS_TIMEOUT 3600
#define EF_ROLLOUT_DEFAULT_OFFLINE_TIMEOUT  600

/** One step: it widens the rollout to this many of the target's devices (cumulative). */
typedef struct {
  int percent; /**< 1..100 of the target, or 0 when count is used */
  int count;   /**< a number of devices, or 0 when percent is used */
} ef_rollout_step;

/** A daily window (UTC) in which steps may start; end < start wraps past midnight. */
typedef struct {
  int start_min; /**< minutes after 00:00 UTC, 0..1439 */
  int end_min;   /**< exclusive, 0..1439; equal to start = the whole day */
} ef_rollout_window;

/** A parsed, valid rollout document. Free with ef_rollout_spec_free. */
typedef struct {
  char rollout_id[EF_JOB_ID_MAX + 1];
  ef_job job;     /**< the job every device is sent; it has no rollout.percent */
  char *job_json; /**< the job document exactly as devices receive it (malloc'ed) */
  char groups[EF_ROLLOUT_MAX_GROUPS][EF_JOB_ID_MAX + 1];
  size_t n_groups;
  char (*devices)[EF_JOB_ID_MAX + 1]; /**< malloc'ed list of device ids */
  size_t n_devices;
  ef_rollout_step steps[EF_ROLLOUT_MAX_STEPS];
  size_t n_steps;
  int success_percent;        /**< share of succeeded devices a step needs to be done */
  int abort_percent;          /**< failures among finished devices that abort, percent */
  int abort_min;              /**< ... once at least this many devices finished */
  int64_t soak_s;             /**< a done step waits this long before the next starts */
  int64_t progress_timeout_s; /**< a device not final this long after its job was sent fails */
  int64_t offline_timeout_s;  /**< a device offline this long after its job was sent fails */
  ef_rollout_window windows[EF_ROLLOUT_MAX_WINDOWS];
  size_t n_windows; /**< 0 = steps may start at any time */
} ef_rollout_spec;

/**
 * Parses and validates a rollout document (docs/schema/rollout.schema.json).
 * Unknown keys are refused, so a misspelt policy never silently falls back
 * to its default.
 * @param out on success the rollout (free with ef_rollout_spec_free); on
 *        failure nothing to free
 * @param st the first problem, naming its key ("steps[1].percent: must be
 *        larger than the step before"); never retryable
 * @return EF_OK; EF_ERR_BAD_JOB for any problem (the embedded job's own
 *         reasons are prefixed with "job."); EF_ERR_NOMEM.
 */
ef_err ef_rollout_spec_parse(const char *json, size_t len, ef_rollout_spec *out, ef_status *st) EF_MUST_CHECK;

/** Frees what ef_rollout_spec_parse allocated (the struct itself is the caller's). */
void ef_rollout_spec_free(ef_rollout_spec *s);

/**
 * The rollout as a document ef_rollout_spec_parse reads back to the same
 * rollout. @return malloc'ed JSON (free()), NULL on OOM.
 */
char *ef_rollout_spec_json(const ef_rollout_spec *s);

/**
 * Devices in the first @p step + 1 steps when the target has @p n devices:
 * a percent rounds up (1 % of 20 devices is 1 device), a count is capped at
 * @p n. Never less than the step before.
 */
size_t ef_rollout_step_reach(const ef_rollout_spec *s, size_t step, size_t n);

/** True when @p now (Unix seconds) falls in one of the windows, or there are none. */
bool ef_rollout_in_window(const ef_rollout_spec *s, int64_t now);

/* ---- control ---- */

typedef enum {
  EF_ROLLOUT_PAUSE,   /**< start no further step */
  EF_ROLLOUT_RESUME,  /**< undo a pause; on a halted rollout, go on to the next step */
  EF_ROLLOUT_ABORT,   /**< stop for good and cancel the jobs that have not finished */
  EF_ROLLOUT_DEVICES, /**< publish the per-device rows once on P/rollouts/R/devices */
} ef_rollout_action;

/** Name of an action as in the document ("pause"). */
const char *ef_rollout_action_name(ef_rollout_action a);

/** {"action": "...", "reason": "..."}; @p reason may be NULL. malloc'ed, NULL on OOM. */
char *ef_rollout_control_json(ef_rollout_action a, const char *reason);

/**
 * Reads a control document.
 * @param reason receives the escaped reason, "" when none (@p n bytes)
 * @return EF_OK; EF_ERR_INVALID_ARG for an unknown action (st says which).
 */
ef_err ef_rollout_control_parse(const char *json, size_t len, ef_rollout_action *out, char *reason, size_t n,
                                ef_status *st) EF_MUST_CHECK;

/* ---- status ---- */

/** A rollout's lifecycle. */
typedef enum {
  EF_RS_PENDING,   /**< accepted, waiting for the devices to be known */
  EF_RS_RUNNING,   /**< steps go on as the thresholds allow */
  EF_RS_PAUSED,    /**< by the operator: no further step starts */
  EF_RS_HALTED,    /**< every device of the step is final and the success threshold is not met */
  EF_RS_COMPLETED, /**< the last step is done */
  EF_RS_ABORTED,   /**< by the abort threshold or the operator */
  EF_RS_INVALID,   /**< the document was refused; reason says why */
  EF_RS__COUNT
} ef_rollout_state;

/** Name as in the status document ("running"); "unknown" when out of range. */
const char *ef_rollout_state_name(ef_rollout_state s);
/** State for a name. @return EF_OK or EF_ERR_INVALID_ARG. */
ef_err ef_rollout_state_from_name(const char *name, ef_rollout_state *out) EF_MUST_CHECK;
/** True for completed, aborted and invalid: nothing changes any more. */
bool ef_rollout_state_is_final(ef_rollout_state s);

/** What a device of a rollout is, as the controller counts it. */
typedef enum {
  EF_RD_WAITING,   /**< not in a started step yet */
  EF_RD_SENT,      /**< its job was published; no state for it yet */
  EF_RD_RUNNING,   /**< a non-final state for the job arrived */
  EF_RD_SUCCEEDED, /**< succeeded */
  EF_RD_FAILED,    /**< failed, rejected, canceled or skipped */
  EF_RD_TIMED_OUT, /**< not final within the in-progress timeout */
  EF_RD_OFFLINE,   /**< offline past the offline timeout */
  EF_RD__COUNT
} ef_rollout_device_state;

/** Name as in documents ("timed_out"). */
const char *ef_rollout_device_state_name(ef_rollout_device_state s);
/** True for failed, timed_out and offline: what the abort threshold counts. */
bool ef_rollout_device_state_is_bad(ef_rollout_device_state s);

/** The retained status of one rollout. */
typedef struct {
  char rollout_id[EF_JOB_ID_MAX + 1];
  char job_id[EF_JOB_ID_MAX + 1];
  ef_rollout_state state;
  int step; /**< index of the step started last, -1 before the first */
  int n_steps;
  int devices;      /**< devices in the rollout's target */
  int step_devices; /**< devices in the started steps */
  int counts[EF_RD__COUNT];
  char reason[256]; /**< why it halted, paused, aborted or waits; "" when it just runs */
  int64_t created_ms, updated_ms;
} ef_rollout_status;

/** The status document. @return malloc'ed JSON (free()), NULL on OOM. */
char *ef_rollout_status_json(const ef_rollout_status *s);

/**
 * Reads a status document (texts escaped).
 * @return EF_OK; EF_ERR_INVALID_ARG when it is empty or not a status (st says why).
 */
ef_err ef_rollout_status_parse(const char *json, size_t len, ef_rollout_status *out,
                               ef_status *st) EF_MUST_CHECK;

/* ---- per-device rows (P/rollouts/R/devices, on request) ---- */

/** One device of a rollout. */
typedef struct {
  char device_id[EF_JOB_ID_MAX + 1];
  int step; /**< the step that reached it, -1 = none yet */
  ef_rollout_device_state state;
  char job_state[24]; /**< the device's last state for the job ("downloading"), "" = none */
  char error[256];    /**< error.detail of a failed device, or why it timed out */
  int64_t updated_ms; /**< last change, Unix ms */
} ef_rollout_device_row;

/** {"rollout_id", "devices": [rows]}: malloc'ed (free()), NULL on OOM. */
char *ef_rollout_devices_json(const char *rollout_id, const ef_rollout_device_row *rows, size_t n);

/** Rows per devices document: keeps each under brokers' usual 64 KiB packet limit. */
#define EF_ROLLOUT_ROWS_PER_PART 200

/**
 * One part of a devices document split for size: as ef_rollout_devices_json
 * with "part" (1-based) and "parts". @return malloc'ed JSON, NULL on OOM.
 */
char *ef_rollout_devices_part_json(const char *rollout_id, const ef_rollout_device_row *rows, size_t n,
                                   int part, int parts);

/** The part and parts of a devices document (1 and 1 when it has none). */
void ef_rollout_devices_parts(const char *json, size_t len, int *part, int *parts);

/**
 * Reads a devices document.
 * @param rows receives a malloc'ed array (free()), NULL when empty
 * @return EF_OK; EF_ERR_INVALID_ARG when it is not one; EF_ERR_NOMEM.
 */
ef_err ef_rollout_devices_parse(const char *json, size_t len, ef_rollout_device_row **rows, size_t *n,
                                ef_status *st) EF_MUST_CHECK;

#endif
