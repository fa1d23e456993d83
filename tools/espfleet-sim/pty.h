/**
 * @file pty.h
 * @brief The simulator's end of the link: a pseudo-terminal published at a path.
 *
 * The host opens PATH (a symlink to the pty's slave side) as it would open
 * /dev/esps0. The simulator reads and writes the master side. It also keeps
 * its own descriptor on the slave open, so the host closing and re-opening
 * the node does not hang up the master, just as the ESP does not notice a
 * host process restart. Closing the pty (a simulated reboot) makes the
 * host's descriptor fail with EIO/hangup.
 *
 * The driver's rules about openers (esp_serial.c: esp_serial_open,
 * esp_serial_data_received) are modelled as far as a pty allows: opens and
 * closes of the slave are counted through inotify, so the server can drop
 * what it sends while nobody has the node open; while one host has it open
 * the slave is in exclusive mode (TIOCEXCL), so a second open() by an
 * unprivileged program fails with EBUSY as on the driver. A process with
 * CAP_SYS_ADMIN (root) is exempt from TIOCEXCL: such a second opener gets
 * in and is only counted.
 */
#ifndef ESPFLEET_SIM_PTY_H
#define ESPFLEET_SIM_PTY_H

#include <stdbool.h>

#include "espfleet/error.h"

typedef struct {
  int master;     /**< non-blocking; -1 when down */
  int slave;      /**< the simulator's own slave descriptor */
  int watch_fd;   /**< inotify descriptor that reports opens of the slave, or -1 */
  int host_opens; /**< host descriptors open on the slave now (as far as inotify tells) */
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

/** What sim_pty_take_events saw. */
typedef struct {
  unsigned opened;     /**< opens since the last call */
  unsigned concurrent; /**< of those, opens while another host had it open */
} sim_pty_events;

/**
 * Consumes pending open/close notifications, updates host_opens and the
 * exclusive mode (set while a host has the node open).
 */
sim_pty_events sim_pty_take_events(sim_pty *p);

#endif
