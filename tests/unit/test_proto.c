/* CtrlMsg: every message espfleet uses survives build -> frame -> reassemble
 * -> parse, and the bytes follow ESP-Hosted-FG's field numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ctrl_msg.h"
#include "espfleet/ctrl.h"
#include "espfleet/tlv.h"

static uint8_t frame_buf[EF_TLV_MAX_FRAME];

/* Frames @p m, reassembles it from a reader fed in two pieces and parses it. */
static Espfleet__CtrlMsg *round_trip(ef_ctrl_msg *m, const char *ep) {
  size_t n = ef_ctrl_msg_frame(&m->msg, ep, frame_buf, sizeof frame_buf);
  assert_true(n > 0);
  ef_tlv_reader *r = malloc(sizeof *r);
  assert_non_null(r);
  ef_tlv_reader_reset(r);
  r->dropped = 0;
  assert_int_equal(ef_tlv_reader_feed(r, frame_buf, n / 2), EF_OK);
  ef_tlv_frame f;
  assert_int_equal(ef_tlv_reader_next(r, &f), 0);
  assert_int_equal(ef_tlv_reader_feed(r, frame_buf + n / 2, n - n / 2), EF_OK);
  assert_int_equal(ef_tlv_reader_next(r, &f), 1);
  assert_string_equal(f.endpoint, ep);
  Espfleet__CtrlMsg *out = NULL;
  assert_int_equal(ef_ctrl_msg_parse(f.payload, f.payload_len, &out), EF_OK);
  assert_non_null(out);
  free(r);
  return out;
}

/* Header fields shared by every message; the oneof case must be the msg id.
 * Requests leave msg_type unset (0), as ESP-Hosted's host library does. */
static void check_header(const Espfleet__CtrlMsg *got, int id, int32_t uid, int type) {
  assert_int_equal(got->msg_id, id);
  assert_int_equal(got->payload_case, id);
  assert_int_equal(got->uid, uid);
  assert_int_equal(got->msg_type, type);
  assert_int_equal(got->req_resp_type, 0);
}

static void test_requests_without_fields(void **state) {
  const int ids[] = {116, 118, 123};
  for (size_t i = 0; i < 3; i++) {
    ef_ctrl_msg m;
    assert_int_equal(ef_ctrl_msg_init(&m, ids[i], (int32_t)(i + 1)), EF_OK);
    Espfleet__CtrlMsg *got = round_trip(&m, EF_TLV_EP_RESP);
    /* Nothing but msg_id and uid on the wire: the firmware's handlers for
     * these never read a payload member (slave_control.c). */
    assert_int_equal(got->msg_id, ids[i]);
    assert_int_equal(got->uid, (int32_t)(i + 1));
    assert_int_equal(got->msg_type, 0);
    assert_int_equal(got->payload_case, ESPFLEET__CTRL_MSG__PAYLOAD__NOT_SET);
    int32_t resp;
    assert_int_equal(ef_ctrl_msg_resp(got, &resp), EF_ERR_ESP_PROTOCOL);
    ef_ctrl_msg_free(got);
  }
}

static void test_ota_write(void **state) {
  static uint8_t data[EF_CTRL_MAX_CHUNK];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 31);
  data[0] = 0xE9;
  ef_ctrl_msg m;
  assert_int_equal(ef_ctrl_msg_init(&m, EF_CTRL_REQ_OTA_WRITE, 0x7ffffff0), EF_OK);
  m.body.req_ota_write.ota_data.data = data;
  m.body.req_ota_write.ota_data.len = sizeof data;
  Espfleet__CtrlMsg *got = round_trip(&m, EF_TLV_EP_RESP);
  check_header(got, 117, 0x7ffffff0, 0);
  assert_int_equal(got->req_ota_write->ota_data.len, sizeof data);
  assert_memory_equal(got->req_ota_write->ota_data.data, data, sizeof data);
  ef_ctrl_msg_free(got);
}

static void test_enable_disable_and_heartbeat(void **state) {
  ef_ctrl_msg m;
  assert_int_equal(ef_ctrl_msg_init(&m, EF_CTRL_REQ_ENABLE_DISABLE, 9), EF_OK);
  m.body.req_enable_disable.feature = EF_FEATURE_BLUETOOTH;
  m.body.req_enable_disable.enable = 1;
  Espfleet__CtrlMsg *got = round_trip(&m, EF_TLV_EP_RESP);
  check_header(got, 122, 9, 0);
  assert_int_equal(got->req_enable_disable->feature, 2);
  assert_true(got->req_enable_disable->enable);
  ef_ctrl_msg_free(got);

  assert_int_equal(ef_ctrl_msg_init(&m, EF_CTRL_REQ_CONFIG_HEARTBEAT, 10), EF_OK);
  m.body.req_config_heartbeat.enable = 1;
  m.body.req_config_heartbeat.duration = 30;
  got = round_trip(&m, EF_TLV_EP_RESP);
  check_header(got, 121, 10, 0);
  assert_true(got->req_config_heartbeat->enable);
  assert_int_equal(got->req_config_heartbeat->duration, 30);
  ef_ctrl_msg_free(got);
}

static void test_responses_echo_uid_and_resp(void **state) {
  const int ids[] = {216, 217, 218, 221, 222, 223};
  for (size_t i = 0; i < 6; i++) {
    for (int32_t resp = -1; resp <= 1; resp++) {
      ef_ctrl_msg m;
      int32_t uid = 1000 + (int32_t)i;
      assert_int_equal(ef_ctrl_msg_init(&m, ids[i], uid), EF_OK);
      assert_int_equal(ef_ctrl_msg_set_resp(&m, resp), EF_OK);
      Espfleet__CtrlMsg *got = round_trip(&m, EF_TLV_EP_RESP);
      check_header(got, ids[i], uid, ESPFLEET__CTRL_MSG_TYPE__MSG_TYPE_RESP);
      int32_t r = 99;
      assert_int_equal(ef_ctrl_msg_resp(got, &r), EF_OK);
      assert_int_equal(r, resp);
      ef_ctrl_msg_free(got);
    }
  }
}

static void test_fw_version(void **state) {
  ef_ctrl_msg m;
  assert_int_equal(ef_ctrl_msg_init(&m, 223, 77), EF_OK);
  m.body.resp_get_fw_version.name = "FG";
  m.body.resp_get_fw_version.major1 = 1;
  m.body.resp_get_fw_version.major2 = 0;
  m.body.resp_get_fw_version.minor = 3;
  m.body.resp_get_fw_version.rev_patch1 = 4;
  m.body.resp_get_fw_version.rev_patch2 = 5;
  Espfleet__CtrlMsg *got = round_trip(&m, EF_TLV_EP_RESP);
  check_header(got, 223, 77, ESPFLEET__CTRL_MSG_TYPE__MSG_TYPE_RESP);
  const Espfleet__RespGetFwVersion *v = got->resp_get_fw_version;
  assert_string_equal(v->name, "FG");
  assert_int_equal(v->major1, 1);
  assert_int_equal(v->minor, 3);
  assert_int_equal(v->rev_patch1, 4);
  assert_int_equal(v->rev_patch2, 5);
  ef_ctrl_msg_free(got);

  ef_fw_version fv = {.name = "FG", .major1 = 1, .major2 = 0, .minor = 3};
  char buf[64];
  ef_fw_version_format(&fv, buf, sizeof buf);
  assert_string_equal(buf, "FG-1.0.3.0.0");
  ef_fw_version_format(&fv, buf, 4); /* truncates, stays terminated */
  assert_string_equal(buf, "FG-");
}

static void test_events(void **state) {
  ef_ctrl_msg m;
  assert_int_equal(ef_ctrl_msg_init(&m, EF_CTRL_EVENT_ESP_INIT, 0), EF_OK);
  uint8_t init[] = {0x10, 0x01, 0x02};
  m.body.event_esp_init.init_data.data = init;
  m.body.event_esp_init.init_data.len = sizeof init;
  Espfleet__CtrlMsg *got = round_trip(&m, EF_TLV_EP_EVENT);
  check_header(got, 301, 0, ESPFLEET__CTRL_MSG_TYPE__MSG_TYPE_EVENT);
  assert_int_equal(got->event_esp_init->init_data.len, sizeof init);
  assert_memory_equal(got->event_esp_init->init_data.data, init, sizeof init);
  ef_ctrl_msg_free(got);

  assert_int_equal(ef_ctrl_msg_init(&m, EF_CTRL_EVENT_HEARTBEAT, 0), EF_OK);
  m.body.event_heartbeat.hb_num = 42;
  got = round_trip(&m, EF_TLV_EP_EVENT);
  check_header(got, 302, 0, ESPFLEET__CTRL_MSG_TYPE__MSG_TYPE_EVENT);
  assert_int_equal(got->event_heartbeat->hb_num, 42);
  ef_ctrl_msg_free(got);
}

/* The exact bytes of a small request, so field numbers cannot drift. */
static void test_wire_bytes(void **state) {
  ef_ctrl_msg m;
  assert_int_equal(ef_ctrl_msg_init(&m, EF_CTRL_REQ_OTA_WRITE, 5), EF_OK);
  uint8_t d[] = {0xE9, 0x01};
  m.body.req_ota_write.ota_data.data = d;
  m.body.req_ota_write.ota_data.len = 2;
  uint8_t out[64];
  size_t n = ef_ctrl_msg_frame(&m.msg, EF_TLV_EP_RESP, out, sizeof out);
  const uint8_t want_pb[] = {
      0x10, 0x75,             /* 2: msg_id = 117 (no msg_type: it stays unset) */
      0x18, 0x05,             /* 3: uid = 5 */
      0xaa, 0x07, 0x04,       /* 117 (LEN): submessage of 4 bytes */
      0x0a, 0x02, 0xE9, 0x01, /* 1: ota_data */
  };
  assert_int_equal(n, 14 + sizeof want_pb);
  assert_int_equal(out[11], 0x02);
  assert_int_equal(out[12], sizeof want_pb);
  assert_memory_equal(out + 14, want_pb, sizeof want_pb);
}

/* ---- conformance with ESP-Hosted's own host library ----------------------
 * Request frames exactly as Espressif's unmodified host library
 * (control_lib/src/ctrl_core.c, ctrl_app_send_req, through
 * virtual_serial_if serial_if.c) wrote them to the control device, captured
 * once from its demo (host/linux/host_control/c_support). Our encoder must
 * produce the same bytes for the same request and uid. */
static const struct golden {
  const char *name;
  int id;
  int32_t uid;
  int feature, enable, duration; /* -1: not used */
  const char *hex;
} golden[] = {
    {"Req_OTABegin", 116, 3, -1, -1, -1, "0108006374726c5265737002040010741803"},
    {"Req_OTAEnd", 118, 377, -1, -1, -1, "0108006374726c52657370020500107618f902"},
    {"Req_GetFwVersion", 123, 2, -1, -1, -1, "0108006374726c52657370020400107b1802"},
    {"Req_EnableDisable(BT off)", 122, 3, 2, 0, -1, "0108006374726c52657370020900107a1803d207020802"},
    {"Req_ConfigHeartbeat(on, 20)", 121, 1, -1, 1, 20, "0108006374726c52657370020b0010791801ca070408011014"},
};

static size_t unhex(const char *hex, uint8_t *out) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
    out[i] = (uint8_t)v;
  }
  return n;
}

static void test_golden_frames(void **state) {
  uint8_t want[64], got[64];
  for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
    const struct golden *g = &golden[i];
    ef_ctrl_msg m;
    assert_int_equal(ef_ctrl_msg_init(&m, g->id, g->uid), EF_OK);
    if (g->id == EF_CTRL_REQ_ENABLE_DISABLE) {
      m.body.req_enable_disable.feature = (uint32_t)g->feature;
      m.body.req_enable_disable.enable = g->enable;
    }
    if (g->id == EF_CTRL_REQ_CONFIG_HEARTBEAT) {
      m.body.req_config_heartbeat.enable = g->enable;
      m.body.req_config_heartbeat.duration = g->duration;
    }
    size_t wn = unhex(g->hex, want);
    size_t n = ef_ctrl_msg_frame(&m.msg, EF_TLV_EP_RESP, got, sizeof got);
    if (n != wn || memcmp(got, want, n) != 0)
      fail_msg("%s: frame differs from the reference host's", g->name);
  }
  /* Req_OTAWrite (uid 4, 4000 bytes of data): the 25 bytes before the data */
  static uint8_t data[4000];
  data[0] = 0xE9;
  ef_ctrl_msg m;
  assert_int_equal(ef_ctrl_msg_init(&m, EF_CTRL_REQ_OTA_WRITE, 4), EF_OK);
  m.body.req_ota_write.ota_data.data = data;
  m.body.req_ota_write.ota_data.len = sizeof data;
  size_t wn = unhex("0108006374726c5265737002ab0f10751804aa07a31f0aa01f", want);
  size_t n = ef_ctrl_msg_frame(&m.msg, EF_TLV_EP_RESP, frame_buf, sizeof frame_buf);
  assert_int_equal(n, 4025);
  assert_memory_equal(frame_buf, want, wn);
}

/* The largest OTA write the client can build is exactly as long as the
 * firmware's receive buffer: the worst-case uid and EF_CTRL_MAX_CHUNK bytes. */
static void test_largest_frame(void **state) {
  static uint8_t data[EF_CTRL_MAX_CHUNK + 1];
  const int32_t uids[] = {1, 127, 16384, INT32_MAX};
  for (size_t i = 0; i < sizeof uids / sizeof uids[0]; i++) {
    ef_ctrl_msg m;
    assert_int_equal(ef_ctrl_msg_init(&m, EF_CTRL_REQ_OTA_WRITE, uids[i]), EF_OK);
    m.body.req_ota_write.ota_data.data = data;
    m.body.req_ota_write.ota_data.len = EF_CTRL_MAX_CHUNK;
    size_t n = ef_ctrl_msg_frame(&m.msg, EF_TLV_EP_RESP, frame_buf, sizeof frame_buf);
    assert_true(n <= EF_CTRL_FW_MSG_MAX);
    if (uids[i] == INT32_MAX) assert_int_equal(n, EF_CTRL_FW_MSG_MAX);
    m.body.req_ota_write.ota_data.len = EF_CTRL_MAX_CHUNK + 1;
    n = ef_ctrl_msg_frame(&m.msg, EF_TLV_EP_RESP, frame_buf, sizeof frame_buf);
    if (uids[i] == INT32_MAX) assert_true(n > EF_CTRL_FW_MSG_MAX);
  }
  assert_int_equal(EF_CTRL_MAX_CHUNK, 4067);
}

static void test_refusals(void **state) {
  ef_ctrl_msg m;
  assert_int_equal(ef_ctrl_msg_init(&m, 105, 1), EF_ERR_INVALID_ARG); /* no payload type */
  assert_int_equal(ef_ctrl_msg_init(&m, 0, 1), EF_ERR_INVALID_ARG);
  assert_int_equal(ef_ctrl_msg_init(&m, 117, 1), EF_OK);
  assert_int_equal(ef_ctrl_msg_set_resp(&m, 1), EF_ERR_INVALID_ARG); /* not a response */
  uint8_t small[10];
  assert_int_equal(ef_ctrl_msg_frame(&m.msg, EF_TLV_EP_RESP, small, sizeof small), 0);

  Espfleet__CtrlMsg *got = NULL;
  const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff};
  assert_int_equal(ef_ctrl_msg_parse(garbage, sizeof garbage, &got), EF_ERR_ESP_PROTOCOL);
  assert_null(got);
  /* msg_id 217 but payload member 216: not what the firmware sends */
  const uint8_t mismatch[] = {0x08, 0x02, 0x10, 0xd9, 0x01, 0x18, 0x01, 0xc2, 0x0d, 0x00};
  assert_int_equal(ef_ctrl_msg_parse(mismatch, sizeof mismatch, &got), EF_ERR_ESP_PROTOCOL);
  assert_null(got);
  /* An empty payload parses (all defaults) and has no resp. */
  assert_int_equal(ef_ctrl_msg_parse(NULL, 0, &got), EF_OK);
  int32_t r;
  assert_int_equal(ef_ctrl_msg_resp(got, &r), EF_ERR_ESP_PROTOCOL);
  ef_ctrl_msg_free(got);
  /* A message of an id we have no type for (303) decodes and is skipped. */
  const uint8_t other[] = {0x08, 0x03, 0x10, 0xaf, 0x02, 0xfa, 0x12, 0x02, 0x08, 0x01};
  assert_int_equal(ef_ctrl_msg_parse(other, sizeof other, &got), EF_OK);
  assert_int_equal(got->msg_id, 303);
  ef_ctrl_msg_free(got);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_requests_without_fields),
      cmocka_unit_test(test_ota_write),
      cmocka_unit_test(test_enable_disable_and_heartbeat),
      cmocka_unit_test(test_responses_echo_uid_and_resp),
      cmocka_unit_test(test_fw_version),
      cmocka_unit_test(test_events),
      cmocka_unit_test(test_wire_bytes),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_golden_frames),
      cmocka_unit_test(test_largest_frame),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
