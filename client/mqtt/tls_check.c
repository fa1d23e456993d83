/* Why a TLS connection to the broker fails, in words (tls_check.h). */
#include "tls_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* "ssl://host:port" or "ssl://[v6]:port" into @p host and @p port. */
static bool split_uri(const char *uri, char *host, size_t n, char port[8]) {
  const char *p = strstr(uri, "://");
  if (!p) return false;
  p += 3;
  const char *colon;
  if (*p == '[') {
    const char *close = strchr(p, ']');
    if (!close || close[1] != ':') return false;
    if ((size_t)(close - p - 1) >= n) return false;
    memcpy(host, p + 1, (size_t)(close - p - 1));
    host[close - p - 1] = '\0';
    colon = close + 1;
  } else {
    colon = strrchr(p, ':');
    if (!colon || (size_t)(colon - p) >= n) return false;
    memcpy(host, p, (size_t)(colon - p));
    host[colon - p] = '\0';
  }
  snprintf(port, 8, "%s", colon + 1);
  return *host && *port;
}

/* A TCP connection within @p timeout_ms, with that timeout on its reads
 * and writes too; -1 when the broker cannot be reached. */
static int connect_tcp(const char *host, const char *port, int timeout_ms) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  int fd = -1;
  if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
  for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    int err = 0;
    socklen_t len = sizeof err;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 &&
        (errno != EINPROGRESS || poll(&p, 1, timeout_ms) != 1 ||
         getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd >= 0) {
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  return fd;
}

/* The names a certificate is for ("DNS:localhost, IP:127.0.0.1"). */
static void cert_names(X509 *cert, char *out, size_t n) {
  GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  size_t used = 0;
  out[0] = '\0';
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && used + 1 < n; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    char ip[INET6_ADDRSTRLEN] = "";
    const char *sep = used ? ", " : "";
    int w = 0;
    if (g->type == GEN_DNS)
      w = snprintf(out + used, n - used, "%sDNS:%.*s", sep, ASN1_STRING_length(g->d.dNSName),
                   (const char *)ASN1_STRING_get0_data(g->d.dNSName));
    else if (g->type == GEN_IPADD && ASN1_STRING_length(g->d.iPAddress) == 4)
      w = snprintf(out + used, n - used, "%sIP:%s", sep,
                   inet_ntop(AF_INET, ASN1_STRING_get0_data(g->d.iPAddress), ip, sizeof ip));
    else if (g->type == GEN_IPADD && ASN1_STRING_length(g->d.iPAddress) == 16)
      w = snprintf(out + used, n - used, "%sIP:%s", sep,
                   inet_ntop(AF_INET6, ASN1_STRING_get0_data(g->d.iPAddress), ip, sizeof ip));
    if (w > 0) used += (size_t)w < n - used ? (size_t)w : n - used - 1;
  }
  GENERAL_NAMES_free(names);
  if (!used) {
    char cn[256] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    snprintf(out, n, "CN=%s", cn);
  }
}

/* OpenSSL's reason for the last failure ("tlsv13 alert certificate required"). */
static const char *last_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : "the connection was closed";
}

bool ef_mqtt_tls_check(const char *paho_uri, const char *ca_file, const char *cert_file, const char *key_file,
                       int timeout_ms, char *why, size_t n) {
  char host[256], port[8];
  bool found = false;
  int fd = -1;
  SSL_CTX *ctx = NULL;
  SSL *ssl = NULL;
  X509 *peer = NULL;
  why[0] = '\0';
  if (!split_uri(paho_uri, host, sizeof host, port)) return false;
  ERR_clear_error();
  ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) goto out;
  if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
              : SSL_CTX_set_default_verify_paths(ctx) != 1) {
    snprintf(why, n, "cannot load the CA file: %s", last_reason());
    found = true;
    goto out;
  }
  if (cert_file && key_file &&
      (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)) {
    snprintf(why, n, "cannot load the client certificate or key: %s", last_reason());
    found = true;
    goto out;
  }
  /* Not enforced here: the handshake completes, and the verdict is read. */
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  if ((fd = connect_tcp(host, port, timeout_ms)) < 0 || !(ssl = SSL_new(ctx)) || SSL_set_fd(ssl, fd) != 1)
    goto out;
  unsigned char addr[16];
  if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
  } else {
    SSL_set1_host(ssl, host);
    SSL_set_tlsext_host_name(ssl, host);
  }
  if (SSL_connect(ssl) != 1) {
    snprintf(why, n, "handshake failed: %s", last_reason());
    found = true;
    goto out;
  }
  long v = SSL_get_verify_result(ssl);
  peer = SSL_get1_peer_certificate(ssl);
  if (v != X509_V_OK) {
    char names[256] = "";
    if (peer && (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH))
      cert_names(peer, names, sizeof names);
    if (names[0])
      snprintf(why, n, "the broker's certificate: %s (it is for %s, not %s)",
               X509_verify_cert_error_string(v), names, host);
    else
      snprintf(why, n, "the broker's certificate: %s", X509_verify_cert_error_string(v));
    found = true;
    goto out;
  }
  /* TLS 1.3: the broker checks the client certificate after the client
   * finished, and says so with an alert in place of the first record. */
  char byte;
  struct timeval verdict = {.tv_sec = 0, .tv_usec = 500 * 1000}; /* it comes within a round trip */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &verdict, sizeof verdict);
  ERR_clear_error();
  if (SSL_read(ssl, &byte, 1) <= 0 && ERR_peek_last_error() &&
      ERR_GET_LIB(ERR_peek_last_error()) == ERR_LIB_SSL) {
    snprintf(why, n, "the broker refused the %s: %s",
             cert_file ? "client certificate" : "connection without a client certificate", last_reason());
    found = true;
  }
out:
  X509_free(peer);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  if (fd >= 0) close(fd);
  ERR_clear_error();
  return found;
}
