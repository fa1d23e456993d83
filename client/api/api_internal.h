/*
 * What the files of the API module share (api.h is the public side):
 * api.c (the server: listening, requests, logins, the page), fleet.c (the
 * devices heard of, the controller's observer), events.c (the event ring and
 * the event streams), rollouts.c (rollouts, jobs and the actions).
 */
#ifndef ESPFLEET_API_INTERNAL_H
#define ESPFLEET_API_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "espfleet/api.h"
#include "espfleet/controller.h"
#include "espfleet/protocol.h"
#include "espfleet/store.h"

/* Bodies above this are refused with 413 (docs/api.md); a rollout document
 * is at most EF_ROLLOUT_MAX_PAYLOAD, the same size. */
#define API_BODY_MAX (256 * 1024)
/* Recent events kept for the streams: a client that falls further behind
 * than this is told to resync (and reload what it shows). */
#define API_RING 4096
/* The shortest time between two progress events of one device: devices send
 * progress up to twice a second each, a page needs less, and a fleet's worth
 * of it would push states and statuses out of the ring. */
#define API_PROGRESS_EVENT_MS 1000

/** A device as the API last heard of it. Texts are escaped (ef_state_view_parse). */
typedef struct {
  char device_id[EF_JOB_ID_MAX + 1];
  bool online;
  char state[24]; /* "" = not known */
  char job_id[EF_JOB_ID_MAX + 1];
  char groups[EF_PROTO_MAX_GROUPS][EF_JOB_ID_MAX + 1];
  size_t n_groups;
  char fw_version[64];
  char app_version[EF_JOB_VERSION_MAX + 1];
  char error_code[48];
  char error_detail[256];
  bool has_progress;
  char progress_job[EF_JOB_ID_MAX + 1];
  uint64_t bytes, total;
  int percent;
  int64_t updated_ms;        /* 0 = never */
  int64_t progress_event_ms; /* when its last progress event went into the ring (monotonic) */
  /* its newest device and progress events: a stream sends only those, as
   * an older one would carry the same (newest) content again */
  uint64_t device_seq, progress_seq;
} api_device;

typedef enum { API_EV_DEVICE, API_EV_PROGRESS, API_EV_ROLLOUT } api_event_kind;

/** One event of the ring. A device's and a progress event are written from
 *  the device's entry when sent (the newest there is); a rollout's carries
 *  its status document (NULL: the rollout was deleted). */
typedef struct {
  uint64_t seq;
  api_event_kind kind;
  char id[EF_JOB_ID_MAX + 1];
  char *json;
} api_event;

struct ef_api {
  char listen[256];
  char database[1024];
  char prefix[256];
  char public_origin[256]; /* "" = our own scheme and the Host header */
  bool tls;
  struct sockaddr_storage addr;
  char *cert_pem, *key_pem;
  size_t key_len;
  ef_api_token *tokens; /* NULL with no tokens file: everyone is the operator "local" */
  size_t n_tokens;
  ef_controller *ctl;
  struct MHD_Daemon *mhd;
  char mhd_error[256]; /* libmicrohttpd's last complaint, for a start that fails */
  atomic_bool serving; /* started: its threads may log */

  /* lock guards the devices, the ring and stopping; cond tells the
   * streams about a new event or the stop */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  api_device *devs; /* sorted by device_id */
  size_t n_devs, cap_devs;
  api_event ring[API_RING];
  uint64_t next_seq; /* the sequence number the next event gets (the first is 1) */
  bool stopping;

  /* the read-only store connection; one request at a time uses it */
  pthread_mutex_t store_lock;
  ef_store *reader;
  bool devices_loaded;
};

/** One request, as a handler sees it. */
typedef struct {
  ef_api *a;
  struct MHD_Connection *conn;
  const char *method;
  const char *body; /* NUL-terminated; "" when none */
  size_t body_len;
  const ef_api_token *who; /* the login */
} api_req;

/* ---- api.c: answers ---- */

/** Queues @p o (taken, freed) as JSON with @p status. */
enum MHD_Result api_reply_json(const api_req *r, unsigned status, cJSON *o);
/** As api_reply_json when @p ok; otherwise (building @p o ran out of
 *  memory) frees @p o and queues a 500. */
enum MHD_Result api_reply_built(const api_req *r, unsigned status, cJSON *o, bool ok);
/** Queues {"error": {"code", "message"}} with @p status. */
enum MHD_Result api_reply_error(const api_req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** Adds the headers every answer carries (docs/api.md). */
void api_add_common_headers(struct MHD_Response *resp, bool api);
/** The body as a JSON object: NULL with a 400 queued (*res) when it is not one.
 *  An empty body reads as {} when @p empty_ok. */
cJSON *api_body_object(const api_req *r, bool empty_ok, enum MHD_Result *res);
/** True when every key of @p o is one of @p keys (NULL-terminated); else
 *  queues a 400 naming the first other key (*res). */
bool api_check_keys(const api_req *r, const cJSON *o, const char *const *keys, enum MHD_Result *res);
/** "2025-01-31T12:00:00.000Z" for @p ms, or JSON null for 0. */
bool api_add_time(cJSON *o, const char *key, int64_t ms);
/** The string, or JSON null for "". */
bool api_add_str_or_null(cJSON *o, const char *key, const char *v);
/** The store reader, opened (and the known devices loaded) on first use;
 *  NULL with a 503 queued (*res). Held under store_lock until api_store_put. */
ef_store *api_store_get(const api_req *r, enum MHD_Result *res);
void api_store_put(ef_api *a);

/* ---- fleet.c: devices ---- */

/** The controller's observer (controller.h). */
void api_observe(void *arg, ef_controller_event ev, const char *id, const char *json, size_t len);
/** Adds the devices of the store not heard of yet (under store_lock). */
void api_devices_load(ef_api *a, ef_store *s);
/** Loads them once the store can be read (the devices heard of are shown
 *  meanwhile): the store's connection is opened when it is not yet. */
void api_devices_ensure(ef_api *a);
/** A device's object as in GET /devices (call under lock). */
cJSON *api_device_json(const api_device *d);
/** Its entry, or NULL (under lock). */
api_device *api_device_find(ef_api *a, const char *id);
enum MHD_Result api_get_devices(const api_req *r);
enum MHD_Result api_get_device(const api_req *r, const char *id);

/* ---- events.c ---- */

/** Appends an event (under lock) and wakes the streams; takes @p json.
 *  @return its sequence number. */
uint64_t api_event_push(ef_api *a, api_event_kind kind, const char *id, char *json);
/** Frees what the ring holds. */
void api_events_free(ef_api *a);
enum MHD_Result api_get_events(const api_req *r);

/* ---- rollouts.c ---- */

enum MHD_Result api_get_rollouts(const api_req *r);
enum MHD_Result api_get_rollout(const api_req *r, const char *id);
enum MHD_Result api_get_job(const api_req *r, const char *job_id);
enum MHD_Result api_post_rollout(const api_req *r);
enum MHD_Result api_rollout_action(const api_req *r, const char *id, const char *action);
enum MHD_Result api_delete_rollout(const api_req *r, const char *id);
enum MHD_Result api_cancel(const api_req *r, bool group, const char *id);

#endif
