/*
 * Why a TLS connection to the broker fails, in words. Private to the MQTT
 * session: Paho reports a failed TLS connection as "TCP/TLS connect
 * failure" (a host name that does not match) or with OpenSSL's bare
 * "certificate verify failed", so the session asks once more, itself.
 */
#ifndef ESPFLEET_MQTT_TLS_CHECK_H
#define ESPFLEET_MQTT_TLS_CHECK_H

#include <stdbool.h>
#include <stddef.h>

/**
 * Connects to the broker of @p paho_uri ("ssl://host:port") over TLS with
 * the session's files (@p ca_file or the system's CAs; @p cert_file and
 * @p key_file when set, may be NULL) and checks what the session checks:
 * the chain and the host name. Then waits briefly for the broker's verdict
 * on the client certificate, which TLS 1.3 sends after the handshake.
 * @param timeout_ms for the TCP connect and each TLS step
 * @return true with @p why filled ("the broker's certificate: hostname
 *         mismatch (it names DNS:localhost, IP:127.0.0.1)", "the broker
 *         refused the client certificate: certificate expired"); false when
 *         nothing was found to blame (the broker was not reached, or the
 *         connection worked this time).
 */
bool ef_mqtt_tls_check(const char *paho_uri, const char *ca_file, const char *cert_file, const char *key_file,
                       int timeout_ms, char *why, size_t n);

#endif
