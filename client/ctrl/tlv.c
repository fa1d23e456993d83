/* ESP-Hosted control-path TLV frames: encoder and stream reassembler. */
#include "espfleet/tlv.h"

#include <string.h>

/* Bytes of a frame before its endpoint name and between name and payload. */
#define HDR_EP   3 /* type 0x01 + u16le name length */
#define HDR_DATA 3 /* type 0x02 + u16le payload length */

static void put_le16(uint8_t *p, size_t v) {
  p[0] = (uint8_t)(v & 0xff);
  p[1] = (uint8_t)(v >> 8);
}

static size_t get_le16(const uint8_t *p) { return (size_t)p[0] | ((size_t)p[1] << 8); }

size_t ef_tlv_frame_size(const char *endpoint, size_t payload_len) {
  return HDR_EP + strlen(endpoint) + HDR_DATA + payload_len;
}

size_t ef_tlv_encode(const char *endpoint, const uint8_t *payload, size_t payload_len, uint8_t *out,
                     size_t out_cap) {
  size_t ep_len = strlen(endpoint);
  if (ep_len == 0 || ep_len > EF_TLV_MAX_EP || payload_len > EF_TLV_MAX_PAYLOAD) return 0;
  size_t total = HDR_EP + ep_len + HDR_DATA + payload_len;
  if (total > out_cap) return 0;
  uint8_t *p = out;
  *p++ = EF_TLV_TYPE_EP;
  put_le16(p, ep_len);
  p += 2;
  // NOLINTNEXTLINE(bugprone-not-null-terminated-result): length-prefixed bytes, no NUL on the wire
  memcpy(p, endpoint, ep_len);
  p += ep_len;
  *p++ = EF_TLV_TYPE_DATA;
  put_le16(p, payload_len);
  p += 2;
  /* Callers may serialize the payload in place behind the header (no copy
   * then); memmove keeps any other overlap safe. */
  if (payload_len && p != payload) memmove(p, payload, payload_len);
  return total;
}

void ef_tlv_reader_reset(ef_tlv_reader *r) {
  r->start = 0;
  r->len = 0;
}

size_t ef_tlv_reader_space(ef_tlv_reader *r) {
  size_t tail = sizeof(r->buf) - r->start - r->len;
  /* Compact only when the tail gets short, so small frames cost no memmove;
   * the last returned frame is never moved before the next reader call that
   * the caller makes after using it (space/feed come after next). */
  if (tail < EF_TLV_MAX_FRAME && r->start > 0) {
    memmove(r->buf, r->buf + r->start, r->len);
    r->start = 0;
    tail = sizeof(r->buf) - r->len;
  }
  return tail;
}

ef_err ef_tlv_reader_feed(ef_tlv_reader *r, const uint8_t *data, size_t len) {
  if (len > ef_tlv_reader_space(r)) return EF_ERR_INVALID_ARG;
  memcpy(r->buf + r->start + r->len, data, len);
  r->len += len;
  return EF_OK;
}

/* An endpoint name is printable ASCII; anything else means we are not at a
 * frame start, which lets garbage that happens to hold 0x01 be skipped early. */
static int name_plausible(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] < 0x21 || p[i] > 0x7e) return 0;
  return 1;
}

/*
 * Checks whether the held bytes can start a frame.
 * Returns -1 when they cannot (skip a byte), 0 when more bytes are needed,
 * or the total frame size when a whole frame is held.
 */
static long frame_at(const uint8_t *b, size_t len) {
  if (len < 1) return 0;
  if (b[0] != EF_TLV_TYPE_EP) return -1;
  if (len < HDR_EP) return 0;
  size_t ep_len = get_le16(b + 1);
  if (ep_len == 0 || ep_len > EF_TLV_MAX_EP) return -1;
  /* Judge the name on what has arrived so far so garbage is dropped early. */
  size_t have = len - HDR_EP < ep_len ? len - HDR_EP : ep_len;
  if (!name_plausible(b + HDR_EP, have)) return -1;
  if (len < HDR_EP + ep_len + 1) return 0;
  if (b[HDR_EP + ep_len] != EF_TLV_TYPE_DATA) return -1;
  if (len < HDR_EP + ep_len + HDR_DATA) return 0;
  size_t total = HDR_EP + ep_len + HDR_DATA + get_le16(b + HDR_EP + ep_len + 1);
  return len < total ? 0 : (long)total;
}

int ef_tlv_reader_next(ef_tlv_reader *r, ef_tlv_frame *f) {
  for (;;) {
    const uint8_t *b = r->buf + r->start;
    long n = frame_at(b, r->len);
    if (n == 0) {
      if (r->len == 0) r->start = 0; /* empty: reuse the buffer from the front */
      return 0;
    }
    if (n < 0) {
      r->start++;
      r->len--;
      r->dropped++;
      continue;
    }
    size_t ep_len = get_le16(b + 1);
    memcpy(f->endpoint, b + HDR_EP, ep_len);
    f->endpoint[ep_len] = '\0';
    f->payload = b + HDR_EP + ep_len + HDR_DATA;
    f->payload_len = (size_t)n - HDR_EP - ep_len - HDR_DATA;
    r->start += (size_t)n;
    r->len -= (size_t)n;
    return 1;
  }
}
