/**
 * @file error.h
 * @brief Error codes shared by every espfleet module.
 *
 * Each code has a stable snake_case name and a sentence for the user. The
 * names are part of the public contract: they appear in CLI output and in the
 * MQTT state documents (`error.code`), so a name is never changed or reused.
 * docs/errors.md lists the same codes, each with its class and where it is
 * used; a unit test (test_report) checks that none is missing there.
 */
#ifndef ESPFLEET_ERROR_H
#define ESPFLEET_ERROR_H

#include <stdbool.h>

/*
 * X(ENUM, name, class, sentence)
 * class: the contract code reported in MQTT state documents. Fine-grained
 * codes (the image defects) report their family there and keep their own name
 * in `error.detail`.
 */
#define EF_ERROR_TABLE(X)                                                                               \
  X(EF_OK, "ok", "ok", "Success.")                                                                      \
  /* generic */                                                                                         \
  X(EF_ERR_NOMEM, "out_of_memory", "internal", "Out of memory.")                                        \
  X(EF_ERR_INVALID_ARG, "invalid_argument", "internal", "An argument was invalid.")                     \
  X(EF_ERR_IO, "io_error", "io_error", "A file could not be read or written.")                          \
  X(EF_ERR_INTERNAL, "internal", "internal", "Internal error.")                                         \
  X(EF_ERR_CONFIG, "config_invalid", "config_invalid", "The configuration is invalid.")                 \
  /* ESP-Hosted control path */                                                                         \
  X(EF_ERR_ESP_UNAVAILABLE, "esp_unavailable", "esp_unavailable",                                       \
    "The ESP control device could not be opened or went away.")                                         \
  X(EF_ERR_ESP_TIMEOUT, "esp_timeout", "esp_unavailable", "The ESP did not answer in time.")            \
  X(EF_ERR_ESP_PROTOCOL, "esp_protocol", "esp_unavailable",                                             \
    "The ESP sent a message that does not follow the control protocol.")                                \
  X(EF_ERR_ESP_REQUEST_FAILED, "esp_request_failed", "esp_unavailable",                                 \
    "The ESP refused a control request.")                                                               \
  X(EF_ERR_ESP_BUSY, "esp_busy", "esp_unavailable",                                                     \
    "Another program holds the ESP control device open (the driver allows one at a time).")             \
  X(EF_ERR_ESP_WRITE_REFUSED, "esp_write_refused", "esp_unavailable",                                   \
    "The control device took only part of a message, or none of it.")                                   \
  X(EF_ERR_DRIVER_INCOMPATIBLE, "driver_incompatible", "driver_incompatible",                           \
    "The image carries an ESP-Hosted release the host driver does not accept.")                         \
  X(EF_ERR_OTA_BEGIN_FAILED, "ota_begin_failed", "ota_begin_failed",                                    \
    "The ESP refused to begin the OTA (slot could not be prepared).")                                   \
  X(EF_ERR_OTA_WRITE_FAILED, "ota_write_failed", "ota_write_failed", "The ESP refused an OTA write.")   \
  X(EF_ERR_OTA_END_REJECTED, "ota_end_rejected", "ota_end_rejected",                                    \
    "The ESP rejected the written image at OTA end.")                                                   \
  /* image format */                                                                                    \
  X(EF_ERR_IMAGE_BAD_MAGIC, "image_bad_magic", "image_invalid",                                         \
    "The file is not an ESP application image (bad magic byte).")                                       \
  X(EF_ERR_IMAGE_SEGMENTS, "image_bad_segments", "image_invalid",                                       \
    "The image has too many segments or a segment that does not fit.")                                  \
  X(EF_ERR_IMAGE_BAD_DESC, "image_bad_app_desc", "image_invalid",                                       \
    "The image has no valid application description.")                                                  \
  X(EF_ERR_IMAGE_TRUNCATED, "image_truncated", "image_invalid",                                         \
    "The image ends before its last segment, checksum or digest.")                                      \
  X(EF_ERR_IMAGE_BAD_CHECKSUM, "image_bad_checksum", "image_invalid",                                   \
    "The image checksum does not match its segments.")                                                  \
  X(EF_ERR_IMAGE_BAD_DIGEST, "image_bad_digest", "image_invalid",                                       \
    "The SHA-256 digest appended to the image does not match.")                                         \
  X(EF_ERR_IMAGE_INVALID, "image_invalid", "image_invalid",                                             \
    "The image is not a valid ESP application image.")                                                  \
  /* image against expectations */                                                                      \
  X(EF_ERR_CHIP_MISMATCH, "chip_mismatch", "chip_mismatch", "The image is built for a different chip.") \
  X(EF_ERR_PROJECT_MISMATCH, "project_mismatch", "project_mismatch",                                    \
    "The image belongs to a different project.")                                                        \
  X(EF_ERR_VERSION_MISMATCH, "version_mismatch", "version_mismatch",                                    \
    "The image version differs from the version the job announced.")                                    \
  X(EF_ERR_TOO_LARGE, "too_large", "too_large",                                                         \
    "The image is larger than the OTA slot or the configured maximum.")                                 \
  /* download */                                                                                        \
  X(EF_ERR_DOWNLOAD_FAILED, "download_failed", "download_failed", "The image could not be downloaded.") \
  X(EF_ERR_DOWNLOAD_NO_RANGE, "download_no_range", "download_failed",                                   \
    "The server does not serve byte ranges, so the download could not continue where it broke.")        \
  X(EF_ERR_SIZE_MISMATCH, "size_mismatch", "size_mismatch",                                             \
    "The image size differs from the size the job announced.")                                          \
  X(EF_ERR_HASH_MISMATCH, "hash_mismatch", "hash_mismatch",                                             \
    "The image SHA-256 differs from the hash the job announced.")                                       \
  /* jobs */                                                                                            \
  X(EF_ERR_BAD_JOB, "bad_job", "bad_job", "The job document is malformed.")                             \
  X(EF_ERR_JOB_CONFLICT, "job_conflict", "job_conflict",                                                \
    "A job with this job_id but different content was already received.")                               \
  X(EF_ERR_EXPIRED, "expired", "expired", "The job arrived after its not_after time.")                  \
  X(EF_ERR_DOWNGRADE_REFUSED, "downgrade_refused", "downgrade_refused",                                 \
    "The job would install an older version and does not allow a downgrade.")                           \
  X(EF_ERR_BOOT_VERIFY_FAILED, "boot_verify_failed", "boot_verify_failed",                              \
    "The ESP did not come back with the expected firmware after the update.")                           \
  X(EF_ERR_INTERRUPTED, "interrupted", "interrupted",                                                   \
    "The update was interrupted (the host restarted) and could not be completed.")                      \
  X(EF_ERR_CANCELED, "canceled", "canceled", "The update was canceled.")                                \
  X(EF_ERR_JOB_REPLACED, "job_replaced", "canceled", "A newer job replaced this one while it waited.")  \
  X(EF_ERR_ROLLOUT_INVALID, "rollout_invalid", "rollout_invalid", "The rollout document was refused.")  \
  X(EF_ERR_ROLLOUT_ABORTED, "rollout_aborted", "rollout_aborted", "The rollout was aborted.")           \
  X(EF_ERR_ROLLOUT_STATE, "rollout_state", "rollout_state",                                             \
    "The rollout is not in a state that allows this.")                                                  \
  X(EF_ERR_CONTROLLER_UNAVAILABLE, "controller_unavailable", "controller_unavailable",                  \
    "No rollout controller answered.")                                                                  \
  X(EF_ERR_MQTT, "mqtt_error", "mqtt_error", "The MQTT session failed.")                                \
  /* signed releases */                                                                                 \
  X(EF_ERR_RELEASE_UNSIGNED, "release_unsigned", "release_unsigned",                                    \
    "The job carries no release signature, and this device accepts only signed releases.")              \
  X(EF_ERR_RELEASE_KEY_UNKNOWN, "release_key_unknown", "release_key_unknown",                           \
    "The job is signed with a key this device does not know.")                                          \
  X(EF_ERR_RELEASE_KEY_REVOKED, "release_key_revoked", "release_key_revoked",                           \
    "The job is signed with a key this device was told to distrust.")                                   \
  X(EF_ERR_RELEASE_BAD_SIGNATURE, "release_bad_signature", "release_bad_signature",                     \
    "The release signature does not match the job's content.")                                          \
  X(EF_ERR_SECURE_VERSION_ROLLBACK, "secure_version_rollback", "secure_version_rollback",               \
    "The image's secure_version is below the highest this device has installed.")

typedef enum {
#define EF_X_ENUM(e, name, cls, msg) e,
  EF_ERROR_TABLE(EF_X_ENUM)
#undef EF_X_ENUM
      EF_ERR__COUNT
} ef_err;

/** Stable snake_case name of @p err (e.g. "esp_timeout"); "unknown" if out of range. */
const char *ef_err_name(ef_err err);

/** One sentence for the user describing @p err. */
const char *ef_err_message(ef_err err);

/**
 * Contract code reported in MQTT state documents for @p err. Equal to the
 * name except for fine-grained codes, which report their family
 * (every image_* defect reports "image_invalid", ESP transport problems
 * report "esp_unavailable").
 */
const char *ef_err_class(ef_err err);

/** Looks up a code by its name; returns EF_ERR__COUNT when unknown. */
ef_err ef_err_from_name(const char *name);

/**
 * Whether trying again later can help with @p err by default: the ESP or
 * the network being away or slow (esp_unavailable, esp_timeout, esp_busy,
 * download_failed, mqtt_error), not a bad image, a refused job or a bug.
 * A module that knows better says so in ef_status (an HTTP 404 is a
 * download_failed that will not pass).
 */
bool ef_err_retryable(ef_err err);

#if defined(__GNUC__)
#define EF_MUST_CHECK __attribute__((warn_unused_result))
#else
#define EF_MUST_CHECK
#endif

#endif
