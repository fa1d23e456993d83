/*
 * Bounded single-producer / single-consumer byte pipe.
 *
 * The ring buffer is only ever written by the producer (into the free part)
 * and read by the consumer (from the filled part), so each side copies its
 * bytes with the mutex released: the lock only guards the indices and flags.
 * A side signals the other only when that side says it is waiting, which
 * keeps the fast path free of futex calls when both keep up.
 */
#include "espfleet/pipe.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ef_pipe {
  pthread_mutex_t mu;
  pthread_cond_t readable; /* consumer waits here for data or the end */
  pthread_cond_t writable; /* producer waits here for space or an abort */
  uint8_t *buf;
  size_t cap;
  size_t head;       /* index of the oldest buffered byte */
  size_t len;        /* buffered bytes */
  size_t wake_space; /* free bytes worth waking a waiting producer for */
  bool reader_waiting;
  bool writer_waiting;
  bool closed;
  bool aborted;
  ef_status outcome; /* the producer's, set by the first close */
};

ef_err ef_pipe_new(size_t capacity, ef_pipe **out) {
  ef_err rc = EF_ERR_NOMEM;
  ef_pipe *p = NULL;

  *out = NULL;
  if (capacity == 0) {
    rc = EF_ERR_INVALID_ARG;
    goto out;
  }
  p = calloc(1, sizeof(*p));
  if (!p) goto out;
  p->buf = malloc(capacity);
  if (!p->buf) goto out;
  p->cap = capacity;
  p->wake_space = capacity / 4 ? capacity / 4 : 1;
  if (pthread_mutex_init(&p->mu, NULL) != 0) goto out_buf;
  if (pthread_cond_init(&p->readable, NULL) != 0) goto out_mu;
  if (pthread_cond_init(&p->writable, NULL) != 0) goto out_readable;
  *out = p;
  p = NULL;
  rc = EF_OK;
  goto out;

out_readable:
  pthread_cond_destroy(&p->readable);
out_mu:
  pthread_mutex_destroy(&p->mu);
out_buf:
  rc = EF_ERR_INTERNAL;
out:
  if (p) {
    free(p->buf);
    free(p);
  }
  return rc;
}

void ef_pipe_free(ef_pipe *p) {
  if (!p) return;
  pthread_cond_destroy(&p->writable);
  pthread_cond_destroy(&p->readable);
  pthread_mutex_destroy(&p->mu);
  free(p->buf);
  free(p);
}

ef_err ef_pipe_write(ef_pipe *p, const void *data, size_t len) {
  const uint8_t *src = data;
  ef_err rc = EF_OK;

  pthread_mutex_lock(&p->mu);
  while (len > 0) {
    while (p->len == p->cap && !p->aborted) {
      p->writer_waiting = true;
      pthread_cond_wait(&p->writable, &p->mu);
      p->writer_waiting = false;
    }
    if (p->aborted) {
      rc = EF_ERR_CANCELED;
      break;
    }
    if (p->closed) {
      rc = EF_ERR_INVALID_ARG; /* writing after close is a caller bug */
      break;
    }
    /* The free region cannot shrink while we copy (only we fill it). */
    size_t tail = (p->head + p->len) % p->cap;
    size_t space = p->cap - p->len;
    size_t n = len < space ? len : space;
    size_t first = p->cap - tail;
    if (first > n) first = n;
    pthread_mutex_unlock(&p->mu);

    memcpy(p->buf + tail, src, first);
    if (n > first) memcpy(p->buf, src + first, n - first);

    pthread_mutex_lock(&p->mu);
    p->len += n;
    src += n;
    len -= n;
    if (p->reader_waiting) pthread_cond_signal(&p->readable);
  }
  pthread_mutex_unlock(&p->mu);
  return rc;
}

void ef_pipe_close(ef_pipe *p, const ef_status *outcome) {
  pthread_mutex_lock(&p->mu);
  if (!p->closed) {
    p->closed = true;
    ef_status_clear(&p->outcome);
    (void)ef_status_copy(&p->outcome, outcome);
    pthread_cond_broadcast(&p->readable);
  }
  pthread_mutex_unlock(&p->mu);
}

ef_err ef_pipe_read(ef_pipe *p, void *buf, size_t cap, size_t *got, ef_status *st) {
  uint8_t *dst = buf;
  ef_err rc = EF_OK;

  *got = 0;
  if (cap == 0) return ef_status_fail(st, EF_ERR_INVALID_ARG, "a read of 0 bytes");
  pthread_mutex_lock(&p->mu);
  while (p->len == 0 && !p->closed && !p->aborted) {
    p->reader_waiting = true;
    pthread_cond_wait(&p->readable, &p->mu);
    p->reader_waiting = false;
  }
  if (p->aborted) {
    rc = ef_status_fail(st, EF_ERR_CANCELED, "the reader aborted the transfer");
    goto out;
  }
  if (p->len == 0) { /* closed and drained */
    rc = ef_status_copy(st, &p->outcome);
    goto out;
  }
  /* The filled region cannot shrink while we copy (only we drain it). */
  size_t head = p->head;
  size_t n = cap < p->len ? cap : p->len;
  size_t first = p->cap - head;
  if (first > n) first = n;
  pthread_mutex_unlock(&p->mu);

  memcpy(dst, p->buf + head, first);
  if (n > first) memcpy(dst + first, p->buf, n - first);

  pthread_mutex_lock(&p->mu);
  p->head = (head + n) % p->cap;
  p->len -= n;
  *got = n;
  /* Waking the producer for a sliver of space would make both sides
   * ping-pong on every small read; a quarter of the buffer is worth it. */
  if (p->writer_waiting && p->cap - p->len >= p->wake_space) pthread_cond_signal(&p->writable);
out:
  pthread_mutex_unlock(&p->mu);
  return rc;
}

void ef_pipe_abort(ef_pipe *p) {
  pthread_mutex_lock(&p->mu);
  p->aborted = true;
  pthread_cond_broadcast(&p->writable);
  pthread_cond_broadcast(&p->readable);
  pthread_mutex_unlock(&p->mu);
}

bool ef_pipe_aborted(ef_pipe *p) {
  pthread_mutex_lock(&p->mu);
  bool aborted = p->aborted;
  pthread_mutex_unlock(&p->mu);
  return aborted;
}

static ef_err pipe_source_read(ef_source *s, uint8_t *buf, size_t cap, size_t *got, ef_status *st) {
  return ef_pipe_read(s->ctx, buf, cap, got, st);
}

void ef_pipe_source(ef_pipe *p, ef_source *src) {
  src->read = pipe_source_read;
  src->ctx = p;
}
