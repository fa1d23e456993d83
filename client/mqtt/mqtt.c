/*
 * The MQTT session over Paho's asynchronous client.
 *
 * Reconnecting is done by our own supervisor thread rather than Paho's
 * automaticReconnect: Paho only retries after a connection that once
 * succeeded (not when the broker is down at start) and checks its retry
 * timer every few seconds. The supervisor gives one backoff policy for
 * both cases and a clean shutdown point.
 *
 * Delivery across a broker restart: Paho re-sends unacknowledged QoS 1
 * messages after a reconnect only when the broker still has the session.
 * A broker that restarted without persistence answers sessionPresent=0 and
 * Paho then silently discards its in-flight messages (as it always does
 * with cleansession=1). So the session keeps its own copy of every
 * unacknowledged QoS >= 1 publish (bounded by max_buffered) and, after each
 * connect, re-sends the copies Paho no longer holds. A retained message is
 * not re-sent when a newer retained one for the same topic follows it, so
 * a re-send never rolls a retained state back.
 */
#include "espfleet/mqtt.h"

#include <MQTTAsync.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "espfleet/clock.h"
#include "espfleet/log.h"
#include "tls_check.h"

/* How long the look at a failed TLS connection may take per step (connect,
 * handshake): it runs in Paho's callback, which ef_mqtt_stop waits for. */
#define TLS_CHECK_MS 1500

enum conn_state {
  ST_WAITING,     /* disconnected; the supervisor connects at next_attempt */
  ST_CONNECTING,  /* CONNECT sent, waiting for the outcome */
  ST_SUBSCRIBING, /* connected, SUBSCRIBE sent */
  ST_CONNECTED,   /* connected with the subscriptions in place */
};

/* A QoS >= 1 publish not yet acknowledged by the broker. */
struct unacked {
  struct unacked *prev, *next;
  int token;               /* Paho's token (the MQTT message id), or one of: */
#define TOKEN_SENDING (-1) /* being handed to Paho right now */
#define TOKEN_RESEND  (-2) /* Paho gave up on it; re-send at the next connect */
  int qos;
  bool retain;
  char *topic;
  size_t len;
  unsigned char payload[];
};

/* Acks that arrived before ef_mqtt_publish had recorded the token. */
#define EARLY_ACKS 16

struct ef_mqtt {
  MQTTAsync client;
  bool client_created;

  /* Copies of the caller's options; Paho's option structs point into them. */
  char *uri; /* Paho form: tcp://host:port or ssl://host:port */
  bool tls;
  char *client_id, *username, *password;
  char *ca_file, *cert_file, *key_file;
  char *will_topic, *will_payload;
  char **sub_topics;
  int *sub_qos;
  int n_subs;
  int min_ms, max_ms;
  ef_mqtt_message_cb on_message;
  ef_mqtt_connected_cb on_connected;
  ef_mqtt_disconnected_cb on_disconnected;
  void *arg;

  MQTTAsync_connectOptions conn_opts;
  MQTTAsync_willOptions will_opts;
  MQTTAsync_SSLOptions ssl_opts;

  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC; broadcast on every state change */
  enum conn_state state;
  bool closing; /* no more connect attempts, no more user callbacks */
  bool ever_connected;
  bool failure_logged; /* quiet repeated failures until the next success */
  bool disconnect_done;
  int delay_ms;                /* delay before the next attempt after a failure */
  int64_t next_attempt;        /* monotonic ms */
  int active;                  /* Paho callbacks currently running in our code */
  char tls_error[192];         /* last TLS error text from this attempt */
  struct unacked *head, *tail; /* oldest first */
  int n_unacked, max_unacked;
  int early[EARLY_ACKS];
  int n_early;

  pthread_t supervisor;
};

/* ---- small helpers ---- */

static char *dup_or_null(const char *s, bool *ok) {
  if (!s) return NULL;
  char *d = strdup(s);
  if (!d) *ok = false;
  return d;
}

static int64_t deadline_in(int64_t ms) { return ef_mono_ms() + ms; }

static bool reached(int64_t deadline_ms) { return ef_mono_ms() >= deadline_ms; }

/* Waits on s->cv (s->mu held) until signaled or monotonic @p deadline_ms. */
static void wait_until(ef_mqtt *s, int64_t deadline_ms) {
  struct timespec ts = ef_ms_timespec(deadline_ms);
  pthread_cond_timedwait(&s->cv, &s->mu, &ts);
}

static bool qos_ok(int qos) { return qos >= 0 && qos <= 2; }

/* Every Paho callback brackets its work with these, so that ef_mqtt_stop can
 * wait until none of them is still touching the session. */
static void cb_enter(ef_mqtt *s) {
  pthread_mutex_lock(&s->mu);
  s->active++;
  pthread_mutex_unlock(&s->mu);
}

static void cb_leave(ef_mqtt *s) {
  pthread_mutex_lock(&s->mu);
  if (--s->active == 0) pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static bool user_callbacks_allowed(ef_mqtt *s) {
  pthread_mutex_lock(&s->mu);
  bool ok = !s->closing;
  pthread_mutex_unlock(&s->mu);
  return ok;
}

/* ---- unacknowledged publishes (see the file comment) ---- */

static void unacked_unlink(ef_mqtt *s, struct unacked *u) {
  if (u->prev)
    u->prev->next = u->next;
  else
    s->head = u->next;
  if (u->next)
    u->next->prev = u->prev;
  else
    s->tail = u->prev;
  s->n_unacked--;
  free(u->topic);
  free(u);
}

static struct unacked *unacked_find(ef_mqtt *s, int token) {
  for (struct unacked *u = s->head; u; u = u->next)
    if (u->token == token) return u;
  return NULL;
}

/* Copies a publish into the list (token TOKEN_SENDING). When the list is
 * full the oldest entry is forgotten, like Paho's own buffer does. */
static struct unacked *unacked_add(ef_mqtt *s, const char *topic, const void *payload, size_t len, int qos,
                                   bool retain) {
  struct unacked *u = malloc(sizeof *u + len);
  if (!u) return NULL;
  if (!(u->topic = strdup(topic))) {
    free(u);
    return NULL;
  }
  if (len) memcpy(u->payload, payload, len);
  u->len = len;
  u->qos = qos;
  u->retain = retain;
  u->token = TOKEN_SENDING;
  pthread_mutex_lock(&s->mu);
  /* Entries being handed over are referenced outside the lock: skip them. */
  for (struct unacked *old = s->head; old && s->n_unacked >= s->max_unacked;) {
    struct unacked *next = old->next;
    if (old->token != TOKEN_SENDING) unacked_unlink(s, old);
    old = next;
  }
  u->next = NULL;
  u->prev = s->tail;
  if (s->tail)
    s->tail->next = u;
  else
    s->head = u;
  s->tail = u;
  s->n_unacked++;
  pthread_mutex_unlock(&s->mu);
  return u;
}

static void on_publish_success(void *ctx, MQTTAsync_successData *r);
static void on_publish_failure(void *ctx, MQTTAsync_failureData *r);

/* Hands @p u (TOKEN_SENDING) to Paho and records its token; when Paho
 * refuses it, @p u is forgotten (@p forget_refused) or kept for the next
 * connect. Called without mu held: Paho takes its own lock inside. */
static int unacked_send(ef_mqtt *s, struct unacked *u, bool forget_refused) {
  MQTTAsync_message m = MQTTAsync_message_initializer;
  m.payload = u->payload;
  m.payloadlen = (int)u->len;
  m.qos = u->qos;
  m.retained = u->retain ? 1 : 0;
  MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
  ro.onSuccess = on_publish_success;
  ro.onFailure = on_publish_failure;
  ro.context = s;
  int rc = MQTTAsync_sendMessage(s->client, u->topic, &m, &ro);
  pthread_mutex_lock(&s->mu);
  bool acked = false;
  if (rc == MQTTASYNC_SUCCESS) {
    for (int i = 0; i < s->n_early; i++) {
      if (s->early[i] == ro.token) {
        s->early[i] = s->early[--s->n_early];
        acked = true;
        break;
      }
    }
    u->token = ro.token;
  } else {
    u->token = TOKEN_RESEND;
  }
  if (acked || (rc != MQTTASYNC_SUCCESS && forget_refused)) unacked_unlink(s, u);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

static void on_publish_success(void *ctx, MQTTAsync_successData *r) {
  ef_mqtt *s = ctx;
  if (!r) return;
  cb_enter(s);
  pthread_mutex_lock(&s->mu);
  struct unacked *u = unacked_find(s, r->token);
  if (u)
    unacked_unlink(s, u);
  else if (s->n_early < EARLY_ACKS)
    s->early[s->n_early++] = r->token;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  cb_leave(s);
}

static void on_publish_failure(void *ctx, MQTTAsync_failureData *r) {
  ef_mqtt *s = ctx;
  if (!r) return;
  cb_enter(s);
  pthread_mutex_lock(&s->mu);
  struct unacked *u = unacked_find(s, r->token);
  if (u) u->token = TOKEN_RESEND;
  pthread_mutex_unlock(&s->mu);
  cb_leave(s);
}

static bool token_in(const MQTTAsync_token *tokens, int token) {
  for (int i = 0; tokens && tokens[i] != -1; i++)
    if (tokens[i] == token) return true;
  return false;
}

/* After a connect: re-sends, oldest first, every unacknowledged publish
 * that Paho no longer holds. */
static void unacked_resend(ef_mqtt *s) {
  MQTTAsync_token *pending = NULL;
  struct unacked **batch = NULL;
  int n = 0, superseded = 0;
  if (MQTTAsync_getPendingTokens(s->client, &pending) != MQTTASYNC_SUCCESS) pending = NULL;
  pthread_mutex_lock(&s->mu);
  s->n_early = 0; /* acks of the old connection are all in */
  if (s->n_unacked > 0)
    // NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers
    batch = malloc((size_t)s->n_unacked * sizeof *batch);
  for (struct unacked *u = s->head, *next; u && batch; u = next) {
    next = u->next;
    if (u->token == TOKEN_SENDING || (u->token >= 0 && token_in(pending, u->token))) continue;
    bool newer = false;
    for (struct unacked *v = u->next; u->retain && v && !newer; v = v->next)
      newer = v->retain && strcmp(v->topic, u->topic) == 0;
    if (newer) {
      unacked_unlink(s, u);
      superseded++;
      continue;
    }
    /* TOKEN_SENDING keeps the entry alive while we send it unlocked. */
    u->token = TOKEN_SENDING;
    batch[n++] = u;
  }
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < n; i++) (void)unacked_send(s, batch[i], false);
  free(batch);
  MQTTAsync_free(pending);
  if (n || superseded)
    ef_info("mqtt: re-sent %d unacknowledged message(s) the broker lost (%d superseded)", n, superseded);
}

/* ---- option checks ---- */

/* Maps mqtt:// and mqtts:// (and Paho's own tcp:// and ssl://) to Paho's
 * form with an explicit port; rejects anything after host:port. */
static ef_err parse_uri(const char *uri, char **paho_uri, bool *tls, ef_status *st) {
  static const struct {
    const char *prefix;
    const char *paho;
    bool tls;
    unsigned port;
  } schemes[] = {
      {"mqtt://", "tcp", false, 1883},
      {"mqtts://", "ssl", true, 8883},
      {"tcp://", "tcp", false, 1883},
      {"ssl://", "ssl", true, 8883},
  };
  ef_err err = EF_ERR_CONFIG;
  const char *rest = NULL;
  size_t i;
  for (i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
    size_t n = strlen(schemes[i].prefix);
    if (strncasecmp(uri, schemes[i].prefix, n) == 0) {
      rest = uri + n;
      break;
    }
  }
  if (!rest) {
    err = ef_status_fail(st, EF_ERR_CONFIG, "uri '%s' must start with mqtt:// or mqtts://", uri);
    goto out;
  }

  const char *host = rest, *host_end;
  if (*rest == '[') {
    host_end = strchr(rest, ']');
    if (!host_end || host_end == rest + 1) goto bad;
    host_end++;
  } else {
    host_end = rest + strcspn(rest, ":/");
    for (const char *p = host; p < host_end; p++) {
      unsigned char c = (unsigned char)*p;
      if (!(c == '.' || c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
            (c >= 'A' && c <= 'Z')))
        goto bad;
    }
    if (host_end == host) goto bad;
  }

  unsigned port = schemes[i].port;
  const char *p = host_end;
  if (*p == ':') {
    char *end;
    errno = 0;
    unsigned long v = strtoul(p + 1, &end, 10);
    if (end == p + 1 || errno || v == 0 || v > 65535 || p[1] == '-' || p[1] == '+') goto bad;
    port = (unsigned)v;
    p = end;
  }
  if (*p == '/') p++;
  if (*p != '\0') goto bad;

  int hlen = (int)(host_end - host);
  if (asprintf(paho_uri, "%s://%.*s:%u", schemes[i].paho, hlen, host, port) < 0) {
    *paho_uri = NULL;
    err = ef_status_fail(st, EF_ERR_NOMEM, NULL);
    goto out;
  }
  *tls = schemes[i].tls;
  err = EF_OK;
  goto out;
bad:
  err = ef_status_fail(st, EF_ERR_CONFIG, "uri '%s' is not of the form mqtt[s]://host[:port]", uri);
out:
  return err;
}

static ef_err check_readable(const char *what, const char *path, ef_status *st) {
  ef_err err = EF_OK;
  struct stat sb;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = ef_status_fail(st, EF_ERR_CONFIG, "%s '%s' cannot be read: %s", what, path, strerror(errno));
    goto out;
  }
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    err = ef_status_fail(st, EF_ERR_CONFIG, "%s '%s' is not a regular file", what, path);
    goto out;
  }
out:
  if (fd >= 0) close(fd);
  return err;
}

/* A bad option is the caller's configuration: not retryable (EF_ERR_CONFIG). */
static ef_err check_options(const ef_mqtt_options *o, ef_status *st) {
  if (!o->uri || !*o->uri) return ef_status_fail(st, EF_ERR_CONFIG, "a broker uri is required");
  if (!o->client_id || !*o->client_id) return ef_status_fail(st, EF_ERR_CONFIG, "a client id is required");
  if (o->password && !o->username) return ef_status_fail(st, EF_ERR_CONFIG, "a password needs a username");
  if (o->will_topic && (!*o->will_topic || !qos_ok(o->will_qos) || strpbrk(o->will_topic, "+#")))
    return ef_status_fail(st, EF_ERR_CONFIG, "invalid last will (topic '%s', qos %d)", o->will_topic,
                          o->will_qos);
  if (o->n_subscriptions > EF_MQTT_MAX_SUBSCRIPTIONS || (o->n_subscriptions && !o->subscriptions))
    return ef_status_fail(st, EF_ERR_CONFIG, "at most %d subscriptions", EF_MQTT_MAX_SUBSCRIPTIONS);
  for (size_t i = 0; i < o->n_subscriptions; i++) {
    const ef_mqtt_subscription *sub = &o->subscriptions[i];
    if (!sub->topic || !*sub->topic || !qos_ok(sub->qos))
      return ef_status_fail(st, EF_ERR_CONFIG, "invalid subscription %zu", i);
  }
  if (o->reconnect_min_ms < 0 || o->reconnect_max_ms < 0 || o->max_buffered < 0 || o->keepalive_s < 0 ||
      o->connect_timeout_s < 0)
    return ef_status_fail(st, EF_ERR_CONFIG, "negative interval or limit");
  return EF_OK;
}

/* ---- connection state machine (runs on Paho's threads) ---- */

/* Records a failed attempt and schedules the next one. Called with mu held. */
static void attempt_failed_locked(ef_mqtt *s, const char *cause) {
  s->state = ST_WAITING;
  s->next_attempt = deadline_in(s->delay_ms);
  if (!s->failure_logged)
    ef_warn("mqtt: cannot connect to %s (%s); retrying with backoff up to %d s", s->uri, cause,
            s->max_ms / 1000);
  else
    ef_debug("mqtt: connect to %s failed (%s); next try in %d ms", s->uri, cause, s->delay_ms);
  s->failure_logged = true;
  s->delay_ms = s->delay_ms > s->max_ms / 2 ? s->max_ms : s->delay_ms * 2;
  s->tls_error[0] = '\0';
  pthread_cond_broadcast(&s->cv);
}

static void mark_connected(ef_mqtt *s) {
  pthread_mutex_lock(&s->mu);
  if (s->state != ST_SUBSCRIBING && s->state != ST_CONNECTING) {
    pthread_mutex_unlock(&s->mu);
    return;
  }
  s->state = ST_CONNECTED;
  bool reconnect = s->ever_connected;
  s->ever_connected = true;
  s->failure_logged = false;
  s->delay_ms = s->min_ms;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);

  ef_info("mqtt: %s to %s as '%s'", reconnect ? "reconnected" : "connected", s->uri, s->client_id);
  if (s->on_connected && user_callbacks_allowed(s)) s->on_connected(s->arg, reconnect);
}

/* Drops a connection whose subscriptions failed, so the next attempt tries
 * again from scratch. */
static void drop_connection(ef_mqtt *s, const char *cause) {
  pthread_mutex_lock(&s->mu);
  bool ours = s->state == ST_SUBSCRIBING;
  if (ours) attempt_failed_locked(s, cause);
  pthread_mutex_unlock(&s->mu);
  if (ours) {
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = 0;
    (void)MQTTAsync_disconnect(s->client, &d);
  }
}

static void on_subscribe_success(void *ctx, MQTTAsync_successData *r) {
  ef_mqtt *s = ctx;
  cb_enter(s);
  for (int i = 0; r && i < s->n_subs; i++) {
    int granted = s->n_subs == 1 ? r->alt.qos : (r->alt.qosList ? r->alt.qosList[i] : 0);
    if (granted == 0x80) ef_warn("mqtt: broker refused the subscription to '%s'", s->sub_topics[i]);
  }
  mark_connected(s);
  cb_leave(s);
}

static void on_subscribe_failure(void *ctx, MQTTAsync_failureData *r) {
  ef_mqtt *s = ctx;
  cb_enter(s);
  char cause[160];
  snprintf(cause, sizeof cause, "subscribe failed: %s", r && r->message ? r->message : "no reason given");
  drop_connection(s, cause);
  cb_leave(s);
}

static void on_connect_success(void *ctx, MQTTAsync_successData *r) {
  ef_mqtt *s = ctx;
  cb_enter(s);
  pthread_mutex_lock(&s->mu);
  bool ours = s->state == ST_CONNECTING;
  if (ours && s->n_subs > 0) s->state = ST_SUBSCRIBING;
  pthread_mutex_unlock(&s->mu);
  if (!ours) goto out;
  unacked_resend(s);
  if (s->n_subs == 0) {
    mark_connected(s);
    goto out;
  }
  MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
  ro.onSuccess = on_subscribe_success;
  ro.onFailure = on_subscribe_failure;
  ro.context = s;
  int rc = MQTTAsync_subscribeMany(s->client, s->n_subs, s->sub_topics, s->sub_qos, &ro);
  if (rc != MQTTASYNC_SUCCESS) {
    char cause[96];
    snprintf(cause, sizeof cause, "subscribe not sent: %s", MQTTAsync_strerror(rc));
    drop_connection(s, cause);
  }
out:
  cb_leave(s);
}

static void on_connect_failure(void *ctx, MQTTAsync_failureData *r) {
  ef_mqtt *s = ctx;
  cb_enter(s);
  char cause[320], tls_why[256] = "";
  /* The first failure of a streak over TLS is looked at once more, to say
   * why in words (a host name mismatch, the CA, the broker refusing the
   * client certificate), which Paho does not. */
  pthread_mutex_lock(&s->mu);
  bool look = s->tls && !s->failure_logged && s->state == ST_CONNECTING;
  pthread_mutex_unlock(&s->mu);
  if (look && !ef_mqtt_tls_check(s->uri, s->ca_file, s->cert_file, s->key_file, TLS_CHECK_MS, tls_why,
                                 sizeof tls_why))
    tls_why[0] = '\0';
  pthread_mutex_lock(&s->mu);
  if (tls_why[0])
    snprintf(cause, sizeof cause, "TLS: %s", tls_why);
  else if (s->tls_error[0])
    snprintf(cause, sizeof cause, "TLS: %s", s->tls_error);
  else if (r && r->message)
    snprintf(cause, sizeof cause, "%s", r->message);
  else if (r && r->code > 0)
    /* A positive code is the broker's CONNACK return code. */
    snprintf(cause, sizeof cause, "broker refused the connection: %s",
             r->code == 4   ? "bad user name or password"
             : r->code == 5 ? "not authorized"
                            : "CONNACK error");
  else
    snprintf(cause, sizeof cause, "%s", MQTTAsync_strerror(r ? r->code : MQTTASYNC_FAILURE));
  if (s->state == ST_CONNECTING) attempt_failed_locked(s, cause);
  pthread_mutex_unlock(&s->mu);
  cb_leave(s);
}

static void on_connection_lost(void *ctx, char *cause) {
  ef_mqtt *s = ctx;
  cb_enter(s);
  const char *why = cause && *cause ? cause : "connection lost";
  pthread_mutex_lock(&s->mu);
  enum conn_state was = s->state;
  if (was == ST_CONNECTED || was == ST_SUBSCRIBING) {
    s->state = ST_WAITING;
    s->next_attempt = deadline_in(s->delay_ms);
    pthread_cond_broadcast(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
  if (was == ST_CONNECTED || was == ST_SUBSCRIBING)
    ef_warn("mqtt: connection to %s lost (%s); reconnecting", s->uri, why);
  if (was == ST_CONNECTED && s->on_disconnected && user_callbacks_allowed(s)) s->on_disconnected(s->arg, why);
  cb_leave(s);
}

static int on_message_arrived(void *ctx, char *topic, int topic_len, MQTTAsync_message *m) {
  ef_mqtt *s = ctx;
  cb_enter(s);
  (void)topic_len; /* our topics never contain NUL */
  if (s->on_message && user_callbacks_allowed(s))
    s->on_message(s->arg, topic, m->payload, m->payloadlen > 0 ? (size_t)m->payloadlen : 0);
  MQTTAsync_freeMessage(&m);
  MQTTAsync_free(topic);
  cb_leave(s);
  return 1;
}

/* OpenSSL error lines from a failed handshake: kept so the connect failure
 * log line says why (unknown CA, hostname mismatch...) instead of a code. */
static int on_tls_error(const char *str, size_t len, void *u) {
  ef_mqtt *s = u;
  pthread_mutex_lock(&s->mu);
  if (len >= sizeof s->tls_error) len = sizeof s->tls_error - 1;
  memcpy(s->tls_error, str, len);
  while (len > 0 && (s->tls_error[len - 1] == '\n' || s->tls_error[len - 1] == '\r')) len--;
  s->tls_error[len] = '\0';
  pthread_mutex_unlock(&s->mu);
  return 1;
}

/* ---- supervisor thread: starts every connection attempt ---- */

static void *supervise(void *p) {
  ef_mqtt *s = p;
  pthread_mutex_lock(&s->mu);
  while (!s->closing) {
    if (s->state != ST_WAITING) {
      pthread_cond_wait(&s->cv, &s->mu);
      continue;
    }
    if (!reached(s->next_attempt)) {
      wait_until(s, s->next_attempt);
      continue;
    }
    s->state = ST_CONNECTING;
    s->tls_error[0] = '\0';
    pthread_mutex_unlock(&s->mu);
    int rc = MQTTAsync_connect(s->client, &s->conn_opts);
    pthread_mutex_lock(&s->mu);
    if (rc != MQTTASYNC_SUCCESS && s->state == ST_CONNECTING)
      attempt_failed_locked(s, MQTTAsync_strerror(rc));
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- public API ---- */

static void session_free(ef_mqtt *s) {
  if (!s) return;
  if (s->client_created) MQTTAsync_destroy(&s->client);
  /* Paho may still be returning from a callback that began before destroy. */
  pthread_mutex_lock(&s->mu);
  while (s->active > 0) pthread_cond_wait(&s->cv, &s->mu);
  for (struct unacked *u = s->head, *next; u; u = next) {
    next = u->next;
    free(u->topic);
    free(u);
  }
  s->head = s->tail = NULL;
  s->n_unacked = 0;
  pthread_mutex_unlock(&s->mu);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  for (int i = 0; i < s->n_subs; i++) free(s->sub_topics[i]);
  free(s->sub_topics);
  free(s->sub_qos);
  free(s->uri);
  free(s->client_id);
  free(s->username);
  free(s->password);
  free(s->ca_file);
  free(s->cert_file);
  free(s->key_file);
  free(s->will_topic);
  free(s->will_payload);
  free(s);
}

/* TLS files only with mqtts://, a key only with its certificate, and each
 * one readable now rather than at the first connection attempt. */
static ef_err check_tls_files(const ef_mqtt_options *o, bool tls, ef_status *st) {
  ef_err err = EF_OK;
  if (!tls && (o->ca_file || o->cert_file || o->key_file))
    return ef_status_fail(st, EF_ERR_CONFIG, "TLS files are set but uri '%s' is not mqtts://", o->uri);
  if (o->key_file && !o->cert_file) return ef_status_fail(st, EF_ERR_CONFIG, "key_file needs cert_file");
  if ((o->ca_file && (err = check_readable("ca_file", o->ca_file, st)) != EF_OK) ||
      (o->cert_file && (err = check_readable("cert_file", o->cert_file, st)) != EF_OK) ||
      (o->key_file && (err = check_readable("key_file", o->key_file, st)) != EF_OK))
    return err;
  return EF_OK;
}

/* Copies what the session keeps of @p o (strings, subscriptions, retry
 * timing, callbacks) into @p s. @return EF_OK or EF_ERR_NOMEM. */
static ef_err copy_options(ef_mqtt *s, const ef_mqtt_options *o) {
  bool ok = true;
  s->client_id = dup_or_null(o->client_id, &ok);
  s->username = dup_or_null(o->username, &ok);
  s->password = dup_or_null(o->password, &ok);
  s->ca_file = dup_or_null(o->ca_file, &ok);
  s->cert_file = dup_or_null(o->cert_file, &ok);
  s->key_file = dup_or_null(o->key_file, &ok);
  s->will_topic = dup_or_null(o->will_topic, &ok);
  s->will_payload = dup_or_null(o->will_payload ? o->will_payload : "", &ok);
  if (!ok) return EF_ERR_NOMEM;
  if (o->n_subscriptions) {
    s->sub_topics = calloc(o->n_subscriptions, sizeof *s->sub_topics);
    s->sub_qos = calloc(o->n_subscriptions, sizeof *s->sub_qos);
    if (!s->sub_topics || !s->sub_qos) return EF_ERR_NOMEM;
    for (size_t i = 0; i < o->n_subscriptions; i++) {
      if (!(s->sub_topics[i] = strdup(o->subscriptions[i].topic))) return EF_ERR_NOMEM;
      s->sub_qos[i] = o->subscriptions[i].qos;
      s->n_subs++;
    }
  }
  s->min_ms = o->reconnect_min_ms ? o->reconnect_min_ms : EF_MQTT_DEFAULT_RECONNECT_MIN_MS;
  s->max_ms = o->reconnect_max_ms ? o->reconnect_max_ms : EF_MQTT_DEFAULT_RECONNECT_MAX_MS;
  if (s->max_ms < s->min_ms) s->max_ms = s->min_ms;
  s->delay_ms = s->min_ms;
  s->max_unacked = o->max_buffered ? o->max_buffered : EF_MQTT_DEFAULT_MAX_BUFFERED;
  s->on_message = o->on_message;
  s->on_connected = o->on_connected;
  s->on_disconnected = o->on_disconnected;
  s->arg = o->arg;
  return EF_OK;
}

/* The Paho client, buffering while offline (before the first connection
 * too), with our callbacks. */
static ef_err create_client(ef_mqtt *s, ef_status *st) {
  MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
  co.sendWhileDisconnected = 1;
  co.allowDisconnectedSendAtAnyTime = 1; /* buffer before the first connect too */
  co.maxBufferedMessages = s->max_unacked;
  co.deleteOldestMessages = 1; /* the newest state report matters most */
  co.MQTTVersion = MQTTVERSION_3_1_1;
  int rc =
      MQTTAsync_createWithOptions(&s->client, s->uri, s->client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
  if (rc != MQTTASYNC_SUCCESS)
    return ef_status_fail_r(st, EF_ERR_MQTT, false, "cannot create a client for %s: %s", s->uri,
                            MQTTAsync_strerror(rc));
  s->client_created = true;
  rc = MQTTAsync_setCallbacks(s->client, s, on_connection_lost, on_message_arrived, NULL);
  if (rc != MQTTASYNC_SUCCESS)
    return ef_status_fail_r(st, EF_ERR_MQTT, false, "cannot set the client's callbacks: %s",
                            MQTTAsync_strerror(rc));
  return EF_OK;
}

/* The options of every connection attempt (s->conn_opts), with the last
 * will and TLS settings they point to (kept in @p s too). */
static void set_connect_options(ef_mqtt *s, const ef_mqtt_options *o) {
  MQTTAsync_connectOptions c = MQTTAsync_connectOptions_initializer;
  c.keepAliveInterval = o->keepalive_s ? o->keepalive_s : EF_MQTT_DEFAULT_KEEPALIVE_S;
  c.cleansession = o->clean_session ? 1 : 0;
  c.connectTimeout = o->connect_timeout_s ? o->connect_timeout_s : EF_MQTT_DEFAULT_CONNECT_TIMEOUT_S;
  c.retryInterval = 0;
  c.MQTTVersion = MQTTVERSION_3_1_1;
  c.automaticReconnect = 0;
  c.username = s->username;
  c.password = s->password;
  c.onSuccess = on_connect_success;
  c.onFailure = on_connect_failure;
  c.context = s;
  if (s->will_topic) {
    MQTTAsync_willOptions w = MQTTAsync_willOptions_initializer;
    w.topicName = s->will_topic;
    w.message = s->will_payload;
    w.qos = o->will_qos;
    w.retained = o->will_retain ? 1 : 0;
    s->will_opts = w;
    c.will = &s->will_opts;
  }
  if (s->tls) {
    MQTTAsync_SSLOptions t = MQTTAsync_SSLOptions_initializer;
    t.trustStore = s->ca_file;
    t.keyStore = s->cert_file;
    t.privateKey = s->key_file;
    t.enableServerCertAuth = 1;
    t.verify = 1; /* host name must match the certificate */
    t.ssl_error_cb = on_tls_error;
    t.ssl_error_context = s;
    s->ssl_opts = t;
    c.ssl = &s->ssl_opts;
  }
  s->conn_opts = c;
}

ef_err ef_mqtt_start(const ef_mqtt_options *o, ef_mqtt **out, ef_status *st) {
  ef_err err = EF_ERR_INVALID_ARG;
  ef_mqtt *s = NULL;
  bool sync_ready = false;
  if (!o || !out) {
    err = ef_status_fail(st, EF_ERR_INVALID_ARG, "no options or no place for the session");
    goto out;
  }
  *out = NULL;
  if ((err = check_options(o, st)) != EF_OK) goto out;

  err = EF_ERR_NOMEM;
  s = calloc(1, sizeof *s);
  if (!s) goto out;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, &ca);
  pthread_condattr_destroy(&ca);
  sync_ready = true;

  if ((err = parse_uri(o->uri, &s->uri, &s->tls, st)) != EF_OK ||
      (err = check_tls_files(o, s->tls, st)) != EF_OK || (err = copy_options(s, o)) != EF_OK ||
      (err = create_client(s, st)) != EF_OK)
    goto out;
  set_connect_options(s, o);

  s->state = ST_WAITING;
  s->next_attempt = ef_mono_ms(); /* first attempt at once */
  if (pthread_create(&s->supervisor, NULL, supervise, s) != 0) {
    err = ef_status_fail(st, EF_ERR_INTERNAL, "cannot start the connection thread");
    goto out;
  }
  ef_info("mqtt: connecting to %s as '%s'", s->uri, s->client_id);
  *out = s;
  s = NULL;
  err = EF_OK;
out:
  if (err != EF_OK) ef_status_fail(st, err, NULL); /* out of memory: the code says it all */
  if (s) {
    if (sync_ready)
      session_free(s);
    else
      free(s);
  }
  return err;
}

ef_err ef_mqtt_publish(ef_mqtt *s, const char *topic, const void *payload, size_t len, int qos, bool retain,
                       ef_status *st) {
  if (!s || !topic || !*topic || strpbrk(topic, "+#") || !qos_ok(qos) || len > INT_MAX || (len && !payload))
    return ef_status_fail(st, EF_ERR_INVALID_ARG, "topic '%s', qos %d or a %zu-byte payload is invalid",
                          topic ? topic : "", qos, len);
  int rc;
  if (qos == 0) {
    /* Progress-like QoS 0 traffic is stale by the time we reconnect;
     * keeping it would only push state reports out of the buffer. */
    if (!ef_mqtt_is_connected(s)) return EF_OK;
    MQTTAsync_message m = MQTTAsync_message_initializer;
    m.payload = (void *)payload;
    m.payloadlen = (int)len;
    m.retained = retain ? 1 : 0;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    rc = MQTTAsync_sendMessage(s->client, topic, &m, &ro);
  } else {
    struct unacked *u = unacked_add(s, topic, payload, len, qos, retain);
    if (!u) return ef_status_fail(st, EF_ERR_NOMEM, "cannot keep a copy of the message for %s", topic);
    rc = unacked_send(s, u, true);
  }
  /* The library refused this message (not the network: that is buffered). */
  if (rc != MQTTASYNC_SUCCESS)
    return ef_status_fail_r(st, EF_ERR_MQTT, false, "the MQTT library refused the message for %s: %s", topic,
                            MQTTAsync_strerror(rc));
  return EF_OK;
}

bool ef_mqtt_is_connected(ef_mqtt *s) {
  if (!s) return false;
  pthread_mutex_lock(&s->mu);
  bool c = s->state == ST_CONNECTED;
  pthread_mutex_unlock(&s->mu);
  return c;
}

static bool has_pending(ef_mqtt *s) {
  MQTTAsync_token *tokens = NULL;
  if (MQTTAsync_getPendingTokens(s->client, &tokens) != MQTTASYNC_SUCCESS) return false;
  bool pending = tokens && tokens[0] != -1;
  MQTTAsync_free(tokens);
  return pending;
}

ef_err ef_mqtt_flush(ef_mqtt *s, int timeout_ms, ef_status *st) {
  if (!s) return ef_status_fail(st, EF_ERR_INVALID_ARG, "no session");
  int64_t deadline = deadline_in(timeout_ms > 0 ? timeout_ms : 0);
  for (;;) {
    pthread_mutex_lock(&s->mu);
    bool ours = s->n_unacked > 0;
    pthread_mutex_unlock(&s->mu);
    if (!ours && !has_pending(s)) return EF_OK;
    if (reached(deadline))
      return ef_status_fail(st, EF_ERR_MQTT, "messages still unacknowledged by %s after %d ms", s->uri,
                            timeout_ms);
    ef_sleep_ms(20);
  }
}

static void on_disconnect_done(void *ctx, MQTTAsync_successData *r) {
  ef_mqtt *s = ctx;
  cb_enter(s);
  pthread_mutex_lock(&s->mu);
  s->disconnect_done = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  cb_leave(s);
}

static void on_disconnect_failed(void *ctx, MQTTAsync_failureData *r) { on_disconnect_done(ctx, NULL); }

void ef_mqtt_stop(ef_mqtt *s, int flush_ms) {
  if (!s) return;
  if (flush_ms > 0 && ef_mqtt_flush(s, flush_ms, NULL) != EF_OK)
    ef_warn("mqtt: stopping with messages not yet delivered to %s", s->uri);

  pthread_mutex_lock(&s->mu);
  s->closing = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->supervisor, NULL);

  /* Let an attempt in flight finish, so that it does not connect after our
   * DISCONNECT and then vanish without one (the broker would publish the
   * will). Bounded: an unreachable broker must not hold up shutdown. */
  int64_t deadline = deadline_in(2000);
  pthread_mutex_lock(&s->mu);
  while ((s->state == ST_CONNECTING || s->state == ST_SUBSCRIBING) && !reached(deadline))
    wait_until(s, deadline);
  pthread_mutex_unlock(&s->mu);

  if (MQTTAsync_isConnected(s->client)) {
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = 1000;
    d.onSuccess = on_disconnect_done;
    d.onFailure = on_disconnect_failed;
    d.context = s;
    if (MQTTAsync_disconnect(s->client, &d) == MQTTASYNC_SUCCESS) {
      deadline = deadline_in(2000);
      pthread_mutex_lock(&s->mu);
      while (!s->disconnect_done && !reached(deadline)) wait_until(s, deadline);
      pthread_mutex_unlock(&s->mu);
    }
  }
  ef_info("mqtt: session with %s stopped", s->uri);
  session_free(s);
}
