#include "espfleet/clock.h"

#include <errno.h>
#include <time.h>

#define NS_PER_MS 1000000LL
#define NS_PER_S  1000000000LL

static int64_t ns_of(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

int64_t ef_mono_ms(void) { return ns_of(CLOCK_MONOTONIC) / NS_PER_MS; }

int64_t ef_mono_ns(void) { return ns_of(CLOCK_MONOTONIC); }

int64_t ef_wall_ms(void) { return ns_of(CLOCK_REALTIME) / NS_PER_MS; }

int ef_ms_left(int64_t deadline_ms) {
  int64_t left = deadline_ms - ef_mono_ms();
  if (left < 0) return 0;
  return left > INT32_MAX ? INT32_MAX : (int)left;
}

struct timespec ef_ns_timespec(int64_t ns) {
  if (ns < 0) ns = 0;
  return (struct timespec){.tv_sec = (time_t)(ns / NS_PER_S), .tv_nsec = (long)(ns % NS_PER_S)};
}

struct timespec ef_ms_timespec(int64_t ms) {
  if (ms < 0) ms = 0;
  return (struct timespec){.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
}

void ef_sleep_ms(int64_t ms) {
  if (ms <= 0) return;
  struct timespec ts = ef_ms_timespec(ms);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}
