/**
 * @file ctrl_msg.h
 * @brief Internal: build, serialize and parse ESP-Hosted CtrlMsg messages.
 *
 * The one encoder shared by the control client (ctrl.c) and the ESP
 * simulator (tools/espfleet-sim), so both sides speak exactly the same
 * bytes. Wraps the protobuf-c code generated from espfleet_ctrl.proto
 * (types Espfleet__*, header "espfleet_ctrl.pb-c.h").
 *
 * Building a message never allocates: ef_ctrl_msg keeps the payload struct
 * next to the CtrlMsg that points at it. Typical use:
 *
 *   ef_ctrl_msg m;
 *   if (ef_ctrl_msg_init(&m, EF_CTRL_REQ_OTA_WRITE + EF_CTRL_RESP_OFFSET, uid) == EF_OK) {
 *     ef_ctrl_msg_set_resp(&m, 0);
 *     size_t n = ef_ctrl_msg_frame(&m.msg, EF_TLV_EP_RESP, buf, sizeof buf);
 *     ... write n bytes ...
 *   }
 *
 * Parsing allocates (protobuf-c); free with ef_ctrl_msg_free.
 */
#ifndef ESPFLEET_CTRL_MSG_H
#define ESPFLEET_CTRL_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "espfleet/ctrl.h" /* EF_CTRL_* message ids */
#include "espfleet/error.h"
#include "espfleet_ctrl.pb-c.h"

/** A CtrlMsg plus storage for its payload member. Do not copy once initialised. */
typedef struct {
  Espfleet__CtrlMsg msg;
  /** The payload member that msg's oneof points at; fill the fields of the
   *  member named after the message (e.g. body.req_ota_write.ota_data). */
  union {
    Espfleet__ReqOtaBegin req_ota_begin;
    Espfleet__ReqOtaWrite req_ota_write;
    Espfleet__ReqOtaEnd req_ota_end;
    Espfleet__ReqConfigHeartbeat req_config_heartbeat;
    Espfleet__ReqEnableDisable req_enable_disable;
    Espfleet__ReqGetFwVersion req_get_fw_version;
    Espfleet__RespOtaBegin resp_ota_begin;
    Espfleet__RespOtaWrite resp_ota_write;
    Espfleet__RespOtaEnd resp_ota_end;
    Espfleet__RespConfigHeartbeat resp_config_heartbeat;
    Espfleet__RespEnableDisable resp_enable_disable;
    Espfleet__RespGetFwVersion resp_get_fw_version;
    Espfleet__EventEspInit event_esp_init;
    Espfleet__EventHeartbeat event_heartbeat;
  } body;
} ef_ctrl_msg;

/**
 * Initialises @p m as the message @p msg_id: msg_type follows from the id
 * (1xx request, 2xx response, 3xx event), uid is set, req_resp_type is 0,
 * and the oneof case is @p msg_id pointing at the zeroed matching member of
 * m->body.
 * @param msg_id one of the ids listed in espfleet_ctrl.proto's oneof
 *        (116-118, 121-123, 216-218, 221-223, 301, 302).
 * @return EF_OK; EF_ERR_INVALID_ARG for an id without a payload type here.
 */
ef_err ef_ctrl_msg_init(ef_ctrl_msg *m, int msg_id, int32_t uid) EF_MUST_CHECK;

/**
 * Sets the `resp` field (field 1) of a response initialised by ef_ctrl_msg_init.
 * @return EF_OK; EF_ERR_INVALID_ARG when @p m is not one of the responses.
 */
ef_err ef_ctrl_msg_set_resp(ef_ctrl_msg *m, int32_t resp) EF_MUST_CHECK;

/**
 * Serializes @p msg into one complete TLV frame on @p endpoint in @p out
 * (the protobuf bytes are packed in place behind the frame header: no
 * intermediate buffer, no allocation).
 * @param endpoint EF_TLV_EP_RESP for requests and responses, EF_TLV_EP_EVENT for events.
 * @return the frame length, or 0 when @p cap is too small or the serialized
 *         message exceeds EF_TLV_MAX_PAYLOAD.
 */
size_t ef_ctrl_msg_frame(const Espfleet__CtrlMsg *msg, const char *endpoint, uint8_t *out, size_t cap);

/**
 * Parses one received payload (a frame's payload).
 * @param out receives the message; free it with ef_ctrl_msg_free.
 * @return EF_OK; EF_ERR_ESP_PROTOCOL when the bytes are not a CtrlMsg or a
 *         payload member is set whose field number differs from msg_id
 *         (protobuf-c reports an allocation failure the same way).
 *         A message of an id without a payload type here (e.g. 303) parses
 *         with payload_case NOT_SET.
 */
ef_err ef_ctrl_msg_parse(const uint8_t *payload, size_t len, Espfleet__CtrlMsg **out) EF_MUST_CHECK;

/** Frees a message from ef_ctrl_msg_parse (NULL is fine). */
void ef_ctrl_msg_free(Espfleet__CtrlMsg *msg);

/**
 * The `resp` field of a parsed response (216-218, 221-223).
 * @return EF_OK; EF_ERR_ESP_PROTOCOL when @p msg is not one of those
 *         responses or carries no payload.
 */
ef_err ef_ctrl_msg_resp(const Espfleet__CtrlMsg *msg, int32_t *resp) EF_MUST_CHECK;

/** Short name of a msg id for logs ("Req_OTAWrite"), "unknown" otherwise. */
const char *ef_ctrl_msg_name(int msg_id);

#endif
