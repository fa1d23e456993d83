/**
 * @file driver.h
 * @brief The ESP-Hosted release the host's Linux driver accepts.
 *
 * ESP-Hosted's Linux driver checks the firmware at every ESP boot
 * (check_esp_version in host/linux/host_driver/esp32/esp_fw_verify.c): it
 * logs "Driver supports Firmware version: <its release>" and, by default,
 * refuses an ESP whose release string differs. Installing such a release
 * over the control path cuts the host off from its ESP after the reboot,
 * with no way back over that path. espfleetd therefore learns the driver's
 * release (esp.driver_release, else the kernel log) and the job policy
 * (ef_job_check_driver in job.h) refuses jobs that would install another.
 *
 * Release strings look like "FG-1.0.0.0.0": the firmware's project name, a
 * dash and five dot-separated numbers (esp_fw_version.h: major1, major2,
 * minor, rev_patch1, rev_patch2), as both the driver and GetFwVersion
 * format them.
 */
#ifndef ESPFLEET_DRIVER_H
#define ESPFLEET_DRIVER_H

#include <stdbool.h>
#include <stddef.h>

#include "espfleet/error.h"
#include "espfleet/status.h"

#define EF_FW_RELEASE_MAX            63 /**< characters in a release string */
#define EF_DRIVER_DEFAULT_KERNEL_LOG "/dev/kmsg"

/** The text the driver logs before its release (esp_fw_verify.c). */
#define EF_DRIVER_LOG_MARKER "Driver supports Firmware version: "

/** Where the daemon's knowledge of the driver release comes from. */
typedef enum {
  EF_DRIVER_SOURCE_UNKNOWN = 0, /**< neither configured nor found in the kernel log */
  EF_DRIVER_SOURCE_CONFIG,      /**< esp.driver_release */
  EF_DRIVER_SOURCE_KERNEL_LOG,  /**< the driver's line in esp.kernel_log */
} ef_driver_source;

/** "unknown", "config" or "kernel_log", as in the state document. */
const char *ef_driver_source_name(ef_driver_source s);

/**
 * True when @p s is a release string: 1-31 characters of [A-Za-z0-9_], a
 * dash, then five decimal numbers (each fitting 32 bits) separated by dots,
 * and nothing else; at most EF_FW_RELEASE_MAX characters.
 */
bool ef_fw_release_valid(const char *s);

/**
 * Finds the driver's release in one kernel log record or line (a /dev/kmsg
 * record "6,812,4051,-;esp32_spi: check_esp_version: Driver supports
 * Firmware version: FG-1.0.0.0.0" or a dmesg line).
 * @param line  the text, need not be NUL-terminated
 * @param len   its length
 * @param out   receives the release when the line has one
 * @param n     size of @p out (EF_FW_RELEASE_MAX + 1 is enough)
 * @return true when the line carries EF_DRIVER_LOG_MARKER followed by a
 *         valid release (ef_fw_release_valid); @p out is untouched otherwise.
 */
bool ef_driver_release_from_line(const char *line, size_t len, char *out, size_t n);

/**
 * Reads the kernel log at @p path and finds the last driver release line.
 * The file is opened non-blocking and read record by record until the end
 * of what is there (EAGAIN on /dev/kmsg, end of file otherwise), so it never
 * waits for new messages; records overwritten while reading are skipped, and
 * at most a few MiB are read, so a path that never ends cannot hold the
 * caller either. Plain text files (a saved dmesg) work too.
 * @param out    receives the release of the last matching line
 * @param n      size of @p out
 * @param found  set to whether a line was found
 * @param st     why @p path could not be opened or read ("cannot open
 *               /dev/kmsg: Operation not permitted"); may be NULL
 * @return EF_OK (with or without a line); EF_ERR_IO when @p path cannot be
 *         opened or read.
 */
ef_err ef_driver_release_read_log(const char *path, char *out, size_t n, bool *found,
                                  ef_status *st) EF_MUST_CHECK;

#endif
