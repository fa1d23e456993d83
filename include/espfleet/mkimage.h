/**
 * @file mkimage.h
 * @brief Generates valid ESP application images for tests, demos and benchmarks.
 */
#ifndef ESPFLEET_MKIMAGE_H
#define ESPFLEET_MKIMAGE_H

#include <stdint.h>
#include <stdio.h>

#include "espfleet/error.h"

typedef struct {
  uint16_t chip_id;
  const char *version;  /**< app description version (at most 31 chars) */
  const char *project;  /**< project name (at most 31 chars) */
  uint64_t size;        /**< approximate total size in bytes (>= 512) */
  uint32_t secure_version;
} ef_mkimage_options;

/**
 * Writes a valid image (header, app description, segments, checksum,
 * SHA-256) of about @p o->size bytes to @p out. Deterministic: the same
 * options give the same bytes. Streams: memory does not grow with the size.
 * @param written total bytes written (may be NULL).
 * @return EF_OK; EF_ERR_INVALID_ARG (bad size, strings too long); EF_ERR_IO.
 */
ef_err ef_mkimage_write(const ef_mkimage_options *o, FILE *out, uint64_t *written) EF_MUST_CHECK;

#endif
