/**
 * @file inbox.h
 * @brief A bounded queue of received MQTT messages, handed from the MQTT
 *        library's threads to one program thread.
 *
 * ef_inbox_on_message has the signature of ef_mqtt_message_cb: pass it as
 * the session's on_message with the inbox as its argument. It copies the
 * message and returns at once (the MQTT callbacks must be quick). When the
 * reader falls behind by more than the inbox's capacity the oldest message
 * is dropped and counted, so memory stays bounded whatever the broker sends.
 */
#ifndef ESPFLEET_INBOX_H
#define ESPFLEET_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** A received message, owned by the caller after ef_inbox_next. */
typedef struct ef_inbox_msg {
  struct ef_inbox_msg *next;
  char *topic;
  char *payload; /**< a NUL-terminated copy (the payload may hold NULs of its own) */
  size_t len;
} ef_inbox_msg;

typedef struct ef_inbox ef_inbox;

/**
 * Creates an inbox of at most @p capacity unread messages.
 * @param interrupted polled while ef_inbox_next waits (at least every 200 ms);
 *        when it returns true the wait ends early. NULL = never.
 * @return the inbox, NULL on OOM.
 */
ef_inbox *ef_inbox_new(size_t capacity, bool (*interrupted)(void));

/** The ef_mqtt_message_cb that queues a copy of each message into the inbox @p arg. */
void ef_inbox_on_message(void *arg, const char *topic, const void *payload, size_t len);

/**
 * Waits for the next message until @p deadline_ms (ef_mono_ms clock; < 0 =
 * no deadline) or until the interrupt callback says so.
 * @return the message (free with ef_inbox_msg_free) or NULL.
 */
ef_inbox_msg *ef_inbox_next(ef_inbox *in, int64_t deadline_ms);

/** Wakes a waiting ef_inbox_next (from another thread; not from a signal handler). */
void ef_inbox_wake(ef_inbox *in);

/** Messages dropped so far because the inbox was full. */
long ef_inbox_dropped(ef_inbox *in);

/** Frees a message (NULL is fine). */
void ef_inbox_msg_free(ef_inbox_msg *m);

/** Frees the inbox and what it still holds. The MQTT session feeding it must be stopped first. */
void ef_inbox_free(ef_inbox *in);

#endif
