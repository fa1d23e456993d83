/*
 * The HTTP server of the API (docs/api.md): listening, logins, the checks
 * every request passes, routing, and the page's files.
 *
 * Why libmicrohttpd: it is small and embeddable (a library, no framework or
 * event loop of its own to adopt), maintained by GNU, packaged by Debian
 * (libmicrohttpd-dev), does TLS (GnuTLS) itself, and runs a thread per
 * connection, so an event stream may simply wait for its next event without
 * holding up any other request.
 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "api_internal.h"
#include "assets.h"
#include "espfleet/clock.h"
#include "espfleet/log.h"
#include "espfleet/report.h"
#include "espfleet/text.h"

#define API_PREFIX "/api/v1"
/* A browser opens a handful of connections and each event stream keeps one:
 * enough for a few operators, few enough that a flood cannot exhaust the
 * threads. */
#define CONNECTION_LIMIT 64
#define PER_IP_LIMIT     32
#define IDLE_TIMEOUT_S   30
#define PEM_MAX          (1024 * 1024)

static const char CSP[] = "default-src 'self'; frame-ancestors 'none'";

/* The one login when there is no tokens file (loopback only, by the configuration's rule). */
static const ef_api_token LOCAL = {EF_API_OPERATOR, "local", {0}};

/* What one connection's request gathered before it is answered. */
typedef struct {
  char *body;
  size_t len, cap;
  bool too_large;
} request;

/* ---- answers ---- */

void api_add_common_headers(struct MHD_Response *resp, bool api) {
  MHD_add_response_header(resp, "Content-Security-Policy", CSP);
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
  if (api) MHD_add_response_header(resp, "Cache-Control", "no-store");
}

/* Queues @p text (malloc'ed, taken) as the answer. */
static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *type, char *text,
                                  const char *allow) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(
      text ? strlen(text) : 0, text ? text : (char *)"", MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(text);
    return MHD_NO; /* out of memory: libmicrohttpd closes the connection */
  }
  api_add_common_headers(resp, true);
  MHD_add_response_header(resp, "Content-Type", type);
  if (status == MHD_HTTP_UNAUTHORIZED)
    MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"espfleet\"");
  if (allow) MHD_add_response_header(resp, "Allow", allow);
  enum MHD_Result res = MHD_queue_response(conn, status, resp);
  MHD_destroy_response(resp);
  return res;
}

enum MHD_Result api_reply_json(const api_req *r, unsigned status, cJSON *o) {
  char *text = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!text) return api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
  return reply_text(r->conn, status, "application/json; charset=utf-8", text, NULL);
}

enum MHD_Result api_reply_built(const api_req *r, unsigned status, cJSON *o, bool ok) {
  if (ok) return api_reply_json(r, status, o);
  cJSON_Delete(o);
  return api_reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
}

/* The error document; @p allow for a 405. */
static enum MHD_Result reply_error_v(struct MHD_Connection *conn, unsigned status, const char *code,
                                     const char *allow, const char *fmt, va_list ap) {
  char message[512];
  vsnprintf(message, sizeof message, fmt, ap);
  cJSON *o = cJSON_CreateObject();
  cJSON *e = o ? cJSON_AddObjectToObject(o, "error") : NULL;
  char *text = NULL;
  if (e && cJSON_AddStringToObject(e, "code", code) && cJSON_AddStringToObject(e, "message", message))
    text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (!text) return MHD_NO;
  return reply_text(conn, status, "application/json; charset=utf-8", text, allow);
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned status, const char *code,
                                   const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned status, const char *code,
                                   const char *allow, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  enum MHD_Result res = reply_error_v(conn, status, code, allow, fmt, ap);
  va_end(ap);
  return res;
}

enum MHD_Result api_reply_error(const api_req *r, unsigned status, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  enum MHD_Result res = reply_error_v(r->conn, status, code, NULL, fmt, ap);
  va_end(ap);
  return res;
}

cJSON *api_body_object(const api_req *r, bool empty_ok, enum MHD_Result *res) {
  if (r->body_len == 0 && empty_ok) return cJSON_CreateObject();
  cJSON *o = cJSON_ParseWithLength(r->body, r->body_len);
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    *res = api_reply_error(r, MHD_HTTP_BAD_REQUEST, "bad_request", "body: must be a JSON object");
    return NULL;
  }
  return o;
}

bool api_check_keys(const api_req *r, const cJSON *o, const char *const *keys, enum MHD_Result *res) {
  const cJSON *item;
  cJSON_ArrayForEach(item, o) {
    bool known = false;
    for (size_t i = 0; keys[i] && !known; i++) known = item->string && strcmp(item->string, keys[i]) == 0;
    if (!known) {
      char name[64];
      ef_text_escape(item->string, name, sizeof name);
      /* a misspelt option must not silently fall back to its default */
      *res = api_reply_error(r, MHD_HTTP_BAD_REQUEST, "bad_request", "%s: unknown key", name);
      return false;
    }
  }
  return true;
}

bool api_add_time(cJSON *o, const char *key, int64_t ms) {
  char ts[32];
  if (ms <= 0) return cJSON_AddNullToObject(o, key) != NULL;
  ef_rfc3339_format(ms, ts);
  return cJSON_AddStringToObject(o, key, ts) != NULL;
}

bool api_add_str_or_null(cJSON *o, const char *key, const char *v) {
  return v && v[0] ? cJSON_AddStringToObject(o, key, v) != NULL : cJSON_AddNullToObject(o, key) != NULL;
}

/* ---- the store ---- */

ef_store *api_store_get(const api_req *r, enum MHD_Result *res) {
  ef_api *a = r->a;
  ef_status st = EF_STATUS_INIT;
  pthread_mutex_lock(&a->store_lock);
  /* The controller creates the database before the API starts; a reader
   * that could not open it then tries again here rather than never. */
  if (!a->reader && ef_store_open_reader(a->database, &a->reader, &st) != EF_OK) {
    pthread_mutex_unlock(&a->store_lock);
    *res = api_reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable", "the store cannot be read: %s",
                           st.detail);
    return NULL;
  }
  if (!a->devices_loaded) api_devices_load(a, a->reader);
  return a->reader;
}

void api_store_put(ef_api *a) { pthread_mutex_unlock(&a->store_lock); }

/* ---- logins and checks ---- */

/* The token of the request: the Authorization header, or (event streams
 * only: EventSource cannot set headers) ?access_token=. */
static const char *presented_token(struct MHD_Connection *conn, bool events) {
  const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (h && strncasecmp(h, "Bearer ", 7) == 0) {
    h += 7;
    while (*h == ' ') h++;
    return h;
  }
  if (events) return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "access_token");
  return NULL;
}

/* Without logins, only a request addressed to a loopback name may pass:
 * otherwise any web site could reach the API through a name of its own that
 * it resolves to 127.0.0.1 (DNS rebinding), and the browser would count its
 * requests as same-origin. */
static bool host_is_loopback(const char *host) {
  char name[256];
  if (!host) return false;
  size_t n = strlen(host);
  if (host[0] == '[') {
    const char *close = strchr(host, ']');
    return close && (size_t)(close - host) == 4 && strncmp(host, "[::1]", 5) == 0;
  }
  const char *colon = strchr(host, ':');
  if (colon) n = (size_t)(colon - host);
  if (n == 0 || n >= sizeof name) return false;
  memcpy(name, host, n);
  name[n] = '\0';
  if (strcasecmp(name, "localhost") == 0) return true;
  return strncmp(name, "127.", 4) == 0 && strspn(name, "0123456789.") == n;
}

/* The Origin of a browser's request must be this server itself. */
static bool origin_ok(const ef_api *a, struct MHD_Connection *conn) {
  const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
  const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
  char own[320];
  if (!origin) return true; /* not a browser's cross-origin request (curl, the console) */
  if (a->public_origin[0]) return strcasecmp(origin, a->public_origin) == 0;
  if (!host) return false;
  snprintf(own, sizeof own, "%s://%s", a->tls ? "https" : "http", host);
  return strcasecmp(origin, own) == 0;
}

static bool json_content_type(struct MHD_Connection *conn) {
  const char *t = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (!t) return false;
  while (*t == ' ') t++;
  size_t n = strcspn(t, "; \t");
  return n == 16 && strncasecmp(t, "application/json", 16) == 0;
}

/* ---- routing ---- */

typedef enum {
  R_WHOAMI,
  R_DEVICES,
  R_DEVICE,
  R_DEVICE_CANCEL,
  R_GROUP_CANCEL,
  R_JOB,
  R_ROLLOUTS,
  R_ROLLOUT,
  R_ROLLOUT_ACTION,
  R_EVENTS,
} route_kind;

typedef struct {
  route_kind kind;
  const char *allow; /* the methods it takes */
  char id[EF_JOB_ID_MAX + 1];
  char action[8];
} route;

/* Splits @p path ("/rollouts/r1/pause") into at most 3 segments. */
static size_t split(const char *path, char seg[3][EF_JOB_ID_MAX + 2]) {
  size_t n = 0;
  while (*path == '/') {
    path++;
    size_t len = strcspn(path, "/");
    if (len == 0 && !*path) break; /* a trailing slash */
    if (n == 3 || len > EF_JOB_ID_MAX) return 4;
    memcpy(seg[n], path, len);
    seg[n][len] = '\0';
    n++;
    path += len;
  }
  return *path ? 4 : n;
}

static bool match(const char *path, route *rt) {
  char seg[3][EF_JOB_ID_MAX + 2];
  size_t n = split(path, seg);
  memset(rt, 0, sizeof *rt);
  if (n == 0 || n > 3) return false;
  if (n >= 2) {
    if (!ef_id_valid(seg[1])) return false;
    memcpy(rt->id, seg[1], strlen(seg[1]) + 1); /* fits: a valid id */
  }
  if (n == 1 && strcmp(seg[0], "whoami") == 0) {
    *rt = (route){.kind = R_WHOAMI, .allow = "GET"};
  } else if (n == 1 && strcmp(seg[0], "devices") == 0) {
    *rt = (route){.kind = R_DEVICES, .allow = "GET"};
  } else if (n == 1 && strcmp(seg[0], "rollouts") == 0) {
    *rt = (route){.kind = R_ROLLOUTS, .allow = "GET, POST"};
  } else if (n == 1 && strcmp(seg[0], "events") == 0) {
    *rt = (route){.kind = R_EVENTS, .allow = "GET"};
  } else if (n == 2 && strcmp(seg[0], "devices") == 0) {
    rt->kind = R_DEVICE;
    rt->allow = "GET";
  } else if (n == 2 && strcmp(seg[0], "jobs") == 0) {
    rt->kind = R_JOB;
    rt->allow = "GET";
  } else if (n == 2 && strcmp(seg[0], "rollouts") == 0) {
    rt->kind = R_ROLLOUT;
    rt->allow = "GET, DELETE";
  } else if (n == 3 && strcmp(seg[0], "devices") == 0 && strcmp(seg[2], "cancel") == 0) {
    rt->kind = R_DEVICE_CANCEL;
    rt->allow = "POST";
  } else if (n == 3 && strcmp(seg[0], "groups") == 0 && strcmp(seg[2], "cancel") == 0) {
    rt->kind = R_GROUP_CANCEL;
    rt->allow = "POST";
  } else if (n == 3 && strcmp(seg[0], "rollouts") == 0 &&
             (strcmp(seg[2], "pause") == 0 || strcmp(seg[2], "resume") == 0 ||
              strcmp(seg[2], "abort") == 0)) {
    rt->kind = R_ROLLOUT_ACTION;
    rt->allow = "POST";
    memcpy(rt->action, seg[2], strlen(seg[2]) + 1); /* "pause", "resume" or "abort" */
  } else {
    return false;
  }
  return true;
}

/* True when @p method is one of @p allow ("GET, POST"); HEAD goes with GET. */
static bool allowed(const char *allow, const char *method, bool events) {
  if (strcmp(method, "HEAD") == 0) method = events ? "" : "GET";
  size_t n = strlen(method);
  for (const char *p = allow; n && (p = strstr(p, method)); p += n)
    if ((p == allow || p[-1] == ' ') && (p[n] == '\0' || p[n] == ',')) return true;
  return false;
}

static enum MHD_Result whoami(const api_req *r) {
  cJSON *o = cJSON_CreateObject();
  if (o && (!cJSON_AddStringToObject(o, "name", r->who->name) ||
            !cJSON_AddStringToObject(o, "role", ef_api_role_name(r->who->role)))) {
    cJSON_Delete(o);
    o = NULL;
  }
  return api_reply_json(r, MHD_HTTP_OK, o);
}

static enum MHD_Result api_request(ef_api *a, struct MHD_Connection *conn, const char *path,
                                   const char *method, request *rq) {
  route rt;
  api_req r = {a, conn, method, rq->body ? rq->body : "", rq->len, NULL};
  bool found = match(path, &rt);
  bool events = found && rt.kind == R_EVENTS;
  bool writes = strcmp(method, "POST") == 0 || strcmp(method, "DELETE") == 0;

  if (a->tokens) {
    r.who = ef_api_tokens_find(a->tokens, a->n_tokens, presented_token(conn, events));
    if (!r.who)
      return reply_error(conn, MHD_HTTP_UNAUTHORIZED, "unauthorized", NULL,
                         "a valid token is needed: Authorization: Bearer TOKEN");
  } else {
    if (!host_is_loopback(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST)))
      return reply_error(conn, MHD_HTTP_FORBIDDEN, "forbidden", NULL,
                         "without a tokens file the API answers only requests addressed to a loopback "
                         "name (127.0.0.1, localhost, [::1])");
    r.who = &LOCAL;
  }
  if (!found) return reply_error(conn, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no such resource");
  if (!allowed(rt.allow, method, events))
    return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", rt.allow, "%s takes %s only",
                       path, rt.allow);
  if (writes) {
    if (r.who->role != EF_API_OPERATOR)
      return reply_error(conn, MHD_HTTP_FORBIDDEN, "forbidden", NULL, "%s is a viewer: only operators act",
                         r.who->name);
    if (!origin_ok(a, conn))
      return reply_error(conn, MHD_HTTP_FORBIDDEN, "csrf", NULL,
                         "the request comes from a page of another origin");
    if (!json_content_type(conn))
      return reply_error(conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", NULL,
                         "Content-Type: must be application/json");
    if (rq->too_large)
      return reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large", NULL,
                         "the body is larger than %d bytes", API_BODY_MAX);
  }
  bool get = strcmp(method, "POST") != 0 && strcmp(method, "DELETE") != 0;
  switch (rt.kind) {
  case R_WHOAMI: return whoami(&r);
  case R_DEVICES: return api_get_devices(&r);
  case R_DEVICE: return api_get_device(&r, rt.id);
  case R_DEVICE_CANCEL: return api_cancel(&r, false, rt.id);
  case R_GROUP_CANCEL: return api_cancel(&r, true, rt.id);
  case R_JOB: return api_get_job(&r, rt.id);
  case R_ROLLOUTS: return get ? api_get_rollouts(&r) : api_post_rollout(&r);
  case R_ROLLOUT: return get ? api_get_rollout(&r, rt.id) : api_delete_rollout(&r, rt.id);
  case R_ROLLOUT_ACTION: return api_rollout_action(&r, rt.id, rt.action);
  case R_EVENTS: return api_get_events(&r);
  }
  return reply_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "unrouted request");
}

/* ---- the page ---- */

static enum MHD_Result static_file(struct MHD_Connection *conn, const char *path, const char *method) {
  const api_asset *f = NULL;
  if (strcmp(path, "/") == 0) path = "/index.html";
  for (size_t i = 0; i < api_n_assets && !f; i++)
    if (strcmp(api_assets[i].path, path) == 0) f = &api_assets[i];
  if (!f) return reply_error(conn, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no such file");
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", "GET", "files take GET only");
  const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
  bool same = inm && strcmp(inm, f->etag) == 0;
  struct MHD_Response *resp =
      same ? MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT)
           : MHD_create_response_from_buffer(f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
  if (!resp) return MHD_NO;
  api_add_common_headers(resp, false);
  MHD_add_response_header(resp, "Content-Type", f->type);
  MHD_add_response_header(resp, "ETag", f->etag);
  /* revalidated on every load: a new build's page is used at once */
  MHD_add_response_header(resp, "Cache-Control", "no-cache");
  enum MHD_Result res = MHD_queue_response(conn, same ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, resp);
  MHD_destroy_response(resp);
  return res;
}

/* ---- libmicrohttpd's callbacks ---- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  ef_api *a = cls;
  request *rq = *con_cls;
  (void)version;
  if (!rq) {
    /* first call: the headers only */
    rq = calloc(1, sizeof *rq);
    if (!rq) return MHD_NO;
    *con_cls = rq;
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > API_BODY_MAX) rq->too_large = true;
    return MHD_YES;
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (rq->too_large || rq->len + n > API_BODY_MAX) {
      rq->too_large = true; /* read and dropped, so the answer can still be sent */
      return MHD_YES;
    }
    if (rq->len + n + 1 > rq->cap) {
      size_t cap = rq->cap ? rq->cap : 4096;
      while (cap < rq->len + n + 1) cap *= 2;
      char *grown = realloc(rq->body, cap);
      if (!grown) return MHD_NO;
      rq->body = grown;
      rq->cap = cap;
    }
    memcpy(rq->body + rq->len, upload_data, n);
    rq->len += n;
    rq->body[rq->len] = '\0';
    return MHD_YES;
  }
  ef_debug("http %s %s", method, url);
  if (strcmp(url, API_PREFIX) == 0 || strncmp(url, API_PREFIX "/", sizeof API_PREFIX) == 0)
    return api_request(a, conn, url + strlen(API_PREFIX), method, rq);
  if (strncmp(url, "/api/", 5) == 0 || strcmp(url, "/api") == 0)
    return reply_error(conn, MHD_HTTP_NOT_FOUND, "not_found", NULL, "the API is under " API_PREFIX "/");
  return static_file(conn, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  request *rq = *con_cls;
  (void)cls;
  (void)conn;
  (void)toe;
  if (rq) free(rq->body);
  free(rq);
  *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  ef_api *a = cls;
  char line[256];
  vsnprintf(line, sizeof line, fmt, ap);
  line[strcspn(line, "\r\n")] = '\0';
  if (!atomic_load(&a->serving)) {
    /* starting: kept for the error if the start fails (only this thread reads it) */
    snprintf(a->mhd_error, sizeof a->mhd_error, "%s", line);
    ef_warn("http: %s", line);
  } else {
    /* serving: mostly what a client did (a broken handshake, a closed
     * connection); not a warning an operator must act on */
    ef_info("http: %s", line);
  }
}

/* ---- start and stop ---- */

/* Reads a PEM file whole, NUL-terminated. */
static ef_err read_pem(const char *what, const char *path, char **out, size_t *len, ef_status *st) {
  ef_err err = EF_OK;
  struct stat sb;
  char *buf = NULL;
  FILE *f = fopen(path, "rb");
  *out = NULL;
  if (!f || fstat(fileno(f), &sb) != 0) {
    err = ef_status_fail(st, EF_ERR_IO, "%s %s: %s", what, path, strerror(errno));
    goto out;
  }
  if (sb.st_size <= 0 || sb.st_size > PEM_MAX) {
    err = ef_status_fail(st, EF_ERR_CONFIG, "%s %s: not a PEM file of at most 1 MiB", what, path);
    goto out;
  }
  buf = malloc((size_t)sb.st_size + 1);
  if (!buf) {
    err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory");
    goto out;
  }
  *len = fread(buf, 1, (size_t)sb.st_size, f);
  buf[*len] = '\0';
  if (*len != (size_t)sb.st_size) {
    err = ef_status_fail(st, EF_ERR_IO, "%s %s: short read", what, path);
    goto out;
  }
  *out = buf;
  buf = NULL;
out:
  if (buf) OPENSSL_cleanse(buf, (size_t)sb.st_size);
  free(buf);
  if (f) fclose(f);
  return err;
}

/* An encrypted key would make OpenSSL ask on the terminal: refuse it instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf;
  (void)size;
  (void)rwflag;
  (void)u;
  return -1;
}

/* The certificate and key, checked before libmicrohttpd gets them: it only
 * says that TLS could not be set up, this says which file is wrong. */
static ef_err check_tls(const char *cert_path, const char *cert, const char *key_path, const char *key,
                        ef_status *st) {
  ef_err err = EF_OK;
  BIO *cb = BIO_new_mem_buf(cert, -1), *kb = BIO_new_mem_buf(key, -1);
  X509 *x = cb ? PEM_read_bio_X509(cb, NULL, no_passphrase, NULL) : NULL;
  EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL) : NULL;
  if (!cb || !kb)
    err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory");
  else if (!x)
    err = ef_status_fail(st, EF_ERR_CONFIG, "http.cert_file %s: not a PEM certificate", cert_path);
  else if (!k)
    err = ef_status_fail(st, EF_ERR_CONFIG, "http.key_file %s: not an unencrypted PEM private key", key_path);
  else if (X509_check_private_key(x, k) != 1)
    err = ef_status_fail(st, EF_ERR_CONFIG, "http.key_file %s: not the key of the certificate %s", key_path,
                         cert_path);
  ERR_clear_error();
  EVP_PKEY_free(k);
  X509_free(x);
  BIO_free(kb);
  BIO_free(cb);
  return err;
}

/* "HOST:PORT" ("[::1]:8787") to an address to bind. */
static ef_err resolve_listen(ef_api *a, unsigned short *port, ef_status *st) {
  char host[256];
  const char *colon = strrchr(a->listen, ':');
  struct addrinfo hints, *res = NULL;
  ef_err err = EF_OK;
  if (!colon || colon == a->listen || (size_t)(colon - a->listen) >= sizeof host)
    return ef_status_fail(st, EF_ERR_CONFIG, "listen %s: must be HOST:PORT", a->listen);
  memcpy(host, a->listen, (size_t)(colon - a->listen));
  host[colon - a->listen] = '\0';
  if (host[0] == '[') {
    size_t n = strlen(host);
    if (n < 3 || host[n - 1] != ']')
      return ef_status_fail(st, EF_ERR_CONFIG, "listen %s: bad IPv6 address", a->listen);
    memmove(host, host + 1, n - 2);
    host[n - 2] = '\0';
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int rc = getaddrinfo(host, colon + 1, &hints, &res);
  if (rc != 0 || !res || res->ai_addrlen > sizeof a->addr) {
    err = ef_status_fail(st, EF_ERR_CONFIG, "listen %s: %s", a->listen,
                         rc ? gai_strerror(rc) : "no address to listen on");
    goto out;
  }
  memcpy(&a->addr, res->ai_addr, res->ai_addrlen);
  *port = (unsigned short)strtoul(colon + 1, NULL, 10);
out:
  if (res) freeaddrinfo(res);
  return err;
}

static void api_free(ef_api *a) {
  if (!a) return;
  api_events_free(a);
  free(a->devs);
  free(a->tokens);
  free(a->cert_pem);
  if (a->key_pem) OPENSSL_cleanse(a->key_pem, a->key_len);
  free(a->key_pem);
  ef_store_close(a->reader);
  pthread_cond_destroy(&a->cond);
  pthread_mutex_destroy(&a->lock);
  pthread_mutex_destroy(&a->store_lock);
  free(a);
}

ef_err ef_api_start(const ef_api_config *cfg, ef_controller *c, ef_api **out, ef_status *st) {
  ef_err err = EF_ERR_NOMEM;
  unsigned short port = 0;
  size_t cert_len = 0;
  ef_api *a = calloc(1, sizeof *a);
  *out = NULL;
  if (!a) return ef_status_fail(st, err, "out of memory");
  pthread_mutex_init(&a->lock, NULL);
  pthread_mutex_init(&a->store_lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  /* the streams' keepalive must not jump with the wall clock */
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&a->cond, &ca);
  pthread_condattr_destroy(&ca);
  a->ctl = c;
  a->next_seq = 1;
  snprintf(a->listen, sizeof a->listen, "%s", cfg->listen ? cfg->listen : "");
  snprintf(a->database, sizeof a->database, "%s", cfg->database ? cfg->database : "");
  snprintf(a->prefix, sizeof a->prefix, "%s", cfg->prefix ? cfg->prefix : ef_controller_prefix(c));
  a->tls = cfg->cert_file && cfg->cert_file[0];
  snprintf(a->public_origin, sizeof a->public_origin, "%s", cfg->public_origin ? cfg->public_origin : "");

  if ((err = resolve_listen(a, &port, st)) != EF_OK) goto out;
  if (cfg->tokens_file && cfg->tokens_file[0] &&
      (err = ef_api_tokens_load(cfg->tokens_file, &a->tokens, &a->n_tokens, NULL, NULL, st)) != EF_OK) {
    ef_status_prefix(st, cfg->tokens_file);
    goto out;
  }
  if (a->tls) {
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
      err = ef_status_fail(st, EF_ERR_CONFIG, "this libmicrohttpd was built without TLS");
      goto out;
    }
    if ((err = read_pem("certificate", cfg->cert_file, &a->cert_pem, &cert_len, st)) != EF_OK) goto out;
    if ((err = read_pem("key", cfg->key_file ? cfg->key_file : "", &a->key_pem, &a->key_len, st)) != EF_OK)
      goto out;
    if ((err = check_tls(cfg->cert_file, a->cert_pem, cfg->key_file, a->key_pem, st)) != EF_OK) goto out;
  }
  /* what the store knows now; the observer brings the rest */
  api_devices_ensure(a);
  ef_controller_set_observer(c, api_observe, a);

  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
  if (a->addr.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  if (a->tls) flags |= MHD_USE_TLS;
  struct MHD_OptionItem tls_opts[] = {
      {MHD_OPTION_HTTPS_MEM_CERT, 0, a->cert_pem},
      {MHD_OPTION_HTTPS_MEM_KEY, 0, a->key_pem},
      {MHD_OPTION_END, 0, NULL},
  };
  a->mhd = MHD_start_daemon(
      flags, port, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, a, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&a->addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PER_IP_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)IDLE_TIMEOUT_S, MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, a, MHD_OPTION_ARRAY, a->tls ? tls_opts : &tls_opts[2], MHD_OPTION_END);
  if (!a->mhd) {
    ef_controller_set_observer(c, NULL, NULL);
    err = ef_status_fail(st, EF_ERR_IO, "cannot serve HTTP on %s: %s", a->listen,
                         a->mhd_error[0] ? a->mhd_error : "libmicrohttpd refused to start");
    goto out;
  }
  atomic_store(&a->serving, true);
  ef_info("http: serving the API on %s (%s, %s)", a->listen, a->tls ? "https" : "plain http",
          a->tokens ? "tokens required" : "no logins: loopback only");
  err = EF_OK;
out:
  if (err != EF_OK) {
    api_free(a);
    a = NULL;
  }
  *out = a;
  return err;
}

void ef_api_stop(ef_api *a) {
  if (!a) return;
  /* the streams wait for events: wake them to end before the threads are joined */
  pthread_mutex_lock(&a->lock);
  a->stopping = true;
  pthread_cond_broadcast(&a->cond);
  pthread_mutex_unlock(&a->lock);
  if (a->mhd) MHD_stop_daemon(a->mhd);
  ef_controller_set_observer(a->ctl, NULL, NULL);
  api_free(a);
}
