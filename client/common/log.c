#include "espfleet/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ef_log_level max_level = EF_LOG_INFO;
static const char *log_ident = "espfleet";
static ef_log_handler handler;
static void *handler_arg;

void ef_log_set_handler(ef_log_handler fn, void *arg) {
  handler = fn;
  handler_arg = arg;
}

void ef_log_set_level(ef_log_level level) { max_level = level; }

void ef_log_set_ident(const char *ident) { log_ident = ident ? ident : "espfleet"; }

int ef_log_level_parse(const char *name) {
  static const char *names[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; i++)
    if (name && strcmp(name, names[i]) == 0) return i;
  return -1;
}

void ef_log(ef_log_level level, const char *fmt, ...) {
  /* syslog priorities: err=3, warning=4, info=6, debug=7 */
  static const int prio[] = {3, 4, 6, 7};
  if (level > max_level) return;
  char line[1024];
  int n;
  if (handler) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    handler(handler_arg, level, line);
    return;
  }
  if (getenv("JOURNAL_STREAM")) {
    n = snprintf(line, sizeof line, "<%d>", prio[level]);
  } else {
    static const char *words[] = {"error", "warning", "info", "debug"};
    n = snprintf(line, sizeof line, "%s: %s: ", log_ident, words[level]);
  }
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  /* one write per line keeps lines from different threads whole */
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}
