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
#include <stddef.h>
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
  uint64_t offset;            /**< resume: fetch from this byte on (HTTP Range); a server
                                   that does not answer 206 fails with EF_DOWNLOAD_NO_RANGE */
} ef_download_options;

/** Start of the detail sentence when a resumed download (offset > 0) meets
 *  a server that does not serve byte ranges: only a fresh start can help. */
#define EF_DOWNLOAD_NO_RANGE "server does not serve byte ranges"

typedef struct ef_download ef_download;

/**
 * Call once at program start, before any other thread runs
 * (curl_global_init). @return EF_OK or EF_ERR_INTERNAL.
 */
ef_err ef_download_global_init(void) EF_MUST_CHECK;

/**
 * Checks @p url's syntax and scheme against the policy without fetching:
 * https only, or http and https when @p allow_http; a host is required.
 * Credentials in the URL are accepted (never repeated in messages).
 * @param detail receives a sentence on refusal ("plain http is not allowed",
 *        "URL scheme 'ftp' is not supported (https only)", "not a valid URL:
 *        ..."); may be NULL.
 * @return EF_OK; EF_ERR_DOWNLOAD_FAILED when refused; EF_ERR_NOMEM.
 */
ef_err ef_download_check_url(const char *url, bool allow_http, char *detail, size_t n) EF_MUST_CHECK;

/**
 * Starts fetching @p o->url in a new thread, writing the body into @p sink and
 * closing it with the outcome. The caller drains @p sink (ef_pipe_read or
 * ef_pipe_source) and then calls ef_download_join. Policy: TLS peer and host
 * verification always on; redirects (at most 5) only to allowed schemes;
 * HTTP/1.1 so the pipe is the only buffer. Outcomes, each with a detail in
 * ef_pipe_detail that names the server (scheme://host:port) but never the
 * path, query or credentials:
 *   - EF_OK: the whole body (2xx) went into the pipe;
 *   - EF_ERR_DOWNLOAD_FAILED: refused URL (see ef_download_check_url),
 *     "HTTP 404 from https://host", "TLS: SSL certificate problem: ...",
 *     "stalled: no data for N s from ...", "redirect refused: ...", or curl's
 *     own message for network errors; an error response's body never reaches
 *     the pipe;
 *   - EF_ERR_SIZE_MISMATCH: "server sent more than N bytes" (o->max_bytes),
 *     detected from Content-Length before any byte is delivered when the
 *     server announces it;
 *   - EF_ERR_CANCELED: the reader called ef_pipe_abort (noticed within about
 *     a second even while the server is silent).
 * A refused URL does not start a thread but still returns EF_OK: its outcome
 * arrives through the pipe and ef_download_join like any other.
 * @p o and its strings may be freed once this returns.
 * @return EF_OK when the download is under way (or already decided);
 *         EF_ERR_INVALID_ARG, EF_ERR_NOMEM, EF_ERR_INTERNAL when it could not be
 *         started (the pipe is then closed with that code too).
 */
ef_err ef_download_start(const ef_download_options *o, ef_pipe *sink, ef_download **out) EF_MUST_CHECK;

/**
 * Waits for the thread and frees @p d. Call ef_pipe_abort first to stop early.
 * @return the download's outcome (as given to ef_pipe_close).
 */
ef_err ef_download_join(ef_download *d);

#endif
