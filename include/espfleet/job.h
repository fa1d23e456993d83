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
 * answer for the same inputs. ef_job_decide is the daemon's whole intake of
 * a job in one such function: what it does with a document when it arrives
 * and when its turn comes.
 */
#ifndef ESPFLEET_JOB_H
#define ESPFLEET_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "espfleet/driver.h"
#include "espfleet/error.h"
#include "espfleet/release.h"
#include "espfleet/status.h"

#define EF_JOB_ID_MAX         64    /**< characters in a job_id */
#define EF_JOB_URL_MAX        2048  /**< characters in a url */
#define EF_JOB_VERSION_MAX    32    /**< the app description's version field */
#define EF_JOB_PROJECT_MAX    32    /**< the app description's project_name field */
#define EF_JOB_CHIP_MAX       15    /**< a chip name such as "esp32s3" */
#define EF_JOB_FW_VERSION_MAX 63    /**< expect_fw_version, e.g. "FG-1.0.4.0.0" */
#define EF_JOB_MAX_PAYLOAD    16384 /**< default limit on a job payload, bytes */

/** Default largest image a job may name: the largest OTA slot of 16 MiB flash. */
#define EF_JOB_DEFAULT_MAX_IMAGE_SIZE (16u * 1024 * 1024)

/** Limits a job is checked against; fill with ef_job_limits_default. */
typedef struct {
  size_t max_payload;      /**< payloads larger than this are refused unparsed */
  uint64_t max_image_size; /**< esp.max_image_size; larger `size` is EF_ERR_TOO_LARGE */
  bool allow_http;         /**< download.allow_http */
} ef_job_limits;

/** A parsed, valid job. Fixed size so it can be copied and queued by value. */
typedef struct {
  char job_id[EF_JOB_ID_MAX + 1];
  char url[EF_JOB_URL_MAX + 1];
  uint8_t sha256[32];
  char sha256_hex[65]; /**< lower case */
  uint64_t size;
  char version[EF_JOB_VERSION_MAX + 1];
  char project[EF_JOB_PROJECT_MAX + 1]; /**< "" = not given */
  char chip[EF_JOB_CHIP_MAX + 1];       /**< canonical name ("esp32s3"); "" = not given */
  int chip_id;                          /**< image header chip id, -1 = not given */
  bool allow_downgrade;
  int rollout_percent;                               /**< 0..100, -1 = no rollout (everyone) */
  time_t not_after;                                  /**< 0 = no deadline */
  char expect_fw_version[EF_JOB_FW_VERSION_MAX + 1]; /**< "" = not given */
  bool driver_update; /**< the host driver is updated to accept expect_fw_version in the same rollout */
  /** The release signature (docs/security.md): the job's sha256, size,
   *  version, project, chip and expect_fw_version, with these, signed by a
   *  release key. has_release false = an unsigned job. */
  bool has_release;
  char release_key_id[65];
  uint8_t release_signature[64];
  uint32_t secure_version; /**< signed: the image's app description secure_version */
  bool signed_downgrade;   /**< signed: may replace a newer version */
} ef_job;

/**
 * The signed release a job stands for (its manifest), built from the job's
 * own fields: sha256, size, version, project, chip, expect_fw_version as the
 * hosted release, and the release object's secure_version, allow_downgrade,
 * key id and signature. Only meaningful when job->has_release.
 */
void ef_job_manifest(const ef_job *job, ef_manifest *out);

/** Default limits: 16 KiB payload, 16 MiB image, https only. */
void ef_job_limits_default(ef_job_limits *lim);

/**
 * Parses and validates a job document.
 * @param json    payload bytes; need not be NUL-terminated; may be NULL when
 *                @p len is above lim->max_payload (a payload the caller did
 *                not keep: it is refused as too large all the same)
 * @param len     payload length
 * @param lim     limits (NULL = ef_job_limits_default)
 * @param out     the job; on failure out->job_id still holds the document's
 *                job_id when that one key was present and valid ("" otherwise),
 *                so the refusal can be reported against it
 * @param st      on failure, one sentence naming the key ("url: must be
 *                https", "payload: too large (20000 bytes, at most 16384)");
 *                never retryable; may be NULL
 * @return EF_OK; EF_ERR_TOO_LARGE when `size` exceeds lim->max_image_size and
 *         nothing else is wrong; EF_ERR_BAD_JOB for anything else (payload too
 *         large, invalid UTF-8 or JSON, not an object, missing or wrong key);
 *         EF_ERR_NOMEM.
 */
ef_err ef_job_parse(const char *json, size_t len, const ef_job_limits *lim, ef_job *out,
                    ef_status *st) EF_MUST_CHECK;

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
 * Parses an RFC 3339 date-time ("2025-01-31T12:00:00Z", "...T12:00:00.5+02:00")
 * to its instant: any year 0000-9999 with any offset up to 23:59, so
 * "1970-01-01T00:00:00+01:00" is an hour before the epoch and
 * "9999-12-31T23:59:59-01:00" an hour after the last second of 9999 UTC.
 * Fractions of a second are dropped; a leap second (:60) counts as :59.
 * @return EF_OK or EF_ERR_INVALID_ARG (not RFC 3339, or an instant a 32-bit
 *         time_t cannot hold).
 */
ef_err ef_rfc3339_parse(const char *s, time_t *out) EF_MUST_CHECK;

/**
 * Writes @p t as an RFC 3339 date-time that ef_rfc3339_parse reads back to
 * exactly @p t: "YYYY-MM-DDTHH:MM:SSZ" from year 0000 to 9999 UTC, and with
 * the smallest whole-minute offset that names it beyond
 * ("9999-12-31T23:59:59-01:00"). Every instant ef_rfc3339_parse returns can
 * be written.
 * @param out 32 bytes; "" when false is returned
 * @return false only for an instant no RFC 3339 text names (more than 23:59
 *         outside years 0000-9999).
 */
bool ef_rfc3339_format_seconds(time_t t, char out[32]);

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

/** What the daemon does with a job document (ef_job_decide). */
typedef enum {
  EF_DECISION_RUN,       /**< download and flash */
  EF_DECISION_SKIP,      /**< outside the canary rollout: report skipped */
  EF_DECISION_INSTALLED, /**< already installed: report succeeded at once */
  EF_DECISION_REJECT,    /**< report rejected with the status, and record it as the job's result */
  EF_DECISION_REFUSE,    /**< report rejected with the status, but do not record it: this job_id
                              has a result of its own (finished, or running) that must stand */
  EF_DECISION_IGNORE,    /**< a repeated delivery of the running job: nothing to do */
  EF_DECISION_REPEAT,    /**< finished before (not skipped): report its recorded final state again */
  EF_DECISION_WAIT,      /**< acceptable: queue it for its turn (replacing a job that waits) */
} ef_job_decision;

/** Name of a decision ("run", "wait", ...), for logs and tests. */
const char *ef_job_decision_name(ef_job_decision d);

/**
 * What a device knows when it decides on a job: its configuration, the jobs
 * it runs and keeps waiting, what its journal recorded, the time. The caller
 * gathers these facts; ef_job_decide reads nothing else. Strings may be NULL
 * or "" for "unknown".
 */
typedef struct {
  bool starting;                 /**< false: the document just arrived (an acceptable job
                                    waits); true: its turn came and nothing runs */
  const char *device_id;         /**< for the canary bucket */
  int chip_id;                   /**< esp.chip_id: the device's chip, -1 = any */
  const char *installed_version; /**< the app this client installed last (journal) */
  const char *installed_sha256_hex;
  const char *driver_release;     /**< the release the host driver accepts */
  ef_driver_source driver_source; /**< where driver_release comes from, for the sentence */
  const ef_keyring *keyring;      /**< security.release_keys; NULL or empty = unsigned jobs run */
  bool has_floor;                 /**< a secure_version was ever installed (journal) */
  uint32_t secure_floor;          /**< the highest secure_version installed */
  const ef_job *running;          /**< the job that runs now, NULL when none */
  const ef_job *waiting;          /**< the job that waits for its turn, NULL when none */
  /** The journal's final result for this document's job_id, if any. */
  bool has_final;
  bool final_skipped;            /**< it ended skipped (evaluated again when delivered again) */
  const char *final_fingerprint; /**< its fingerprint; "" when that delivery never parsed */
  time_t now;
} ef_job_facts;

/**
 * The daemon's intake of a job in one pure call: every decision on a
 * document, in this order.
 *
 * When it arrives (facts->starting false):
 *  1. it did not parse (@p parsed holds the error): reject with that status;
 *     refuse instead (no record) when its job_id has a recorded result or
 *     is running, so a bad copy never overwrites the real result;
 *  2. the running job's job_id: different content (fingerprint) is refused
 *     with EF_ERR_JOB_CONFLICT, the same content ignored;
 *  3. the waiting job's job_id with different content: refused, EF_ERR_JOB_CONFLICT;
 *  4. a recorded result of this job_id with different content: refused,
 *     EF_ERR_JOB_CONFLICT (the first job's result stands);
 *  5. a recorded result that is not skipped: repeat it (idempotence);
 *  6. otherwise wait for its turn.
 * When its turn comes (facts->starting true) the same checks run, then the
 * policy:
 *  6a. signed releases (facts->keyring has keys): an unsigned job is
 *     rejected EF_ERR_RELEASE_UNSIGNED; a signed one is checked by
 *     ef_keyring_verify (EF_ERR_RELEASE_KEY_REVOKED, EF_ERR_RELEASE_KEY_UNKNOWN,
 *     EF_ERR_RELEASE_BAD_SIGNATURE);
 *  6b. a signed secure_version below the device's floor: reject,
 *     EF_ERR_SECURE_VERSION_ROLLBACK, whatever else the job says;
 *  7. the job names a chip (chip_id) and the device has another: reject,
 *     EF_ERR_CHIP_MISMATCH;
 *  8. expired (not_after before facts->now): reject, EF_ERR_EXPIRED;
 *  9. outside the canary rollout: skip;
 * 10. same version and SHA-256 as the installed app: installed;
 * 11. older than the installed version without allow_downgrade: reject,
 *     EF_ERR_DOWNGRADE_REFUSED; with signed releases only the signed
 *     permission counts, the job's own allow_downgrade is ignored;
 * 12. driver compatibility (ef_job_check_driver): reject,
 *     EF_ERR_DRIVER_INCOMPATIBLE;
 * 13. otherwise run.
 * @param job    the job as ef_job_parse left it (on a parse failure only
 *               job_id, and only when it was valid)
 * @param parsed ef_job_parse's status for it; NULL or EF_OK when it parsed
 * @param f      the device's facts
 * @param st     for REJECT and REFUSE, the code and a sentence with the
 *               specifics ("installed 2.0 is newer than 1.10.0"); untouched
 *               otherwise; may be NULL
 */
ef_job_decision ef_job_decide(const ef_job *job, const ef_status *parsed, const ef_job_facts *f,
                              ef_status *st);

#endif
