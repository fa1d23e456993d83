/**
 * @file job.h
 * @brief Job documents (parsing, fingerprint) and the pure job policy.
 *
 * A job document is the flat JSON object a controller publishes on
 * `P/devices/ID/job` or `P/groups/G/job` (see docs/protocol.md). Parsing is
 * strict about the keys it knows and ignores the others; every refusal comes
 * with one sentence that starts with the offending key, e.g.
 * "sha256: must be 64 hex digits".
 *
 * The policy functions are pure: they take the current time as an argument and
 * read no clock, file or global, so the daemon and the tests get the same
 * answer for the same inputs.
 */
#ifndef ESPFLEET_JOB_H
#define ESPFLEET_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "espfleet/error.h"

#define EF_JOB_ID_MAX 64            /**< characters in a job_id */
#define EF_JOB_URL_MAX 2048         /**< characters in a url */
#define EF_JOB_VERSION_MAX 32       /**< the app description's version field */
#define EF_JOB_PROJECT_MAX 32       /**< the app description's project_name field */
#define EF_JOB_CHIP_MAX 15          /**< a chip name such as "esp32s3" */
#define EF_JOB_FW_VERSION_MAX 63    /**< expect_fw_version, e.g. "FG-1.0.4.0.0" */
#define EF_JOB_MAX_PAYLOAD 16384    /**< default limit on a job payload, bytes */

/** Limits a job is checked against; fill with ef_job_limits_default. */
typedef struct {
  size_t max_payload;       /**< payloads larger than this are refused unparsed */
  uint64_t max_image_size;  /**< esp.max_image_size; larger `size` is EF_ERR_TOO_LARGE */
  bool allow_http;          /**< download.allow_http */
} ef_job_limits;

/** A parsed, valid job. Fixed size so it can be copied and queued by value. */
typedef struct {
  char job_id[EF_JOB_ID_MAX + 1];
  char url[EF_JOB_URL_MAX + 1];
  uint8_t sha256[32];
  char sha256_hex[65];            /**< lower case */
  uint64_t size;
  char version[EF_JOB_VERSION_MAX + 1];
  char project[EF_JOB_PROJECT_MAX + 1];  /**< "" = not given */
  char chip[EF_JOB_CHIP_MAX + 1];        /**< canonical name ("esp32s3"); "" = not given */
  int chip_id;                           /**< image header chip id, -1 = not given */
  bool allow_downgrade;
  int rollout_percent;                   /**< 0..100, -1 = no rollout (everyone) */
  time_t not_after;                      /**< 0 = no deadline */
  char expect_fw_version[EF_JOB_FW_VERSION_MAX + 1]; /**< "" = not given */
  bool driver_update;  /**< the host driver is updated to accept expect_fw_version in the same rollout */
} ef_job;

/** Default limits: 16 KiB payload, 16 MiB image, https only. */
void ef_job_limits_default(ef_job_limits *lim);

/**
 * Parses and validates a job document.
 * @param json    payload bytes; need not be NUL-terminated
 * @param len     payload length
 * @param lim     limits (NULL = ef_job_limits_default)
 * @param out     the job; on failure out->job_id still holds the document's
 *                job_id when that one key was present and valid ("" otherwise),
 *                so the refusal can be reported against it
 * @param reason  on failure, one sentence naming the key ("url: must be https")
 * @param n       size of @p reason
 * @return EF_OK; EF_ERR_TOO_LARGE when `size` exceeds lim->max_image_size and
 *         nothing else is wrong; EF_ERR_BAD_JOB for anything else (payload too
 *         large, invalid UTF-8 or JSON, not an object, missing or wrong key).
 */
ef_err ef_job_parse(const char *json, size_t len, const ef_job_limits *lim, ef_job *out,
                    char *reason, size_t n) EF_MUST_CHECK;

/**
 * SHA-256 (lower-case hex) of a canonical form of the job's content: every
 * field except rollout.percent, which a controller raises to widen a rollout
 * without making it a different job. Two deliveries of the same job_id with
 * different fingerprints are a job_conflict.
 * @param out 65 bytes
 */
void ef_job_fingerprint(const ef_job *job, char out[65]);

/**
 * The job as a JSON document that ef_job_parse reads back to the same job
 * (with limits wide enough). @return a malloc'ed string (free()), NULL on OOM.
 */
char *ef_job_to_json(const ef_job *job);

/**
 * Parses an RFC 3339 date-time ("2025-01-31T12:00:00Z", "...T12:00:00.5+02:00").
 * @return EF_OK or EF_ERR_INVALID_ARG.
 */
ef_err ef_rfc3339_parse(const char *s, time_t *out) EF_MUST_CHECK;

/** True when @p s is 1..EF_JOB_ID_MAX characters of [A-Za-z0-9._:-] (job and device ids). */
bool ef_id_valid(const char *s);

/* ---- policy (policy.c): pure decisions, no clocks inside ---- */

/**
 * Canary bucket of a device for a job: the first 32 bits (big-endian) of
 * SHA-256("job_id/device_id"), modulo 10000. @return 0..9999.
 */
uint32_t ef_canary_bucket(const char *job_id, const char *device_id);

/** True when @p bucket is inside a rollout of @p percent (bucket < percent*100); a negative percent means no rollout. */
bool ef_canary_selected(uint32_t bucket, int percent);

/** True when the job has a not_after and @p now is later than it. */
bool ef_job_expired(const ef_job *job, time_t now);

/**
 * True when the image the job installs is already installed: same version
 * and same SHA-256 as the app this client last installed.
 * @param installed_version  "" or NULL when unknown
 * @param installed_sha256_hex "" or NULL when unknown
 */
bool ef_job_already_installed(const ef_job *job, const char *installed_version,
                              const char *installed_sha256_hex);

/**
 * Downgrade check against the installed version (ef_version_compare).
 * @return EF_OK when the version is not older, unknown, or allow_downgrade is
 *         set; EF_ERR_DOWNGRADE_REFUSED otherwise.
 */
ef_err ef_job_check_downgrade(const ef_job *job, const char *installed_version) EF_MUST_CHECK;

/**
 * Driver-compatibility gate: the release the image carries
 * (expect_fw_version) against the release the host's driver accepts.
 * ESP-Hosted's driver refuses, at every ESP boot, firmware whose release
 * differs from its own, so such an image would cut the host off from its
 * ESP after the reboot.
 * @param driver_release the driver's release; "" or NULL when unknown
 * @return EF_OK when the job has no expect_fw_version, the driver release is
 *         unknown, the two are equal, or the job says the host driver is
 *         updated in the same rollout (driver_update); EF_ERR_DRIVER_INCOMPATIBLE
 *         otherwise.
 */
ef_err ef_job_check_driver(const ef_job *job, const char *driver_release) EF_MUST_CHECK;

/** What the daemon does with an accepted job. */
typedef enum {
  EF_DECISION_RUN,          /**< download and flash */
  EF_DECISION_SKIP,         /**< outside the canary rollout: report skipped */
  EF_DECISION_INSTALLED,    /**< already installed: report succeeded at once */
  EF_DECISION_REJECT,       /**< report rejected with the returned error */
} ef_job_decision;

/**
 * The policy in one call, in this order: expired (reject EF_ERR_EXPIRED),
 * canary gate (skip), already installed (installed), downgrade (reject
 * EF_ERR_DOWNGRADE_REFUSED), driver compatibility (reject
 * EF_ERR_DRIVER_INCOMPATIBLE, see ef_job_check_driver), else run.
 * @param driver_release the host driver's release, "" or NULL when unknown
 * @param err set to the rejection code for EF_DECISION_REJECT, EF_OK otherwise
 */
ef_job_decision ef_job_decide(const ef_job *job, const char *device_id, const char *installed_version,
                              const char *installed_sha256_hex, const char *driver_release, time_t now,
                              ef_err *err);

#endif
