/*
 * Live events for the page (GET /api/v1/events, Server-Sent Events): a
 * bounded ring of recent events with sequence numbers, filled by the
 * controller's observer, and one reader per stream that waits on a
 * condition variable for the next one.
 *
 * The ring bounds memory whatever the clients do: a stream never holds
 * events of its own, it remembers the next sequence number it wants. One
 * that fell further behind than the ring reaches (a slow network, a
 * suspended laptop) gets `event: resync` and goes on from the newest event;
 * the page then reloads what it shows rather than show a gap.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "espfleet/clock.h"
#include "espfleet/log.h"

/* A comment line this often keeps proxies and browsers from timing the stream out. */
#define KEEPALIVE_MS 15000
/* What one stream formats at a time before it hands the bytes to libmicrohttpd. */
#define BATCH_BYTES (64 * 1024)
#define BLOCK_SIZE  (16 * 1024)

uint64_t api_event_push(ef_api *a, api_event_kind kind, const char *id, char *json) {
  api_event *e = &a->ring[a->next_seq % API_RING];
  free(e->json);
  e->seq = a->next_seq++;
  e->kind = kind;
  snprintf(e->id, sizeof e->id, "%s", id);
  e->json = json;
  pthread_cond_broadcast(&a->cond);
  return e->seq;
}

void api_events_free(ef_api *a) {
  for (size_t i = 0; i < API_RING; i++) {
    free(a->ring[i].json);
    a->ring[i].json = NULL;
  }
}

/* One stream. */
typedef struct {
  ef_api *a;
  uint64_t next; /* the sequence number it sends next */
  bool started;
  char *buf;
  size_t len, off, cap;
  int64_t last_ms; /* when it last sent anything (monotonic) */
} stream;

static bool append(stream *s, const char *text, size_t n) {
  if (s->len + n > s->cap) {
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->len + n) cap *= 2;
    char *grown = realloc(s->buf, cap);
    if (!grown) return false;
    s->buf = grown;
    s->cap = cap;
  }
  memcpy(s->buf + s->len, text, n);
  s->len += n;
  return true;
}

static bool append_str(stream *s, const char *text) { return append(s, text, strlen(text)); }

/* "event: NAME\ndata: JSON\n\n" (the JSON is unformatted: one line). */
static bool append_event(stream *s, const char *name, const char *json) {
  return append_str(s, "event: ") && append_str(s, name) && append_str(s, "\ndata: ") &&
         append_str(s, json) && append_str(s, "\n\n");
}

/* The event's text, from the ring entry and (devices, progress) the device's entry now. Under lock. */
static bool format_event(stream *s, const api_event *e) {
  char *text = NULL;
  const char *name = "rollout";
  bool ok = true;
  if (e->kind == API_EV_ROLLOUT) {
    if (e->json) return append_event(s, name, e->json);
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddStringToObject(o, "rollout_id", e->id) && cJSON_AddTrueToObject(o, "deleted"))
      text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
  } else {
    const api_device *d = api_device_find(s->a, e->id);
    if (!d) return true; /* cannot happen: devices are never removed */
    /* coalesced: a newer event of this device follows, with the same content */
    if (e->seq != (e->kind == API_EV_DEVICE ? d->device_seq : d->progress_seq)) return true;
    cJSON *o = NULL;
    if (e->kind == API_EV_DEVICE) {
      name = "device";
      o = api_device_json(d);
    } else {
      name = "progress";
      o = cJSON_CreateObject();
      if (o && !(cJSON_AddStringToObject(o, "device_id", d->device_id) &&
                 cJSON_AddStringToObject(o, "job_id", d->progress_job) &&
                 cJSON_AddNumberToObject(o, "bytes", (double)d->bytes) &&
                 cJSON_AddNumberToObject(o, "total", (double)d->total) &&
                 cJSON_AddNumberToObject(o, "percent", d->percent))) {
        cJSON_Delete(o);
        o = NULL;
      }
    }
    text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
  }
  ok = text && append_event(s, name, text);
  free(text);
  return ok;
}

/* Fills the stream's buffer: events, a resync, or a keepalive after a quiet
 * time. @return false when the stream ends (the API stops, out of memory). */
static bool fill(stream *s) {
  ef_api *a = s->a;
  bool ok = true;
  pthread_mutex_lock(&a->lock);
  if (!s->started) {
    /* how soon EventSource reconnects after the stream broke */
    ok = append_str(s, "retry: 2000\n\n");
    s->started = true;
    goto out;
  }
  for (;;) {
    if (a->stopping) {
      ok = false;
      goto out;
    }
    if (s->next < a->next_seq) break;
    int64_t left = s->last_ms + KEEPALIVE_MS - ef_mono_ms();
    if (left <= 0) {
      ok = append_str(s, ": keepalive\n\n");
      goto out;
    }
    struct timespec until = ef_ms_timespec(ef_mono_ms() + left);
    pthread_cond_timedwait(&a->cond, &a->lock, &until);
  }
  if (a->next_seq - s->next > API_RING) {
    ef_debug("http: an event stream fell %llu events behind: resync",
             (unsigned long long)(a->next_seq - s->next));
    ok = append_str(s, "event: resync\ndata: {}\n\n");
    s->next = a->next_seq;
    goto out;
  }
  while (ok && s->next < a->next_seq && s->len < BATCH_BYTES) {
    ok = format_event(s, &a->ring[s->next % API_RING]);
    s->next++;
  }
out:
  pthread_mutex_unlock(&a->lock);
  return ok;
}

/* libmicrohttpd asks for the next bytes; a thread of its own per connection,
 * so waiting here holds up no other request. */
static ssize_t read_stream(void *cls, uint64_t pos, char *out, size_t max) {
  stream *s = cls;
  (void)pos;
  if (s->off == s->len) {
    s->off = s->len = 0;
    if (!fill(s)) return MHD_CONTENT_READER_END_OF_STREAM;
    s->last_ms = ef_mono_ms();
  }
  size_t n = s->len - s->off < max ? s->len - s->off : max;
  memcpy(out, s->buf + s->off, n);
  s->off += n;
  return (ssize_t)n;
}

static void free_stream(void *cls) {
  stream *s = cls;
  if (!s) return;
  free(s->buf);
  free(s);
}

enum MHD_Result api_get_events(const api_req *r) {
  ef_api *a = r->a;
  stream *s = calloc(1, sizeof *s);
  if (!s) return api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
  s->a = a;
  s->last_ms = ef_mono_ms();
  pthread_mutex_lock(&a->lock);
  s->next = a->next_seq; /* from now on: what was before, the client reads with GET */
  pthread_mutex_unlock(&a->lock);
  struct MHD_Response *resp =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, BLOCK_SIZE, read_stream, s, free_stream);
  if (!resp) {
    free_stream(s);
    return MHD_NO;
  }
  api_add_common_headers(resp, true);
  MHD_add_response_header(resp, "Content-Type", "text/event-stream; charset=utf-8");
  /* a reverse proxy in front must pass each event on at once */
  MHD_add_response_header(resp, "X-Accel-Buffering", "no");
  /* a stream is quiet between events: the idle timeout is for the other requests */
  MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)0);
  ef_debug("http: %s opened an event stream", r->who->name);
  enum MHD_Result res = MHD_queue_response(r->conn, MHD_HTTP_OK, resp);
  MHD_destroy_response(resp);
  return res;
}
