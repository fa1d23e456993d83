/* Text for logs, state details and terminals (text.h). */
#include "espfleet/text.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The output buffer: pieces are added whole or not at all. */
typedef struct {
  char *out;
  size_t n, used;
  bool full;
} sink;

static void put(sink *s, const char *p, size_t len) {
  if (s->full || s->n == 0 || s->used + len >= s->n) {
    s->full = true;
    return;
  }
  memcpy(s->out + s->used, p, len);
  s->used += len;
  s->out[s->used] = '\0';
}

/* Length of the UTF-8 sequence at @p p (at most @p left bytes) and its code
 * point, or 0 when it is not valid UTF-8 (overlong forms, surrogates and
 * values above U+10FFFF included). */
static size_t utf8_char(const unsigned char *p, size_t left, uint32_t *cp) {
  size_t len;
  uint32_t c, min;
  if (p[0] < 0x80) {
    *cp = p[0];
    return 1;
  } else if ((p[0] & 0xE0) == 0xC0) {
    len = 2, c = p[0] & 0x1F, min = 0x80;
  } else if ((p[0] & 0xF0) == 0xE0) {
    len = 3, c = p[0] & 0x0F, min = 0x800;
  } else if ((p[0] & 0xF8) == 0xF0) {
    len = 4, c = p[0] & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (left < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    c = c << 6 | (p[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  *cp = c;
  return len;
}

/* Characters that move or hide text on a terminal without being seen. */
static bool invisible_control(uint32_t c) {
  return (c >= 0x80 && c <= 0x9F) || c == 0x200E || c == 0x200F || (c >= 0x202A && c <= 0x202E) ||
         (c >= 0x2066 && c <= 0x2069);
}

/* Adds @p len bytes of @p in, escaped. */
static void put_escaped(sink *s, const char *in, size_t len) {
  const unsigned char *p = (const unsigned char *)in;
  char esc[8];
  for (size_t i = 0; i < len && !s->full;) {
    uint32_t c = 0;
    size_t k = utf8_char(p + i, len - i, &c);
    if (k == 0 || c < 0x20 || c == 0x7F) {
      snprintf(esc, sizeof esc, "\\x%02x", p[i]);
      put(s, esc, 4);
      i++;
    } else if (invisible_control(c)) {
      snprintf(esc, sizeof esc, "\\u%04x", (unsigned)c);
      put(s, esc, 6);
      i += k;
    } else if (c == '\\') {
      put(s, "\\\\", 2);
      i++;
    } else {
      put(s, in + i, k);
      i += k;
    }
  }
}

void ef_text_escape(const char *in, char *out, size_t n) {
  sink s = {out, n, 0, false};
  if (n) out[0] = '\0';
  if (in) put_escaped(&s, in, strlen(in));
}

/* Length of a URL scheme ending in "://" at the start of @p url, or 0. */
static size_t scheme_len(const char *url) {
  size_t i = 0;
  while ((url[i] >= 'a' && url[i] <= 'z') || (url[i] >= 'A' && url[i] <= 'Z') ||
         (i > 0 && ((url[i] >= '0' && url[i] <= '9') || url[i] == '+' || url[i] == '-' || url[i] == '.')))
    i++;
  return i > 0 && strncmp(url + i, "://", 3) == 0 ? i + 3 : 0;
}

void ef_url_redact(const char *url, ef_url_keep keep, char *out, size_t n) {
  sink s = {out, n, 0, false};
  if (n) out[0] = '\0';
  if (!url) return;
  const char *auth = url + scheme_len(url);
  const char *auth_end = auth + strcspn(auth, "/?#");
  const char *host = auth;
  /* user information ends at the last '@' of the authority */
  for (const char *p = auth; p < auth_end; p++)
    if (*p == '@') host = p + 1;
  put_escaped(&s, url, (size_t)(auth - url));
  if (host != auth && keep == EF_URL_PATH) put(&s, "\xE2\x80\xA6@", 4); /* "…@" */
  put_escaped(&s, host, (size_t)(auth_end - host));
  if (keep == EF_URL_ORIGIN) return;
  const char *path_end = auth_end + strcspn(auth_end, "?#");
  put_escaped(&s, auth_end, (size_t)(path_end - auth_end));
  if (*path_end == '?')
    put(&s, "?\xE2\x80\xA6", 4);
  else if (*path_end == '#')
    put(&s, "#\xE2\x80\xA6", 4);
}
