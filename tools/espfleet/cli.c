/* Error line, usage errors and number parsing shared by every subcommand. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cli_fail(ef_err err, const char *detail) {
  if (detail && *detail)
    fprintf(stderr, "espfleet: error: %s: %s (%s)\n", ef_err_name(err), ef_err_message(err), detail);
  else
    fprintf(stderr, "espfleet: error: %s: %s\n", ef_err_name(err), ef_err_message(err));
  return CLI_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "espfleet%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'espfleet %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
  return CLI_USAGE;
}

bool cli_parse_size(const char *s, uint64_t *out) {
  char *end = NULL;
  if (!s || !isdigit((unsigned char)*s)) return false;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0) return false;
  unsigned shift = 0;
  switch (toupper((unsigned char)*end)) {
  case 'K':
    shift = 10;
    end++;
    break;
  case 'M':
    shift = 20;
    end++;
    break;
  case 'G':
    shift = 30;
    end++;
    break;
  default: break;
  }
  if (shift && strcasecmp(end, "iB") == 0)
    end += 2;
  else if (strcasecmp(end, "B") == 0)
    end += 1;
  if (*end != '\0') return false;
  if (shift && v > (~0ULL >> shift)) return false;
  *out = (uint64_t)v << shift;
  return true;
}

bool cli_parse_long(const char *s, long min, long max, long *out) {
  char *end = NULL;
  if (!s || !*s) return false;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

bool cli_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return true;
  }
  return false;
}
