/**
 * @file server.h
 * @brief The simulated ESP: serves ESP-Hosted-FG control requests over the pty.
 *
 * One loop handles everything in order, as the firmware's control task
 * does: requests are answered one at a time in arrival order, while the
 * rest wait in the pty (the firmware's queue). Throttling (erase time,
 * write speed, latency) is spent inside that loop, so a slow "flash" slows
 * the answers exactly as a real one does.
 */
#ifndef ESPFLEET_SIM_SERVER_H
#define ESPFLEET_SIM_SERVER_H

#include <stdint.h>

#include "faults.h"
#include "flash.h"

typedef struct {
  const char *link;         /**< path of the published symlink */
  uint16_t chip_id;         /**< the simulated chip; OTA end refuses other images */
  uint64_t reboot_delay_ms; /**< OTA end success -> reboot */
  uint64_t down_ms;         /**< how long the link stays away during a reboot */
  uint64_t init_delay_ms;   /**< host opened the link -> ESPInit event */
  uint64_t flash_kbps;      /**< write speed in KiB/s; 0 = unthrottled */
  uint64_t erase_ms_per_4k; /**< erase time per 4 KiB sector at OTA begin */
  uint64_t latency_us;      /**< extra time per OTA write request */
  char fw_name[32];         /**< GetFwVersion name ("FG") */
  uint32_t factory_version[5]; /**< GetFwVersion numbers when no OTA image runs */
  sim_faults faults;
} sim_config;

/**
 * Boots the simulated ESP from @p flash, publishes the link and serves
 * until SIGTERM or SIGINT (which the caller must have blocked; they are
 * received through a signalfd). Removes the link before returning.
 * @return EF_OK on a clean stop; EF_ERR_IO when the pty or the flash fails.
 */
ef_err sim_serve(sim_config *cfg, sim_flash *flash) EF_MUST_CHECK;

#endif
