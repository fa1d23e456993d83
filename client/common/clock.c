#include "espfleet/clock.h"

#include <time.h>

static int64_t ms_of(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ef_mono_ms(void) { return ms_of(CLOCK_MONOTONIC); }

int64_t ef_wall_ms(void) { return ms_of(CLOCK_REALTIME); }

int ef_ms_left(int64_t deadline_ms) {
  int64_t left = deadline_ms - ef_mono_ms();
  if (left < 0) return 0;
  return left > INT32_MAX ? INT32_MAX : (int)left;
}
