/*
 * The request handlers of the simulated firmware: what ESP-Hosted-FG's
 * slave_control.c does with each control request (docs/simulator.md cites
 * the function for each behaviour). Every handler answers resp 0 (SUCCESS)
 * or -1 (FAILURE), never an esp_err_t; a request id the firmware has no
 * handler for gets no answer at all.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "esp.h"
#include "espfleet/hex.h"
#include "espfleet/image.h"
#include "espfleet/log.h"
#include "espfleet/mkimage.h"

/* ConfigHeartbeat clamps the period (slave_control.c: configure_heartbeat). */
#define HB_MIN_S 10
#define HB_MAX_S 3600

/* ESP-Hosted's feature ids (HostedFeature). */
enum { FEATURE_WIFI = 1, FEATURE_BLUETOOTH = 2, FEATURE_NETWORK_SPLIT = 3 };

/* Costs of the flash queue up: a handler starts when the previous one ends. */
static void busy_for(sim_esp *s, uint64_t start, uint64_t cost_ns) { s->busy_until = start + cost_ns; }

/* Leaves @p msg as the answer, sent when the handling is done. */
static void answer_msg(sim_esp *s, const Espfleet__CtrlMsg *msg) {
  size_t n = ef_ctrl_msg_frame(msg, EF_TLV_EP_RESP, s->answer, sizeof s->answer);
  if (n == 0) {
    ef_error("internal: %s does not fit the answer buffer", ef_ctrl_msg_name((int)msg->msg_id));
    return;
  }
  s->answer_len = n;
  s->answer_name = ef_ctrl_msg_name((int)msg->msg_id);
}

/* Answers with a response that carries only `resp`. */
static void answer(sim_esp *s, const Espfleet__CtrlMsg *req, int32_t resp) {
  ef_ctrl_msg m;
  if (ef_ctrl_msg_init(&m, (int)req->msg_id + EF_CTRL_RESP_OFFSET, req->uid) != EF_OK ||
      ef_ctrl_msg_set_resp(&m, resp) != EF_OK) {
    ef_error("internal: no response type for msg id %d", (int)req->msg_id);
    return;
  }
  if (resp != SIM_SUCCESS) ef_info("%s -> FAILURE", ef_ctrl_msg_name((int)req->msg_id));
  answer_msg(s, &m.msg);
}

/* The handlers read their payload member without a NULL check: a request
 * that lacks it crashes the firmware, and the panic handler restarts the
 * chip (slave_control.c: req_ota_write_handler, req_config_heartbeat,
 * req_enable_disable). */
static bool panics_without(sim_esp *s, const void *member, const Espfleet__CtrlMsg *req) {
  if (member) return false;
  ef_warn("%s without its payload: the firmware dereferences NULL and the chip resets",
          ef_ctrl_msg_name((int)req->msg_id));
  s->flash->hdr.counters.panics++;
  s->reset_when_done = true;
  return true;
}

/* ---- OTA ------------------------------------------------------------------ */

static void on_ota_begin(sim_esp *s, const Espfleet__CtrlMsg *req, uint64_t start) {
  sim_flash_header *h = &s->flash->hdr;
  h->counters.ota_begin++;
  if (sim_faults_fire(&s->cfg->faults, SIM_FAULT_BEGIN_FAIL, 0)) {
    ef_info("fault begin-fail");
    answer(s, req, SIM_FAILURE);
    return;
  }
  /* the slot after the running one, as esp_ota_get_next_update_partition */
  unsigned slot = s->running == 0 ? 1 : 0;
  /* an image selected but not yet booted is overwritten: keep booting what runs */
  if (h->boot_slot == slot) h->boot_slot = s->running >= 0 ? (uint32_t)s->running : SIM_FLASH_NO_SLOT;
  if (sim_flash_erase(s->flash, slot) != EF_OK) {
    ef_error("erasing slot %u failed: %s", slot, strerror(errno));
    answer(s, req, SIM_FAILURE);
    return;
  }
  h->slots[slot].state = SIM_SLOT_WRITING;
  /* esp_ota_begin(OTA_SIZE_UNKNOWN) erases the whole slot before it returns */
  busy_for(s, start, s->cfg->erase_ms_per_4k * ((h->slot_size + 4095) / 4096) * NS_PER_MS);
  s->ota_active = true;
  s->ota_slot = slot;
  s->ota_written = s->ota_writes = 0;
  ef_info("OTA begin: slot %u erased (%llu bytes)", slot, (unsigned long long)h->slot_size);
  answer(s, req, SIM_SUCCESS);
}

static void on_ota_write(sim_esp *s, const Espfleet__CtrlMsg *req, uint64_t start) {
  sim_flash_header *h = &s->flash->hdr;
  if (panics_without(s, req->req_ota_write, req)) return;
  const uint8_t *data = req->req_ota_write->ota_data.data;
  size_t len = req->req_ota_write->ota_data.len;
  const char *why = NULL;
  h->counters.ota_write++;
  s->ota_writes++;
  /* esp_ota_write's refusals, all answered FAILURE */
  if (!s->ota_active)
    why = "no OTA in progress (ESP_ERR_INVALID_ARG)";
  else if (len == 0)
    why = "empty chunk (ESP_ERR_INVALID_ARG)";
  else if (s->ota_written == 0 && data[0] != EF_IMAGE_MAGIC)
    why = "first byte is not 0xE9 (ESP_ERR_OTA_VALIDATE_FAILED)";
  else if (s->ota_written + len > h->slot_size)
    why = "past the end of the slot (ESP_ERR_INVALID_SIZE)";
  else if (sim_faults_fire(&s->cfg->faults, SIM_FAULT_WRITE_FAIL, s->ota_writes))
    why = "fault write-fail";
  else if (sim_flash_write(s->flash, s->ota_slot, s->ota_written, data, len) != EF_OK)
    why = strerror(errno);
  if (why) {
    ef_info("OTA write #%llu refused: %s", (unsigned long long)s->ota_writes, why);
    answer(s, req, SIM_FAILURE);
    return;
  }
  s->ota_written += len;
  h->counters.ota_write_bytes += len;
  uint64_t cost = s->cfg->latency_us * 1000ull;
  if (s->cfg->flash_kbps) cost += (uint64_t)len * 1000000000ull / (s->cfg->flash_kbps * 1024);
  busy_for(s, start, cost);
  if (sim_faults_fire(&s->cfg->faults, SIM_FAULT_RESET_AFTER, s->ota_written)) {
    /* the chip resets while handling this write: it is never answered */
    ef_info("fault reset-after: reset after %llu bytes", (unsigned long long)s->ota_written);
    s->reset_when_done = true;
    return;
  }
  answer(s, req, SIM_SUCCESS);
}

/*
 * Reads back what the OTA wrote and checks it as esp_ota_end does
 * (esp_image_verify: header, segments, checksum, appended SHA-256), plus the
 * chip id. Fills @p info with the image's facts: its own extent and
 * SHA-256 (what ESP-IDF would call the running image) and the SHA-256 of
 * every byte written.
 */
static ef_err check_written_image(sim_esp *s, sim_slot_info *info, char *why, size_t why_len) {
  ef_image_validator *v = NULL;
  ef_status st = EF_STATUS_INIT;
  EVP_MD_CTX *all = EVP_MD_CTX_new(), *img = EVP_MD_CTX_new();
  ef_image_summary sum;
  uint8_t *buf = s->scratch;
  char release[EF_MKIMAGE_RELEASE_MAX + 1] = "";
  unsigned int mdlen = 0;
  ef_err err = ef_image_validator_new(&v);
  why[0] = '\0';
  if (err != EF_OK || !all || !img || EVP_DigestInit_ex(all, EVP_sha256(), NULL) != 1 ||
      EVP_DigestInit_ex(img, EVP_sha256(), NULL) != 1) {
    err = EF_ERR_NOMEM;
    goto out;
  }
  for (uint64_t off = 0; off < s->ota_written;) {
    size_t n = SIM_SCRATCH_SIZE;
    if (s->ota_written - off < n) n = (size_t)(s->ota_written - off);
    err = sim_flash_read(s->flash, s->ota_slot, off, buf, n);
    if (err != EF_OK) goto out;
    if (off == 0 && !ef_mkimage_find_release(buf, n < 4096 ? n : 4096, release)) release[0] = '\0';
    EVP_DigestUpdate(all, buf, n);
    err = ef_image_feed(v, buf, n, &st);
    if (err != EF_OK) goto out;
    off += n;
  }
  err = ef_image_finish(v, &sum, &st);
  if (err != EF_OK) goto out;
  const ef_image_header *hdr = ef_image_get_header(v);
  const ef_app_desc *desc = ef_image_get_app_desc(v);
  if (hdr->chip_id != s->cfg->chip_id) {
    snprintf(why, why_len, "image is for chip id 0x%04x (%s), this is 0x%04x", hdr->chip_id,
             ef_chip_name(hdr->chip_id) ? ef_chip_name(hdr->chip_id) : "unknown", s->cfg->chip_id);
    err = EF_ERR_CHIP_MISMATCH;
    goto out;
  }
  /* the image's own extent, hashed in a second pass over its bytes only */
  for (uint64_t off = 0; off < sum.image_size;) {
    size_t n = SIM_SCRATCH_SIZE;
    if (sum.image_size - off < n) n = (size_t)(sum.image_size - off);
    err = sim_flash_read(s->flash, s->ota_slot, off, buf, n);
    if (err != EF_OK) goto out;
    EVP_DigestUpdate(img, buf, n);
    off += n;
  }
  memset(info, 0, sizeof *info);
  info->state = SIM_SLOT_VALID;
  info->chip_id = hdr->chip_id;
  info->length = s->ota_written;
  info->image_length = sum.image_size;
  info->secure_version = desc->secure_version;
  snprintf(info->version, sizeof info->version, "%s", desc->version);
  snprintf(info->project, sizeof info->project, "%s", desc->project_name);
  snprintf(info->idf_version, sizeof info->idf_version, "%s", desc->idf_ver);
  snprintf(info->release, sizeof info->release, "%s", release);
  EVP_DigestFinal_ex(img, info->sha256, &mdlen);
  EVP_DigestFinal_ex(all, info->written_sha256, &mdlen);
out:
  if (err != EF_OK && why[0] == '\0')
    snprintf(why, why_len, "%s%s%s", ef_err_name(err), st.detail[0] ? ": " : "", st.detail);
  EVP_MD_CTX_free(all);
  EVP_MD_CTX_free(img);
  ef_image_validator_free(v);
  return err;
}

static void on_ota_end(sim_esp *s, const Espfleet__CtrlMsg *req, uint64_t start) {
  sim_flash_header *h = &s->flash->hdr;
  sim_slot_info info;
  char why[256], sha[65];
  h->counters.ota_end++;
  if (!s->ota_active) {
    ef_info("OTA end without an OTA in progress (ESP_ERR_NOT_FOUND)");
    answer(s, req, SIM_FAILURE);
    return;
  }
  /* esp_ota_end frees the handle whatever the outcome */
  s->ota_active = false;
  if (sim_faults_fire(&s->cfg->faults, SIM_FAULT_END_REJECT, 0)) {
    snprintf(why, sizeof why, "fault end-reject");
  } else if (check_written_image(s, &info, why, sizeof why) == EF_OK) {
    h->slots[s->ota_slot] = info;
    h->boot_slot = s->ota_slot;
    sim_save_header(s, true); /* the otadata switch must survive a crash */
    /* the restart is a one-shot timer started after the answer is made
     * (req_ota_end_handler: xTimerCreate(RESTART_TIMEOUT), vTimerCallback) */
    s->reboot_at = start + s->cfg->reboot_delay_ms * NS_PER_MS;
    s->reboot_planned = s->reboot_at;
    ef_hex(info.sha256, 32, sha);
    ef_info("OTA end: slot %u holds %s %s (%llu bytes, sha256 %.16s…); rebooting in %llu ms", s->ota_slot,
            info.project, info.version, (unsigned long long)info.image_length, sha,
            (unsigned long long)s->cfg->reboot_delay_ms);
    answer(s, req, SIM_SUCCESS);
    return;
  }
  ef_info("OTA end rejected: %s", why);
  h->slots[s->ota_slot].state = SIM_SLOT_REJECTED;
  h->slots[s->ota_slot].length = s->ota_written;
  h->counters.ota_end_rejected++;
  sim_save_header(s, true);
  answer(s, req, SIM_FAILURE);
}

/* ---- the rest --------------------------------------------------------------- */

/* The release constants compiled into the running firmware
 * (req_get_fw_version_handler: PROJECT_NAME, PROJECT_VERSION_*). An image
 * from mkimage carries them in its release record; an image without one
 * counts as built from the simulator's own release (--fw-version). */
static void on_get_fw_version(sim_esp *s, const Espfleet__CtrlMsg *req) {
  ef_ctrl_msg m;
  ef_fw_version v = s->cfg->release;
  if (s->running >= 0) {
    const char *rec = s->flash->hdr.slots[s->running].release;
    if (rec[0] && ef_fw_version_parse(rec, &v) != EF_OK) v = s->cfg->release;
  }
  if (ef_ctrl_msg_init(&m, EF_CTRL_REQ_GET_FW_VERSION + EF_CTRL_RESP_OFFSET, req->uid) != EF_OK) return;
  Espfleet__RespGetFwVersion *r = &m.body.resp_get_fw_version;
  r->resp = SIM_SUCCESS;
  r->name = v.name;
  r->major1 = v.major1;
  r->major2 = v.major2;
  r->minor = v.minor;
  r->rev_patch1 = v.rev_patch1;
  r->rev_patch2 = v.rev_patch2;
  answer_msg(s, &m.msg);
}

/* enable_disable_feature: Wi-Fi always; Bluetooth only where the chip has
 * it (disabling always works); network split is off in every chip's
 * sdkconfig.defaults, so asking for it answers FAILURE; anything else too. */
static void on_enable_disable(sim_esp *s, const Espfleet__CtrlMsg *req) {
  if (panics_without(s, req->req_enable_disable, req)) return;
  uint32_t feature = req->req_enable_disable->feature;
  bool on = req->req_enable_disable->enable;
  int32_t resp = SIM_SUCCESS;
  if (feature == FEATURE_WIFI) {
    s->flash->hdr.wifi = on;
  } else if (feature == FEATURE_BLUETOOTH) {
    if (on && !s->cfg->has_bluetooth)
      resp = SIM_FAILURE;
    else
      s->flash->hdr.bluetooth = on;
  } else {
    resp = SIM_FAILURE;
  }
  ef_info("feature %u %s: %s", feature, on ? "enable" : "disable", resp == SIM_SUCCESS ? "ok" : "FAILURE");
  answer(s, req, resp);
}

static void on_config_heartbeat(sim_esp *s, const Espfleet__CtrlMsg *req, uint64_t start) {
  if (panics_without(s, req->req_config_heartbeat, req)) return;
  const Espfleet__ReqConfigHeartbeat *r = req->req_config_heartbeat;
  /* stop_heartbeat first in both cases: the count starts again */
  s->hb_enabled = false;
  s->hb_num = 0;
  if (r->enable) {
    int32_t d = r->duration;
    if (d < HB_MIN_S) d = HB_MIN_S;
    if (d > HB_MAX_S) d = HB_MAX_S;
    s->hb_enabled = true;
    s->hb_period = (uint64_t)d * 1000 * NS_PER_MS;
    s->hb_next = start + s->hb_period;
    ef_info("heartbeat every %d s", d);
  }
  answer(s, req, SIM_SUCCESS);
}

/* The firmware's table has a handler for every id from 101 to 128
 * (slave_control.c: req_table); the simulator models only those above. For
 * the Wi-Fi ones it answers with the response id and no payload, which a
 * host cannot mistake for success. Any other id has no handler: the
 * dispatcher fails and nothing is sent (esp_ctrl_msg_command_dispatcher). */
static void on_other(sim_esp *s, const Espfleet__CtrlMsg *req) {
  int id = (int)req->msg_id;
  if (id <= 100 || id >= 129) {
    ef_info("request id %d has no handler in the firmware: no answer", id);
    s->flash->hdr.counters.unanswered++;
    return;
  }
  Espfleet__CtrlMsg m;
  espfleet__ctrl_msg__init(&m);
  m.msg_type = ESPFLEET__CTRL_MSG_TYPE__MSG_TYPE_RESP;
  m.msg_id = (Espfleet__CtrlMsgId)(id + EF_CTRL_RESP_OFFSET);
  m.uid = req->uid;
  ef_info("request %d (Wi-Fi) is not simulated: answered without payload", id);
  answer_msg(s, &m);
}

void sim_handle_request(sim_esp *s, const Espfleet__CtrlMsg *req, uint64_t start) {
  s->answer_len = 0;
  s->busy_until = start;
  s->flash->hdr.counters.requests++;
  ef_debug("%s uid %d", ef_ctrl_msg_name((int)req->msg_id), req->uid);
  switch ((int)req->msg_id) {
  case EF_CTRL_REQ_OTA_BEGIN: on_ota_begin(s, req, start); break;
  case EF_CTRL_REQ_OTA_WRITE: on_ota_write(s, req, start); break;
  case EF_CTRL_REQ_OTA_END: on_ota_end(s, req, start); break;
  case EF_CTRL_REQ_GET_FW_VERSION: on_get_fw_version(s, req); break;
  case EF_CTRL_REQ_ENABLE_DISABLE: on_enable_disable(s, req); break;
  case EF_CTRL_REQ_CONFIG_HEARTBEAT: on_config_heartbeat(s, req, start); break;
  default: on_other(s, req); break;
  }
}
