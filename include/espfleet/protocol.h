/**
 * @file protocol.h
 * @brief The MQTT contract of docs/protocol.md and docs/rollouts.md: topic
 *        names, and the readers and writers of the documents that are not
 *        the job itself (job.h) or the state the daemon builds (report.h).
 *
 * espfleetd, espfleet-console and espfleet-controller all name topics and
 * read each other's documents through this module, so the three cannot
 * drift apart. Pure: no clock, no network, no global state.
 *
 * Readers never trust what arrives: every text they copy out is escaped
 * (ef_text_escape) and cut to its buffer, so a document with control
 * characters cannot drive the operator's terminal or a log.
 */
#ifndef ESPFLEET_PROTOCOL_H
#define ESPFLEET_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/job.h"
#include "espfleet/report.h"
#include "espfleet/status.h"

/** Room for any topic this module names (prefix up to 255 characters). */
#define EF_TOPIC_MAX 400

/** The topics of the contract. P is the prefix, ID a device, G a group, R a rollout, J a job. */
typedef enum {
  EF_TOPIC_UNKNOWN = 0,
  EF_TOPIC_DEVICE_JOB,      /**< P/devices/ID/job: controller → device */
  EF_TOPIC_DEVICE_CANCEL,   /**< P/devices/ID/cancel: controller → device */
  EF_TOPIC_DEVICE_STATE,    /**< P/devices/ID/state: device → all, retained */
  EF_TOPIC_DEVICE_PROGRESS, /**< P/devices/ID/progress: device → all, QoS 0 */
  EF_TOPIC_DEVICE_RESULT,   /**< P/devices/ID/jobs/J: a job's final state on that device, retained */
  EF_TOPIC_GROUP_JOB,       /**< P/groups/G/job: controller → devices of G */
  EF_TOPIC_GROUP_CANCEL,    /**< P/groups/G/cancel: controller → devices of G */
  EF_TOPIC_ROLLOUT,         /**< P/rollouts/R: the rollout document, retained */
  EF_TOPIC_ROLLOUT_STATUS,  /**< P/rollouts/R/status: the controller's status, retained */
  EF_TOPIC_ROLLOUT_CONTROL, /**< P/rollouts/R/control: pause, resume, abort, devices */
  EF_TOPIC_ROLLOUT_DEVICES, /**< P/rollouts/R/devices: per-device rows, on request */
  EF_TOPIC_ANNOUNCE,        /**< P/announce: "say again what you know" */
} ef_topic_kind;

/**
 * Writes the topic of @p kind into @p out. @p id names the device, group or
 * rollout, @p sub the job of EF_TOPIC_DEVICE_RESULT (ignored otherwise).
 * Either may be "+" to make a subscription filter.
 * @return false when a needed id is missing or the topic does not fit.
 */
bool ef_topic(char *out, size_t n, const char *prefix, ef_topic_kind kind, const char *id, const char *sub);

/**
 * Splits a received topic. Ids that are not valid ids (ef_id_valid) make it
 * EF_TOPIC_UNKNOWN: a broker may carry any UTF-8 in a topic.
 * @param id  receives ID, G or R ("" for announce); EF_JOB_ID_MAX + 1 bytes
 * @param sub receives J for EF_TOPIC_DEVICE_RESULT, "" otherwise; EF_JOB_ID_MAX + 1 bytes
 * @return the kind; EF_TOPIC_UNKNOWN for anything else.
 */
ef_topic_kind ef_topic_parse(const char *topic, const char *prefix, char id[EF_JOB_ID_MAX + 1],
                             char sub[EF_JOB_ID_MAX + 1]);

/**
 * True when a topic a message arrived on is the topic @p ours that the
 * receiver subscribed to exactly. RabbitMQ's MQTT plugin maps '/' to '.' in
 * its routing keys and back on delivery, so a '.' inside an id arrives as
 * '/' ("P/devices/dev.1/cancel" arrives as "P/devices/dev/1/cancel");
 * the two characters compare equal here. Sound for exact subscriptions
 * only: ids never contain '/', so no other topic of ours reads the same.
 */
bool ef_topic_same(const char *delivered, const char *ours);

/* ---- state, result and progress documents as a reader sees them ---- */

/** Most groups a state document lists (as the daemon's configuration allows). */
#define EF_PROTO_MAX_GROUPS EF_STATE_MAX_GROUPS

/** A received state, per-job result or progress document. Strings "" = absent or null. */
typedef struct {
  char device_id[EF_JOB_ID_MAX + 1];
  bool has_online; /**< the document says whether the device is online */
  bool online;
  bool state_known; /**< state names one of ef_job_state */
  ef_job_state state;
  char state_name[24]; /**< as received, escaped */
  char job_id[EF_JOB_ID_MAX + 1];
  char fw_version[64];
  char app_version[EF_JOB_VERSION_MAX + 1];
  char error_code[48];
  char error_detail[256];
  char ts[40];
  int64_t ts_ms; /**< ts as Unix milliseconds, 0 when absent or not RFC 3339 */
  uint64_t bytes, total;
  int percent; /**< progress: as sent; state: from bytes and total */
  int attempt;
  char groups[EF_PROTO_MAX_GROUPS][EF_JOB_ID_MAX + 1];
  size_t n_groups;
} ef_state_view;

/**
 * Reads a state, per-job result or progress document (all share these
 * members). Missing or mistyped members read as absent, so documents of
 * other versions still show.
 * @return EF_OK; EF_ERR_INVALID_ARG for an empty payload (a cleared
 *         retained message) or one that is not a JSON object (st says which).
 */
ef_err ef_state_view_parse(const char *json, size_t len, ef_state_view *out, ef_status *st) EF_MUST_CHECK;

/** True for failed, rejected and canceled: the final states that are not a success. */
bool ef_state_is_bad(ef_job_state s);

/* ---- cancel document ---- */

/** {"job_id": "..."}: malloc'ed (free()), NULL on OOM. */
char *ef_cancel_json(const char *job_id);

/**
 * Reads a cancel document.
 * @param job_id receives the job to cancel
 * @return EF_OK; EF_ERR_BAD_JOB without a valid job_id (st says so).
 */
ef_err ef_cancel_parse(const char *json, size_t len, char job_id[EF_JOB_ID_MAX + 1],
                       ef_status *st) EF_MUST_CHECK;

/* ---- announce request ---- */

/** Who answers an announce request. */
typedef enum {
  EF_ANNOUNCE_ALL = 0,  /**< devices and controllers */
  EF_ANNOUNCE_DEVICES,  /**< devices re-publish their state (and the job's result) */
  EF_ANNOUNCE_ROLLOUTS, /**< controllers re-publish every rollout's status */
} ef_announce_scope;

/** An announce request: {"scope": "devices", "job_id": "j1"}; both members optional. */
typedef struct {
  ef_announce_scope scope;
  char job_id[EF_JOB_ID_MAX + 1]; /**< devices also re-publish their result of this job; "" = none */
} ef_announce;

/** The document of @p a: malloc'ed (free()), NULL on OOM. */
char *ef_announce_json(const ef_announce *a);

/**
 * Reads an announce request; an empty payload or "{}" asks everyone.
 * @return EF_OK; EF_ERR_INVALID_ARG for a bad scope or job_id (st says which).
 */
ef_err ef_announce_parse(const char *json, size_t len, ef_announce *out, ef_status *st) EF_MUST_CHECK;

/* ---- helpers shared by programs ---- */

/**
 * Reads a secret (a password) from the first line of @p path, without the
 * line end, into @p out. @return EF_OK; EF_ERR_IO when the file cannot be
 * read (st names it); EF_ERR_CONFIG when the line does not fit @p n.
 */
ef_err ef_read_secret_file(const char *path, char *out, size_t n, ef_status *st) EF_MUST_CHECK;

#endif
