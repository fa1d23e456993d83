/**
 * @file clock.h
 * @brief Milliseconds clocks and deadlines, shared by every module that waits.
 */
#ifndef ESPFLEET_CLOCK_H
#define ESPFLEET_CLOCK_H

#include <stdint.h>

/** Monotonic milliseconds (for timeouts and rates; never jumps). */
int64_t ef_mono_ms(void);

/** Wall-clock Unix milliseconds (for timestamps in documents). */
int64_t ef_wall_ms(void);

/** Milliseconds left until monotonic @p deadline_ms: 0 when past, capped at INT32_MAX. */
int ef_ms_left(int64_t deadline_ms);

#endif
