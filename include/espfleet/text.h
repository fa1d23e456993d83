/**
 * @file text.h
 * @brief Text for logs, state details and terminals: URLs without their
 *        secrets, other programs' strings without control characters.
 *
 * Everything espfleet logs or reports about a job URL goes through
 * ef_url_redact, and everything the console prints that a device sent goes
 * through ef_text_escape: one place each, so a new log line cannot forget.
 */
#ifndef ESPFLEET_TEXT_H
#define ESPFLEET_TEXT_H

#include <stddef.h>

/** What ef_url_redact keeps of a URL. */
typedef enum {
  /** scheme://host[:port]/path: user information becomes "…@", a query
   *  "?…", a fragment "#…" (`https://user:s3cret@fw.example.com/a.bin?token=x`
   *  reads `https://…@fw.example.com/a.bin?…`) */
  EF_URL_PATH,
  /** scheme://host[:port] only (`https://fw.example.com`) */
  EF_URL_ORIGIN,
} ef_url_keep;

/**
 * Writes @p url as it may be logged or put in a state document: without
 * credentials or query (tokens, signatures of pre-signed URLs), and with
 * control characters escaped as ef_text_escape does. Never fails: text that
 * is not a URL is treated as an authority followed by a path. Cut to fit
 * @p n bytes (never inside a character or an escape); @p out is always
 * terminated when @p n > 0.
 */
void ef_url_redact(const char *url, ef_url_keep keep, char *out, size_t n);

/**
 * Copies @p in to @p out so that a terminal shows it as text: C0 controls,
 * DEL and bytes that are not UTF-8 become `\xNN`, C1 controls (U+0080 to
 * U+009F) and the invisible direction marks and overrides (U+200E, U+200F,
 * U+202A to U+202E, U+2066 to U+2069) become `\uNNNN`, and a backslash
 * becomes `\\`, so that an escape reads unambiguously. Everything else,
 * printable UTF-8 included, is copied. Cut to fit @p n bytes as
 * ef_url_redact. @p in NULL reads as "".
 */
void ef_text_escape(const char *in, char *out, size_t n);

#endif
