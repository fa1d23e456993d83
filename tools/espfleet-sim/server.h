/**
 * @file server.h
 * @brief The simulated ESP: serves ESP-Hosted-FG control requests over the pty.
 *
 * The firmware's receive path and control task are modelled as they are in
 * its source (esp.h; docs/simulator.md): one 4096-byte reassembly buffer,
 * a receive task that stalls while it is full, one request handled at a
 * time in arrival order, answers only where the firmware answers. Costs
 * (erase, write speed, latency) are spent on the control task's clock, so a
 * slow "flash" delays the answers as a real one does while the receive path
 * goes on.
 */
#ifndef ESPFLEET_SIM_SERVER_H
#define ESPFLEET_SIM_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "espfleet/ctrl.h"

#include "faults.h"
#include "flash.h"

typedef struct {
  const char *link;         /**< path of the published symlink */
  uint16_t chip_id;         /**< the simulated chip; OTA end refuses other images */
  bool has_bluetooth;       /**< the chip has Bluetooth (enabling it can succeed) */
  uint64_t reboot_delay_ms; /**< OTA end success -> reboot */
  uint64_t down_ms;         /**< how long the link stays away during a reboot */
  uint64_t init_delay_ms;   /**< link up after a boot -> ESPInit event */
  uint64_t flash_kbps;      /**< write speed in KiB/s; 0 = unthrottled */
  uint64_t erase_ms_per_4k; /**< erase time per 4 KiB sector at OTA begin */
  uint64_t latency_us;      /**< extra time per OTA write request */
  uint64_t rx_poll_ms;      /**< the receive task's wait while the buffer is full */
  ef_fw_version release;    /**< ESP-Hosted release of the factory firmware and of
                                 images without a release record */
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
