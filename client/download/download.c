/*
 * The download channel: one libcurl easy handle driven in its own thread,
 * pushing the response body into a bounded pipe.
 *
 * Back-pressure is the pipe: when the consumer (hash + ESP writer) is slower
 * than the network, ef_pipe_write blocks inside curl's write callback, curl
 * stops reading the socket and TCP flow control slows the server. Nothing
 * here grows with the image size.
 */
#include "espfleet/download.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/log.h"
#include "espfleet/text.h"

enum {
  MAX_REDIRECTS = 5,
  /* curl reads the socket in chunks of this size (plain HTTP); TLS hands
   * over one record (16 KiB) at a time whatever we set. */
  RECV_BUFFER_SIZE = 256 * 1024,
};

struct ef_download {
  pthread_t thread;
  bool has_thread;
  ef_pipe *sink;
  char *url;
  char *ca_file;
  long connect_timeout_s;
  long stall_timeout_s;
  bool allow_http;
  uint64_t max_bytes;
  uint64_t offset;
  char where[256]; /* scheme://host[:port] for messages: never the query */
  char host[200];
  CURL *curl; /* used by this download's thread only */

  /* written by the curl callbacks, read after curl_easy_perform */
  bool response_checked;
  uint64_t received;
  ef_status fail; /* set when a callback stopped the transfer */

  ef_status outcome; /* what the pipe's reader and ef_download_join get */
  char errbuf[CURL_ERROR_SIZE];
};

ef_err ef_download_global_init(void) {
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? EF_OK : EF_ERR_INTERNAL;
}

/* Formats "scheme://host[:port]" of @p url into d->where and the host into
 * d->host. Paths and queries can carry access tokens (and the authority
 * credentials), so messages name the server only (ef_url_redact, the one
 * redaction of URLs). */
static void url_origin(ef_download *d, const char *url) {
  CURLU *h = curl_url();
  char *host = NULL;

  ef_url_redact(url, EF_URL_ORIGIN, d->where, sizeof d->where);
  if (!h || curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK) goto out;
  if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK) goto out;
  snprintf(d->host, sizeof(d->host), "%s", host);
out:
  curl_free(host);
  curl_url_cleanup(h);
}

/* A refused URL stays refused: the policy, not the network, said no. */
#define REFUSE(...) ef_status_fail_r(st, EF_ERR_DOWNLOAD_FAILED, false, __VA_ARGS__)

ef_err ef_download_check_url(const char *url, bool allow_http, ef_status *st) {
  ef_err rc = EF_OK;
  CURLU *h = NULL;
  char *scheme = NULL, *host = NULL;
  CURLUcode uc;

  if (!url || !*url) {
    rc = REFUSE("no URL given");
    goto out;
  }
  h = curl_url();
  if (!h) {
    rc = ef_status_fail(st, EF_ERR_NOMEM, "cannot parse the URL");
    goto out;
  }
  uc = curl_url_set(h, CURLUPART_URL, url, 0);
  if (uc != CURLUE_OK) {
    rc = REFUSE("not a valid URL: %s", curl_url_strerror(uc));
    goto out;
  }
  if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
    rc = REFUSE("URL has no scheme");
    goto out;
  }
  if (strcmp(scheme, "http") == 0) {
    if (!allow_http) {
      rc = REFUSE("plain http is not allowed");
      goto out;
    }
  } else if (strcmp(scheme, "https") != 0) {
    rc = REFUSE("URL scheme '%s' is not supported (https%s only)", scheme, allow_http ? " and http" : "");
    goto out;
  }
  if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
    rc = REFUSE("URL has no host");
    goto out;
  }
out:
  curl_free(host);
  curl_free(scheme);
  curl_url_cleanup(h);
  return rc;
}
#undef REFUSE

/* Runs before the first body byte goes to the pipe: an error page or an
 * oversized body must never reach the consumer. A callback's reason is kept
 * in d->fail (the first one wins) and becomes the outcome. */
static bool check_response(ef_download *d, CURL *c) {
  long code = 0;
  curl_off_t length = -1;

  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code < 200 || code > 299) {
    /* A 4xx names a request this server will refuse again (missing file,
     * no access); a 5xx or anything else is the server's trouble, which
     * may pass. */
    bool may_pass = code < 400 || code > 499;
    ef_status_fail_r(&d->fail, EF_ERR_DOWNLOAD_FAILED, may_pass, "HTTP %ld from %s", code, d->where);
    return false;
  }
  if (d->offset && code != 206) {
    /* a 200 would restart the body at byte 0; starting over can work */
    ef_status_fail_r(&d->fail, EF_ERR_DOWNLOAD_NO_RANGE, true,
                     "server does not serve byte ranges (HTTP %ld from %s)", code, d->where);
    return false;
  }
  curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
  if (d->max_bytes && length > 0 && (uint64_t)length > d->max_bytes) {
    ef_status_fail_r(&d->fail, EF_ERR_SIZE_MISMATCH, false,
                     "server sent more than %" PRIu64 " bytes (Content-Length %" PRId64 ")", d->max_bytes,
                     (int64_t)length);
    return false;
  }
  return true;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx) {
  ef_download *d = ctx;
  size_t n = size * nmemb;

  if (!d->response_checked) {
    d->response_checked = true;
    if (!check_response(d, d->curl)) return 0;
  }
  if (d->max_bytes && d->received + n > d->max_bytes) {
    ef_status_fail_r(&d->fail, EF_ERR_SIZE_MISMATCH, false, "server sent more than %" PRIu64 " bytes",
                     d->max_bytes);
    return 0;
  }
  if (ef_pipe_write(d->sink, data, n) != EF_OK) {
    ef_status_fail_r(&d->fail, EF_ERR_CANCELED, false, "download canceled by the reader");
    return 0;
  }
  d->received += n;
  return n;
}

/* Lets ef_pipe_abort stop a transfer that is waiting on the network rather
 * than on the pipe; curl calls this at least once a second. */
static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  ef_download *d = ctx;
  if (ef_pipe_aborted(d->sink)) {
    ef_status_fail_r(&d->fail, EF_ERR_CANCELED, false, "download canceled by the reader");
    return 1;
  }
  return 0;
}

/* TLS failures that name the TLS set-up, never the network: a certificate
 * that does not verify, a CA file that cannot be read... Waiting does not
 * change them. (A handshake that broke off, CURLE_SSL_CONNECT_ERROR, is
 * also how a connection reset during the handshake shows: see is_tls_error.) */
static bool is_tls_setup_error(CURLcode res) {
  switch (res) {
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CLIENTCERT:
  case CURLE_USE_SSL_FAILED: return true;
  default: return false;
  }
}

static bool is_tls_error(CURLcode res) {
  return res == CURLE_SSL_CONNECT_ERROR || res == CURLE_SSL_SHUTDOWN_FAILED || is_tls_setup_error(res);
}

/* Turns curl's result into the outcome: its sentence and whether the same
 * download may pass later. */
static void describe_curl_error(ef_download *d, CURLcode res) {
  const char *msg = d->errbuf[0] ? d->errbuf : curl_easy_strerror(res);
  /* curl's messages name the host for network errors but not for TLS ones. */
  bool named = d->host[0] && strstr(msg, d->host);
  const char *sep = named ? "" : " from ";
  const char *where = named ? "" : d->where;
  /* Without CURLOPT_TIMEOUT a timeout after the request went out can only
   * be the low-speed (stall) limit; before it, the connect timeout. */
  curl_off_t pretransfer = 0;
  bool connected =
      curl_easy_getinfo(d->curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) == CURLE_OK && pretransfer > 0;

  ef_status *o = &d->outcome;
  if (is_tls_error(res)) {
    ef_status_fail_r(o, EF_ERR_DOWNLOAD_FAILED, !is_tls_setup_error(res), "TLS: %s%s%s", msg, sep, where);
  } else if (res == CURLE_OPERATION_TIMEDOUT && connected) {
    ef_status_fail_r(o, EF_ERR_DOWNLOAD_FAILED, true,
                     "stalled: no data for %ld s from %s (after %" PRIu64 " bytes)", d->stall_timeout_s,
                     d->where, d->received);
  } else if (res == CURLE_RANGE_ERROR) {
    ef_status_fail_r(o, EF_ERR_DOWNLOAD_NO_RANGE, true, "server does not serve byte ranges (%s%s%s)", msg,
                     sep, where);
  } else if (res == CURLE_UNSUPPORTED_PROTOCOL) {
    /* the URL itself passed ef_download_check_url: a redirect went astray */
    ef_status_fail_r(o, EF_ERR_DOWNLOAD_FAILED, false, "redirect refused: %s%s%s", msg, sep, where);
  } else if (res == CURLE_TOO_MANY_REDIRECTS) {
    ef_status_fail_r(o, EF_ERR_DOWNLOAD_FAILED, false, "%s%s%s", msg, sep, where);
  } else if (res == CURLE_OPERATION_TIMEDOUT) {
    ef_status_fail_r(o, EF_ERR_DOWNLOAD_FAILED, true, "connect timeout: %s%s%s", msg, sep, where);
  } else {
    /* refused, reset, host not found, cut short: the network may come back */
    ef_status_fail_r(o, EF_ERR_DOWNLOAD_FAILED, true, "%s%s%s", msg, sep, where);
  }
}

static CURLcode setup(ef_download *d) {
  const char *protocols = d->allow_http ? "http,https" : "https";
  CURL *c = d->curl;
  CURLcode r = CURLE_OK;

#define SET(opt, val)                                              \
  do {                                                             \
    if ((r = curl_easy_setopt(c, opt, val)) != CURLE_OK) goto out; \
  } while (0)
  SET(CURLOPT_URL, d->url);
  SET(CURLOPT_ERRORBUFFER, d->errbuf);
  SET(CURLOPT_NOSIGNAL, 1L); /* we run in a thread: no SIGALRM for DNS timeouts */
  SET(CURLOPT_PROTOCOLS_STR, protocols);
  SET(CURLOPT_REDIR_PROTOCOLS_STR, protocols);
  SET(CURLOPT_FOLLOWLOCATION, 1L);
  SET(CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
  if (d->ca_file) SET(CURLOPT_CAINFO, d->ca_file);
  SET(CURLOPT_CONNECTTIMEOUT, d->connect_timeout_s);
  SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
  SET(CURLOPT_LOW_SPEED_TIME, d->stall_timeout_s);
  SET(CURLOPT_FAILONERROR, 0L); /* we check the status and keep the code */
  SET(CURLOPT_BUFFERSIZE, (long)RECV_BUFFER_SIZE);
  /* One stream, HTTP/1.1: the pipe is the only buffer, and TCP flow
   * control carries its back-pressure to the server. */
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  SET(CURLOPT_USERAGENT, "espfleet/" ESPFLEET_VERSION);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, d);
  SET(CURLOPT_XFERINFOFUNCTION, on_progress);
  SET(CURLOPT_XFERINFODATA, d);
  SET(CURLOPT_NOPROGRESS, 0L);
  if (d->offset) SET(CURLOPT_RESUME_FROM_LARGE, (curl_off_t)d->offset);
#undef SET
out:
  return r;
}

static void *download_thread(void *arg) {
  ef_download *d = arg;
  CURLcode res;
  long code = 0;

  d->curl = curl_easy_init();
  if (!d->curl) {
    ef_status_fail(&d->outcome, EF_ERR_NOMEM, "could not create a curl handle");
    goto out;
  }
  res = setup(d);
  if (res != CURLE_OK) {
    ef_status_fail(&d->outcome, EF_ERR_INTERNAL, "curl option refused: %s", curl_easy_strerror(res));
    goto out;
  }
  if (d->offset)
    ef_debug("download: GET %s from byte %" PRIu64, d->where, d->offset);
  else
    ef_debug("download: GET %s", d->where);
  res = curl_easy_perform(d->curl);
  /* Two ways to the same outcome, in curl's order: a callback failed during
   * the transfer, or an error status is only seen now (empty body). */
  if (d->fail.code != EF_OK) { // NOLINT(bugprone-branch-clone): see above
    ef_status_copy(&d->outcome, &d->fail);
  } else if (res != CURLE_OK) {
    describe_curl_error(d, res);
  } else if (!d->response_checked && !check_response(d, d->curl)) {
    /* an error status with an empty body never reached on_body */
    ef_status_copy(&d->outcome, &d->fail);
  } else {
    curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &code);
    ef_debug("download: %s done, HTTP %ld, %" PRIu64 " bytes", d->where, code, d->received);
  }
out:
  if (d->outcome.code != EF_OK)
    ef_debug("download: %s failed (%s): %s", d->where, d->outcome.retryable ? "may pass" : "final",
             d->outcome.detail);
  curl_easy_cleanup(d->curl);
  d->curl = NULL;
  ef_pipe_close(d->sink, &d->outcome);
  return NULL;
}

static void download_free(ef_download *d) {
  if (!d) return;
  free(d->url);
  free(d->ca_file);
  free(d);
}

ef_err ef_download_start(const ef_download_options *o, ef_pipe *sink, ef_download **out, ef_status *st) {
  ef_err rc = EF_ERR_NOMEM;
  ef_download *d = NULL;

  *out = NULL;
  if (!o || !sink) return ef_status_fail(st, EF_ERR_INVALID_ARG, "no options or no pipe");
  d = calloc(1, sizeof(*d));
  if (!d) goto out;
  d->sink = sink;
  d->connect_timeout_s =
      o->connect_timeout_s > 0 ? o->connect_timeout_s : EF_DOWNLOAD_DEFAULT_CONNECT_TIMEOUT_S;
  d->stall_timeout_s = o->stall_timeout_s > 0 ? o->stall_timeout_s : EF_DOWNLOAD_DEFAULT_STALL_TIMEOUT_S;
  d->allow_http = o->allow_http;
  d->max_bytes = o->max_bytes;
  d->offset = o->offset;

  /* A refused URL is an outcome like any other: it reaches the reader
   * through the pipe and ef_download_join, no thread needed. */
  if (ef_download_check_url(o->url, o->allow_http, &d->outcome) != EF_OK) {
    ef_pipe_close(sink, &d->outcome);
    *out = d;
    d = NULL;
    rc = EF_OK;
    goto out;
  }
  url_origin(d, o->url);
  d->url = strdup(o->url);
  if (!d->url) goto out;
  if (o->ca_file) {
    d->ca_file = strdup(o->ca_file);
    if (!d->ca_file) goto out;
  }
  if (pthread_create(&d->thread, NULL, download_thread, d) != 0) {
    rc = EF_ERR_INTERNAL;
    goto out;
  }
  d->has_thread = true;
  *out = d;
  d = NULL;
  rc = EF_OK;
out:
  if (rc != EF_OK) {
    ef_status why = EF_STATUS_INIT;
    ef_status_fail(&why, rc, "could not start the download");
    ef_pipe_close(sink, &why);
    ef_status_copy(st, &why);
  }
  download_free(d);
  return rc;
}

ef_err ef_download_join(ef_download *d, ef_status *st) {
  ef_err outcome;

  if (!d) return ef_status_fail(st, EF_ERR_INVALID_ARG, "no download");
  if (d->has_thread) pthread_join(d->thread, NULL);
  outcome = ef_status_copy(st, &d->outcome);
  download_free(d);
  return outcome;
}
