#include "espfleet/hex.h"

void ef_hex(const uint8_t *bytes, size_t len, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  out[2 * len] = '\0';
}

static int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

ef_err ef_hex_to_sha256(const char *hex, uint8_t out[32]) {
  if (!hex) return EF_ERR_INVALID_ARG;
  for (size_t i = 0; i < 32; i++) {
    int hi = nibble(hex[2 * i]);
    int lo = hi < 0 ? -1 : nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return EF_ERR_INVALID_ARG;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return hex[64] == '\0' ? EF_OK : EF_ERR_INVALID_ARG;
}
