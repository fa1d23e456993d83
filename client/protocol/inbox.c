/*
 * The inbox: messages the MQTT library delivers on its threads, queued for
 * one program thread. The callback only copies and signals; the reader
 * waits on a condition variable with a short period so that an interrupt
 * (a signal, which cannot signal a condition variable) ends its wait soon.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/clock.h"
#include "espfleet/inbox.h"

/* Longest single wait: how late an interrupt may be noticed. */
#define POLL_MS 200

struct ef_inbox {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ef_inbox_msg *head, *tail;
  size_t queued, capacity;
  long dropped;
  bool woken;
  bool (*interrupted)(void);
};

ef_inbox *ef_inbox_new(size_t capacity, bool (*interrupted)(void)) {
  ef_inbox *in = calloc(1, sizeof *in);
  if (!in) return NULL;
  pthread_mutex_init(&in->mu, NULL);
  pthread_cond_init(&in->cv, NULL);
  in->capacity = capacity ? capacity : 1;
  in->interrupted = interrupted;
  return in;
}

void ef_inbox_on_message(void *arg, const char *topic, const void *payload, size_t len) {
  ef_inbox *in = arg;
  ef_inbox_msg *m = calloc(1, sizeof *m);
  char *t = strdup(topic);
  char *p = malloc(len + 1);
  if (!m || !t || !p) {
    /* Out of memory: the message is lost like one the inbox had no room for. */
    free(m);
    free(t);
    free(p);
    pthread_mutex_lock(&in->mu);
    in->dropped++;
    pthread_mutex_unlock(&in->mu);
    return;
  }
  if (len) memcpy(p, payload, len);
  p[len] = '\0';
  m->topic = t;
  m->payload = p;
  m->len = len;
  pthread_mutex_lock(&in->mu);
  if (in->queued >= in->capacity) {
    ef_inbox_msg *old = in->head;
    in->head = old->next;
    if (!in->head) in->tail = NULL;
    in->queued--;
    in->dropped++;
    ef_inbox_msg_free(old);
  }
  if (in->tail)
    in->tail->next = m;
  else
    in->head = m;
  in->tail = m;
  in->queued++;
  pthread_cond_signal(&in->cv);
  pthread_mutex_unlock(&in->mu);
}

ef_inbox_msg *ef_inbox_next(ef_inbox *in, int64_t deadline_ms) {
  ef_inbox_msg *m = NULL;
  pthread_mutex_lock(&in->mu);
  while (!in->head && !in->woken && !(in->interrupted && in->interrupted())) {
    int64_t now = ef_mono_ms();
    if (deadline_ms >= 0 && now >= deadline_ms) break;
    int64_t wait = deadline_ms >= 0 && deadline_ms - now < POLL_MS ? deadline_ms - now : POLL_MS;
    struct timespec ts = ef_ms_timespec(ef_wall_ms() + wait); /* the condvar's clock: CLOCK_REALTIME */
    pthread_cond_timedwait(&in->cv, &in->mu, &ts);
  }
  in->woken = false;
  if (in->head) {
    m = in->head;
    in->head = m->next;
    if (!in->head) in->tail = NULL;
    in->queued--;
    m->next = NULL;
  }
  pthread_mutex_unlock(&in->mu);
  return m;
}

void ef_inbox_wake(ef_inbox *in) {
  pthread_mutex_lock(&in->mu);
  in->woken = true;
  pthread_cond_signal(&in->cv);
  pthread_mutex_unlock(&in->mu);
}

long ef_inbox_dropped(ef_inbox *in) {
  pthread_mutex_lock(&in->mu);
  long d = in->dropped;
  pthread_mutex_unlock(&in->mu);
  return d;
}

void ef_inbox_msg_free(ef_inbox_msg *m) {
  if (!m) return;
  free(m->topic);
  free(m->payload);
  free(m);
}

void ef_inbox_free(ef_inbox *in) {
  if (!in) return;
  while (in->head) {
    ef_inbox_msg *m = in->head;
    in->head = m->next;
    ef_inbox_msg_free(m);
  }
  pthread_cond_destroy(&in->cv);
  pthread_mutex_destroy(&in->mu);
  free(in);
}
