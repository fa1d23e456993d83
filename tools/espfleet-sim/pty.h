/**
 * @file pty.h
 * @brief The simulator's end of the link: a pseudo-terminal published at a path.
 *
 * The host opens PATH (a symlink to the pty's slave side) as it would open
 * /dev/esps0. The simulator reads and writes the master side. It also keeps
 * its own descriptor on the slave open, so the host closing and re-opening
 * the node is invisible to the master (no hangup, nothing lost), just as
 * the ESP does not notice a host process restart. Closing the pty (a
 * simulated reboot) makes the host's descriptor fail with EIO/hangup.
 */
#ifndef ESPFLEET_SIM_PTY_H
#define ESPFLEET_SIM_PTY_H

#include <stdbool.h>

#include "espfleet/error.h"

typedef struct {
  int master;       /**< non-blocking; -1 when down */
  int slave;        /**< the simulator's own slave descriptor */
  int watch_fd;     /**< inotify descriptor that reports opens of the slave, or -1 */
  char slave_path[64];
  const char *link; /**< published path (caller-owned string) */
} sim_pty;

/**
 * Creates a pty in raw mode and publishes its slave at @p link (replacing
 * whatever symlink was there, atomically).
 * @return EF_OK; EF_ERR_IO when the pty or the link cannot be made.
 */
ef_err sim_pty_up(sim_pty *p, const char *link) EF_MUST_CHECK;

/** Removes the link and closes the pty (the host sees a hangup). */
void sim_pty_down(sim_pty *p);

/**
 * Consumes pending open notifications.
 * @return true when the host opened the slave since the last call.
 */
bool sim_pty_host_opened(sim_pty *p);

#endif
