/*
 * fetch: drives the download channel the way the OTA engine does (a download
 * thread filling a bounded pipe, this thread draining it) and prints one line:
 *   ok <bytes> <sha256hex>
 *   error <code_name> <detail>
 * Exit status 0 for ok, 1 for an error, 2 for bad usage.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/download.h"
#include "espfleet/log.h"
#include "espfleet/pipe.h"

static void usage(void) {
  fprintf(stderr,
          "usage: fetch URL [--ca FILE] [--allow-http] [--max-bytes N] [--stall S]\n"
          "             [--connect-timeout S] [--pipe-size N] [--abort-after N] [--offset N] [--debug]\n"
          "prints \"ok BYTES SHA256\" or \"error CODE DETAIL\", the latter followed by\n"
          "\" [retryable]\" when the download module says the failure may pass\n");
}

static unsigned long long parse_num(const char *s) {
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || *end) {
    fprintf(stderr, "fetch: not a number: %s\n", s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  ef_download_options o = {0};
  size_t pipe_size = 512 * 1024;
  unsigned long long abort_after = 0;
  ef_pipe *p = NULL;
  ef_download *d = NULL;
  EVP_MD_CTX *md = NULL;
  static uint8_t buf[64 * 1024];
  uint64_t total = 0;
  ef_err rc, outcome;
  ef_status st = EF_STATUS_INIT, joined = EF_STATUS_INIT;
  int status = 1;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_val = i + 1 < argc;
    if (strcmp(a, "--ca") == 0 && has_val)
      o.ca_file = argv[++i];
    else if (strcmp(a, "--allow-http") == 0)
      o.allow_http = true;
    else if (strcmp(a, "--max-bytes") == 0 && has_val)
      o.max_bytes = parse_num(argv[++i]);
    else if (strcmp(a, "--stall") == 0 && has_val)
      o.stall_timeout_s = (int)parse_num(argv[++i]);
    else if (strcmp(a, "--connect-timeout") == 0 && has_val)
      o.connect_timeout_s = (int)parse_num(argv[++i]);
    else if (strcmp(a, "--pipe-size") == 0 && has_val)
      pipe_size = parse_num(argv[++i]);
    else if (strcmp(a, "--abort-after") == 0 && has_val)
      abort_after = parse_num(argv[++i]);
    else if (strcmp(a, "--offset") == 0 && has_val)
      o.offset = parse_num(argv[++i]);
    else if (strcmp(a, "--debug") == 0)
      ef_log_set_level(EF_LOG_DEBUG);
    else if (a[0] != '-' && !o.url)
      o.url = a;
    else {
      usage();
      return 2;
    }
  }
  if (!o.url) {
    usage();
    return 2;
  }
  ef_log_set_ident("fetch");
  if (ef_download_global_init() != EF_OK || ef_pipe_new(pipe_size, &p) != EF_OK) {
    printf("error internal setup failed\n");
    return 1;
  }
  md = EVP_MD_CTX_new();
  if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
    printf("error internal sha256 setup failed\n");
    goto out;
  }
  rc = ef_download_start(&o, p, &d, &st);
  if (rc != EF_OK) {
    printf("error %s %s\n", ef_err_name(rc), st.detail);
    goto out;
  }
  for (;;) {
    size_t got = 0;
    size_t want = sizeof(buf);
    if (abort_after && abort_after - total < want) want = abort_after - total;
    rc = ef_pipe_read(p, buf, want, &got, &st);
    if (rc != EF_OK || got == 0) break;
    EVP_DigestUpdate(md, buf, got);
    total += got;
    if (abort_after && total >= abort_after) {
      ef_pipe_abort(p);
      rc = EF_ERR_CANCELED;
      break;
    }
  }
  outcome = ef_download_join(d, &joined);
  if (rc == EF_OK && outcome != EF_OK) {
    /* The reader saw a clean end but the download disagrees: a bug. */
    printf("error internal reader saw ok, download said %s\n", ef_err_name(outcome));
  } else if (rc != EF_OK && rc != EF_ERR_CANCELED &&
             (outcome != rc || joined.retryable != st.retryable || strcmp(joined.detail, st.detail) != 0)) {
    /* The pipe's reader and ef_download_join must get the same outcome. */
    printf("error internal reader saw %s (%s), download said %s (%s)\n", ef_err_name(rc), st.detail,
           ef_err_name(outcome), joined.detail);
  } else if (rc != EF_OK) {
    printf("error %s %s%s\n", ef_err_name(rc),
           rc == EF_ERR_CANCELED && outcome == EF_ERR_CANCELED ? "aborted by the reader" : st.detail,
           st.retryable ? " [retryable]" : "");
  } else {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    EVP_DigestFinal_ex(md, digest, &dlen);
    for (unsigned int i = 0; i < dlen; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    printf("ok %llu %s\n", (unsigned long long)total, hex);
    status = 0;
  }
out:
  EVP_MD_CTX_free(md);
  ef_pipe_free(p);
  return status;
}
