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

/** Frees @p c (NULL is fine). */
void ef_controller_free(ef_controller *c);

#endif
