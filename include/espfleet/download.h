/**
 * @file download.h
 * @brief The download channel: streams a URL into a pipe (libcurl, own thread).
 *
 * All transport policy lives here: TLS verification and CA file, allowed
 * schemes, connect and stall timeouts, the size limit. Everything above just
 * reads bytes from the pipe.
 */
#ifndef ESPFLEET_DOWNLOAD_H
#define ESPFLEET_DOWNLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/pipe.h"

typedef struct {
  const char *url;
  const char *ca_file;        /**< CA bundle for HTTPS; NULL = system default */
  int connect_timeout_s;      /**< default 15 */
  int stall_timeout_s;        /**< abort when no byte arrives for this long; default 30 */
  bool allow_http;            /**< plain http:// allowed (default false) */
  uint64_t max_bytes;         /**< abort when the body exceeds this (0 = no limit) */
} ef_download_options;

typedef struct ef_download ef_download;

/** Call once at program start (curl_global_init). */
ef_err ef_download_global_init(void) EF_MUST_CHECK;

/** Checks a URL's scheme and syntax against @p o's policy without fetching. */
ef_err ef_download_check_url(const char *url, bool allow_http, char *detail, size_t n) EF_MUST_CHECK;

/**
 * Starts fetching @p o->url in a new thread, writing the body into @p sink and
 * closing it with the outcome (EF_OK, EF_ERR_DOWNLOAD_FAILED with a detail
 * such as "HTTP 404" or curl's message, EF_ERR_SIZE_MISMATCH past max_bytes).
 * @return EF_OK when the thread started.
 */
ef_err ef_download_start(const ef_download_options *o, ef_pipe *sink, ef_download **out) EF_MUST_CHECK;

/**
 * Waits for the thread and frees @p d. Call ef_pipe_abort first to stop early.
 * @return the download's outcome (as given to ef_pipe_close).
 */
ef_err ef_download_join(ef_download *d);

#endif
