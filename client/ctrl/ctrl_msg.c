/* CtrlMsg build/serialize/parse helpers shared by the client and the simulator. */
#include "ctrl_msg.h"

#include "espfleet/tlv.h"

#include <string.h>

ef_err ef_ctrl_msg_init(ef_ctrl_msg *m, int msg_id, int32_t uid) {
  Espfleet__CtrlMsg *msg = &m->msg;
  espfleet__ctrl_msg__init(msg);
  switch (msg_id) {
    /* Each case initialises the member (descriptor and defaults) and points
   * the oneof at it; the oneof member's field number is the msg id. */
#define EF_MEMBER(id, field, fn)            \
  case id:                                  \
    espfleet__##fn##__init(&m->body.field); \
    msg->field = &m->body.field;            \
    break;
    EF_MEMBER(116, req_ota_begin, req_ota_begin)
    EF_MEMBER(117, req_ota_write, req_ota_write)
    EF_MEMBER(118, req_ota_end, req_ota_end)
    EF_MEMBER(121, req_config_heartbeat, req_config_heartbeat)
    EF_MEMBER(122, req_enable_disable, req_enable_disable)
    EF_MEMBER(123, req_get_fw_version, req_get_fw_version)
    EF_MEMBER(216, resp_ota_begin, resp_ota_begin)
    EF_MEMBER(217, resp_ota_write, resp_ota_write)
    EF_MEMBER(218, resp_ota_end, resp_ota_end)
    EF_MEMBER(221, resp_config_heartbeat, resp_config_heartbeat)
    EF_MEMBER(222, resp_enable_disable, resp_enable_disable)
    EF_MEMBER(223, resp_get_fw_version, resp_get_fw_version)
    EF_MEMBER(301, event_esp_init, event_esp_init)
    EF_MEMBER(302, event_heartbeat, event_heartbeat)
#undef EF_MEMBER
  default: return EF_ERR_INVALID_ARG;
  }
  msg->payload_case = (Espfleet__CtrlMsg__PayloadCase)msg_id;
  msg->msg_id = (Espfleet__CtrlMsgId)msg_id;
  msg->uid = uid;
  if (msg_id >= 200) {
    /* The firmware marks what it sends (slave_control.c: data_transfer_handler,
     * ctrl_notify_handler). */
    msg->msg_type =
        msg_id >= 300 ? ESPFLEET__CTRL_MSG_TYPE__MSG_TYPE_EVENT : ESPFLEET__CTRL_MSG_TYPE__MSG_TYPE_RESP;
  } else if (msg_id == 116 || msg_id == 118 || msg_id == 123) {
    /* Requests are encoded as ESP-Hosted's host library does (ctrl_core.c,
     * ctrl_app_send_req): msg_type is left unset, so it is absent on the
     * wire (the firmware never reads it), and a request without fields has
     * no payload member at all. Our frames are then byte for byte those of
     * the reference host, which tests/unit/test_proto.c checks. */
    msg->payload_case = ESPFLEET__CTRL_MSG__PAYLOAD__NOT_SET;
    msg->req_ota_begin = NULL;
  }
  return EF_OK;
}

/* Every response this module knows has `int32 resp = 1`; this finds it. */
static int32_t *resp_field(Espfleet__CtrlMsg *msg) {
  switch (msg->payload_case) {
  case ESPFLEET__CTRL_MSG__PAYLOAD_RESP_OTA_BEGIN:
    return msg->resp_ota_begin ? &msg->resp_ota_begin->resp : NULL;
  case ESPFLEET__CTRL_MSG__PAYLOAD_RESP_OTA_WRITE:
    return msg->resp_ota_write ? &msg->resp_ota_write->resp : NULL;
  case ESPFLEET__CTRL_MSG__PAYLOAD_RESP_OTA_END: return msg->resp_ota_end ? &msg->resp_ota_end->resp : NULL;
  case ESPFLEET__CTRL_MSG__PAYLOAD_RESP_CONFIG_HEARTBEAT:
    return msg->resp_config_heartbeat ? &msg->resp_config_heartbeat->resp : NULL;
  case ESPFLEET__CTRL_MSG__PAYLOAD_RESP_ENABLE_DISABLE:
    return msg->resp_enable_disable ? &msg->resp_enable_disable->resp : NULL;
  case ESPFLEET__CTRL_MSG__PAYLOAD_RESP_GET_FW_VERSION:
    return msg->resp_get_fw_version ? &msg->resp_get_fw_version->resp : NULL;
  default: return NULL;
  }
}

ef_err ef_ctrl_msg_set_resp(ef_ctrl_msg *m, int32_t resp) {
  int32_t *p = resp_field(&m->msg);
  if (!p) return EF_ERR_INVALID_ARG;
  *p = resp;
  return EF_OK;
}

size_t ef_ctrl_msg_frame(const Espfleet__CtrlMsg *msg, const char *endpoint, uint8_t *out, size_t cap) {
  size_t plen = espfleet__ctrl_msg__get_packed_size(msg);
  size_t hdr = ef_tlv_frame_size(endpoint, 0);
  if (plen > EF_TLV_MAX_PAYLOAD || hdr + plen > cap) return 0;
  /* Pack where the payload goes, then let the encoder write the header in
   * front of it; it sees payload == destination and copies nothing. */
  size_t packed = espfleet__ctrl_msg__pack(msg, out + hdr);
  if (packed != plen) return 0;
  return ef_tlv_encode(endpoint, out + hdr, plen, out, cap);
}

ef_err ef_ctrl_msg_parse(const uint8_t *payload, size_t len, Espfleet__CtrlMsg **out) {
  *out = espfleet__ctrl_msg__unpack(NULL, len, payload);
  if (!*out) return EF_ERR_ESP_PROTOCOL;
  Espfleet__CtrlMsg *m = *out;
  if (m->payload_case != ESPFLEET__CTRL_MSG__PAYLOAD__NOT_SET && (int)m->payload_case != (int)m->msg_id) {
    espfleet__ctrl_msg__free_unpacked(m, NULL);
    *out = NULL;
    return EF_ERR_ESP_PROTOCOL;
  }
  return EF_OK;
}

void ef_ctrl_msg_free(Espfleet__CtrlMsg *msg) {
  if (msg) espfleet__ctrl_msg__free_unpacked(msg, NULL);
}

ef_err ef_ctrl_msg_resp(const Espfleet__CtrlMsg *msg, int32_t *resp) {
  /* resp_field only reads through msg; the cast keeps one lookup table. */
  const int32_t *p = resp_field((Espfleet__CtrlMsg *)msg);
  if (!p) return EF_ERR_ESP_PROTOCOL;
  *resp = *p;
  return EF_OK;
}

const char *ef_ctrl_msg_name(int msg_id) {
  switch (msg_id) {
  case 116: return "Req_OTABegin";
  case 117: return "Req_OTAWrite";
  case 118: return "Req_OTAEnd";
  case 121: return "Req_ConfigHeartbeat";
  case 122: return "Req_EnableDisable";
  case 123: return "Req_GetFwVersion";
  case 216: return "Resp_OTABegin";
  case 217: return "Resp_OTAWrite";
  case 218: return "Resp_OTAEnd";
  case 221: return "Resp_ConfigHeartbeat";
  case 222: return "Resp_EnableDisable";
  case 223: return "Resp_GetFwVersion";
  case 301: return "Event_ESPInit";
  case 302: return "Event_Heartbeat";
  default: return "unknown";
  }
}
