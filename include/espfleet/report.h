/**
 * @file report.h
 * @brief State, progress and last-will documents, and the progress rate limiter.
 *
 * Builds the JSON the daemon publishes on `P/devices/ID/state` and
 * `P/devices/ID/progress` (see docs/protocol.md and docs/schema/). Pure: the
 * caller passes the time, nothing here reads a clock or touches the network.
 */
#ifndef ESPFLEET_REPORT_H
#define ESPFLEET_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "espfleet/driver.h"
#include "espfleet/error.h"
#include "espfleet/job.h"

/** The first level P of every topic (P/devices/ID/state, docs/protocol.md)
 *  unless configured otherwise. */
#define EF_DEFAULT_TOPIC_PREFIX "espfleet"

/** The states of the state machine, in docs/protocol.md. */
typedef enum {
  EF_STATE_IDLE = 0,
  EF_STATE_DOWNLOADING, /**< download and flash run together */
  EF_STATE_VERIFYING,
  EF_STATE_ACTIVATING, /**< OTA end */
  EF_STATE_REBOOTING,
  EF_STATE_SUCCEEDED,
  EF_STATE_FAILED,
  EF_STATE_REJECTED,
  EF_STATE_CANCELED,
  EF_STATE_SKIPPED,
  EF_STATE__COUNT
} ef_job_state;

/** Name of @p s as it appears in documents ("downloading"); "unknown" when out of range. */
const char *ef_state_name(ef_job_state s);

/** State for a name. @return EF_OK or EF_ERR_INVALID_ARG when unknown. */
ef_err ef_state_from_name(const char *name, ef_job_state *out) EF_MUST_CHECK;

/**
 * True for the states that end a job: succeeded, failed, rejected, canceled,
 * skipped. Note that skipped is final for this delivery only: the same job
 * delivered again with a wider rollout is evaluated again.
 */
bool ef_state_is_final(ef_job_state s);

/** The app this client installed last (all "" when unknown). */
typedef struct {
  char version[EF_JOB_VERSION_MAX + 1];
  char project[EF_JOB_PROJECT_MAX + 1];
  char sha256_hex[65];
} ef_app_info;

/** Most groups a state document lists (the daemon's configuration allows as many). */
#define EF_STATE_MAX_GROUPS 32

/** Everything a state document carries. Strings "" mean "not known" (JSON null). */
typedef struct {
  char device_id[EF_JOB_ID_MAX + 1];
  bool online;
  ef_job_state state;
  char job_id[EF_JOB_ID_MAX + 1];
  char fw_version[64];                        /**< from GetFwVersion, e.g. "FG-1.0.4.0.0" */
  char driver_release[EF_FW_RELEASE_MAX + 1]; /**< release the host driver accepts, "" = unknown */
  ef_driver_source driver_source;             /**< where driver_release came from */
  bool signed_releases;                       /**< release keys are configured: only signed jobs run */
  ef_app_info app;
  char groups[EF_STATE_MAX_GROUPS][EF_JOB_ID_MAX + 1]; /**< the groups the device is in (configuration) */
  size_t n_groups;
  uint64_t bytes;   /**< bytes transferred in this attempt */
  uint64_t total;   /**< expected bytes (the job's size), 0 when no job */
  int attempt;      /**< 1 for the first run of a job, 0 when no job */
  ef_err error;     /**< reported (as error{}) in failed and rejected (EF_OK there reads as internal), and
                         in canceled when set (why: job_replaced) */
  char detail[256]; /**< the specifics behind @p error ("HTTP 404"), may be "" */
  int64_t ts_ms;    /**< time of the state change, Unix milliseconds */
} ef_state;

/** Zeroes @p s and sets device_id, online=true, state idle. */
void ef_state_init(ef_state *s, const char *device_id);

/**
 * Formats @p ts_ms (Unix milliseconds) as RFC 3339 UTC with milliseconds,
 * "2025-01-31T12:00:00.123Z". @param out at least 32 bytes.
 */
void ef_rfc3339_format(int64_t ts_ms, char out[32]);

/**
 * The `error.detail` text of a document: the fine-grained code name, then the
 * detail sentence when there is one ("image_bad_magic: first byte is 0x00").
 * @param out buffer of @p n bytes
 */
void ef_report_error_detail(ef_err err, const char *detail, char *out, size_t n);

/**
 * The state document: device_id, online, state, job_id, fw_version,
 * driver_release, driver_release_source, signed_releases, app, groups, bytes, total, attempt,
 * error {code, message, detail} (failed and rejected always, canceled when it has a reason;
 * code is ef_err_class),
 * ts, client_version.
 * @return malloc'ed JSON (free()), NULL on OOM.
 */
char *ef_report_state_json(const ef_state *s);

/**
 * The progress document: device_id, job_id, bytes, total, percent (0..100,
 * integer), ts. @return malloc'ed JSON (free()), NULL on OOM.
 */
char *ef_report_progress_json(const char *device_id, const char *job_id, uint64_t bytes, uint64_t total,
                              int64_t ts_ms);

/**
 * The last will, registered at connect and published retained by the broker
 * when the session dies: {"device_id", "online": false, "client_version"}.
 * @return malloc'ed JSON (free()), NULL on OOM.
 */
char *ef_report_offline_json(const char *device_id);

/**
 * Decides when a progress document is due: at most one per
 * EF_PROGRESS_MIN_INTERVAL_MS, at least one per EF_PROGRESS_MAX_INTERVAL_MS
 * (call it from a timer too, so a stalled transfer still reports), and always
 * one when the transfer reaches its total.
 */
typedef struct {
  bool published;  /**< anything published yet */
  bool final_sent; /**< the 100 % document went out */
  int64_t last_ms;
  uint64_t last_bytes;
} ef_progress_limiter;

#define EF_PROGRESS_MIN_INTERVAL_MS 500
#define EF_PROGRESS_MAX_INTERVAL_MS 5000

/** Resets @p l for a new transfer. */
void ef_progress_limiter_init(ef_progress_limiter *l);

/**
 * @param now_ms a monotonic clock in milliseconds
 * @param bytes  bytes done so far
 * @param total  expected total, 0 when unknown
 * @return true when the caller should publish a progress document now (the
 *         limiter then counts it as published).
 */
bool ef_progress_due(ef_progress_limiter *l, int64_t now_ms, uint64_t bytes, uint64_t total);

#endif
