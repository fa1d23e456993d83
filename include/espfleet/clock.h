/**
 * @file clock.h
 * @brief Clocks, deadlines and sleeps, shared by every module that waits.
 *
 * Times are integers (milliseconds, or nanoseconds where a simulator needs
 * them); the struct timespec that POSIX calls want is made here and nowhere
 * else, so no caller carries nanoseconds over into seconds by hand.
 */
#ifndef ESPFLEET_CLOCK_H
#define ESPFLEET_CLOCK_H

#include <stdint.h>
#include <time.h>

/** Monotonic milliseconds (for timeouts and rates; never jumps). */
int64_t ef_mono_ms(void);

/** Monotonic nanoseconds, on the same clock as ef_mono_ms. */
int64_t ef_mono_ns(void);

/** Wall-clock Unix milliseconds (for timestamps in documents). */
int64_t ef_wall_ms(void);

/** Milliseconds left until monotonic @p deadline_ms: 0 when past, capped at INT32_MAX. */
int ef_ms_left(int64_t deadline_ms);

/**
 * @p ms milliseconds as a struct timespec: a duration, or a point in time of
 * the clock @p ms was read from. pthread_cond_timedwait wants the point of
 * the condition variable's clock: ef_ms_timespec(ef_mono_ms() + wait) for a
 * CLOCK_MONOTONIC one, ef_ms_timespec(ef_wall_ms() + wait) for the default.
 * Negative values count as 0.
 */
struct timespec ef_ms_timespec(int64_t ms);

/** Like ef_ms_timespec, for nanoseconds. */
struct timespec ef_ns_timespec(int64_t ns);

/** Sleeps @p ms milliseconds (nothing when <= 0), resuming after a signal. */
void ef_sleep_ms(int64_t ms);

#endif
