#include "fwversion.h"

#include <ctype.h>
#include <string.h>

void sim_version_numbers(const char *version, uint32_t out[5]) {
  unsigned n = 0;
  memset(out, 0, 5 * sizeof out[0]);
  for (const char *p = version; *p && n < 5;) {
    if (!isdigit((unsigned char)*p)) {
      p++;
      continue;
    }
    uint64_t v = 0;
    for (; isdigit((unsigned char)*p); p++)
      if (v <= UINT32_MAX) v = v * 10 + (uint64_t)(*p - '0');
    out[n++] = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
  }
}

int sim_fw_version_parse(const char *s, char *name, unsigned name_cap, uint32_t out[5]) {
  const char *dash = strrchr(s, '-');
  const char *p;
  unsigned dots = 0;
  if (!dash || dash == s || (unsigned)(dash - s) >= name_cap) return -1;
  /* the number part must be exactly five dot-separated decimal numbers */
  for (p = dash + 1; *p; p++) {
    if (*p == '.') {
      if (p[-1] == '.' || p == dash + 1 || !isdigit((unsigned char)p[1])) return -1;
      dots++;
    } else if (!isdigit((unsigned char)*p)) {
      return -1;
    }
  }
  if (dots != 4 || p == dash + 1) return -1;
  memcpy(name, s, (size_t)(dash - s));
  name[dash - s] = '\0';
  sim_version_numbers(dash + 1, out);
  return 0;
}
