/**
 * @file mkimage.h
 * @brief Generates valid ESP application images for tests, demos and benchmarks.
 */
#ifndef ESPFLEET_MKIMAGE_H
#define ESPFLEET_MKIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "espfleet/error.h"
#include "espfleet/status.h"

typedef struct {
  uint16_t chip_id;
  const char *version; /**< app description version (at most 31 chars) */
  const char *project; /**< project name (at most 31 chars) */
  uint64_t size;       /**< approximate total size in bytes (>= 512) */
  uint32_t secure_version;
  /** ESP-Hosted release the image stands for ("FG-1.0.3.0.0", at most
   *  EF_MKIMAGE_RELEASE_MAX characters), or NULL for none. Written as a
   *  release record (below) after the app description in segment 0, where a
   *  real firmware keeps its compiled-in release constants. */
  const char *hosted_release;
} ef_mkimage_options;

/**
 * Release record: 8 bytes EF_MKIMAGE_RELEASE_MAGIC, then the release text,
 * NUL-padded to EF_MKIMAGE_RELEASE_MAX + 1 bytes. The simulator reports the
 * running image's record through GetFwVersion, as the real firmware reports
 * the constants of esp_fw_version.h it was built with.
 */
#define EF_MKIMAGE_RELEASE_MAGIC       "EFHOSTED"
#define EF_MKIMAGE_RELEASE_MAX         23
#define EF_MKIMAGE_RELEASE_RECORD_SIZE 32

/**
 * Looks for a release record in @p data (the start of an image).
 * @param text receives the release text (EF_MKIMAGE_RELEASE_MAX + 1 bytes).
 * @return true when a record was found.
 */
bool ef_mkimage_find_release(const uint8_t *data, size_t len, char *text);

/** Smallest and (about) largest size ef_mkimage_write accepts. */
#define EF_MKIMAGE_MIN_SIZE 512u
#define EF_MKIMAGE_MAX_SIZE (224ull * 1024 * 1024)

/**
 * Writes a valid image (header, app description, segments, checksum,
 * SHA-256) of about @p o->size bytes to @p out: the file is @p o->size
 * rounded down so that (size - 32) is a multiple of 16, i.e. at most 47
 * bytes short. Layout: header (flash mode DIO, hash_appended, any chip
 * revision); segment 0 at 0x3C000020 holding only the app description
 * (time "00:00:00", date "Jan  1 2026", IDF "espfleet-mkimage", ELF SHA-256
 * = SHA-256 of the options); segment 1 (IRAM, at most 128 KiB) and segments
 * 2.. (IROM, at most 16 MiB each) of pseudo-random bytes seeded from all
 * options; padding, checksum, digest. Deterministic: the same options give
 * the same bytes, a different version gives different bytes. Streams:
 * memory does not grow with the size.
 * @param written total bytes written (may be NULL).
 * @param st which option is wrong, or why a write failed ("write failed:
 *        No space left on device"); may be NULL
 * @return EF_OK; EF_ERR_INVALID_ARG (size outside EF_MKIMAGE_MIN_SIZE..
 *         EF_MKIMAGE_MAX_SIZE, strings too long or NULL, chip 0xFFFF);
 *         EF_ERR_IO (a write failed); EF_ERR_NOMEM; EF_ERR_INTERNAL.
 */
ef_err ef_mkimage_write(const ef_mkimage_options *o, FILE *out, uint64_t *written,
                        ef_status *st) EF_MUST_CHECK;

#endif
