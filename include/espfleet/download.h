/**
 * @file download.h
 * @brief The download channel: streams a URL into a pipe (libcurl, own thread).
 *
 * All transport policy lives here: TLS verification and CA file, allowed
 * schemes, connect and stall timeouts, the size limit, and whether a failure
 * may pass by itself (ef_status.retryable). Everything above just reads bytes
 * from the pipe.
 */
#ifndef ESPFLEET_DOWNLOAD_H
#define ESPFLEET_DOWNLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/pipe.h"
#include "espfleet/status.h"

#define EF_DOWNLOAD_DEFAULT_CONNECT_TIMEOUT_S 15
#define EF_DOWNLOAD_DEFAULT_STALL_TIMEOUT_S   30

typedef struct {
  const char *url;
  const char *ca_file;   /**< CA bundle for HTTPS; NULL = system default */
  int connect_timeout_s; /**< <= 0: EF_DOWNLOAD_DEFAULT_CONNECT_TIMEOUT_S */
  int stall_timeout_s;   /**< abort when no byte arrives for this long;
                                   <= 0: EF_DOWNLOAD_DEFAULT_STALL_TIMEOUT_S */
  bool allow_http;       /**< plain http:// allowed (default false) */
  uint64_t max_bytes;    /**< abort when the body exceeds this (0 = no limit) */
  uint64_t offset;       /**< resume: fetch from this byte on (HTTP Range); a server
                                   that does not answer 206 fails with EF_ERR_DOWNLOAD_NO_RANGE */
} ef_download_options;

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
 * @param st on refusal, why ("plain http is not allowed", "URL scheme 'ftp'
 *        is not supported (https only)", "not a valid URL: ..."), not
 *        retryable; may be NULL
 * @return EF_OK; EF_ERR_DOWNLOAD_FAILED when refused; EF_ERR_NOMEM.
 */
ef_err ef_download_check_url(const char *url, bool allow_http, ef_status *st) EF_MUST_CHECK;

/**
 * Starts fetching @p o->url in a new thread, writing the body into @p sink and
 * closing it with the outcome. The caller drains @p sink (ef_pipe_read or
 * ef_pipe_source) and then calls ef_download_join. Policy: TLS peer and host
 * verification always on; redirects (at most 5) only to allowed schemes;
 * HTTP/1.1 so the pipe is the only buffer. The outcome goes to the pipe's
 * close (the reader's ef_pipe_read gets it) and to ef_download_join, as an
 * ef_status whose detail names the server (scheme://host:port) but never the
 * path, query or credentials, and whose `retryable` says whether the same
 * download may pass later:
 *   - EF_OK: the whole body (2xx) went into the pipe;
 *   - EF_ERR_DOWNLOAD_FAILED, retryable: a 5xx answer ("HTTP 503 from
 *     https://host") or another answer that is neither 2xx nor 4xx; connection
 *     refused or reset, host not found, connect timeout, a stall ("stalled:
 *     no data for N s from ..."), a body cut short, and curl's other network
 *     errors;
 *   - EF_ERR_DOWNLOAD_FAILED, not retryable: a refused URL (see
 *     ef_download_check_url), a 4xx answer ("HTTP 404 from https://host"),
 *     TLS and certificate failures ("TLS: SSL certificate problem: ..."), a
 *     redirect to a scheme the policy refuses ("redirect refused: ..."), too
 *     many redirects: none of them changes by waiting;
 *   - EF_ERR_DOWNLOAD_NO_RANGE, retryable: o->offset > 0 and the server does
 *     not answer with the range ("server does not serve byte ranges (HTTP 200
 *     from ...)"): resuming this server cannot work, a fresh start (offset
 *     0) can;
 *   - EF_ERR_SIZE_MISMATCH, not retryable: "server sent more than N bytes"
 *     (o->max_bytes), detected from Content-Length before any byte is
 *     delivered when the server announces it;
 *   - EF_ERR_CANCELED: the reader called ef_pipe_abort (noticed within about
 *     a second even while the server is silent).
 * An error response's body never reaches the pipe. A refused URL does not
 * start a thread but still returns EF_OK: its outcome arrives through the
 * pipe and ef_download_join like any other.
 * @p o and its strings may be freed once this returns.
 * @param st why the download could not be started; may be NULL
 * @return EF_OK when the download is under way (or already decided);
 *         EF_ERR_INVALID_ARG, EF_ERR_NOMEM, EF_ERR_INTERNAL when it could not be
 *         started (the pipe is then closed with that status too).
 */
ef_err ef_download_start(const ef_download_options *o, ef_pipe *sink, ef_download **out,
                         ef_status *st) EF_MUST_CHECK;

/**
 * Waits for the thread and frees @p d. Call ef_pipe_abort first to stop early.
 * @param st receives the download's outcome (as given to ef_pipe_close); may be NULL
 * @return the outcome's code.
 */
ef_err ef_download_join(ef_download *d, ef_status *st);

#endif
