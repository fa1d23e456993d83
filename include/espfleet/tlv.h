/**
 * @file tlv.h
 * @brief ESP-Hosted control-path TLV frames: encoding and stream reassembly.
 *
 * A frame is: 0x01, u16le name length, endpoint name ("ctrlResp" or
 * "ctrlEvnt"), 0x02, u16le payload length, payload (one serialized CtrlMsg).
 * The device node is a byte stream, so a read may hold part of a frame or
 * several frames; ef_tlv_reader reassembles them. Pure code, no I/O.
 */
#ifndef ESPFLEET_TLV_H
#define ESPFLEET_TLV_H

#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"

#define EF_TLV_EP_RESP     "ctrlResp" /**< requests and responses use this endpoint */
#define EF_TLV_EP_EVENT    "ctrlEvnt" /**< unsolicited events from the ESP */
#define EF_TLV_TYPE_EP     0x01
#define EF_TLV_TYPE_DATA   0x02
#define EF_TLV_MAX_EP      32    /**< longest endpoint name accepted */
#define EF_TLV_MAX_PAYLOAD 65535 /**< the length field is 16 bits */
/** Largest encoded frame: two type bytes, two length fields, name, payload. */
#define EF_TLV_MAX_FRAME (6 + EF_TLV_MAX_EP + EF_TLV_MAX_PAYLOAD)

/** Bytes needed to encode a frame with this endpoint and payload length. */
size_t ef_tlv_frame_size(const char *endpoint, size_t payload_len);

/**
 * Encodes one frame into @p out.
 * @return bytes written, or 0 when @p out_cap is too small, the endpoint is
 *         longer than EF_TLV_MAX_EP or the payload longer than EF_TLV_MAX_PAYLOAD.
 */
size_t ef_tlv_encode(const char *endpoint, const uint8_t *payload, size_t payload_len, uint8_t *out,
                     size_t out_cap);

/** One reassembled frame; pointers stay valid until the next reader call. */
typedef struct {
  char endpoint[EF_TLV_MAX_EP + 1];
  const uint8_t *payload;
  size_t payload_len;
} ef_tlv_frame;

/**
 * Stream reassembler. Holds at most one incomplete frame plus what was fed
 * since; bytes that cannot start a frame (bad type byte, impossible length)
 * are skipped one at a time until a plausible frame start, and counted in
 * @c dropped, so a garbled stream resynchronises instead of failing.
 */
typedef struct {
  uint8_t buf[2 * EF_TLV_MAX_FRAME];
  size_t start; /* first unconsumed byte */
  size_t len;   /* bytes held from start */
  uint64_t dropped;
} ef_tlv_reader;

/** Empties the reader (drops any partial frame). */
void ef_tlv_reader_reset(ef_tlv_reader *r);

/**
 * Space the reader can take now; feed at most this many bytes.
 * Always at least EF_TLV_MAX_FRAME after ef_tlv_reader_next returned 0.
 */
size_t ef_tlv_reader_space(ef_tlv_reader *r);

/**
 * Appends received bytes.
 * @return EF_OK, or EF_ERR_INVALID_ARG when @p len exceeds ef_tlv_reader_space.
 */
ef_err ef_tlv_reader_feed(ef_tlv_reader *r, const uint8_t *data, size_t len) EF_MUST_CHECK;

/**
 * Extracts the next complete frame.
 * @return 1 and fills @p f when a frame is ready; 0 when more bytes are needed.
 */
int ef_tlv_reader_next(ef_tlv_reader *r, ef_tlv_frame *f);

#endif
