/* Dotted version comparison used by the downgrade policy. */
#include "espfleet/image.h"

#include <ctype.h>
#include <string.h>

/* One dot-separated part: its leading number and the text after it. */
typedef struct {
  unsigned long long num;
  const char *rest;
  size_t rest_len;
} part;

/* Reads the part at *p and advances *p past it and its dot. */
static part next_part(const char **p) {
  part r = {0, "", 0};
  const char *s = *p;
  while (isdigit((unsigned char)*s)) {
    unsigned long long d = (unsigned long long)(*s - '0');
    /* Saturate: a 30-digit part is still "very large", never wraps to small. */
    r.num = r.num > (~0ULL - d) / 10 ? ~0ULL : r.num * 10 + d;
    s++;
  }
  r.rest = s;
  while (*s && *s != '.') s++;
  r.rest_len = (size_t)(s - r.rest);
  if (*s == '.') s++;
  *p = s;
  return r;
}

static const char *skip_v(const char *s) {
  if ((s[0] == 'v' || s[0] == 'V') && isdigit((unsigned char)s[1])) return s + 1;
  return s;
}

static int compare_rest(const part *a, const part *b) {
  /* "1.0.0-rc1" comes before "1.0.0": a pre-release suffix sorts first. */
  if (a->rest_len == 0 && b->rest_len == 0) return 0;
  if (a->rest_len == 0) return b->rest[0] == '-' || b->rest[0] == '~' ? 1 : -1;
  if (b->rest_len == 0) return a->rest[0] == '-' || a->rest[0] == '~' ? -1 : 1;
  size_t n = a->rest_len < b->rest_len ? a->rest_len : b->rest_len;
  int c = memcmp(a->rest, b->rest, n);
  if (c != 0) return c;
  return a->rest_len < b->rest_len ? -1 : a->rest_len > b->rest_len ? 1 : 0;
}

int ef_version_compare(const char *a, const char *b) {
  const char *pa = skip_v(a ? a : "");
  const char *pb = skip_v(b ? b : "");
  while (*pa || *pb) {
    part x = next_part(&pa);
    part y = next_part(&pb);
    if (x.num != y.num) return x.num < y.num ? -1 : 1;
    int c = compare_rest(&x, &y);
    if (c != 0) return c;
  }
  return 0;
}
