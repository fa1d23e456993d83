/**
 * @file source.h
 * @brief A pull-style byte source: what the OTA engine reads an image from.
 *
 * The engine does not know where bytes come from: a local file (CLI), or the
 * bounded pipe filled by the download channel (daemon).
 */
#ifndef ESPFLEET_SOURCE_H
#define ESPFLEET_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/status.h"

typedef struct ef_source {
  /**
   * Reads up to @p cap bytes, blocking until at least one is available.
   * Sets *got = 0 with EF_OK at the end of the stream; returns an error code
   * when the stream failed, and fills @p st (may be NULL) with why and
   * whether trying again can help (a download that broke: yes; a file that
   * cannot be read: no).
   */
  ef_err (*read)(struct ef_source *s, uint8_t *buf, size_t cap, size_t *got, ef_status *st);
  void *ctx;
} ef_source;

/**
 * Opens @p path as a source (file descriptor read in chunks).
 * @param st why the file could not be opened; may be NULL
 * @return EF_OK; EF_ERR_IO; EF_ERR_NOMEM.
 */
ef_err ef_file_source_open(const char *path, ef_source *src, ef_status *st) EF_MUST_CHECK;

/** Closes a source made by ef_file_source_open. */
void ef_file_source_close(ef_source *src);

#endif
