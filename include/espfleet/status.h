/**
 * @file status.h
 * @brief The one way the library reports what went wrong.
 *
 * A function that can fail returns its ef_err and, when the caller passed a
 * non-NULL ef_status, fills it with three things: the code (the same value
 * it returns), whether trying again later can help, and a detail sentence
 * with the specifics (offsets, values, the server's answer). Callers branch
 * on the code and on `retryable`, never on the text; the text is for people
 * (logs, `error.detail` in state documents, CLI error lines).
 *
 * Passing NULL is always allowed: the caller then only gets the code.
 * The first failure wins: ef_status_fail does not overwrite a status that
 * already holds an error, so a cleanup path cannot bury the cause.
 *
 *   ef_err f(..., ef_status *st) {
 *     if (bad) return ef_status_fail(st, EF_ERR_IMAGE_BAD_MAGIC, "first byte is 0x%02x", b);
 *     ...
 *   }
 */
#ifndef ESPFLEET_STATUS_H
#define ESPFLEET_STATUS_H

#include <stdbool.h>
#include <stddef.h>

#include "espfleet/error.h"

#define EF_STATUS_DETAIL_MAX 256

typedef struct {
  ef_err code;                       /**< EF_OK when nothing failed */
  bool retryable;                    /**< trying again later may succeed */
  char detail[EF_STATUS_DETAIL_MAX]; /**< specifics for people, "" when none */
} ef_status;

/** A status that holds no error (also what a zeroed ef_status is). */
#define EF_STATUS_INIT \
  { EF_OK, false, "" }

/** Resets @p st to "no error" (NULL is fine). */
void ef_status_clear(ef_status *st);

/**
 * Records a failure in @p st unless it already holds one, and returns
 * @p code so that `return ef_status_fail(st, ...)` reads naturally.
 * `retryable` takes the code's default (ef_err_retryable); @p fmt may be
 * NULL for no detail.
 */
ef_err ef_status_fail(ef_status *st, ef_err code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/** Like ef_status_fail with an explicit @p retryable (a 5xx answer: yes; a 4xx: no). */
ef_err ef_status_fail_r(ef_status *st, ef_err code, bool retryable, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/**
 * Records the failure held by @p from in @p st, as ef_status_fail would
 * (first failure wins; nothing happens when @p from holds none or is NULL).
 * Lets a caller hand a status it got from a callee up to its own caller.
 * @return from's code (EF_OK for NULL).
 */
ef_err ef_status_copy(ef_status *st, const ef_status *from);

/**
 * Puts "@p what: " in front of the detail of a failed status, to name the
 * step that failed ("download: HTTP 404"). Does nothing for NULL or a
 * status without an error.
 */
void ef_status_prefix(ef_status *st, const char *what);

/**
 * Formats a status for one line: "name: detail", or "name" without a
 * detail. Returns @p buf.
 */
const char *ef_status_text(const ef_status *st, char *buf, size_t n);

#endif
