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
    if (err != EF_OK) return ef_status_fail(st, err, "refused by the caller's image check"); /* if it said nothing */
  }
  return EF_OK;
}

/* Reads the next bytes and passes them through hash and validator. */
static ef_err pull(ef_source *src, const ef_ota_request *req, ef_ota_result *res,
                   ef_image_validator *val, uint8_t *dst, size_t cap, size_t *got, ef_status *st) {
  ef_err err;
  for (;;) {
    ef_status why = EF_STATUS_INIT;
    err = src->read(src, dst, cap, got, &why);
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
    return ef_status_fail(st, req->size ? EF_ERR_SIZE_MISMATCH : EF_ERR_TOO_LARGE, "more than %llu bytes received",
                          (unsigned long long)limit);
  /* the validator hashes too: one SHA-256 pass serves the job's hash */
  return ef_image_feed(val, dst, *got, st);
}

ef_err ef_ota_run(ef_ctrl *ctrl, ef_source *src, const ef_ota_request *req, ef_ota_result *res, ef_status *st) {
  ef_err err = EF_OK;
  ef_image_validator *val = NULL;
  uint8_t *buf = NULL;
  size_t chunk = req->chunk_size ? req->chunk_size : EF_CTRL_DEFAULT_CHUNK;
  size_t cap = chunk > HOLD_MIN ? chunk : HOLD_MIN;
  size_t fill = 0;
  bool eof = false;

  memset(res, 0, sizeof *res);
  if (chunk > EF_CTRL_MAX_CHUNK) {
    err = ef_status_fail(st, EF_ERR_INVALID_ARG, "chunk size %zu is above %d", chunk, EF_CTRL_MAX_CHUNK);
    goto out;
  }
  if (req->size && req->max_size && req->size > req->max_size) {
    err = ef_status_fail(st, EF_ERR_TOO_LARGE, "image of %llu bytes exceeds the limit of %llu",
                         (unsigned long long)req->size, (unsigned long long)req->max_size);
    goto out;
  }
  buf = malloc(cap);
  if (!buf) {
    err = ef_status_fail(st, EF_ERR_NOMEM, "cannot allocate the chunk buffer");
    goto out;
  }
  err = ef_image_validator_new(&val);
  if (err != EF_OK) goto out;

  /* Hold back the first bytes until the image has introduced itself. */
  while (!ef_image_desc_ready(val)) {
    size_t got = 0;
    if (fill == cap) break; /* cannot happen for a valid image: desc ends at 288 */
    err = pull(src, req, res, val, buf + fill, cap - fill, &got, st);
    if (err != EF_OK) goto out;
    if (got == 0) {
      eof = true;
      break;
    }
    fill += got;
  }
  if (!ef_image_desc_ready(val)) {
    /* too short to carry a header and app description */
    err = ef_image_finish(val, NULL, st);
    if (err == EF_OK) err = ef_status_fail(st, EF_ERR_IMAGE_TRUNCATED, "no app description in %zu bytes", fill);
    goto out;
  }
  res->desc_known = true;
  res->header = *ef_image_get_header(val);
  res->app = *ef_image_get_app_desc(val);
  err = check_identity(req, &res->header, &res->app, st);
  if (err != EF_OK) goto out;

  if (req->disable_bt) {
    /* Best effort: ESP-Hosted asks hosts to stop BT before an OTA, but an ESP
     * built without Bluetooth refuses the request and that must not block. */
    ef_status why = EF_STATUS_INIT;
    if (ef_ctrl_feature(ctrl, EF_FEATURE_BLUETOOTH, false, &why) != EF_OK)
      ef_warn("could not disable Bluetooth before the OTA (%s); continuing", why.detail);
  }
  err = ef_ctrl_ota_begin(ctrl, st);
  if (err != EF_OK) goto out;
  res->ota_begin_sent = true;
  if (req->on_phase) req->on_phase(req->arg, EF_OTA_PHASE_TRANSFER);

  uint64_t written = 0;
  for (;;) {
    /* Fill one chunk (the held bytes may already make more than one). */
    while (!eof && fill < chunk) {
      size_t got = 0;
      err = pull(src, req, res, val, buf + fill, chunk - fill, &got, st);
      if (err != EF_OK) goto out;
      if (got == 0) eof = true;
      fill += got;
    }
    if (fill == 0) break;
    if (req->should_cancel && req->should_cancel(req->arg)) {
      err = ef_status_fail(st, EF_ERR_CANCELED, "canceled after %llu bytes", (unsigned long long)written);
      goto out;
    }
    size_t n = fill < chunk ? fill : chunk;
    err = ef_ctrl_ota_write(ctrl, buf, n, st);
    if (err != EF_OK) goto out;
    written += n;
    fill -= n;
    if (fill) memmove(buf, buf + n, fill);
    if (req->on_progress) req->on_progress(req->arg, written, req->size);
    if (eof && fill == 0) break;
  }

  if (req->on_phase) req->on_phase(req->arg, EF_OTA_PHASE_VERIFY);
  err = ef_ctrl_ota_flush(ctrl, st);
  if (err != EF_OK) goto out;
  err = ef_image_stream_sha256(val, res->sha256);
  if (err != EF_OK) {
    ef_status_fail(st, err, "SHA-256 final failed");
    goto out;
  }
  /* The job's own promises first (size, hash): they name what went wrong
   * with the transfer; the validator then speaks for the image itself. */
  if (req->size && res->bytes != req->size) {
    err = ef_status_fail(st, EF_ERR_SIZE_MISMATCH, "received %llu bytes, expected %llu",
                         (unsigned long long)res->bytes, (unsigned long long)req->size);
    goto out;
  }
  if (req->sha256 && memcmp(req->sha256, res->sha256, 32) != 0) {
    char got_hex[65], want_hex[65];
    ef_hex(res->sha256, 32, got_hex);
    ef_hex(req->sha256, 32, want_hex);
    err = ef_status_fail(st, EF_ERR_HASH_MISMATCH, "sha256 is %s, expected %s", got_hex, want_hex);
    goto out;
  }
  err = ef_image_finish(val, NULL, st);
  if (err != EF_OK) goto out;

  if (req->on_phase) req->on_phase(req->arg, EF_OTA_PHASE_ACTIVATE);
  res->ota_end_sent = true;
  err = ef_ctrl_ota_end(ctrl, st);
  if (err != EF_OK) goto out;

out:
  /* every failure says at least its sentence (no memory, say) */
  if (err != EF_OK) ef_status_fail(st, err, "%s", ef_err_message(err));
  ef_image_validator_free(val);
  free(buf);
  return err;
}
