/* Version comparison: two strings from the input; the order is
 * antisymmetric and reflexive, whatever the text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/image.h"

static int sign(int x) { return (x > 0) - (x < 0); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *sep = memchr(data, 0, size);
  size_t la = sep ? (size_t)(sep - data) : size;
  char *a = strndup((const char *)data, la);
  char *b = sep ? strndup((const char *)sep + 1, size - la - 1) : strdup("");
  if (!a || !b) abort();
  if (sign(ef_version_compare(a, b)) != -sign(ef_version_compare(b, a))) abort();
  if (ef_version_compare(a, a) != 0 || ef_version_compare(b, b) != 0) abort();
  free(a);
  free(b);
  return 0;
}
