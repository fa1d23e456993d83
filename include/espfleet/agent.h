/**
 * @file agent.h
 * @brief The fleet agent: jobs in over MQTT, OTA over ESP-Hosted, state out.
 *
 * This is espfleetd without its command line. It owns three threads' worth of
 * work: the MQTT library's callback thread only copies messages into an
 * inbox; the agent thread (the caller of ef_agent_run) decides what to do
 * with them, publishes progress and starts jobs; a job thread runs one update
 * at a time (download -> hash -> validate -> ESP) and reports phase changes.
 * The journal in state_dir makes every decision survive a crash.
 */
#ifndef ESPFLEET_AGENT_H
#define ESPFLEET_AGENT_H

#include "espfleet/config.h"
#include "espfleet/error.h"
#include "espfleet/status.h"

typedef struct ef_agent ef_agent;

/**
 * Creates the agent: loads (or recovers) the journal from cfg->state_dir.
 * Nothing is connected yet.
 * @param st why it failed ("cannot create state_dir /x: Permission
 *        denied"); may be NULL
 * @return EF_OK; EF_ERR_IO when state_dir cannot be created or the journal
 *         cannot be read; EF_ERR_NOMEM.
 */
ef_err ef_agent_new(const ef_config *cfg, ef_agent **out, ef_status *st) EF_MUST_CHECK;

/**
 * Connects to the broker and serves until ef_agent_request_stop. A job
 * interrupted by an earlier crash is resumed first. Broker loss is not an
 * error: the session reconnects and the update in progress continues.
 * What happens to jobs is reported in state documents and the log, not here.
 * @param st why it could not serve ("mqtt: ca_file '/x' cannot be read:
 *        ..."); may be NULL
 * @return EF_OK after a requested stop; EF_ERR_CONFIG when the MQTT options
 *         are unusable; EF_ERR_NOMEM; EF_ERR_MQTT; EF_ERR_INTERNAL.
 */
ef_err ef_agent_run(ef_agent *a, ef_status *st) EF_MUST_CHECK;

/**
 * Asks ef_agent_run to return. A transfer in progress is abandoned and stays
 * in the journal (it resumes at the next start); OTA end already sent is
 * seen through. Safe from any thread (not from a signal handler).
 */
void ef_agent_request_stop(ef_agent *a);

/** Frees @p a (NULL is fine). */
void ef_agent_free(ef_agent *a);

#endif
