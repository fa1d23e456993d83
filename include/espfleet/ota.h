/**
 * @file ota.h
 * @brief The OTA engine: source -> SHA-256 -> image validator -> ESP writer.
 *
 * Reads the image from a source, feeds the validator (which also computes
 * the SHA-256 of the stream, in one pass with the image's own digest) and
 * writes it to the ESP in chunks. Before OTA begin it holds back the first bytes until
 * the header and app description are parsed and checked against the
 * expectations, so a wrong image never erases the slot. OTA end is sent only
 * when the image is complete, the validator accepts it, its size matches and
 * its SHA-256 matches: a corrupt, short or canceled transfer never activates.
 */
#ifndef ESPFLEET_OTA_H
#define ESPFLEET_OTA_H

#include <stdbool.h>
#include <stdint.h>

#include "espfleet/ctrl.h"
#include "espfleet/error.h"
#include "espfleet/image.h"
#include "espfleet/source.h"
#include "espfleet/status.h"

typedef enum {
  EF_OTA_PHASE_TRANSFER, /**< OTA begin sent; downloading and writing */
  EF_OTA_PHASE_VERIFY,   /**< all bytes written; checking hash and image */
  EF_OTA_PHASE_ACTIVATE, /**< OTA end is about to be sent (should_cancel is asked once more first) */
} ef_ota_phase;

typedef struct {
  /* expectations; zero/NULL means "don't check" */
  int chip_id;           /**< expected chip id, or -1 */
  const char *version;   /**< must equal the app description version */
  const char *project;   /**< must equal the project name */
  uint64_t size;         /**< exact expected size in bytes */
  uint64_t max_size;     /**< refuse larger images (slot size) */
  const uint8_t *sha256; /**< 32 bytes: expected SHA-256 of all bytes */
  size_t chunk_size;     /**< bytes per OTA write; default EF_CTRL_DEFAULT_CHUNK */
  bool disable_bt;       /**< Bluetooth off before OTA begin (best effort) */

  void *arg; /**< passed to every callback */
  /** Called once the header and app description are known, before OTA begin;
   *  a non-EF_OK result refuses the image (e.g. downgrade policy), and what
   *  it puts in @p st (may be NULL) says why. */
  ef_err (*on_image)(void *arg, const ef_image_header *hdr, const ef_app_desc *desc, ef_status *st);
  /** Phase changes. */
  void (*on_phase)(void *arg, ef_ota_phase phase);
  /** Progress after each chunk written (bytes, expected total or 0). */
  void (*on_progress)(void *arg, uint64_t done, uint64_t total);
  /** Polled between chunks and once more after on_phase(EF_OTA_PHASE_ACTIVATE),
   *  right before OTA end; true aborts with EF_ERR_CANCELED (never after OTA end). */
  bool (*should_cancel)(void *arg);
  /** Optional: the source failed (@p why: its code, whether a retry may
   *  help, its detail) after @p offset bytes. Returning true with @p src
   *  replaced by a source that continues at byte @p offset resumes the
   *  transfer: the ESP keeps what it was sent, hash and validator continue,
   *  and the final SHA-256 check still covers every byte. */
  bool (*resume)(void *arg, const ef_status *why, uint64_t offset, ef_source *src);
} ef_ota_request;

/** What happened, besides the outcome (which goes to ef_ota_run's status). */
typedef struct {
  uint64_t bytes;     /**< bytes read from the source */
  uint8_t sha256[32]; /**< SHA-256 of all bytes read (valid when complete) */
  bool desc_known;
  ef_image_header header;
  ef_app_desc app;
  bool ota_begin_sent;
  bool ota_end_sent;
  /** Bluetooth was turned off by this run (disable_bt, and the ESP agreed).
   *  It stays off: a caller whose update did not end in a reboot turns it
   *  back on, whether the run failed before, at or after OTA begin. */
  bool bt_disabled;
} ef_ota_result;

/** Fills @p r with defaults (no expectations, default chunk size). */
void ef_ota_request_init(ef_ota_request *r);

/**
 * Runs the OTA sequence up to and including OTA end.
 * @param res what was read, seen and sent (filled on success and failure)
 * @param st  the first error with its specifics (`image version is "2.0.0",
 *            expected "2.1.0"`, "ESP refused Req_OTAWrite (resp -1)"); for
 *            the source's error, the source's own status (a download's
 *            `retryable` included); may be NULL
 * @return EF_OK when the ESP accepted OTA end (it reboots shortly after), or
 *         the first error: image defects and expectation mismatches,
 *         EF_ERR_SIZE_MISMATCH, EF_ERR_HASH_MISMATCH, EF_ERR_CANCELED, the
 *         source's error (download), or a control-path error.
 */
ef_err ef_ota_run(ef_ctrl *ctrl, ef_source *src, const ef_ota_request *req, ef_ota_result *res,
                  ef_status *st);

#endif
