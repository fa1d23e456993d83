/**
 * @file api.h
 * @brief espfleet-controller's HTTP API and its page (docs/api.md): the
 *        fleet's devices, rollouts and history over HTTP(S), live events
 *        (Server-Sent Events), and the operator's actions, which go to the
 *        broker exactly as the console's would.
 *
 * The API never writes the store and never drives the engine: it reads the
 * store beside the running controller (a read-only connection), keeps the
 * devices it hears of through the controller's observer in memory, and
 * publishes rollout documents, control messages and cancels through the
 * controller's MQTT session. Whatever it asks for, the controller decides
 * and records in its own loop, as for a document from the console.
 *
 * Logins are bearer tokens, each with a role (viewer: read; operator: read
 * and act), kept as SHA-256 digests in a tokens file, so the file discloses
 * no token. Without a tokens file (allowed on loopback only) every request
 * is the operator "local".
 */
#ifndef ESPFLEET_API_H
#define ESPFLEET_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/controller.h"
#include "espfleet/error.h"
#include "espfleet/status.h"

/** Where the API listens and what it serves; strings are the caller's and
 *  must outlive ef_api_start (they are copied). */
typedef struct {
  const char *listen;      /**< "HOST:PORT" ("127.0.0.1:8787", "[::1]:8787", "0.0.0.0:443") */
  const char *cert_file;   /**< TLS certificate chain (PEM); NULL or "" = plain HTTP */
  const char *key_file;    /**< its private key (PEM, unencrypted) */
  const char *tokens_file; /**< NULL or "" = no login: everyone is the operator "local" */
  const char *database;    /**< the controller's store, read beside it */
  const char *prefix;      /**< the topic prefix; NULL = the controller's */
  /** The origin browsers see ("https://fleet.example.com") when a proxy
   *  terminates TLS in front of the API; NULL or "" = this server's own
   *  scheme and the Host header. Writes from any other origin are refused. */
  const char *public_origin;
} ef_api_config;

typedef struct ef_api ef_api;

/**
 * Starts serving on its own threads: reads the tokens file and the TLS
 * files, loads the devices the store knows, registers itself as @p c's
 * observer (so call it before ef_controller_run, and stop it after) and
 * listens. The store is opened read-only; when the database does not exist
 * yet, each request that needs it tries again.
 * @return EF_OK; EF_ERR_CONFIG (a bad listen address, a tokens file with a
 *         bad line, TLS files libmicrohttpd refuses, a build without TLS);
 *         EF_ERR_IO (a file cannot be read, the address cannot be bound:
 *         st has the system's words); EF_ERR_NOMEM.
 */
ef_err ef_api_start(const ef_api_config *cfg, ef_controller *c, ef_api **out, ef_status *st) EF_MUST_CHECK;

/**
 * Stops serving: ends the event streams, waits for every connection's
 * thread, removes the observer and frees @p a (NULL is fine). Call it after
 * ef_controller_run returned, before ef_controller_free.
 */
void ef_api_stop(ef_api *a);

/** What a login may do. */
typedef enum {
  EF_API_VIEWER,   /**< read everything, act on nothing */
  EF_API_OPERATOR, /**< also create, pause, resume, abort and delete rollouts and cancel jobs */
} ef_api_role;

/** Name of a role as in the tokens file and /whoami ("viewer"). */
const char *ef_api_role_name(ef_api_role r);

/** Longest NAME in a tokens file. */
#define EF_API_NAME_MAX 64

/** One line of a tokens file. */
typedef struct {
  ef_api_role role;
  char name[EF_API_NAME_MAX + 1]; /**< [A-Za-z0-9._@:-], a label for logs and /whoami */
  uint8_t digest[32];             /**< SHA-256 of the token */
} ef_api_token;

/** Called with each problem of a tokens file: "line 3: ROLE: must be viewer or operator". */
typedef void (*ef_api_problem_cb)(void *arg, unsigned line, const char *problem);

/**
 * Reads a tokens file: one login per line, `ROLE NAME SHA256HEX` (blanks
 * between; `#` starts a comment; blank lines ignored), ROLE viewer or
 * operator, SHA256HEX the 64 lower-case hex digits of the token's SHA-256
 * (`printf %s "$TOKEN" | sha256sum`). Every bad line is reported, not only
 * the first: a duplicate name or digest, an unknown role, a malformed digest.
 * @param tokens receives a malloc'ed array (free()), NULL when the file has
 *        no logins; may be NULL to only check the file
 * @param problem called for each bad line (may be NULL)
 * @return EF_OK; EF_ERR_IO when the file cannot be read (st names it);
 *         EF_ERR_CONFIG when a line is bad (st has the first, with its
 *         number) or the file has no login at all; EF_ERR_NOMEM.
 */
ef_err ef_api_tokens_load(const char *path, ef_api_token **tokens, size_t *n, ef_api_problem_cb problem,
                          void *arg, ef_status *st) EF_MUST_CHECK;

/**
 * The login whose digest is SHA-256(@p token), or NULL. Every entry is
 * compared, in constant time, so the time taken says nothing about the
 * tokens held.
 */
const ef_api_token *ef_api_tokens_find(const ef_api_token *tokens, size_t n, const char *token);

#endif
