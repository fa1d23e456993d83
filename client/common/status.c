/* ef_status: code, retryable, detail; see include/espfleet/status.h. */
#include "espfleet/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void ef_status_clear(ef_status *st) {
  if (!st) return;
  st->code = EF_OK;
  st->retryable = false;
  st->detail[0] = '\0';
}

__attribute__((format(printf, 4, 0))) static ef_err vfail(ef_status *st, ef_err code, bool retryable,
                                                          const char *fmt, va_list ap) {
  /* the first failure is the cause; later ones are its consequences */
  if (!st || st->code != EF_OK || code == EF_OK) return code;
  st->code = code;
  st->retryable = retryable;
  st->detail[0] = '\0';
  if (fmt) vsnprintf(st->detail, sizeof st->detail, fmt, ap);
  return code;
}

ef_err ef_status_fail(ef_status *st, ef_err code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ef_err err = vfail(st, code, ef_err_retryable(code), fmt, ap);
  va_end(ap);
  return err;
}

ef_err ef_status_fail_r(ef_status *st, ef_err code, bool retryable, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ef_err err = vfail(st, code, retryable, fmt, ap);
  va_end(ap);
  return err;
}

ef_err ef_status_copy(ef_status *st, const ef_status *from) {
  if (!from) return EF_OK;
  return ef_status_fail_r(st, from->code, from->retryable, "%s", from->detail);
}

void ef_status_prefix(ef_status *st, const char *what) {
  char tmp[EF_STATUS_DETAIL_MAX];
  if (!st || st->code == EF_OK || !what) return;
  /* a detail too long for the prefix is cut at the end, where it matters least */
  if (snprintf(tmp, sizeof tmp, "%s%s%s", what, st->detail[0] ? ": " : "", st->detail) < 0) return;
  memcpy(st->detail, tmp, sizeof tmp);
}

const char *ef_status_text(const ef_status *st, char *buf, size_t n) {
  if (!buf || n == 0) return buf;
  if (!st) {
    snprintf(buf, n, "%s", ef_err_name(EF_OK));
    return buf;
  }
  if (snprintf(buf, n, "%s%s%s", ef_err_name(st->code), st->detail[0] ? ": " : "", st->detail) < 0)
    buf[0] = '\0';
  return buf;
}
