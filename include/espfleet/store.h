/**
 * @file store.h
 * @brief The controller's durable store (SQLite): rollouts, their devices,
 *        the devices the controller has heard of, and the job history.
 *
 * Every change the rollout engine makes is saved here, in one transaction,
 * before the controller acts on it (publishes a job or a cancel), so a
 * controller restarted after a crash, SIGKILL or power loss resumes exactly
 * where it was. The database runs in WAL mode with synchronous=FULL: a
 * committed transaction survives power loss.
 *
 * One process at a time: ef_store_open takes an exclusive lock on the
 * database (a second controller on the same file fails to open it).
 */
#ifndef ESPFLEET_STORE_H
#define ESPFLEET_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/rollout.h"
#include "espfleet/status.h"

typedef struct ef_store ef_store;

/**
 * Opens (creating when missing) the database at @p path and its schema.
 * @return EF_OK; EF_ERR_IO when it cannot be opened or created, is not an
 *         espfleet database, is of a newer schema, or another process holds
 *         it (st says which, with SQLite's words).
 */
ef_err ef_store_open(const char *path, ef_store **out, ef_status *st) EF_MUST_CHECK;

/**
 * Opens an existing database read-only, beside a controller that writes it
 * (WAL lets readers and the writer work at once): for the HTTP API and
 * `espfleet-controller history`. No lock is taken and nothing is created;
 * only the load and query functions may be used on it.
 * @return EF_OK; EF_ERR_IO when the database is missing, not ours or newer.
 */
ef_err ef_store_open_reader(const char *path, ef_store **out, ef_status *st) EF_MUST_CHECK;

/** Closes the database (NULL is fine). */
void ef_store_close(ef_store *s);

/** Starts a transaction. @return EF_OK or EF_ERR_IO. */
ef_err ef_store_begin(ef_store *s, ef_status *st) EF_MUST_CHECK;
/** Commits it (durable when this returns EF_OK). @return EF_OK or EF_ERR_IO (rolled back). */
ef_err ef_store_commit(ef_store *s, ef_status *st) EF_MUST_CHECK;
/** Rolls it back (after a failure inside it). */
void ef_store_rollback(ef_store *s);

/**
 * Inserts or updates a rollout: its document as received (@p doc_json) and
 * its run. Clears run->dirty.
 */
ef_err ef_store_put_rollout(ef_store *s, const char *rollout_id, const char *doc_json, ef_rollout_run *run,
                            ef_status *st) EF_MUST_CHECK;

/** Inserts or updates the rows of @p devs that are dirty (all when @p all), clearing dirty. */
ef_err ef_store_put_devices(ef_store *s, const char *rollout_id, ef_rollout_device *devs, size_t n, bool all,
                            ef_status *st) EF_MUST_CHECK;

/** Deletes a rollout and its device rows (the history stays). */
ef_err ef_store_delete_rollout(ef_store *s, const char *rollout_id, ef_status *st) EF_MUST_CHECK;

/** Called by ef_store_load_rollouts for each stored rollout; the arrays are the callee's to keep. */
typedef void (*ef_store_rollout_cb)(void *arg, const char *rollout_id, const char *doc_json,
                                    const ef_rollout_run *run, ef_rollout_device *devs, size_t n);

/**
 * Reads every stored rollout, oldest first, with its devices in rollout
 * order. @p devs passed to the callback is malloc'ed and owned by the callee
 * (free()); doc_json is valid during the call only.
 */
ef_err ef_store_load_rollouts(ef_store *s, ef_store_rollout_cb cb, void *arg, ef_status *st) EF_MUST_CHECK;

/** What the controller knows of a device from its state documents. */
typedef struct {
  char device_id[EF_JOB_ID_MAX + 1];
  char groups[EF_PROTO_MAX_GROUPS][EF_JOB_ID_MAX + 1];
  size_t n_groups;
  bool online;
  char state[24];
  char job_id[EF_JOB_ID_MAX + 1];
  int64_t seen_ms;
} ef_store_device;

/** Inserts or updates a device. */
ef_err ef_store_put_device(ef_store *s, const ef_store_device *d, ef_status *st) EF_MUST_CHECK;

/** Called for each known device. */
typedef void (*ef_store_device_cb)(void *arg, const ef_store_device *d);

/** Reads every known device. */
ef_err ef_store_load_devices(ef_store *s, ef_store_device_cb cb, void *arg, ef_status *st) EF_MUST_CHECK;

/** One line of history: a device reached a final state for a job. */
typedef struct {
  char device_id[EF_JOB_ID_MAX + 1];
  char job_id[EF_JOB_ID_MAX + 1];
  char rollout_id[EF_JOB_ID_MAX + 1]; /**< "" when the job was not one of a rollout's */
  char state[24];
  char error[256];
  int attempt;
  int64_t ts_ms; /**< when the device reached it (its document's ts) */
} ef_store_history;

/**
 * Adds a line unless the same (device, job, state) is already there: the
 * same result heard twice (a redelivery, an announce) is one line.
 */
ef_err ef_store_add_history(ef_store *s, const ef_store_history *h, ef_status *st) EF_MUST_CHECK;

/** Called for each history line, oldest first. */
typedef void (*ef_store_history_cb)(void *arg, const ef_store_history *h);

/**
 * Reads history lines, filtered by device and/or job (NULL or "" = any),
 * oldest first, at most @p limit (0 = all).
 */
ef_err ef_store_query_history(ef_store *s, const char *device_id, const char *job_id, size_t limit,
                              ef_store_history_cb cb, void *arg, ef_status *st) EF_MUST_CHECK;

#endif
