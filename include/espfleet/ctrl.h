/**
 * @file ctrl.h
 * @brief ESP-Hosted-FG control client: requests, responses, events.
 *
 * Single-threaded by design: every call runs on the caller's thread, sends
 * its request and reads frames until the matching response (by uid) arrives
 * or its timeout expires. Frames that arrive meanwhile are dispatched: events
 * (ESPInit, Heartbeat) go to the event callback, late responses to requests
 * that already timed out are discarded. A client object must not be used from
 * two threads at once.
 *
 * OTA writes are windowed: up to `window` write requests may be in flight;
 * the firmware queues requests and answers them in order, so responses are
 * consumed oldest first. A failed write is reported by the ef_ctrl_ota_write
 * or ef_ctrl_ota_flush call that collects it. A write failure (refused, timed
 * out, device gone) is sticky until the next ef_ctrl_ota_begin: later writes
 * are not sent and ef_ctrl_ota_end returns it without sending OTA end, so a
 * partial image is never activated. Nothing is ever re-sent.
 *
 * The event callback runs inside whichever call is reading frames; it must
 * not call back into the client. See docs/esp-hosted.md.
 *
 * Every call that can fail takes an ef_status (last, may be NULL) that says
 * why: a refused request carries the firmware's answer ("ESP refused
 * Req_OTAWrite (resp -1)"), a timeout the request and the time waited ("no
 * answer to Req_OTAEnd (uid 9) within 30000 ms"), a lost device the
 * system's reason.
 */
#ifndef ESPFLEET_CTRL_H
#define ESPFLEET_CTRL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/status.h"

/** CtrlMsgId values used by espfleet (see docs/esp-hosted.md). */
enum {
  EF_CTRL_REQ_OTA_BEGIN = 116,
  EF_CTRL_REQ_OTA_WRITE = 117,
  EF_CTRL_REQ_OTA_END = 118,
  EF_CTRL_REQ_CONFIG_HEARTBEAT = 121,
  EF_CTRL_REQ_ENABLE_DISABLE = 122,
  EF_CTRL_REQ_GET_FW_VERSION = 123,
  EF_CTRL_RESP_OFFSET = 100, /**< response id = request id + 100 */
  EF_CTRL_EVENT_ESP_INIT = 301,
  EF_CTRL_EVENT_HEARTBEAT = 302,
};

/** HostedFeature values for ef_ctrl_feature. */
typedef enum { EF_FEATURE_WIFI = 1, EF_FEATURE_BLUETOOTH = 2 } ef_feature;

/**
 * The firmware reassembles each host message (one whole TLV frame) in a
 * single 4096-byte buffer and silently drops the bytes beyond it
 * (`r.data[4096]` in esp_hosted_coprocessor.c, process_serial_rx_pkt): a
 * longer message does not decode and is never answered. No frame the client
 * builds may exceed it.
 */
#define EF_CTRL_FW_MSG_MAX 4096
/**
 * Bytes of a frame that are not OTA data, at most: TLV header 14 (type,
 * length and "ctrlResp"; type and length of the data), CtrlMsg msg_id 2,
 * uid 6 (a positive int32 takes up to 5 varint bytes), the oneof member's
 * tag 2 (field 117) and length 2, Req_OTAWrite's ota_data tag 1 and
 * length 2. tests/unit/test_proto.c pins the largest frame at exactly
 * EF_CTRL_FW_MSG_MAX bytes.
 */
#define EF_CTRL_OTA_WRITE_OVERHEAD 29
/** Most data bytes one OTA write may carry (a literal, so help texts can
 *  quote it with EF_STR). */
#define EF_CTRL_MAX_CHUNK 4067
_Static_assert(EF_CTRL_MAX_CHUNK == EF_CTRL_FW_MSG_MAX - EF_CTRL_OTA_WRITE_OVERHEAD,
               "the largest chunk fills the firmware's buffer exactly");
/** A macro's value as a string literal ("4067"). */
#define EF_STR(x)  EF_STR_(x)
#define EF_STR_(x) #x
/** Default bytes per OTA write: the largest legal chunk, measured fastest
 *  (docs/performance.md). ESP-Hosted's own demos use 4000. */
#define EF_CTRL_DEFAULT_CHUNK EF_CTRL_MAX_CHUNK
/**
 * Most OTA writes in flight. The firmware holds one message being handled,
 * one in its receive buffer and one in the stalled receive task; more only
 * wait in the host driver (docs/esp-hosted.md, "Pipelining").
 */
#define EF_CTRL_MAX_WINDOW 4
/** Default OTA writes in flight (measured best, docs/performance.md). */
#define EF_CTRL_DEFAULT_WINDOW 2

/* Default timeouts of ef_ctrl_options (literals, so help texts can quote
 * them with EF_STR). */
#define EF_CTRL_DEFAULT_TIMEOUT_MS           5000
#define EF_CTRL_DEFAULT_OTA_BEGIN_TIMEOUT_MS 60000
#define EF_CTRL_DEFAULT_OTA_END_TIMEOUT_MS   30000
#define EF_CTRL_DEFAULT_OPEN_TIMEOUT_MS      5000

/**
 * Asked while the client waits (for an answer, for the device to come back,
 * for the ESP to reboot), at least every EF_TRANSPORT_CANCEL_POLL_MS: true
 * ends the wait with EF_ERR_CANCELED, and the requests in flight are
 * abandoned (their answers, should they come, are discarded). Never asked
 * inside ef_ctrl_ota_end: once OTA end is sent, its answer says whether the
 * ESP took the image, so it is always waited for. Runs on the caller's thread.
 */
typedef bool (*ef_ctrl_cancel_cb)(void *arg);

typedef struct {
  const char *device;       /**< device node; default EF_DEFAULT_DEVICE */
  int timeout_ms;           /**< ordinary requests; default EF_CTRL_DEFAULT_TIMEOUT_MS */
  int ota_begin_timeout_ms; /**< OTA begin erases a whole slot; default EF_CTRL_DEFAULT_OTA_BEGIN_TIMEOUT_MS */
  int ota_end_timeout_ms;   /**< OTA end validates the image; default EF_CTRL_DEFAULT_OTA_END_TIMEOUT_MS */
  int open_timeout_ms; /**< waiting for the node to (re)appear; default EF_CTRL_DEFAULT_OPEN_TIMEOUT_MS */
  int window;          /**< OTA writes in flight, 1..EF_CTRL_MAX_WINDOW; default EF_CTRL_DEFAULT_WINDOW */
  ef_ctrl_cancel_cb should_cancel; /**< optional, asked from the first open on; default NULL */
  void *cancel_arg;                /**< passed to should_cancel */
} ef_ctrl_options;

/** An event from the ESP. @p data is the event's bytes (init_data) or NULL. */
typedef struct {
  int id;         /**< EF_CTRL_EVENT_* */
  int32_t hb_num; /**< heartbeat number for EF_CTRL_EVENT_HEARTBEAT */
  const uint8_t *data;
  size_t data_len;
} ef_ctrl_event;

typedef void (*ef_ctrl_event_cb)(void *arg, const ef_ctrl_event *ev);

/** Firmware version as reported by GetFwVersion. */
typedef struct {
  char name[32];
  uint32_t major1, major2, minor, rev_patch1, rev_patch2;
} ef_fw_version;

typedef struct ef_ctrl ef_ctrl;

/** Fills @p o with the defaults listed in ef_ctrl_options. ef_ctrl_open also
 *  treats zero/NULL fields as their defaults. */
void ef_ctrl_options_default(ef_ctrl_options *o);

/**
 * Opens the control device (waiting up to open_timeout_ms for it) and
 * discards bytes already queued on it.
 * @param o options; NULL for all defaults. The device string is copied.
 * @return EF_OK; EF_ERR_ESP_BUSY when another program holds the device (the
 *         driver lets one program open it; not retried here, the caller
 *         decides how long to wait); EF_ERR_ESP_UNAVAILABLE;
 *         EF_ERR_CANCELED (should_cancel, while waiting for the node);
 *         EF_ERR_INVALID_ARG for a bad window; EF_ERR_NOMEM.
 */
ef_err ef_ctrl_open(const ef_ctrl_options *o, ef_ctrl **out, ef_status *st) EF_MUST_CHECK;

/** Closes the device and frees @p c (NULL is fine). */
void ef_ctrl_close(ef_ctrl *c);

/** Sets the callback that receives events (ESPInit, Heartbeat). */
void ef_ctrl_set_event_cb(ef_ctrl *c, ef_ctrl_event_cb cb, void *arg);

/** Replaces the cancel callback of ef_ctrl_options (NULL: waits run to their
 *  timeouts). Every call below may then also return EF_ERR_CANCELED, except
 *  ef_ctrl_ota_end. */
void ef_ctrl_set_cancel_cb(ef_ctrl *c, ef_ctrl_cancel_cb cb, void *arg);

/**
 * OTA begin: the ESP picks the next slot and erases it.
 * @return EF_OK; EF_ERR_OTA_BEGIN_FAILED when the ESP refused;
 *         EF_ERR_ESP_TIMEOUT; EF_ERR_ESP_UNAVAILABLE.
 */
ef_err ef_ctrl_ota_begin(ef_ctrl *c, ef_status *st) EF_MUST_CHECK;

/**
 * Sends one OTA write of @p len bytes (1..EF_CTRL_MAX_CHUNK). With a window
 * above 1 it returns once the request is sent and the window has room.
 * @return EF_OK; EF_ERR_INVALID_ARG for an empty chunk or one above
 *         EF_CTRL_MAX_CHUNK (nothing is sent); EF_ERR_OTA_WRITE_FAILED when
 *         this or an earlier write was refused; EF_ERR_ESP_TIMEOUT;
 *         EF_ERR_ESP_WRITE_REFUSED; EF_ERR_ESP_UNAVAILABLE. A sticky failure
 *         is reported with the status of the write that failed first.
 */
ef_err ef_ctrl_ota_write(ef_ctrl *c, const uint8_t *data, size_t len, ef_status *st) EF_MUST_CHECK;

/** Waits for every OTA write in flight. Same errors as ef_ctrl_ota_write. */
ef_err ef_ctrl_ota_flush(ef_ctrl *c, ef_status *st) EF_MUST_CHECK;

/**
 * OTA end: the ESP validates the image and, on success, switches the boot
 * slot and reboots a few seconds later. Flushes pending writes first. The
 * cancel callback is not asked: it waits for the answer up to
 * ota_end_timeout_ms.
 * @return EF_OK; EF_ERR_OTA_END_REJECTED; EF_ERR_ESP_TIMEOUT; EF_ERR_ESP_UNAVAILABLE.
 */
ef_err ef_ctrl_ota_end(ef_ctrl *c, ef_status *st) EF_MUST_CHECK;

/**
 * Asks for the firmware version.
 * @return EF_OK; EF_ERR_ESP_REQUEST_FAILED; EF_ERR_ESP_PROTOCOL;
 *         EF_ERR_ESP_TIMEOUT; EF_ERR_ESP_UNAVAILABLE.
 */
ef_err ef_ctrl_get_fw_version(ef_ctrl *c, ef_fw_version *v, ef_status *st) EF_MUST_CHECK;

/** Enables or disables a feature (Bluetooth off before an OTA).
 *  Same errors as ef_ctrl_get_fw_version. */
ef_err ef_ctrl_feature(ef_ctrl *c, ef_feature f, bool enable, ef_status *st) EF_MUST_CHECK;

/**
 * Reads and dispatches incoming frames for up to @p timeout_ms (events go to
 * the callback). Returns early after an event was dispatched.
 * @return EF_OK (also on timeout); EF_ERR_ESP_UNAVAILABLE when the device went
 *         away and could not be re-opened within the timeout;
 *         EF_ERR_CANCELED.
 */
ef_err ef_ctrl_poll(ef_ctrl *c, int timeout_ms, ef_status *st) EF_MUST_CHECK;

/**
 * Waits for the ESP to reboot and come back, after OTA end. First the reboot
 * itself: the link goes down (the device is re-opened) or an ESPInit event
 * arrives; answers of the old firmware before that do not count. Then it
 * returns once an ESPInit event arrives or GetFwVersion answers (asked every
 * ~500 ms with a 500 ms timeout).
 * @param v when not NULL, receives the firmware version; after an ESPInit the
 *        version is asked once more (with at least 500 ms, even if that runs
 *        slightly past @p timeout_ms).
 * @return EF_OK; EF_ERR_ESP_TIMEOUT after @p timeout_ms (the detail says
 *         whether the ESP never went down or never came back); the error of
 *         a GetFwVersion the ESP answered but refused; EF_ERR_CANCELED.
 */
ef_err ef_ctrl_wait_boot(ef_ctrl *c, int timeout_ms, ef_fw_version *v, ef_status *st) EF_MUST_CHECK;

/** Formats @p v as "NAME-major1.major2.minor.rev_patch1.rev_patch2". */
void ef_fw_version_format(const ef_fw_version *v, char *buf, size_t n);

/**
 * Parses the form ef_fw_version_format writes and the host driver logs
 * ("FG-1.0.3.0.0"): a name of 1..31 letters, digits or '_', '-', then exactly five
 * dot-separated decimal numbers, each at most UINT32_MAX.
 * @return EF_OK; EF_ERR_INVALID_ARG for any other text (@p v untouched).
 */
ef_err ef_fw_version_parse(const char *text, ef_fw_version *v) EF_MUST_CHECK;

#endif
