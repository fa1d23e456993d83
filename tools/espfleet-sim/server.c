#include "server.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ctrl_msg.h"
#include "espfleet/image.h"
#include "espfleet/log.h"
#include "espfleet/tlv.h"
#include "fwversion.h"
#include "pty.h"

/* esp_err_t values the firmware puts in `resp` (ESP-IDF's numbering). */
#define ESP_FAIL (-1)
#define ESP_ERR_INVALID_ARG 0x102
#define ESP_ERR_INVALID_STATE 0x103
#define ESP_ERR_INVALID_SIZE 0x104
#define ESP_ERR_NOT_FOUND 0x105
#define ESP_ERR_OTA_VALIDATE_FAILED 0x1503

#define OUT_CAP (256 * 1024)
#define OUT_HIGH_WATER (64 * 1024) /* stop taking requests while this much is unsent */
#define OUT_MAX_MSG 1024           /* room kept for one response or event */
#define SCRATCH_SIZE (64 * 1024)
#define NS_PER_MS 1000000ull

typedef struct {
  sim_config *cfg;
  sim_flash *flash;
  sim_pty pty;
  int sig_fd;
  bool quit;
  ef_err fatal;

  ef_tlv_reader *rx;
  uint8_t *out; /* unsent bytes are out[out_off, out_len) */
  size_t out_off, out_len;
  uint8_t *scratch;

  int running; /* slot that runs, -1 for the factory app */
  bool ota_active;
  unsigned ota_slot;
  uint64_t ota_written, ota_writes;

  uint64_t responses;     /* since start, for drop-response */
  uint64_t reboot_at;     /* monotonic ns; 0 = none scheduled */
  uint64_t reboot_planned; /* reboot_at as first scheduled */
  bool reset_now;         /* reboot as soon as the current frame is done */
  bool init_pending;      /* ESPInit not yet sent since boot */
  uint64_t link_up_at;    /* when the link came up after the last reboot */
  uint64_t init_at;       /* when to send it; 0 = wait for the host to open */
  bool hb_enabled;
  uint64_t hb_period, hb_next;
  int32_t hb_num;
  uint64_t busy_until; /* the simulated flash is busy until then */
} server;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct timespec ns_to_ts(uint64_t ns) {
  return (struct timespec){.tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};
}

static void take_signal(server *s) {
  struct signalfd_siginfo si;
  while (read(s->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
    ef_info("signal %u: stopping", si.ssi_signo);
    s->quit = true;
  }
}

/* Sleeps until @p deadline, waking early only to stop on a signal. */
static void sleep_until(server *s, uint64_t deadline) {
  for (;;) {
    uint64_t now = now_ns();
    if (s->quit || now >= deadline) return;
    struct timespec ts = ns_to_ts(deadline - now);
    struct pollfd pfd = {.fd = s->sig_fd, .events = POLLIN};
    if (ppoll(&pfd, 1, &ts, NULL) > 0) take_signal(s);
  }
}

/* The flash is one resource: costs queue up behind each other, so short
 * sleeps that overshoot are paid back by the next ones. */
static void flash_busy(server *s, uint64_t cost_ns) {
  uint64_t now = now_ns();
  if (cost_ns == 0) return;
  if (s->busy_until < now) s->busy_until = now;
  s->busy_until += cost_ns;
  sleep_until(s, s->busy_until);
}

static void save_header(server *s, bool durable) {
  if (sim_flash_save(s->flash, durable) != EF_OK) {
    ef_error("cannot write the flash header: %s", strerror(errno));
    s->fatal = EF_ERR_IO;
    s->quit = true;
  }
}

/* ---- output ------------------------------------------------------------ */

static void flush_out(server *s) {
  while (s->out_off < s->out_len && s->pty.master >= 0) {
    ssize_t n = write(s->pty.master, s->out + s->out_off, s->out_len - s->out_off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* EAGAIN: the host is not reading; poll tells us when */
    s->out_off += (size_t)n;
  }
  if (s->out_off == s->out_len) s->out_off = s->out_len = 0;
}

static size_t out_room(server *s) {
  if (s->out_off > 0) {
    memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
    s->out_len -= s->out_off;
    s->out_off = 0;
  }
  return OUT_CAP - s->out_len;
}

static void send_msg(server *s, const Espfleet__CtrlMsg *msg, const char *endpoint) {
  size_t n = ef_ctrl_msg_frame(msg, endpoint, s->out + s->out_len, out_room(s));
  if (n == 0) {
    ef_warn("output full: %s not sent", ef_ctrl_msg_name(msg->msg_id));
    return;
  }
  s->out_len += n;
  flush_out(s);
}

static void send_response(server *s, const Espfleet__CtrlMsg *msg) {
  s->responses++;
  /* the file is current before the host hears the outcome: a --show right
   * after the host's call returns sees what the host was told */
  save_header(s, false);
  if (sim_faults_fire(&s->cfg->faults, SIM_FAULT_DROP_RESPONSE, s->responses)) {
    ef_info("fault drop-response: response #%llu (%s) not sent", (unsigned long long)s->responses,
            ef_ctrl_msg_name(msg->msg_id));
    return;
  }
  send_msg(s, msg, EF_TLV_EP_RESP);
}

/* Answers a request whose response carries only `resp`. */
static void respond(server *s, const Espfleet__CtrlMsg *req, int32_t resp) {
  ef_ctrl_msg m;
  if (ef_ctrl_msg_init(&m, req->msg_id + EF_CTRL_RESP_OFFSET, req->uid) != EF_OK ||
      ef_ctrl_msg_set_resp(&m, resp) != EF_OK) {
    ef_error("internal: no response type for msg id %d", req->msg_id);
    return;
  }
  if (resp != 0) ef_info("%s -> resp %d", ef_ctrl_msg_name(req->msg_id), resp);
  send_response(s, &m.msg);
}

/* ---- requests ------------------------------------------------------------ */

static void on_ota_begin(server *s, const Espfleet__CtrlMsg *req) {
  sim_flash_header *h = &s->flash->hdr;
  h->counters.ota_begin++;
  if (sim_faults_fire(&s->cfg->faults, SIM_FAULT_BEGIN_FAIL, 0)) {
    ef_info("fault begin-fail");
    respond(s, req, ESP_FAIL);
    return;
  }
  /* the slot after the running one, as esp_ota_get_next_update_partition */
  unsigned slot = s->running == 0 ? 1 : 0;
  /* an image selected but not yet booted is overwritten: keep booting what runs */
  if (h->boot_slot == slot) h->boot_slot = s->running >= 0 ? (uint32_t)s->running : SIM_FLASH_NO_SLOT;
  if (sim_flash_erase(s->flash, slot) != EF_OK) {
    ef_error("erasing slot %u failed: %s", slot, strerror(errno));
    respond(s, req, ESP_FAIL);
    return;
  }
  h->slots[slot].state = SIM_SLOT_WRITING;
  save_header(s, false);
  flash_busy(s, s->cfg->erase_ms_per_4k * ((h->slot_size + 4095) / 4096) * NS_PER_MS);
  s->ota_active = true;
  s->ota_slot = slot;
  s->ota_written = s->ota_writes = 0;
  ef_info("OTA begin: slot %u erased (%llu bytes)", slot, (unsigned long long)h->slot_size);
  respond(s, req, 0);
}

static void on_ota_write(server *s, const Espfleet__CtrlMsg *req) {
  sim_flash_header *h = &s->flash->hdr;
  const uint8_t *data = NULL;
  size_t len = 0;
  int32_t resp = 0;
  if (req->req_ota_write) {
    data = req->req_ota_write->ota_data.data;
    len = req->req_ota_write->ota_data.len;
  }
  h->counters.ota_write++;
  s->ota_writes++;
  if (!s->ota_active) {
    resp = ESP_ERR_INVALID_STATE;
  } else if (len == 0) {
    resp = ESP_ERR_INVALID_ARG;
  } else if (s->ota_written == 0 && data[0] != EF_IMAGE_MAGIC) {
    /* esp_ota_write checks the image magic on the first chunk */
    resp = ESP_ERR_OTA_VALIDATE_FAILED;
  } else if (s->ota_written + len > h->slot_size) {
    resp = ESP_ERR_INVALID_SIZE;
  } else if (sim_faults_fire(&s->cfg->faults, SIM_FAULT_WRITE_FAIL, s->ota_writes)) {
    ef_info("fault write-fail: write #%llu", (unsigned long long)s->ota_writes);
    resp = ESP_FAIL;
  } else if (sim_flash_write(s->flash, s->ota_slot, s->ota_written, data, len) != EF_OK) {
    ef_error("writing slot %u failed: %s", s->ota_slot, strerror(errno));
    resp = ESP_FAIL;
  }
  if (resp == 0) {
    s->ota_written += len;
    h->counters.ota_write_bytes += len;
    uint64_t cost = s->cfg->latency_us * 1000ull;
    if (s->cfg->flash_kbps) cost += (uint64_t)len * 1000000000ull / (s->cfg->flash_kbps * 1024);
    flash_busy(s, cost);
    if (sim_faults_fire(&s->cfg->faults, SIM_FAULT_RESET_AFTER, s->ota_written)) {
      /* the chip resets while handling this write: it is never answered */
      ef_info("fault reset-after: reset after %llu bytes", (unsigned long long)s->ota_written);
      save_header(s, false);
      s->reset_now = true;
      return;
    }
  }
  respond(s, req, resp);
}

/* Reads back what the OTA wrote and checks it as esp_ota_end does. */
static ef_err check_written_image(server *s, sim_slot_info *info, char *why, size_t why_len) {
  ef_image_validator *v = NULL;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  ef_image_summary sum;
  ef_err err = ef_image_validator_new(&v);
  unsigned int mdlen = 0;
  why[0] = '\0';
  if (err != EF_OK || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
    err = EF_ERR_NOMEM;
    goto out;
  }
  for (uint64_t off = 0; off < s->ota_written;) {
    size_t n = SCRATCH_SIZE;
    if (s->ota_written - off < n) n = (size_t)(s->ota_written - off);
    err = sim_flash_read(s->flash, s->ota_slot, off, s->scratch, n);
    if (err != EF_OK) goto out;
    EVP_DigestUpdate(md, s->scratch, n);
    err = ef_image_feed(v, s->scratch, n);
    if (err != EF_OK) goto out;
    off += n;
  }
  err = ef_image_finish(v, &sum);
  if (err != EF_OK) goto out;
  const ef_image_header *hdr = ef_image_get_header(v);
  const ef_app_desc *desc = ef_image_get_app_desc(v);
  if (hdr->chip_id != s->cfg->chip_id) {
    snprintf(why, why_len, "image is for chip id 0x%04x (%s), this is 0x%04x", hdr->chip_id,
             ef_chip_name(hdr->chip_id) ? ef_chip_name(hdr->chip_id) : "unknown", s->cfg->chip_id);
    err = EF_ERR_CHIP_MISMATCH;
    goto out;
  }
  memset(info, 0, sizeof *info);
  info->state = SIM_SLOT_VALID;
  info->chip_id = hdr->chip_id;
  info->length = s->ota_written;
  info->secure_version = desc->secure_version;
  snprintf(info->version, sizeof info->version, "%s", desc->version);
  snprintf(info->project, sizeof info->project, "%s", desc->project_name);
  snprintf(info->idf_version, sizeof info->idf_version, "%s", desc->idf_ver);
  EVP_DigestFinal_ex(md, info->sha256, &mdlen);
out:
  if (err != EF_OK && why[0] == '\0')
    snprintf(why, why_len, "%s%s%s", ef_err_name(err), v && ef_image_detail(v)[0] ? ": " : "",
             v ? ef_image_detail(v) : "");
  EVP_MD_CTX_free(md);
  ef_image_validator_free(v);
  return err;
}

static void on_ota_end(server *s, const Espfleet__CtrlMsg *req) {
  sim_flash_header *h = &s->flash->hdr;
  sim_slot_info info;
  char why[256];
  h->counters.ota_end++;
  if (!s->ota_active) {
    respond(s, req, ESP_ERR_NOT_FOUND);
    return;
  }
  s->ota_active = false;
  if (sim_faults_fire(&s->cfg->faults, SIM_FAULT_END_REJECT, 0)) {
    snprintf(why, sizeof why, "fault end-reject");
  } else if (check_written_image(s, &info, why, sizeof why) == EF_OK) {
    h->slots[s->ota_slot] = info;
    h->boot_slot = s->ota_slot;
    save_header(s, true); /* the otadata switch must survive a crash */
    s->reboot_at = now_ns() + s->cfg->reboot_delay_ms * NS_PER_MS;
    s->reboot_planned = s->reboot_at;
    ef_info("OTA end: slot %u holds %s %s (%llu bytes); rebooting in %llu ms", s->ota_slot,
            info.project, info.version, (unsigned long long)info.length,
            (unsigned long long)s->cfg->reboot_delay_ms);
    respond(s, req, 0);
    return;
  }
  ef_info("OTA end rejected: %s", why);
  h->slots[s->ota_slot].state = SIM_SLOT_REJECTED;
  h->slots[s->ota_slot].length = s->ota_written;
  h->counters.ota_end_rejected++;
  save_header(s, true);
  respond(s, req, ESP_ERR_OTA_VALIDATE_FAILED);
}

static void on_get_fw_version(server *s, const Espfleet__CtrlMsg *req) {
  ef_ctrl_msg m;
  uint32_t num[5];
  if (ef_ctrl_msg_init(&m, EF_CTRL_REQ_GET_FW_VERSION + EF_CTRL_RESP_OFFSET, req->uid) != EF_OK)
    return;
  if (s->running >= 0)
    sim_version_numbers(s->flash->hdr.slots[s->running].version, num);
  else
    memcpy(num, s->cfg->factory_version, sizeof num);
  Espfleet__RespGetFwVersion *r = &m.body.resp_get_fw_version;
  r->resp = 0;
  r->name = s->cfg->fw_name;
  r->major1 = num[0];
  r->major2 = num[1];
  r->minor = num[2];
  r->rev_patch1 = num[3];
  r->rev_patch2 = num[4];
  send_response(s, &m.msg);
}

static void on_enable_disable(server *s, const Espfleet__CtrlMsg *req) {
  const Espfleet__ReqEnableDisable *r = req->req_enable_disable;
  uint32_t feature = r ? r->feature : 0;
  uint32_t on = r && r->enable ? 1 : 0;
  if (feature == ESPFLEET__HOSTED_FEATURE__FEATURE_BLUETOOTH) {
    s->flash->hdr.bluetooth = on;
  } else if (feature == ESPFLEET__HOSTED_FEATURE__FEATURE_WIFI) {
    s->flash->hdr.wifi = on;
  } else if (feature != ESPFLEET__HOSTED_FEATURE__FEATURE_IS_NETWORK_SPLIT_ON) {
    respond(s, req, ESP_ERR_INVALID_ARG);
    return;
  }
  ef_info("feature %u %s", feature, on ? "enabled" : "disabled");
  respond(s, req, 0);
}

static void on_config_heartbeat(server *s, const Espfleet__CtrlMsg *req) {
  const Espfleet__ReqConfigHeartbeat *r = req->req_config_heartbeat;
  if (r && r->enable) {
    if (r->duration <= 0) {
      respond(s, req, ESP_ERR_INVALID_ARG);
      return;
    }
    s->hb_enabled = true;
    s->hb_period = (uint64_t)r->duration * 1000 * NS_PER_MS;
    s->hb_next = now_ns() + s->hb_period;
  } else {
    s->hb_enabled = false;
  }
  respond(s, req, 0);
}

/* A request the simulated firmware does not implement: a response of the
 * matching id (or Resp_Base) without a payload, which carries no resp 0. */
static void on_unknown(server *s, const Espfleet__CtrlMsg *req) {
  Espfleet__CtrlMsg m;
  espfleet__ctrl_msg__init(&m);
  m.msg_type = ESPFLEET__CTRL_MSG_TYPE__MSG_TYPE_RESP;
  m.msg_id = (req->msg_id > 100 && req->msg_id < 129) ? req->msg_id + EF_CTRL_RESP_OFFSET
                                                       : ESPFLEET__CTRL_MSG_ID__RESP_BASE;
  m.uid = req->uid;
  ef_info("unsupported request %d answered without payload", req->msg_id);
  send_response(s, &m);
}

static void handle_frame(server *s, const ef_tlv_frame *f) {
  Espfleet__CtrlMsg *req = NULL;
  if (strcmp(f->endpoint, EF_TLV_EP_RESP) != 0) {
    ef_warn("frame on endpoint \"%s\" ignored", f->endpoint);
    return;
  }
  if (ef_ctrl_msg_parse(f->payload, f->payload_len, &req) != EF_OK) {
    ef_warn("undecodable CtrlMsg (%zu bytes) ignored", f->payload_len);
    return;
  }
  if (req->msg_type != ESPFLEET__CTRL_MSG_TYPE__MSG_TYPE_REQ) {
    ef_warn("message type %d (id %d) from the host ignored", req->msg_type, req->msg_id);
    goto out;
  }
  s->flash->hdr.counters.requests++;
  if (sim_faults_armed(&s->cfg->faults, SIM_FAULT_NO_ANSWER)) {
    ef_debug("fault no-answer: %s ignored", ef_ctrl_msg_name(req->msg_id));
    goto out;
  }
  ef_debug("%s uid %d", ef_ctrl_msg_name(req->msg_id), req->uid);
  switch ((int)req->msg_id) {
  case EF_CTRL_REQ_OTA_BEGIN: on_ota_begin(s, req); break;
  case EF_CTRL_REQ_OTA_WRITE: on_ota_write(s, req); break;
  case EF_CTRL_REQ_OTA_END: on_ota_end(s, req); break;
  case EF_CTRL_REQ_GET_FW_VERSION: on_get_fw_version(s, req); break;
  case EF_CTRL_REQ_ENABLE_DISABLE: on_enable_disable(s, req); break;
  case EF_CTRL_REQ_CONFIG_HEARTBEAT: on_config_heartbeat(s, req); break;
  default: on_unknown(s, req); break;
  }
out:
  ef_ctrl_msg_free(req);
}

/* ---- events ------------------------------------------------------------ */

static void send_init(server *s) {
  ef_ctrl_msg m;
  char text[96];
  s->init_pending = false;
  if (sim_faults_armed(&s->cfg->faults, SIM_FAULT_NO_ANSWER)) return;
  if (ef_ctrl_msg_init(&m, EF_CTRL_EVENT_ESP_INIT, 0) != EF_OK) return;
  int n = snprintf(text, sizeof text, "espfleet-sim chip=%s slot=%d",
                   ef_chip_name(s->cfg->chip_id) ? ef_chip_name(s->cfg->chip_id) : "unknown",
                   s->running);
  m.body.event_esp_init.init_data.data = (uint8_t *)text;
  m.body.event_esp_init.init_data.len = (size_t)n;
  ef_debug("sending ESPInit");
  send_msg(s, &m.msg, EF_TLV_EP_EVENT);
}

static void send_heartbeat(server *s) {
  ef_ctrl_msg m;
  s->hb_next += s->hb_period;
  if (ef_ctrl_msg_init(&m, EF_CTRL_EVENT_HEARTBEAT, 0) != EF_OK) return;
  m.body.event_heartbeat.hb_num = ++s->hb_num;
  send_msg(s, &m.msg, EF_TLV_EP_EVENT);
}

/* ---- boot, link and the loop -------------------------------------------- */

/* What the bootloader does: boot the selected slot; a newly selected image
 * that fails to boot is marked and the previous one boots instead. */
static void boot(server *s) {
  sim_flash_header *h = &s->flash->hdr;
  int prev = sim_flash_running_slot(s->flash);
  int slot = (h->boot_slot <= 1 && h->slots[h->boot_slot].state == SIM_SLOT_VALID) ? (int)h->boot_slot : -1;
  h->counters.boots++;
  if (slot >= 0 && slot != prev && sim_faults_fire(&s->cfg->faults, SIM_FAULT_BOOT_FAIL, 0)) {
    ef_info("fault boot-fail: slot %d does not boot; rolling back", slot);
    h->slots[slot].state = SIM_SLOT_BOOT_FAILED;
    h->counters.boots++; /* the bootloader's second attempt */
    slot = -1;
  }
  if (slot < 0) {
    if (prev >= 0) slot = prev;
    else if (h->slots[0].state == SIM_SLOT_VALID) slot = 0;
    else if (h->slots[1].state == SIM_SLOT_VALID) slot = 1;
    h->boot_slot = slot >= 0 ? (uint32_t)slot : SIM_FLASH_NO_SLOT;
  }
  h->running_slot = slot >= 0 ? (uint32_t)slot : SIM_FLASH_NO_SLOT;
  s->running = slot;
  s->ota_active = false;
  s->hb_enabled = false;
  save_header(s, true);
  if (slot >= 0)
    ef_info("booted slot %d: %s %s", slot, h->slots[slot].project, h->slots[slot].version);
  else
    ef_info("booted the factory app (no OTA image)");
}

/* The real firmware sends ESPInit once, when it boots; a host that opens the
 * node later never sees it (it drains stale bytes on open). The simulator
 * holds it back until the host re-opens the link after a reboot, so the host
 * that is waiting for the reboot gets it, but only for INIT_WINDOW_MS: an
 * ESPInit much later, in the middle of the next OTA, would tell that host
 * the ESP had just rebooted. At power-on (simulator start) there is none. */
#define INIT_WINDOW_MS 2000

static ef_err link_up(server *s, bool after_reboot) {
  ef_err err = sim_pty_up(&s->pty, s->cfg->link);
  if (err != EF_OK) return err;
  s->init_pending = after_reboot;
  s->link_up_at = now_ns();
  /* without open notifications, send ESPInit right away (it may be drained) */
  s->init_at = s->pty.watch_fd < 0 ? now_ns() + s->cfg->init_delay_ms * NS_PER_MS : 0;
  ef_debug("link %s -> %s", s->cfg->link, s->pty.slave_path);
  return EF_OK;
}

static ef_err reboot(server *s) {
  ef_info("rebooting");
  sim_pty_down(&s->pty);
  ef_tlv_reader_reset(s->rx);
  s->out_off = s->out_len = 0;
  s->reboot_at = 0;
  s->reset_now = false;
  sleep_until(s, now_ns() + s->cfg->down_ms * NS_PER_MS);
  if (s->quit) return EF_OK;
  boot(s);
  return link_up(s, true);
}

static void read_input(server *s) {
  for (;;) {
    size_t cap = ef_tlv_reader_space(s->rx);
    if (cap > SCRATCH_SIZE) cap = SCRATCH_SIZE;
    if (cap == 0) return;
    ssize_t n = read(s->pty.master, s->scratch, cap);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    if (ef_tlv_reader_feed(s->rx, s->scratch, (size_t)n) != EF_OK) return;
    if ((size_t)n < cap) return;
  }
}

static void process_frames(server *s) {
  ef_tlv_frame f;
  uint64_t dropped = s->rx->dropped;
  while (!s->quit && !s->reset_now && s->pty.master >= 0 && out_room(s) >= OUT_MAX_MSG &&
         ef_tlv_reader_next(s->rx, &f))
    handle_frame(s, &f);
  if (s->rx->dropped != dropped)
    ef_warn("skipped %llu bytes that were not a frame", (unsigned long long)(s->rx->dropped - dropped));
}

/* True while bytes we sent (the answer to OTA end) wait unread in the
 * host's side of the pty, for at most ANSWER_GRACE_MS after the planned
 * reboot: closing the pty would throw them away. */
#define ANSWER_GRACE_MS 1000
static bool answer_unread(server *s, uint64_t now) {
  int queued = 0;
  if (s->out_len > s->out_off) return now < s->reboot_planned + ANSWER_GRACE_MS * NS_PER_MS;
  if (s->pty.slave < 0 || ioctl(s->pty.slave, FIONREAD, &queued) != 0) return false;
  return queued > 0 && now < s->reboot_planned + ANSWER_GRACE_MS * NS_PER_MS;
}

static uint64_t earliest(uint64_t a, uint64_t b) { return a == 0 ? b : (b == 0 || a < b ? a : b); }

static void wait_io(server *s) {
  struct pollfd pfd[3];
  nfds_t n = 0;
  uint64_t deadline = s->reboot_at;
  if (s->init_pending && s->init_at) deadline = earliest(deadline, s->init_at);
  if (s->hb_enabled) deadline = earliest(deadline, s->hb_next);

  pfd[n++] = (struct pollfd){.fd = s->sig_fd, .events = POLLIN};
  short ev = 0;
  if (s->out_len - s->out_off < OUT_HIGH_WATER && ef_tlv_reader_space(s->rx) > 0) ev |= POLLIN;
  if (s->out_len > s->out_off) ev |= POLLOUT;
  pfd[n++] = (struct pollfd){.fd = s->pty.master, .events = ev};
  if (s->pty.watch_fd >= 0) pfd[n++] = (struct pollfd){.fd = s->pty.watch_fd, .events = POLLIN};

  struct timespec ts, *tsp = NULL;
  if (deadline) {
    uint64_t now = now_ns();
    ts = ns_to_ts(deadline > now ? deadline - now : 0);
    tsp = &ts;
  }
  if (ppoll(pfd, n, tsp, NULL) <= 0) return;
  if (pfd[0].revents) take_signal(s);
  if (n > 2 && pfd[2].revents && sim_pty_host_opened(&s->pty) && s->init_pending && !s->init_at) {
    if (now_ns() - s->link_up_at <= INIT_WINDOW_MS * NS_PER_MS)
      s->init_at = now_ns() + s->cfg->init_delay_ms * NS_PER_MS;
    else
      s->init_pending = false; /* too late: the boot-time event is long gone */
  }
  if (pfd[1].revents & POLLOUT) flush_out(s);
  if (pfd[1].revents & POLLIN) read_input(s);
}

ef_err sim_serve(sim_config *cfg, sim_flash *flash) {
  server srv = {.cfg = cfg, .flash = flash, .sig_fd = -1, .running = -1,
                .pty = {.master = -1, .slave = -1, .watch_fd = -1}};
  server *s = &srv;
  sigset_t mask;
  ef_err err = EF_ERR_NOMEM;

  s->rx = malloc(sizeof *s->rx);
  s->out = malloc(OUT_CAP);
  s->scratch = malloc(SCRATCH_SIZE);
  if (!s->rx || !s->out || !s->scratch) goto out;
  ef_tlv_reader_reset(s->rx);
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  s->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (s->sig_fd < 0) {
    err = EF_ERR_INTERNAL;
    goto out;
  }

  boot(s);
  err = link_up(s, false);
  if (err != EF_OK) goto out;
  ef_info("simulated %s at %s (%s)", ef_chip_name(cfg->chip_id), cfg->link, s->pty.slave_path);

  while (!s->quit) {
    uint64_t now = now_ns();
    if (s->reboot_at && now >= s->reboot_at && !s->reset_now && answer_unread(s, now)) {
      /* the real firmware waits seconds before its restart; with a shorter
       * --reboot-delay-ms the host must at least get to read the answer */
      s->reboot_at = now + NS_PER_MS;
    }
    if (s->reset_now || (s->reboot_at && now >= s->reboot_at)) {
      err = reboot(s);
      if (err != EF_OK) goto out;
      continue;
    }
    if (s->init_pending && s->init_at && now >= s->init_at) send_init(s);
    if (s->hb_enabled && now >= s->hb_next) send_heartbeat(s);
    process_frames(s);
    if (s->quit || s->reset_now) continue;
    wait_io(s);
  }
  err = s->fatal;
out:
  sim_pty_down(&s->pty);
  if (sim_flash_save(flash, true) != EF_OK && err == EF_OK) err = EF_ERR_IO;
  if (s->sig_fd >= 0) close(s->sig_fd);
  free(s->rx);
  free(s->out);
  free(s->scratch);
  return err;
}
