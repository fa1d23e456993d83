/**
 * @file controller.h
 * @brief espfleet-controller: runs the rollouts published on the broker
 *        (docs/rollouts.md) with the rollout engine, keeps them in the store
 *        and tells devices what to do.
 *
 * One loop on one thread: messages from the broker (device states and job
 * results, rollout documents, control messages, announce requests) are
 * taken in batches; after each batch the engine ticks every rollout, every
 * change is saved in one store transaction, and only then are the actions
 * published (jobs, cancels, cleared documents, status). A controller killed
 * at any point finds in the store what it decided and carries out what it
 * had not yet published.
 */
#ifndef ESPFLEET_CONTROLLER_H
#define ESPFLEET_CONTROLLER_H

#include <stdbool.h>

#include "espfleet/error.h"
#include "espfleet/mqtt.h"
#include "espfleet/status.h"

/** What the controller needs to know; espfleet-controller fills it from its
 *  configuration file (ef_config_load_flags with EF_CONFIG_CONTROLLER).
 *  Strings are the caller's and must outlive the controller. */
typedef struct {
  /** Broker, identity, TLS and keepalive. The controller sets the
   *  subscriptions, callbacks and a persistent session (clean_session false)
   *  itself: the broker queues what arrives while it is down. */
  ef_mqtt_options mqtt;
  const char *topic_prefix;
  const char *database;
  int discovery_s; /**< after connecting, how long devices have to announce before a new rollout starts */
  int tick_ms;     /**< how often timeouts and soak times are evaluated */
} ef_controller_config;

typedef struct ef_controller ef_controller;

/**
 * Opens the store and loads the rollouts it holds. Nothing is published yet.
 * @return EF_OK; the store's EF_ERR_IO; EF_ERR_NOMEM.
 */
ef_err ef_controller_new(const ef_controller_config *cfg, ef_controller **out, ef_status *st) EF_MUST_CHECK;

/**
 * Connects and runs until @p stop returns true (polled at least every
 * 200 ms), then saves and disconnects.
 * @return EF_OK after a stop; EF_ERR_CONFIG / EF_ERR_MQTT when the session
 *         cannot start; EF_ERR_IO when the store fails (the controller stops
 *         rather than act on decisions it could not save).
 */
ef_err ef_controller_run(ef_controller *c, bool (*stop)(void), ef_status *st) EF_MUST_CHECK;

/** What the controller tells an observer (the HTTP API) about. */
typedef enum {
  EF_CONTROLLER_DEVICE, /**< a device's state document arrived (id: the device; json: the document as received) */
  EF_CONTROLLER_PROGRESS, /**< a progress document arrived (id: the device; json: as received) */
  EF_CONTROLLER_ROLLOUT,  /**< a rollout's status was published (id: the rollout; json: the status document,
                               or "" when the rollout was deleted) */
} ef_controller_event;

/**
 * Called on the controller's thread for each event: must be quick and must
 * not call back into the controller except ef_controller_publish. Device
 * documents are as the device sent them: parse them with
 * ef_state_view_parse, never show them raw.
 */
typedef void (*ef_controller_observer)(void *arg, ef_controller_event ev, const char *id, const char *json,
                                       size_t len);

/** Sets the observer (before ef_controller_run; NULL to remove). */
void ef_controller_set_observer(ef_controller *c, ef_controller_observer cb, void *arg);

/**
 * Publishes a message on the controller's MQTT session (QoS 1), from any
 * thread: how the HTTP API's actions reach the broker, and through it the
 * controller itself, exactly as the console's would.
 * @return EF_OK; EF_ERR_MQTT when the session is not running or refuses it
 *         (st says why).
 */
ef_err ef_controller_publish(ef_controller *c, const char *topic, const char *payload, size_t len,
                             bool retain, ef_status *st) EF_MUST_CHECK;

/** The topic prefix the controller works under. */
const char *ef_controller_prefix(const ef_controller *c);

/** Frees @p c (NULL is fine). */
void ef_controller_free(ef_controller *c);

#endif
