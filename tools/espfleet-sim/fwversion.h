/**
 * @file fwversion.h
 * @brief How the simulator turns an app description version into GetFwVersion's numbers.
 *
 * ESP-Hosted reports its version as five numbers (major1.major2.minor.
 * rev_patch1.rev_patch2); an application image carries a free-form string.
 * The simulator takes the first five runs of decimal digits in the string,
 * in order, as the five numbers; missing ones are 0 and a run too large for
 * 32 bits is capped at UINT32_MAX. Examples: "1.2.3" -> 1.2.3.0.0,
 * "v2.0.1-rc1" -> 2.0.1.1.0, "esp-idf: v4.4.7 38eeba213a" -> 4.4.7.38.213.
 */
#ifndef ESPFLEET_SIM_FWVERSION_H
#define ESPFLEET_SIM_FWVERSION_H

#include <stdint.h>

/** Fills @p out[0..4] from @p version as described above. */
void sim_version_numbers(const char *version, uint32_t out[5]);

/**
 * Parses "NAME-a.b.c.d.e" (the form the host driver prints) into a name and
 * five numbers. @return 0, or -1 when @p s does not have that form.
 */
int sim_fw_version_parse(const char *s, char *name, unsigned name_cap, uint32_t out[5]);

#endif
