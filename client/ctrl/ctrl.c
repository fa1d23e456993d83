/* ESP-Hosted-FG control client: requests matched to responses by uid. */
#include "espfleet/clock.h"
#include "espfleet/ctrl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctrl_msg.h"
#include "espfleet/log.h"
#include "espfleet/tlv.h"
#include "espfleet/transport.h"

/* wait_boot asks GetFwVersion this often; each try waits this long. */
#define BOOT_PROBE_MS 500

/* One request in flight. */
struct pending {
  int32_t uid;
  int req_id;        /* EF_CTRL_REQ_* */
  int64_t deadline;  /* monotonic ms */
  int timeout_ms;    /* for the log line */
  int done;          /* a response was matched */
  ef_status st;      /* its outcome once done (the firmware's resp when refused) */
  ef_fw_version *fw; /* where a GetFwVersion answer goes, or NULL */
};

struct ef_ctrl {
  ef_ctrl_options o;
  char *device;
  ef_transport *t;
  ef_tlv_reader *rd; /* heap: it is ~130 KB */
  unsigned rd_opens; /* transport session the reader's bytes came from */
  uint8_t *tx;       /* one encoded frame */
  uint8_t rx[4096];
  ef_ctrl_event_cb cb;
  void *cb_arg;
  int32_t next_uid;
  unsigned init_events; /* ESPInit events seen, for wait_boot */
  unsigned events;      /* events dispatched, for ef_ctrl_poll */
  /* Requests in flight, oldest first. Ordinary requests wait alone; only OTA
   * writes share it, so its size is the largest window. */
  struct pending q[EF_CTRL_MAX_WINDOW];
  unsigned q_head, q_len;
  /* First failure of an OTA write since OTA begin. Sticky so that no later
   * write and, above all, no OTA end is sent after a lost or refused chunk. */
  ef_status ota_st;
  ef_ctrl_cancel_cb cancel; /* the caller's; asked through stop_asked */
  void *cancel_arg;
  bool in_ota_end; /* the answer to OTA end is always waited for */
};

/* The transport's cancel callback: the caller's, except inside OTA end. */
static bool stop_asked(void *arg) {
  ef_ctrl *c = arg;
  return !c->in_ota_end && c->cancel && c->cancel(c->cancel_arg);
}

void ef_ctrl_options_default(ef_ctrl_options *o) {
  o->device = EF_DEFAULT_DEVICE;
  o->timeout_ms = EF_CTRL_DEFAULT_TIMEOUT_MS;
  o->ota_begin_timeout_ms = EF_CTRL_DEFAULT_OTA_BEGIN_TIMEOUT_MS;
  o->ota_end_timeout_ms = EF_CTRL_DEFAULT_OTA_END_TIMEOUT_MS;
  o->open_timeout_ms = EF_CTRL_DEFAULT_OPEN_TIMEOUT_MS;
  o->window = EF_CTRL_DEFAULT_WINDOW;
  o->should_cancel = NULL;
  o->cancel_arg = NULL;
}

ef_err ef_ctrl_open(const ef_ctrl_options *o, ef_ctrl **out, ef_status *st) {
  ef_err err = EF_OK;
  ef_ctrl *c = NULL;
  ef_ctrl_options def;
  *out = NULL;
  ef_ctrl_options_default(&def);
  /* Zero fields take their defaults, so callers can set only what they need. */
  if (o) {
    if (o->device && *o->device) def.device = o->device;
    if (o->timeout_ms > 0) def.timeout_ms = o->timeout_ms;
    if (o->ota_begin_timeout_ms > 0) def.ota_begin_timeout_ms = o->ota_begin_timeout_ms;
    if (o->ota_end_timeout_ms > 0) def.ota_end_timeout_ms = o->ota_end_timeout_ms;
    if (o->open_timeout_ms > 0) def.open_timeout_ms = o->open_timeout_ms;
    if (o->window < 0 || o->window > EF_CTRL_MAX_WINDOW) {
      err =
          ef_status_fail(st, EF_ERR_INVALID_ARG, "window %d is outside 1..%d", o->window, EF_CTRL_MAX_WINDOW);
      goto out;
    }
    if (o->window > 0) def.window = o->window;
    def.should_cancel = o->should_cancel;
    def.cancel_arg = o->cancel_arg;
  }
  c = calloc(1, sizeof *c);
  if (!c) {
    err = ef_status_fail(st, EF_ERR_NOMEM, NULL);
    goto out;
  }
  c->o = def;
  c->cancel = def.should_cancel;
  c->cancel_arg = def.cancel_arg;
  c->next_uid = 1;
  c->device = strdup(def.device);
  c->rd = malloc(sizeof *c->rd);
  c->tx = malloc(EF_TLV_MAX_FRAME);
  if (!c->device || !c->rd || !c->tx) {
    err = ef_status_fail(st, EF_ERR_NOMEM, NULL);
    goto out;
  }
  c->o.device = c->device;
  ef_tlv_reader_reset(c->rd);
  c->rd->dropped = 0;
  err = ef_transport_new(c->device, &c->t, st);
  if (err != EF_OK) goto out;
  ef_transport_set_cancel_cb(c->t, stop_asked, c);
  err = ef_transport_reopen(c->t, c->o.open_timeout_ms, st);
  if (err != EF_OK) goto out;
  c->rd_opens = ef_transport_open_count(c->t);
  *out = c;
  c = NULL;
out:
  ef_ctrl_close(c);
  return err;
}

void ef_ctrl_close(ef_ctrl *c) {
  if (!c) return;
  ef_transport_close(c->t);
  free(c->rd);
  free(c->tx);
  free(c->device);
  free(c);
}

void ef_ctrl_set_event_cb(ef_ctrl *c, ef_ctrl_event_cb cb, void *arg) {
  c->cb = cb;
  c->cb_arg = arg;
}

void ef_ctrl_set_cancel_cb(ef_ctrl *c, ef_ctrl_cancel_cb cb, void *arg) {
  c->cancel = cb;
  c->cancel_arg = arg;
}

void ef_fw_version_format(const ef_fw_version *v, char *buf, size_t n) {
  if (!buf || n == 0) return;
  snprintf(buf, n, "%s-%u.%u.%u.%u.%u", v->name, (unsigned)v->major1, (unsigned)v->major2, (unsigned)v->minor,
           (unsigned)v->rev_patch1, (unsigned)v->rev_patch2);
}

ef_err ef_fw_version_parse(const char *text, ef_fw_version *v) {
  ef_fw_version out = {0};
  uint32_t *num[5] = {&out.major1, &out.major2, &out.minor, &out.rev_patch1, &out.rev_patch2};
  const char *dash = text ? strrchr(text, '-') : NULL;
  if (!dash || dash == text || (size_t)(dash - text) >= sizeof out.name) return EF_ERR_INVALID_ARG;
  for (const char *q = text; q < dash; q++)
    if (!isalnum((unsigned char)*q) && *q != '_') return EF_ERR_INVALID_ARG;
  memcpy(out.name, text, (size_t)(dash - text));
  const char *p = dash + 1;
  for (int i = 0; i < 5; i++) {
    uint64_t n = 0;
    const char *start = p;
    for (; *p >= '0' && *p <= '9'; p++) {
      n = n * 10 + (uint64_t)(*p - '0');
      if (n > UINT32_MAX) return EF_ERR_INVALID_ARG;
    }
    if (p == start || *p != (i < 4 ? '.' : '\0')) return EF_ERR_INVALID_ARG;
    *num[i] = (uint32_t)n;
    if (i < 4) p++;
  }
  *v = out;
  return EF_OK;
}

/* ---- the queue of requests in flight ---- */

static struct pending *q_at(ef_ctrl *c, unsigned i) { return &c->q[(c->q_head + i) % EF_CTRL_MAX_WINDOW]; }

static void q_pop(ef_ctrl *c) {
  c->q_head = (c->q_head + 1) % EF_CTRL_MAX_WINDOW;
  c->q_len--;
}

/* Forgets every request in flight; their responses, should they still come,
 * no longer match a uid and are discarded. */
static void q_abandon(ef_ctrl *c) {
  c->q_head = 0;
  c->q_len = 0;
}

/* ---- incoming frames ---- */

static ef_err refused_code(int req_id) {
  switch (req_id) {
  case EF_CTRL_REQ_OTA_BEGIN: return EF_ERR_OTA_BEGIN_FAILED;
  case EF_CTRL_REQ_OTA_WRITE: return EF_ERR_OTA_WRITE_FAILED;
  case EF_CTRL_REQ_OTA_END: return EF_ERR_OTA_END_REJECTED;
  default: return EF_ERR_ESP_REQUEST_FAILED;
  }
}

static void dispatch_event(ef_ctrl *c, const Espfleet__CtrlMsg *m) {
  ef_ctrl_event ev = {.id = (int)m->msg_id};
  switch (ev.id) {
  case EF_CTRL_EVENT_ESP_INIT:
    c->init_events++;
    if (m->payload_case == ESPFLEET__CTRL_MSG__PAYLOAD_EVENT_ESP_INIT && m->event_esp_init) {
      ev.data = m->event_esp_init->init_data.data;
      ev.data_len = m->event_esp_init->init_data.len;
    }
    ef_debug("ctrl: ESP reports init (%zu bytes)", ev.data_len);
    break;
  case EF_CTRL_EVENT_HEARTBEAT:
    if (m->payload_case == ESPFLEET__CTRL_MSG__PAYLOAD_EVENT_HEARTBEAT && m->event_heartbeat)
      ev.hb_num = m->event_heartbeat->hb_num;
    break;
  default: ef_debug("ctrl: ignoring event %d", ev.id); return;
  }
  c->events++;
  if (c->cb) c->cb(c->cb_arg, &ev);
}

/* Finds the request a response answers: by uid, or for firmware that
 * predates uids (uid 0) the oldest open request of that kind. */
static struct pending *match(ef_ctrl *c, int32_t uid, int req_id) {
  for (unsigned i = 0; i < c->q_len; i++) {
    struct pending *p = q_at(c, i);
    if (p->done) continue;
    if (uid != 0 ? p->uid == uid : p->req_id == req_id) return p;
  }
  return NULL;
}

static void complete(ef_ctrl *c, struct pending *p, const Espfleet__CtrlMsg *m) {
  int32_t resp = 0;
  p->done = 1;
  if ((int)m->msg_id != p->req_id + EF_CTRL_RESP_OFFSET || ef_ctrl_msg_resp(m, &resp) != EF_OK) {
    ef_warn("ctrl: answer to %s (uid %d) is %s (id %d)", ef_ctrl_msg_name(p->req_id), p->uid,
            ef_ctrl_msg_name((int)m->msg_id), (int)m->msg_id);
    ef_status_fail(&p->st, EF_ERR_ESP_PROTOCOL, "answer to %s (uid %d) is %s (id %d)",
                   ef_ctrl_msg_name(p->req_id), p->uid, ef_ctrl_msg_name((int)m->msg_id), (int)m->msg_id);
    return;
  }
  if (resp != 0) {
    /* the firmware's own code: the one thing that tells its refusals apart */
    ef_warn("ctrl: ESP refused %s (resp %d)", ef_ctrl_msg_name(p->req_id), (int)resp);
    ef_status_fail(&p->st, refused_code(p->req_id), "ESP refused %s (resp %d)", ef_ctrl_msg_name(p->req_id),
                   (int)resp);
    return;
  }
  if (p->fw && m->payload_case == ESPFLEET__CTRL_MSG__PAYLOAD_RESP_GET_FW_VERSION) {
    const Espfleet__RespGetFwVersion *r = m->resp_get_fw_version;
    snprintf(p->fw->name, sizeof p->fw->name, "%s", r->name ? r->name : "");
    p->fw->major1 = r->major1;
    p->fw->major2 = r->major2;
    p->fw->minor = r->minor;
    p->fw->rev_patch1 = r->rev_patch1;
    p->fw->rev_patch2 = r->rev_patch2;
  }
}

static void handle_frame(ef_ctrl *c, const ef_tlv_frame *f) {
  Espfleet__CtrlMsg *m = NULL;
  if (ef_ctrl_msg_parse(f->payload, f->payload_len, &m) != EF_OK) {
    ef_debug("ctrl: dropping an undecodable %zu-byte frame on %s", f->payload_len, f->endpoint);
    goto out;
  }
  int id = (int)m->msg_id;
  /* An event is an event whatever its uid: it never completes a request. */
  if (m->msg_type == ESPFLEET__CTRL_MSG_TYPE__MSG_TYPE_EVENT || (id >= 300 && id < 400)) {
    dispatch_event(c, m);
    goto out;
  }
  if (m->msg_type != ESPFLEET__CTRL_MSG_TYPE__MSG_TYPE_RESP || id < 200 || id >= 300 ||
      strcmp(f->endpoint, EF_TLV_EP_RESP) != 0) {
    ef_debug("ctrl: dropping message type %d id %d on %s", (int)m->msg_type, id, f->endpoint);
    goto out;
  }
  struct pending *p = match(c, m->uid, id - EF_CTRL_RESP_OFFSET);
  if (!p) {
    ef_debug("ctrl: discarding late or unknown %s (uid %d)", ef_ctrl_msg_name(id), (int)m->uid);
    goto out;
  }
  complete(c, p, m);
out:
  ef_ctrl_msg_free(m);
}

/* Bytes held from a previous device session belong to a dead stream. */
static void sync_reader(ef_ctrl *c) {
  unsigned opens = ef_transport_open_count(c->t);
  if (opens != c->rd_opens) {
    ef_tlv_reader_reset(c->rd);
    c->rd_opens = opens;
  }
}

/*
 * Handles one buffered frame, or reads once, waiting until @p deadline.
 * Returns EF_OK (also on timeout) or the transport's error (in @p st).
 */
static ef_err pump(ef_ctrl *c, int64_t deadline, ef_status *st) {
  ef_tlv_frame f;
  size_t got = 0;
  sync_reader(c);
  if (ef_tlv_reader_next(c->rd, &f)) {
    handle_frame(c, &f);
    return EF_OK;
  }
  size_t cap = ef_tlv_reader_space(c->rd);
  if (cap > sizeof c->rx) cap = sizeof c->rx;
  ef_err err = ef_transport_read(c->t, c->rx, cap, &got, ef_ms_left(deadline), st);
  if (err != EF_OK) return err;
  sync_reader(c);
  err = got ? ef_tlv_reader_feed(c->rd, c->rx, got) : EF_OK;
  if (err != EF_OK) return ef_status_fail(st, err, "the frame reader refused %zu bytes", got);
  return EF_OK;
}

/* ---- requests ---- */

static int32_t take_uid(ef_ctrl *c) {
  int32_t uid = c->next_uid;
  c->next_uid = uid == INT32_MAX ? 1 : uid + 1; /* 0 means "no uid" on the wire */
  return uid;
}

/* Sends @p m (built with a fresh uid) and queues it as in flight. */
static ef_err send_req(ef_ctrl *c, ef_ctrl_msg *m, int timeout_ms, ef_fw_version *fw, ef_status *st) {
  const char *name = ef_ctrl_msg_name((int)m->msg.msg_id);
  if (c->q_len >= EF_CTRL_MAX_WINDOW)
    return ef_status_fail(st, EF_ERR_INTERNAL, "%s: %u requests already in flight", name, c->q_len);
  size_t n = ef_ctrl_msg_frame(&m->msg, EF_TLV_EP_RESP, c->tx, EF_TLV_MAX_FRAME);
  /* The firmware would truncate a longer message and never answer it. */
  if (n == 0 || n > EF_CTRL_FW_MSG_MAX)
    return ef_status_fail(st, EF_ERR_INVALID_ARG,
                          "%s would be a %zu-byte message; the firmware takes at most %d", name, n,
                          EF_CTRL_FW_MSG_MAX);
  ef_status why = EF_STATUS_INIT;
  ef_err err = ef_transport_write(c->t, c->tx, n, timeout_ms, &why);
  if (err != EF_OK) {
    ef_warn("ctrl: cannot send %s: %s", name, why.detail);
    ef_status_prefix(&why, name);
    return ef_status_copy(st, &why);
  }
  struct pending *p = q_at(c, c->q_len++);
  *p = (struct pending){.uid = m->msg.uid,
                        .req_id = (int)m->msg.msg_id,
                        .deadline = ef_mono_ms() + timeout_ms,
                        .timeout_ms = timeout_ms,
                        .fw = fw};
  return EF_OK;
}

/*
 * Waits for the oldest request in flight and removes it from the queue.
 * Returns its outcome; on a hang-up every request in flight is abandoned
 * (never re-sent: a duplicated OTA write would corrupt the image).
 */
static ef_err collect_oldest(ef_ctrl *c, ef_status *st) {
  struct pending *p = q_at(c, 0);
  const char *name = ef_ctrl_msg_name(p->req_id);
  for (;;) {
    if (p->done) {
      ef_err err = ef_status_copy(st, &p->st);
      q_pop(c);
      return err;
    }
    if (ef_mono_ms() >= p->deadline) {
      ef_warn("ctrl: no answer to %s (uid %d) within %d ms", name, p->uid, p->timeout_ms);
      ef_err err = ef_status_fail(st, EF_ERR_ESP_TIMEOUT, "no answer to %s (uid %d) within %d ms", name,
                                  p->uid, p->timeout_ms);
      q_pop(c);
      return err;
    }
    ef_status why = EF_STATUS_INIT;
    ef_err err = pump(c, p->deadline, &why);
    if (err == EF_ERR_CANCELED) {
      /* Nothing is re-sent after this either: the next OTA write or OTA
       * end sees the sticky failure. */
      ef_info("ctrl: canceled while waiting for the answer to %s (uid %d)", name, p->uid);
      q_abandon(c);
      return ef_status_fail(st, EF_ERR_CANCELED, "canceled while waiting for the answer to %s", name);
    }
    if (err != EF_OK) {
      ef_warn("ctrl: ESP went away with %u request(s) in flight", c->q_len);
      q_abandon(c);
      if (err == EF_ERR_INVALID_ARG) return ef_status_fail(st, EF_ERR_INTERNAL, "%s: %s", name, why.detail);
      ef_status_prefix(&why, name);
      return ef_status_copy(st, &why);
    }
  }
}

/* Collects every OTA write in flight; a failure becomes the sticky OTA error,
 * which @p st receives (also one from before). */
static ef_err flush_writes(ef_ctrl *c, ef_status *st) {
  while (c->q_len > 0) {
    ef_status why = EF_STATUS_INIT;
    if (collect_oldest(c, &why) != EF_OK) {
      (void)ef_status_copy(&c->ota_st, &why); /* the first failure stays */
      q_abandon(c);
    }
  }
  return ef_status_copy(st, &c->ota_st);
}

/* One request that waits alone for its answer. Writes in flight are collected
 * first so that the answer is the next one the firmware sends. */
static ef_err sync_request(ef_ctrl *c, ef_ctrl_msg *m, int timeout_ms, ef_fw_version *fw, ef_status *st) {
  (void)flush_writes(c, NULL); /* their outcome stays in ota_st for the OTA calls */
  ef_err err = send_req(c, m, timeout_ms, fw, st);
  if (err != EF_OK) return err;
  return collect_oldest(c, st);
}

static ef_err simple_request(ef_ctrl *c, int req_id, int timeout_ms, ef_status *st) {
  ef_ctrl_msg m;
  if (ef_ctrl_msg_init(&m, req_id, take_uid(c)) != EF_OK)
    return ef_status_fail(st, EF_ERR_INTERNAL, "cannot build %s", ef_ctrl_msg_name(req_id));
  return sync_request(c, &m, timeout_ms, NULL, st);
}

ef_err ef_ctrl_ota_begin(ef_ctrl *c, ef_status *st) {
  (void)flush_writes(c, NULL);
  ef_status_clear(&c->ota_st); /* a new OTA: earlier write failures are history */
  return simple_request(c, EF_CTRL_REQ_OTA_BEGIN, c->o.ota_begin_timeout_ms, st);
}

ef_err ef_ctrl_ota_write(ef_ctrl *c, const uint8_t *data, size_t len, ef_status *st) {
  ef_ctrl_msg m;
  ef_err err = EF_OK;
  ef_status why = EF_STATUS_INIT;
  if (!data || len == 0 || len > EF_CTRL_MAX_CHUNK)
    return ef_status_fail(st, EF_ERR_INVALID_ARG, "an OTA write of %zu bytes (1..%d)", len,
                          EF_CTRL_MAX_CHUNK);
  if (c->ota_st.code != EF_OK) return ef_status_copy(st, &c->ota_st);
  if (ef_ctrl_msg_init(&m, EF_CTRL_REQ_OTA_WRITE, take_uid(c)) != EF_OK) {
    err = ef_status_fail(&why, EF_ERR_INTERNAL, "cannot build an OTA write");
    goto out;
  }
  /* protobuf-c's bytes field is not const; it only reads it when packing. */
  m.body.req_ota_write.ota_data.data = (uint8_t *)(uintptr_t)data;
  m.body.req_ota_write.ota_data.len = len;
  err = send_req(c, &m, c->o.timeout_ms, NULL, &why);
  /* Returning with window-1 writes in flight keeps at most `window` queued
   * in the firmware, and a window of 1 makes every write synchronous. */
  while (err == EF_OK && c->q_len >= (unsigned)c->o.window) err = collect_oldest(c, &why);
out:
  if (err != EF_OK) {
    (void)ef_status_copy(&c->ota_st, &why);
    q_abandon(c);
  }
  return ef_status_copy(st, &why);
}

ef_err ef_ctrl_ota_flush(ef_ctrl *c, ef_status *st) { return flush_writes(c, st); }

ef_err ef_ctrl_ota_end(ef_ctrl *c, ef_status *st) {
  /* Never ask the ESP to activate an image with a chunk missing. */
  ef_err err = flush_writes(c, st);
  if (err != EF_OK) return err;
  /* Whether the ESP took the image is in this answer: a cancel or a stop
   * must not leave it unknown. */
  c->in_ota_end = true;
  err = simple_request(c, EF_CTRL_REQ_OTA_END, c->o.ota_end_timeout_ms, st);
  c->in_ota_end = false;
  return err;
}

ef_err ef_ctrl_get_fw_version(ef_ctrl *c, ef_fw_version *v, ef_status *st) {
  ef_ctrl_msg m;
  ef_fw_version tmp;
  if (ef_ctrl_msg_init(&m, EF_CTRL_REQ_GET_FW_VERSION, take_uid(c)) != EF_OK)
    return ef_status_fail(st, EF_ERR_INTERNAL, "cannot build GetFwVersion");
  ef_err err = sync_request(c, &m, c->o.timeout_ms, &tmp, st);
  if (err == EF_OK && v) *v = tmp;
  return err;
}

ef_err ef_ctrl_feature(ef_ctrl *c, ef_feature f, bool enable, ef_status *st) {
  ef_ctrl_msg m;
  if (ef_ctrl_msg_init(&m, EF_CTRL_REQ_ENABLE_DISABLE, take_uid(c)) != EF_OK)
    return ef_status_fail(st, EF_ERR_INTERNAL, "cannot build a feature request");
  m.body.req_enable_disable.feature = (uint32_t)f;
  m.body.req_enable_disable.enable = enable;
  return sync_request(c, &m, c->o.timeout_ms, NULL, st);
}

ef_err ef_ctrl_poll(ef_ctrl *c, int timeout_ms, ef_status *st) {
  int64_t deadline = ef_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  unsigned events = c->events;
  do {
    ef_status why = EF_STATUS_INIT;
    ef_err err = pump(c, deadline, &why);
    if (err == EF_ERR_ESP_UNAVAILABLE) {
      /* The next pump re-opens the device, waiting for it until the deadline. */
      if (ef_ms_left(deadline) == 0) return ef_status_copy(st, &why);
      continue;
    }
    if (err == EF_ERR_CANCELED) return ef_status_copy(st, &why);
    if (err != EF_OK) return ef_status_fail(st, EF_ERR_INTERNAL, "%s", why.detail);
    if (c->events != events) break;
  } while (ef_ms_left(deadline) > 0);
  return EF_OK;
}

/* Re-opens the device. A busy device (another program has it) answers at
 * once, so the caller's loop would spin: wait a probe interval instead. */
static ef_err reopen_or_pause(ef_ctrl *c, int timeout_ms) {
  ef_err err = ef_transport_reopen(c->t, timeout_ms, NULL);
  if (err == EF_ERR_ESP_BUSY) {
    int ms = timeout_ms < BOOT_PROBE_MS ? timeout_ms : BOOT_PROBE_MS;
    ef_sleep_ms(ms);
  }
  return err;
}

ef_err ef_ctrl_wait_boot(ef_ctrl *c, int timeout_ms, ef_fw_version *v, ef_status *st) {
  int64_t deadline = ef_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  unsigned inits = c->init_events;
  unsigned opens = ef_transport_open_count(c->t);
  ef_fw_version tmp;
  ef_status why = EF_STATUS_INIT; /* the last probe's answer */
  bool restarted = false;
  ef_err err = EF_ERR_ESP_TIMEOUT;
  /* First the reboot itself. The old firmware keeps answering for the few
   * seconds between OTA end and the restart, so an answer proves nothing
   * until the link went down (the transport had to re-open) or the new
   * firmware announced itself with ESPInit. */
  while (c->init_events == inits && ef_transport_open_count(c->t) == opens) {
    int left = ef_ms_left(deadline);
    if (left == 0) {
      err = EF_ERR_ESP_TIMEOUT;
      goto out;
    }
    if (stop_asked(c)) {
      err = EF_ERR_CANCELED;
      goto out;
    }
    if (!ef_transport_is_open(c->t)) {
      if (reopen_or_pause(c, left) != EF_OK) ef_debug("ctrl: ESP not back yet");
      continue;
    }
    if (ef_ctrl_poll(c, left < BOOT_PROBE_MS ? left : BOOT_PROBE_MS, NULL) != EF_OK)
      ef_debug("ctrl: link down, waiting for the ESP");
  }
  restarted = true;
  for (;;) {
    int left = ef_ms_left(deadline);
    ef_status_clear(&why);
    if (c->init_events != inits) {
      /* ESPInit: the firmware is up. The version is asked once more, with the
       * time that is left, only if the caller wants it. */
      err = EF_OK;
      if (v) {
        ef_ctrl_msg m;
        if (ef_ctrl_msg_init(&m, EF_CTRL_REQ_GET_FW_VERSION, take_uid(c)) != EF_OK) {
          err = ef_status_fail(&why, EF_ERR_INTERNAL, "cannot build GetFwVersion");
          goto out;
        }
        /* Not cut shorter than one probe: the ESP is known to be up. */
        err = sync_request(c, &m, left > BOOT_PROBE_MS ? left : BOOT_PROBE_MS, &tmp, &why);
      }
      goto out;
    }
    if (left == 0) {
      err = EF_ERR_ESP_TIMEOUT;
      goto out;
    }
    if (stop_asked(c)) {
      err = EF_ERR_CANCELED;
      goto out;
    }
    if (!ef_transport_is_open(c->t) && reopen_or_pause(c, left) != EF_OK) continue;
    int64_t probe_end = ef_mono_ms() + (left < BOOT_PROBE_MS ? left : BOOT_PROBE_MS);
    ef_ctrl_msg m;
    if (ef_ctrl_msg_init(&m, EF_CTRL_REQ_GET_FW_VERSION, take_uid(c)) != EF_OK) {
      err = ef_status_fail(&why, EF_ERR_INTERNAL, "cannot build GetFwVersion");
      goto out;
    }
    err = sync_request(c, &m, left < BOOT_PROBE_MS ? left : BOOT_PROBE_MS, &tmp, &why);
    if (err == EF_OK) goto out;
    if (err != EF_ERR_ESP_TIMEOUT && err != EF_ERR_ESP_UNAVAILABLE) goto out; /* it answered */
    /* A device that fails at once is not asked again before the probe
     * interval is over; meanwhile an ESPInit may arrive. */
    if (err == EF_ERR_ESP_UNAVAILABLE && ef_ms_left(probe_end) > 0 &&
        ef_ctrl_poll(c, ef_ms_left(probe_end), NULL) != EF_OK)
      ef_debug("ctrl: ESP not back yet");
  }
out:
  if (err == EF_OK && v) *v = tmp;
  if (err == EF_ERR_CANCELED)
    return ef_status_fail(st, EF_ERR_CANCELED, "canceled while waiting for the ESP to %s",
                          restarted ? "answer after its restart" : "restart");
  if (err == EF_ERR_ESP_TIMEOUT || err == EF_ERR_ESP_UNAVAILABLE)
    return ef_status_fail(st, EF_ERR_ESP_TIMEOUT,
                          restarted ? "the ESP restarted but did not answer within %d ms"
                                    : "the ESP did not restart within %d ms",
                          timeout_ms);
  if (err != EF_OK) ef_status_fail(&why, err, NULL);
  return ef_status_copy(st, &why);
}
