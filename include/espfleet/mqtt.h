/**
 * @file mqtt.h
 * @brief The MQTT session: one broker connection that survives broker loss.
 *
 * A session connects in the background, keeps reconnecting with exponential
 * backoff, re-subscribes after every (re)connection and buffers publishes
 * while the broker is away. The caller never waits for the network except
 * in ef_mqtt_flush / ef_mqtt_stop.
 *
 * Delivery guarantee: a QoS >= 1 publish accepted by ef_mqtt_publish
 * reaches the broker at least once while the process keeps running, even
 * when the connection drops with the message in flight and the broker
 * restarts without persistence (which makes the MQTT library discard its
 * in-flight state): the session keeps a copy of every unacknowledged
 * message (at most max_buffered) and re-sends, after each connect, those
 * the library no longer holds. A retained message that a newer retained
 * message on the same topic supersedes is not re-sent, so a re-send never
 * rolls retained state back; otherwise order is kept among re-sent
 * messages, but they may follow messages queued while offline. QoS 0
 * publishes made while disconnected are dropped. Nothing survives the
 * process: after a restart the caller republishes its state.
 *
 * Threads: every function may be called from any thread, and from inside
 * the callbacks except ef_mqtt_flush and ef_mqtt_stop. The callbacks run on
 * the MQTT library's threads, not the caller's: they must be quick (no
 * blocking I/O, no waiting on the caller's threads) and thread-safe with
 * respect to the caller's other threads. on_connected, on_message and
 * on_disconnected for one session are not run concurrently with each other
 * in practice (the library delivers them from its receive thread), but do
 * not rely on that for correctness. No callback runs after ef_mqtt_stop
 * returns.
 *
 * Logging: connection changes are logged (info/warn); messages are not.
 * Start-up failures are not logged: ef_mqtt_start reports them to the
 * caller in its ef_status.
 */
#ifndef ESPFLEET_MQTT_H
#define ESPFLEET_MQTT_H

#include <stdbool.h>
#include <stddef.h>

#include "espfleet/error.h"
#include "espfleet/status.h"

/** Most subscriptions a session accepts. */
#define EF_MQTT_MAX_SUBSCRIPTIONS 64

typedef struct {
  const char *topic; /**< topic filter; wildcards allowed */
  int qos;           /**< 0 or 1 (2 is accepted too) */
} ef_mqtt_subscription;

/**
 * Called for every message arriving on a subscription. @p payload is not
 * NUL-terminated and, like @p topic, is valid only during the call.
 */
typedef void (*ef_mqtt_message_cb)(void *arg, const char *topic, const void *payload, size_t len);

/**
 * Called after every successful (re)connection, once the subscriptions are
 * in place. @p reconnect is false the first time. Republish retained state
 * here.
 */
typedef void (*ef_mqtt_connected_cb)(void *arg, bool reconnect);

/** Called when an established connection is lost (not on failed attempts). */
typedef void (*ef_mqtt_disconnected_cb)(void *arg, const char *cause);

/* Defaults of ef_mqtt_options' zero fields. */
#define EF_MQTT_DEFAULT_KEEPALIVE_S       30
#define EF_MQTT_DEFAULT_CONNECT_TIMEOUT_S 10
#define EF_MQTT_DEFAULT_RECONNECT_MIN_MS  1000
#define EF_MQTT_DEFAULT_RECONNECT_MAX_MS  30000
#define EF_MQTT_DEFAULT_MAX_BUFFERED      1000

typedef struct {
  /** mqtt://host[:port] (default port 1883) or mqtts://host[:port] (8883);
   *  tcp:// and ssl:// are accepted as synonyms. Required. */
  const char *uri;
  const char *client_id; /**< required, non-empty (the broker keeps the session under it) */
  const char *username;  /**< NULL = none */
  const char *password;  /**< NULL = none; only with a username */
  const char *ca_file;   /**< mqtts: CA bundle (PEM); NULL = system trust store */
  const char *cert_file; /**< mqtts: client certificate (PEM); NULL = none */
  const char *key_file;  /**< mqtts: client key (PEM); NULL = in cert_file */
  int keepalive_s;       /**< 0 = EF_MQTT_DEFAULT_KEEPALIVE_S */
  int connect_timeout_s; /**< per attempt; 0 = EF_MQTT_DEFAULT_CONNECT_TIMEOUT_S */
  bool clean_session;    /**< default false: the broker keeps our subscriptions and
                                   queues QoS 1 messages for us across short disconnects */

  const char *will_topic;   /**< NULL = no last will */
  const char *will_payload; /**< text; NULL = empty */
  int will_qos;
  bool will_retain;

  const ef_mqtt_subscription *subscriptions; /**< copied; may be NULL when n is 0 */
  size_t n_subscriptions;                    /**< at most EF_MQTT_MAX_SUBSCRIPTIONS */

  int reconnect_min_ms; /**< first retry delay, doubled per failure;
                                   0 = EF_MQTT_DEFAULT_RECONNECT_MIN_MS */
  int reconnect_max_ms; /**< cap of the retry delay; 0 = EF_MQTT_DEFAULT_RECONNECT_MAX_MS */
  int max_buffered;     /**< unacknowledged QoS >= 1 publishes kept (offline
                                   or in flight); 0 = EF_MQTT_DEFAULT_MAX_BUFFERED;
                                   the oldest is dropped when full */

  ef_mqtt_message_cb on_message;           /**< may be NULL */
  ef_mqtt_connected_cb on_connected;       /**< may be NULL */
  ef_mqtt_disconnected_cb on_disconnected; /**< may be NULL */
  void *arg;                               /**< passed to every callback */
} ef_mqtt_options;

typedef struct ef_mqtt ef_mqtt;

/**
 * Validates @p o, creates the session and starts connecting in the
 * background. Returns at once: an unreachable broker is not an error (the
 * session keeps retrying). All strings in @p o are copied.
 * @param o options; see ef_mqtt_options for defaults.
 * @param out receives the session on success.
 * @param st why the session could not start ("uri 'http://x' must start
 *        with mqtt:// or mqtts://", "ca_file '/etc/x.pem' cannot be read: No
 *        such file or directory"); may be NULL
 * @return EF_OK; EF_ERR_CONFIG for a bad URI, missing client id, unreadable
 *         CA/cert/key file, TLS files on a plain URI, bad QoS or too many
 *         subscriptions; EF_ERR_NOMEM; EF_ERR_MQTT when the MQTT library
 *         refuses to create the client.
 */
ef_err ef_mqtt_start(const ef_mqtt_options *o, ef_mqtt **out, ef_status *st) EF_MUST_CHECK;

/**
 * Queues one message; never waits for the network. While disconnected,
 * QoS >= 1 messages are buffered (at most max_buffered, oldest dropped
 * first) and sent after reconnecting; QoS 0 messages are dropped.
 * @param s session.
 * @param topic topic name (no wildcards).
 * @param payload bytes; may be NULL when @p len is 0.
 * @param len payload length.
 * @param qos 0, 1 or 2.
 * @param retain ask the broker to retain the message.
 * @param st why it was refused (the library's reason); may be NULL
 * @return EF_OK (also for a dropped QoS 0 message); EF_ERR_INVALID_ARG for a
 *         bad topic, QoS or length; EF_ERR_NOMEM; EF_ERR_MQTT when the
 *         library refuses it (e.g. a topic that is not UTF-8; not
 *         retryable); the message is then not sent.
 */
ef_err ef_mqtt_publish(ef_mqtt *s, const char *topic, const void *payload, size_t len, int qos, bool retain,
                       ef_status *st) EF_MUST_CHECK;

/** True while connected with the subscriptions in place. */
bool ef_mqtt_is_connected(ef_mqtt *s);

/**
 * Waits up to @p timeout_ms until every publish accepted so far has been
 * handed to the broker (QoS 1: acknowledged). Reconnecting continues
 * meanwhile.
 * @param st when messages are still pending, says so (retryable); may be NULL
 * @return EF_OK when nothing is pending; EF_ERR_MQTT when messages are still
 *         pending at the deadline.
 */
ef_err ef_mqtt_flush(ef_mqtt *s, int timeout_ms, ef_status *st) EF_MUST_CHECK;

/**
 * Flushes for up to @p flush_ms (see ef_mqtt_flush; pending messages left
 * then are logged and dropped), disconnects cleanly (so the broker does not
 * publish the last will) and frees @p s. No callback runs after this
 * returns. Must not be called from a callback. NULL is ignored.
 */
void ef_mqtt_stop(ef_mqtt *s, int flush_ms);

#endif
