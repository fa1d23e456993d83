/*
 * The OTA engine. Bytes flow one way: source -> SHA-256 -> validator -> ESP.
 *
 * Two rules shape this file:
 *  - Nothing is erased before the image is known to fit: the first bytes are
 *    held back until the header and app description are parsed and checked
 *    (chip, project, version, size, the caller's policy); only then OTA begin.
 *  - Nothing is activated before it is known to be right: OTA end is sent
 *    only after the whole stream is in, the size and SHA-256 match and the
 *    validator accepts checksum and digest. ESP-Hosted has no abort command;
 *    an image without OTA end is simply never booted.
 */
#include "espfleet/ota.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/hex.h"
#include "espfleet/log.h"

/* Enough to hold the header and app description before OTA begin. */
#define HOLD_MIN 1024

void ef_ota_request_init(ef_ota_request *r) {
  memset(r, 0, sizeof *r);
  r->chip_id = -1;
  r->chunk_size = EF_CTRL_DEFAULT_CHUNK;
}

/* The expectations that can be checked from the first 288 bytes. */
static ef_err check_identity(const ef_ota_request *req, const ef_image_header *hdr, const ef_app_desc *desc,
                             ef_status *st) {
  if (req->chip_id >= 0 && hdr->chip_id != (uint16_t)req->chip_id) {
    const char *want = ef_chip_name((uint16_t)req->chip_id);
    const char *got = ef_chip_name(hdr->chip_id);
    return ef_status_fail(st, EF_ERR_CHIP_MISMATCH, "image is for %s (0x%04x), device is %s",
                          got ? got : "an unknown chip", hdr->chip_id, want ? want : "unknown");
  }
  if (req->project && strcmp(req->project, desc->project_name) != 0)
    return ef_status_fail(st, EF_ERR_PROJECT_MISMATCH, "image project is \"%s\", expected \"%s\"",
                          desc->project_name, req->project);
  if (req->version && strcmp(req->version, desc->version) != 0)
    return ef_status_fail(st, EF_ERR_VERSION_MISMATCH, "image version is \"%s\", expected \"%s\"",
                          desc->version, req->version);
  if (req->on_image) {
    ef_err err = req->on_image(req->arg, hdr, desc, st);
    if (err != EF_OK)
      return ef_status_fail(st, err, "refused by the caller's image check"); /* if it said nothing */
  }
  return EF_OK;
}

/* Reads the next bytes and passes them through hash and validator. */
static ef_err pull(ef_source *src, const ef_ota_request *req, ef_ota_result *res, ef_image_validator *val,
                   uint8_t *dst, size_t cap, size_t *got, ef_status *st) {
  for (;;) {
    ef_status why = EF_STATUS_INIT;
    ef_err err = src->read(src, dst, cap, got, &why);
    if (err == EF_OK) break;
    ef_status_fail(&why, err, NULL); /* a source that said nothing */
    /* The caller may continue the stream where it broke (HTTP Range): a
     * long image need not start over for one dropped connection. */
    if (!req->resume || !req->resume(req->arg, &why, res->bytes, src)) return ef_status_copy(st, &why);
  }
  if (*got == 0) return EF_OK;
  res->bytes += *got;
  uint64_t limit = req->size ? req->size : req->max_size;
  if (limit && res->bytes > limit)
    return ef_status_fail(st, req->size ? EF_ERR_SIZE_MISMATCH : EF_ERR_TOO_LARGE,
                          "more than %llu bytes received", (unsigned long long)limit);
  /* the validator hashes too: one SHA-256 pass serves the job's hash */
  return ef_image_feed(val, dst, *got, st);
}

/* One run's state, shared by its steps. */
typedef struct {
  ef_ctrl *ctrl;
  ef_source *src;
  const ef_ota_request *req;
  ef_ota_result *res;
  ef_image_validator *val;
  uint8_t *buf; /* held bytes before OTA begin, then one chunk */
  size_t chunk; /* bytes per OTA write */
  size_t cap;   /* size of buf */
  size_t fill;  /* bytes in buf */
  bool eof;     /* the source ended */
} ota_run;

/* Limits that need no byte of the image. */
static ef_err check_request(const ef_ota_request *req, size_t chunk, ef_status *st) {
  if (chunk > EF_CTRL_MAX_CHUNK)
    return ef_status_fail(st, EF_ERR_INVALID_ARG, "chunk size %zu is above %d", chunk, EF_CTRL_MAX_CHUNK);
  if (req->size && req->max_size && req->size > req->max_size)
    return ef_status_fail(st, EF_ERR_TOO_LARGE, "image of %llu bytes exceeds the limit of %llu",
                          (unsigned long long)req->size, (unsigned long long)req->max_size);
  return EF_OK;
}

/* Rule 1: holds back the first bytes until header and app description are
 * parsed, then checks them against the request. Nothing reached the ESP. */
static ef_err hold_until_described(ota_run *r, ef_status *st) {
  ef_err err;
  while (!ef_image_desc_ready(r->val)) {
    size_t got = 0;
    if (r->fill == r->cap) break; /* cannot happen for a valid image: desc ends at 288 */
    err = pull(r->src, r->req, r->res, r->val, r->buf + r->fill, r->cap - r->fill, &got, st);
    if (err != EF_OK) return err;
    if (got == 0) {
      r->eof = true;
      break;
    }
    r->fill += got;
  }
  if (!ef_image_desc_ready(r->val)) {
    /* too short to carry a header and app description */
    err = ef_image_finish(r->val, NULL, st);
    if (err == EF_OK)
      err = ef_status_fail(st, EF_ERR_IMAGE_TRUNCATED, "no app description in %zu bytes", r->fill);
    return err;
  }
  r->res->desc_known = true;
  r->res->header = *ef_image_get_header(r->val);
  r->res->app = *ef_image_get_app_desc(r->val);
  return check_identity(r->req, &r->res->header, &r->res->app, st);
}

/* Best effort: ESP-Hosted asks hosts to stop BT before an OTA, but an ESP
 * built without Bluetooth refuses the request and that must not block.
 * res->bt_disabled tells the caller what to turn back on. */
static void disable_bluetooth(ota_run *r) {
  ef_status why = EF_STATUS_INIT;
  if (ef_ctrl_feature(r->ctrl, EF_FEATURE_BLUETOOTH, false, &why) != EF_OK)
    ef_warn("could not disable Bluetooth before the OTA (%s); continuing", why.detail);
  else
    r->res->bt_disabled = true;
}

/* After OTA begin: the held bytes and the rest of the stream, one chunk per
 * OTA write, until the source ends, fails or the caller cancels. */
static ef_err write_stream(ota_run *r, ef_status *st) {
  const ef_ota_request *req = r->req;
  uint64_t written = 0;
  ef_err err;
  for (;;) {
    /* Fill one chunk (the held bytes may already make more than one). */
    while (!r->eof && r->fill < r->chunk) {
      size_t got = 0;
      err = pull(r->src, req, r->res, r->val, r->buf + r->fill, r->chunk - r->fill, &got, st);
      if (err != EF_OK) return err;
      if (got == 0) r->eof = true;
      r->fill += got;
    }
    if (r->fill == 0) break;
    if (req->should_cancel && req->should_cancel(req->arg))
      return ef_status_fail(st, EF_ERR_CANCELED, "canceled after %llu bytes", (unsigned long long)written);
    size_t n = r->fill < r->chunk ? r->fill : r->chunk;
    err = ef_ctrl_ota_write(r->ctrl, r->buf, n, st);
    if (err != EF_OK) return err;
    written += n;
    r->fill -= n;
    if (r->fill) memmove(r->buf, r->buf + n, r->fill);
    if (req->on_progress) req->on_progress(req->arg, written, req->size);
    if (r->eof && r->fill == 0) break;
  }
  return EF_OK;
}

/* Rule 2: every write answered, then the job's own promises (size, hash:
 * they name what went wrong with the transfer), then the validator, which
 * speaks for the image itself. EF_OK only when OTA end may be sent. */
static ef_err check_complete(ota_run *r, ef_status *st) {
  const ef_ota_request *req = r->req;
  ef_ota_result *res = r->res;
  ef_err err = ef_ctrl_ota_flush(r->ctrl, st);
  if (err != EF_OK) return err;
  err = ef_image_stream_sha256(r->val, res->sha256);
  if (err != EF_OK) return ef_status_fail(st, err, "SHA-256 final failed");
  if (req->size && res->bytes != req->size)
    return ef_status_fail(st, EF_ERR_SIZE_MISMATCH, "received %llu bytes, expected %llu",
                          (unsigned long long)res->bytes, (unsigned long long)req->size);
  if (req->sha256 && memcmp(req->sha256, res->sha256, 32) != 0) {
    char got_hex[65], want_hex[65];
    ef_hex(res->sha256, 32, got_hex);
    ef_hex(req->sha256, 32, want_hex);
    return ef_status_fail(st, EF_ERR_HASH_MISMATCH, "sha256 is %s, expected %s", got_hex, want_hex);
  }
  return ef_image_finish(r->val, NULL, st);
}

ef_err ef_ota_run(ef_ctrl *ctrl, ef_source *src, const ef_ota_request *req, ef_ota_result *res,
                  ef_status *st) {
  ota_run r = {.ctrl = ctrl, .src = src, .req = req, .res = res};
  ef_err err = EF_OK;

  memset(res, 0, sizeof *res);
  r.chunk = req->chunk_size ? req->chunk_size : EF_CTRL_DEFAULT_CHUNK;
  r.cap = r.chunk > HOLD_MIN ? r.chunk : HOLD_MIN;
  err = check_request(req, r.chunk, st);
  if (err != EF_OK) goto out;
  r.buf = malloc(r.cap);
  if (!r.buf) {
    err = ef_status_fail(st, EF_ERR_NOMEM, "cannot allocate the chunk buffer");
    goto out;
  }
  err = ef_image_validator_new(&r.val);
  if (err != EF_OK) goto out;

  err = hold_until_described(&r, st);
  if (err != EF_OK) goto out;
  if (req->disable_bt) disable_bluetooth(&r);
  err = ef_ctrl_ota_begin(ctrl, st);
  if (err != EF_OK) goto out;
  res->ota_begin_sent = true;
  if (req->on_phase) req->on_phase(req->arg, EF_OTA_PHASE_TRANSFER);

  err = write_stream(&r, st);
  if (err != EF_OK) goto out;
  if (req->on_phase) req->on_phase(req->arg, EF_OTA_PHASE_VERIFY);
  err = check_complete(&r, st);
  if (err != EF_OK) goto out;

  if (req->on_phase) req->on_phase(req->arg, EF_OTA_PHASE_ACTIVATE);
  /* The last moment anything can stop: after OTA end the ESP boots the new
   * image. The caller may just have failed to record that it goes out. */
  if (req->should_cancel && req->should_cancel(req->arg)) {
    err = ef_status_fail(st, EF_ERR_CANCELED, "stopped before OTA end");
    goto out;
  }
  res->ota_end_sent = true;
  err = ef_ctrl_ota_end(ctrl, st);
  if (err != EF_OK) goto out;

out:
  /* every failure says at least its sentence (no memory, say) */
  if (err != EF_OK) ef_status_fail(st, err, "%s", ef_err_message(err));
  ef_image_validator_free(r.val);
  free(r.buf);
  return err;
}
