/* espfleetd's configuration: defaults, strict validation, every problem named. */
#include "espfleet/config.h"
#include "espfleet/text.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "espfleet/ctrl.h"
#include "espfleet/image.h"

typedef struct {
  ef_config_problems *p;
  unsigned flags;
  size_t count;                      /* problems seen, also when p is NULL */
  char first[EF_CONFIG_PROBLEM_LEN]; /* the first one, for the status */
} ctx_t;

static void problem(ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(ctx_t *c, const char *fmt, ...) {
  if (c->count++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->first, sizeof c->first, fmt, ap);
    va_end(ap);
  }
  if (!c->p) return;
  if (c->p->count >= EF_CONFIG_MAX_PROBLEMS) {
    c->p->dropped++;
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->p->lines[c->p->count++], EF_CONFIG_PROBLEM_LEN, fmt, ap);
  va_end(ap);
}

void ef_config_defaults(ef_config *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->state_dir, sizeof c->state_dir, "%s", EF_CONFIG_DEFAULT_STATE_DIR);
  c->mqtt.keepalive_s = EF_CONFIG_DEFAULT_KEEPALIVE_S;
  snprintf(c->mqtt.topic_prefix, sizeof c->mqtt.topic_prefix, "%s", EF_CONFIG_DEFAULT_TOPIC_PREFIX);
  snprintf(c->controller.database, sizeof c->controller.database, "%s", EF_CONFIG_DEFAULT_CONTROLLER_DB);
  c->controller.discovery_s = EF_CONFIG_DEFAULT_DISCOVERY_S;
  c->controller.tick_ms = EF_CONFIG_DEFAULT_TICK_MS;
  snprintf(c->http.listen, sizeof c->http.listen, "%s", EF_CONFIG_DEFAULT_HTTP_LISTEN);
  snprintf(c->esp.device, sizeof c->esp.device, "%s", EF_CONFIG_DEFAULT_DEVICE);
  c->esp.chip_id = -1;
  c->esp.chunk_size = EF_CONFIG_DEFAULT_CHUNK_SIZE;
  c->esp.window = EF_CONFIG_DEFAULT_WINDOW;
  c->esp.max_image_size = EF_CONFIG_DEFAULT_MAX_IMAGE_SIZE;
  c->esp.disable_bt_during_ota = false;
  c->esp.boot_timeout_s = EF_CONFIG_DEFAULT_BOOT_TIMEOUT_S;
  c->esp.begin_timeout_s = EF_CONFIG_DEFAULT_BEGIN_TIMEOUT_S;
  snprintf(c->esp.kernel_log, sizeof c->esp.kernel_log, "%s", EF_DRIVER_DEFAULT_KERNEL_LOG);
  c->download.connect_timeout_s = EF_CONFIG_DEFAULT_CONNECT_TIMEOUT_S;
  c->download.stall_timeout_s = EF_CONFIG_DEFAULT_STALL_TIMEOUT_S;
  c->download.allow_http = false;
  c->download.max_attempts = EF_CONFIG_DEFAULT_MAX_ATTEMPTS;
}

void ef_config_job_limits(const ef_config *c, ef_job_limits *lim) {
  ef_job_limits_default(lim);
  lim->max_image_size = c->esp.max_image_size;
  lim->allow_http = c->download.allow_http;
}

/* Every key of @p obj must be in @p known: a typo must not fall back to a default. */
static void check_keys(ctx_t *c, const cJSON *obj, const char *prefix, const char *const *known) {
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    bool ok = false;
    for (const char *const *k = known; *k; k++)
      if (strcmp(*k, it->string) == 0) ok = true;
    /* A key is the file's text, not ours: shown escaped and cut, so a
     * problem line never carries control characters to a terminal. */
    char key[64];
    ef_text_escape(it->string, key, sizeof key);
    if (!ok) problem(c, "%s%s: unknown key", prefix, key);
    /* cJSON keeps duplicates; the document would mean two things. */
    for (const cJSON *o = it->next; o; o = o->next)
      if (strcmp(o->string, it->string) == 0) {
        problem(c, "%s%s: given more than once", prefix, key);
        break;
      }
  }
}

static const cJSON *section(ctx_t *c, const cJSON *root, const char *name) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, name);
  if (s && !cJSON_IsObject(s)) {
    problem(c, "%s: must be an object", name);
    return NULL;
  }
  return s;
}

/* A string value; "" required means "must be present". Returns false when absent or wrong. */
static bool get_str(ctx_t *c, const cJSON *obj, const char *prefix, const char *key, char *dst, size_t n,
                    bool allow_empty) {
  const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
  if (!it) return false;
  if (!cJSON_IsString(it)) {
    problem(c, "%s%s: must be a string", prefix, key);
    return false;
  }
  if (!allow_empty && !it->valuestring[0]) {
    problem(c, "%s%s: must not be empty", prefix, key);
    return false;
  }
  if (strlen(it->valuestring) >= n) {
    problem(c, "%s%s: too long (at most %zu characters)", prefix, key, n - 1);
    return false;
  }
  memcpy(dst, it->valuestring, strlen(it->valuestring) + 1);
  return true;
}

static void get_int(ctx_t *c, const cJSON *obj, const char *prefix, const char *key, double lo, double hi,
                    int *dst) {
  const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
  if (!it) return;
  if (!cJSON_IsNumber(it) || it->valuedouble < lo || it->valuedouble > hi ||
      floor(it->valuedouble) != it->valuedouble) {
    problem(c, "%s%s: must be an integer %.0f..%.0f", prefix, key, lo, hi);
    return;
  }
  *dst = (int)it->valuedouble;
}

static void get_bool(ctx_t *c, const cJSON *obj, const char *prefix, const char *key, bool *dst) {
  const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
  if (!it) return;
  if (!cJSON_IsBool(it)) {
    problem(c, "%s%s: must be true or false", prefix, key);
    return;
  }
  *dst = cJSON_IsTrue(it);
}

static void check_readable(ctx_t *c, const char *key, const char *path) {
  if (!path[0] || (c->flags & EF_CONFIG_SKIP_FILES)) return;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    problem(c, "%s: cannot read %s: %s", key, path, strerror(errno));
    return;
  }
  close(fd);
}

static void read_password(ctx_t *c, ef_config *cfg) {
  char buf[EF_CONFIG_STR_MAX + 2];
  if (!cfg->mqtt.password_file[0] || (c->flags & EF_CONFIG_SKIP_FILES)) return;
  FILE *f = fopen(cfg->mqtt.password_file, "re");
  if (!f) {
    problem(c, "mqtt.password_file: cannot read %s: %s", cfg->mqtt.password_file, strerror(errno));
    return;
  }
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  bool err = ferror(f);
  fclose(f);
  if (err) {
    problem(c, "mqtt.password_file: cannot read %s", cfg->mqtt.password_file);
    return;
  }
  buf[n] = '\0';
  /* Editors and `echo` add a newline that is not part of the password. */
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
  if (n >= sizeof cfg->mqtt.password || strlen(buf) != n) {
    problem(c, "mqtt.password_file: the password must be one line of at most %zu bytes",
            sizeof cfg->mqtt.password - 1);
    return;
  }
  memcpy(cfg->mqtt.password, buf, n + 1);
  cfg->mqtt.has_password = true;
}

static bool uri_ok(const char *uri, bool *tls) {
  const char *rest;
  if (strncasecmp(uri, "mqtt://", 7) == 0) {
    rest = uri + 7;
    *tls = false;
  } else if (strncasecmp(uri, "mqtts://", 8) == 0) {
    rest = uri + 8;
    *tls = true;
  } else {
    return false;
  }
  if (!*rest || *rest == ':' || *rest == '/') return false;
  for (const char *p = uri; *p; p++)
    if ((unsigned char)*p <= 0x20) return false;
  return true;
}

/* True when the host of @p rest ("host[:port][/...]", after the scheme) is
 * this machine: "localhost", 127.0.0.0/8 or ::1. */
static bool loopback_host(const char *rest) {
  char host[256];
  size_t n = strcspn(rest, "/?#");
  for (size_t i = n; i > 0; i--) /* user information ends at the last '@' */
    if (rest[i - 1] == '@') {
      rest += i;
      n -= i;
      break;
    }
  if (*rest == '[') {
    const char *close = memchr(rest, ']', n);
    if (!close) return false;
    n = (size_t)(close - rest) + 1;
  } else {
    const char *colon = memchr(rest, ':', n);
    if (colon) n = (size_t)(colon - rest);
  }
  if (n == 0 || n >= sizeof host) return false;
  memcpy(host, rest, n);
  host[n] = '\0';
  if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0) return true;
  if (strncmp(host, "127.", 4) != 0) return false;
  return strspn(host, "0123456789.") == n;
}

static bool topic_prefix_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 128 || s[0] == '/' || s[n - 1] == '/' || strstr(s, "//")) return false;
  return strpbrk(s, "+#") == NULL;
}

static void parse_mqtt(ctx_t *c, const cJSON *m, ef_config *cfg) {
  static const char *const keys[] = {"uri",       "client_id", "username",    "password_file", "ca_file",
                                     "cert_file", "key_file",  "keepalive_s", "topic_prefix",  NULL};
  const char *pre = "mqtt.";
  bool tls = false, uri_valid = false;
  if (m) check_keys(c, m, pre, keys);
  if (!m || !cJSON_GetObjectItemCaseSensitive(m, "uri")) {
    problem(c, "mqtt.uri: required (mqtt://host:port or mqtts://host:port)");
  } else if (get_str(c, m, pre, "uri", cfg->mqtt.uri, sizeof cfg->mqtt.uri, false) &&
             !(uri_valid = uri_ok(cfg->mqtt.uri, &tls))) {
    problem(c, "mqtt.uri: must start with mqtt:// or mqtts:// followed by a host");
  }
  get_str(c, m, pre, "client_id", cfg->mqtt.client_id, sizeof cfg->mqtt.client_id, false);
  get_str(c, m, pre, "username", cfg->mqtt.username, sizeof cfg->mqtt.username, false);
  get_str(c, m, pre, "password_file", cfg->mqtt.password_file, sizeof cfg->mqtt.password_file, false);
  get_str(c, m, pre, "ca_file", cfg->mqtt.ca_file, sizeof cfg->mqtt.ca_file, false);
  get_str(c, m, pre, "cert_file", cfg->mqtt.cert_file, sizeof cfg->mqtt.cert_file, false);
  get_str(c, m, pre, "key_file", cfg->mqtt.key_file, sizeof cfg->mqtt.key_file, false);
  get_int(c, m, pre, "keepalive_s", 1, 65535, &cfg->mqtt.keepalive_s);
  char prefix[EF_CONFIG_STR_MAX];
  if (get_str(c, m, pre, "topic_prefix", prefix, sizeof prefix, false)) {
    if (topic_prefix_ok(prefix))
      memcpy(cfg->mqtt.topic_prefix, prefix, sizeof prefix);
    else
      problem(c,
              "mqtt.topic_prefix: must be 1-128 characters without +, #, empty levels or a leading or "
              "trailing /");
  }
  if (cfg->mqtt.cert_file[0] && !cfg->mqtt.key_file[0])
    problem(c, "mqtt.key_file: required when mqtt.cert_file is set");
  if (cfg->mqtt.key_file[0] && !cfg->mqtt.cert_file[0])
    problem(c, "mqtt.cert_file: required when mqtt.key_file is set");
  /* TLS files with a plain-text URI usually mean a forgotten "s". */
  if (uri_valid && !tls && (cfg->mqtt.ca_file[0] || cfg->mqtt.cert_file[0]))
    problem(c, "mqtt.uri: TLS files are configured but the uri is mqtt:// (use mqtts://)");
  /* Anyone on the path would read it, and with it log in as this device. */
  if (uri_valid && !tls && cfg->mqtt.password_file[0] && !loopback_host(cfg->mqtt.uri + strlen("mqtt://")))
    problem(c,
            "mqtt.password_file: the password would cross the network in clear over mqtt:// "
            "(use mqtts://; mqtt:// with a password only to a broker on this host)");
  check_readable(c, "mqtt.ca_file", cfg->mqtt.ca_file);
  check_readable(c, "mqtt.cert_file", cfg->mqtt.cert_file);
  check_readable(c, "mqtt.key_file", cfg->mqtt.key_file);
  read_password(c, cfg);
}

static void parse_esp(ctx_t *c, const cJSON *e, ef_config *cfg) {
  static const char *const keys[] = {"device",
                                     "chip",
                                     "chunk_size",
                                     "window",
                                     "max_image_size",
                                     "disable_bt_during_ota",
                                     "boot_timeout_s",
                                     "begin_timeout_s",
                                     "driver_release",
                                     "kernel_log",
                                     NULL};
  const char *pre = "esp.";
  if (!e) return;
  check_keys(c, e, pre, keys);
  get_str(c, e, pre, "device", cfg->esp.device, sizeof cfg->esp.device, false);
  char chip[64];
  if (get_str(c, e, pre, "chip", chip, sizeof chip, false)) {
    uint16_t id;
    if (ef_chip_from_name(chip, &id) != EF_OK || !ef_chip_name(id)) {
      problem(c, "esp.chip: unknown chip \"%s\" (e.g. esp32, esp32s3, esp32c3)", chip);
    } else {
      cfg->esp.chip_id = id;
      snprintf(cfg->esp.chip, sizeof cfg->esp.chip, "%s", ef_chip_name(id));
    }
  }
  /* One OTA write is one control message, and the firmware reassembles a
   * message in a 4096-byte buffer and silently drops what does not fit: a
   * larger chunk would make every write time out on a real ESP. */
  const cJSON *cs = cJSON_GetObjectItemCaseSensitive(e, "chunk_size");
  if (cs && (!cJSON_IsNumber(cs) || cs->valuedouble < 1 || cs->valuedouble > EF_CTRL_MAX_CHUNK ||
             floor(cs->valuedouble) != cs->valuedouble))
    problem(c, "esp.chunk_size: must be 1..%d (the ESP firmware drops messages above %d bytes)",
            EF_CTRL_MAX_CHUNK, EF_CTRL_FW_MSG_MAX);
  else if (cs)
    cfg->esp.chunk_size = (int)cs->valuedouble;
  const cJSON *w = cJSON_GetObjectItemCaseSensitive(e, "window");
  if (w && (!cJSON_IsNumber(w) || w->valuedouble < 1 || w->valuedouble > EF_CTRL_MAX_WINDOW ||
            floor(w->valuedouble) != w->valuedouble))
    problem(c, "esp.window: must be 1..%d", EF_CTRL_MAX_WINDOW);
  else if (w)
    cfg->esp.window = (int)w->valuedouble;
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "max_image_size");
  if (m && (!cJSON_IsNumber(m) || m->valuedouble < 1 || m->valuedouble > 4294967295.0 ||
            floor(m->valuedouble) != m->valuedouble))
    problem(c, "esp.max_image_size: must be a positive integer number of bytes (at most 4294967295)");
  else if (m)
    cfg->esp.max_image_size = (uint64_t)m->valuedouble;
  get_bool(c, e, pre, "disable_bt_during_ota", &cfg->esp.disable_bt_during_ota);
  get_int(c, e, pre, "boot_timeout_s", 1, 3600, &cfg->esp.boot_timeout_s);
  get_int(c, e, pre, "begin_timeout_s", 1, 3600, &cfg->esp.begin_timeout_s);
  char release[EF_CONFIG_STR_MAX];
  if (get_str(c, e, pre, "driver_release", release, sizeof release, false)) {
    /* Compared byte for byte with the jobs' expect_fw_version: a typo would
     * reject every job, so the format is checked here. */
    if (ef_fw_release_valid(release)) /* valid means at most EF_FW_RELEASE_MAX characters */
      memcpy(cfg->esp.driver_release, release, strlen(release) + 1);
    else
      problem(c, "esp.driver_release: must be a release such as FG-1.0.0.0.0 (NAME-a.b.c.d.e)");
  }
  /* Not checked for readability: it often is not (dmesg_restrict), and an
   * unreadable log only makes the release unknown. */
  get_str(c, e, pre, "kernel_log", cfg->esp.kernel_log, sizeof cfg->esp.kernel_log, false);
}

static void parse_download(ctx_t *c, const cJSON *d, ef_config *cfg) {
  static const char *const keys[] = {"ca_file",    "connect_timeout_s", "stall_timeout_s",
                                     "allow_http", "max_attempts",      NULL};
  const char *pre = "download.";
  if (!d) return;
  check_keys(c, d, pre, keys);
  get_str(c, d, pre, "ca_file", cfg->download.ca_file, sizeof cfg->download.ca_file, false);
  check_readable(c, "download.ca_file", cfg->download.ca_file);
  get_int(c, d, pre, "connect_timeout_s", 1, 600, &cfg->download.connect_timeout_s);
  get_int(c, d, pre, "stall_timeout_s", 1, 3600, &cfg->download.stall_timeout_s);
  get_bool(c, d, pre, "allow_http", &cfg->download.allow_http);
  get_int(c, d, pre, "max_attempts", 1, 100, &cfg->download.max_attempts);
}

/* "security": {"release_keys": [{"id", "public_key_file"}...], "revoked_keys": [ids]} */
static void parse_security(ctx_t *c, const cJSON *s, ef_config *cfg) {
  static const char *const keys[] = {"release_keys", "revoked_keys", NULL};
  static const char *const key_keys[] = {"id", "public_key_file", NULL};
  if (!s) return;
  check_keys(c, s, "security.", keys);
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(s, "release_keys"), *it;
  if (list && !cJSON_IsArray(list))
    problem(c, "security.release_keys: must be a list of {id, public_key_file}");
  const cJSON *arr = cJSON_IsArray(list) ? list : NULL;
  int i = 0;
  cJSON_ArrayForEach(it, arr) {
    char pre[48], id[EF_RELEASE_KEY_ID_MAX + 1] = "", file[EF_CONFIG_PATH_MAX] = "";
    snprintf(pre, sizeof pre, "security.release_keys[%d].", i++);
    if (!cJSON_IsObject(it)) {
      problem(c, "%.*s: must be an object {id, public_key_file}", (int)strlen(pre) - 1, pre);
      continue;
    }
    check_keys(c, it, pre, key_keys);
    bool ok = get_str(c, it, pre, "id", id, sizeof id, false) &&
              get_str(c, it, pre, "public_key_file", file, sizeof file, false);
    if (!ok) {
      if (!cJSON_GetObjectItemCaseSensitive(it, "id") ||
          !cJSON_GetObjectItemCaseSensitive(it, "public_key_file"))
        problem(c, "%.*s: needs id and public_key_file", (int)strlen(pre) - 1, pre);
      continue;
    }
    if (!ef_release_key_id_valid(id)) {
      problem(c, "%sid: must be 1-64 characters of [A-Za-z0-9._:-]", pre);
      continue;
    }
    bool dup = false;
    for (size_t k = 0; k < cfg->security.n_keys; k++) dup = dup || strcmp(cfg->security.key_ids[k], id) == 0;
    if (dup) {
      problem(c, "%sid: \"%s\" is listed twice", pre, id);
      continue;
    }
    if (cfg->security.n_keys >= EF_RELEASE_MAX_KEYS) {
      problem(c, "security.release_keys: at most %d keys", EF_RELEASE_MAX_KEYS);
      break;
    }
    if (!(c->flags & EF_CONFIG_SKIP_FILES)) {
      /* the key must load as the daemon will load it */
      ef_release_key *k = NULL;
      ef_status ks = EF_STATUS_INIT;
      if (ef_release_key_load(file, &k, &ks) != EF_OK)
        problem(c, "%spublic_key_file: %s", pre, ks.detail);
      else if (ef_release_key_is_private(k))
        problem(c, "%spublic_key_file: %s is a private key; devices hold the public key only", pre, file);
      ef_release_key_free(k);
    }
    size_t n = cfg->security.n_keys++;
    memcpy(cfg->security.key_ids[n], id, sizeof id);
    memcpy(cfg->security.key_files[n], file, sizeof file);
  }
  list = cJSON_GetObjectItemCaseSensitive(s, "revoked_keys");
  if (list && !cJSON_IsArray(list)) problem(c, "security.revoked_keys: must be a list of key ids");
  arr = cJSON_IsArray(list) ? list : NULL;
  i = 0;
  cJSON_ArrayForEach(it, arr) {
    if (!cJSON_IsString(it) || !ef_release_key_id_valid(it->valuestring))
      problem(c, "security.revoked_keys[%d]: must be 1-64 characters of [A-Za-z0-9._:-]", i);
    else if (cfg->security.n_revoked >= EF_RELEASE_MAX_KEYS)
      problem(c, "security.revoked_keys: at most %d ids", EF_RELEASE_MAX_KEYS);
    else
      snprintf(cfg->security.revoked[cfg->security.n_revoked++], sizeof cfg->security.revoked[0], "%s",
               it->valuestring);
    i++;
  }
}

ef_err ef_config_keyring(const ef_config *c, ef_keyring *kr, ef_status *st) {
  memset(kr, 0, sizeof *kr);
  for (size_t i = 0; i < c->security.n_keys; i++) {
    ef_release_key *k = NULL;
    ef_err err = ef_release_key_load(c->security.key_files[i], &k, st);
    if (err == EF_OK) err = ef_keyring_add(kr, c->security.key_ids[i], k, st);
    if (err != EF_OK) {
      ef_keyring_free(kr);
      return err;
    }
  }
  for (size_t i = 0; i < c->security.n_revoked; i++) {
    ef_err err = ef_keyring_revoke(kr, c->security.revoked[i], st);
    if (err != EF_OK) {
      ef_keyring_free(kr);
      return err;
    }
  }
  return EF_OK;
}

static void parse_groups(ctx_t *c, const cJSON *g, ef_config *cfg) {
  if (!g) return;
  if (!cJSON_IsArray(g)) {
    problem(c, "groups: must be a list of group names");
    return;
  }
  int i = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, g) {
    if (!cJSON_IsString(it) || !ef_id_valid(it->valuestring)) {
      problem(c, "groups[%d]: must be 1-64 characters of [A-Za-z0-9._:-]", i);
    } else if (cfg->n_groups >= EF_CONFIG_MAX_GROUPS) {
      problem(c, "groups[%d]: too many groups (at most %d)", i, EF_CONFIG_MAX_GROUPS);
    } else {
      bool dup = false;
      for (size_t k = 0; k < cfg->n_groups; k++)
        if (strcmp(cfg->groups[k], it->valuestring) == 0) dup = true;
      if (dup)
        problem(c, "groups[%d]: \"%s\" is listed twice", i, it->valuestring);
      else
        snprintf(cfg->groups[cfg->n_groups++], sizeof cfg->groups[0], "%s", it->valuestring);
    }
    i++;
  }
}

/* "line L, column C" of byte @p off, for the JSON syntax problem. */
static void position(const char *text, size_t off, int *line, int *col) {
  *line = 1;
  *col = 1;
  for (size_t i = 0; i < off && text[i]; i++) {
    if (text[i] == '\n') {
      (*line)++;
      *col = 1;
    } else {
      (*col)++;
    }
  }
}

static void parse_controller(ctx_t *c, const cJSON *o, ef_config *cfg) {
  static const char *const keys[] = {"database", "discovery_s", "tick_ms", NULL};
  const char *pre = "controller.";
  if (o) check_keys(c, o, pre, keys);
  get_str(c, o, pre, "database", cfg->controller.database, sizeof cfg->controller.database, false);
  get_int(c, o, pre, "discovery_s", 0, 3600, &cfg->controller.discovery_s);
  get_int(c, o, pre, "tick_ms", 50, 60000, &cfg->controller.tick_ms);
}

/* The HTTP API: on loopback by default; anywhere else only with TLS and logins. */
static void parse_http(ctx_t *c, const cJSON *o, ef_config *cfg) {
  static const char *const keys[] = {"listen", "cert_file", "key_file", "tokens_file", "public_origin", NULL};
  const char *pre = "http.";
  if (o) check_keys(c, o, pre, keys);
  get_str(c, o, pre, "listen", cfg->http.listen, sizeof cfg->http.listen, true);
  get_str(c, o, pre, "cert_file", cfg->http.cert_file, sizeof cfg->http.cert_file, false);
  get_str(c, o, pre, "key_file", cfg->http.key_file, sizeof cfg->http.key_file, false);
  get_str(c, o, pre, "tokens_file", cfg->http.tokens_file, sizeof cfg->http.tokens_file, false);
  if (get_str(c, o, pre, "public_origin", cfg->http.public_origin, sizeof cfg->http.public_origin, false) &&
      (strncmp(cfg->http.public_origin, "https://", 8) != 0 || strchr(cfg->http.public_origin + 8, '/')))
    problem(c, "http.public_origin: must be https://HOST[:PORT] without a path (what browsers see)");
  if (!cfg->http.listen[0]) return; /* off */
  const char *colon = strrchr(cfg->http.listen, ':');
  char *end = NULL;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || colon == cfg->http.listen || !end || *end || port < 1 || port > 65535) {
    problem(c, "http.listen: must be HOST:PORT (127.0.0.1:8787), or \"\" for no HTTP API");
    return;
  }
  if (!cfg->http.cert_file[0] != !cfg->http.key_file[0])
    problem(c, "http.cert_file, http.key_file: give both or neither");
  /* Exposed beyond this host, the API changes what runs on devices: never in clear, never without a login. */
  if (!loopback_host(cfg->http.listen) && (!cfg->http.cert_file[0] || !cfg->http.tokens_file[0]))
    problem(c, "http.listen: %s is not loopback: set http.cert_file, http.key_file and http.tokens_file",
            cfg->http.listen);
  check_readable(c, "http.cert_file", cfg->http.cert_file);
  check_readable(c, "http.key_file", cfg->http.key_file);
  check_readable(c, "http.tokens_file", cfg->http.tokens_file);
}

/* espfleet-controller's file: the broker as espfleetd has it, and its own sections. */
static void parse_controller_file(ctx_t *c, const cJSON *root, ef_config *cfg) {
  static const char *const keys[] = {"mqtt", "controller", "http", NULL};
  check_keys(c, root, "", keys);
  parse_mqtt(c, section(c, root, "mqtt"), cfg);
  parse_controller(c, section(c, root, "controller"), cfg);
  parse_http(c, section(c, root, "http"), cfg);
  if (!cfg->mqtt.client_id[0])
    snprintf(cfg->mqtt.client_id, sizeof cfg->mqtt.client_id, "espfleet-controller");
}

static ef_err parse(ctx_t *c, const char *json, size_t len, ef_config *cfg) {
  static const char *const keys[] = {"device_id", "groups",   "state_dir", "mqtt",
                                     "esp",       "download", "security",  NULL};
  char *copy = NULL;
  cJSON *root = NULL;
  ef_err rc = EF_ERR_CONFIG;

  ef_config_defaults(cfg);
  if (len > EF_CONFIG_MAX_BYTES) {
    problem(c, "config: file too large (at most %d bytes)", EF_CONFIG_MAX_BYTES);
    goto out;
  }
  copy = malloc(len + 1);
  if (!copy) {
    rc = EF_ERR_NOMEM;
    problem(c, "config: out of memory");
    goto out;
  }
  memcpy(copy, json, len);
  copy[len] = '\0';
  const char *end = NULL;
  root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
  if (!root) {
    int line, col;
    position(copy, end ? (size_t)(end - copy) : 0, &line, &col);
    problem(c, "config: not valid JSON (line %d, column %d)", line, col);
    goto out;
  }
  if (!cJSON_IsObject(root)) {
    problem(c, "config: must be a JSON object");
    goto out;
  }
  if (c->flags & EF_CONFIG_CONTROLLER) {
    parse_controller_file(c, root, cfg);
    if (c->count == 0) rc = EF_OK;
    goto out;
  }
  check_keys(c, root, "", keys);

  const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "device_id");
  if (!cJSON_IsString(id) || !ef_id_valid(id->valuestring))
    problem(c, "device_id: required, 1-64 characters of [A-Za-z0-9._:-]");
  else
    snprintf(cfg->device_id, sizeof cfg->device_id, "%s", id->valuestring);
  parse_groups(c, cJSON_GetObjectItemCaseSensitive(root, "groups"), cfg);
  get_str(c, root, "", "state_dir", cfg->state_dir, sizeof cfg->state_dir, false);
  parse_mqtt(c, section(c, root, "mqtt"), cfg);
  parse_esp(c, section(c, root, "esp"), cfg);
  parse_download(c, section(c, root, "download"), cfg);
  parse_security(c, section(c, root, "security"), cfg);
  /* The device_id: what a broker that ties sessions to identities uses
   * (mosquitto's use_username_as_clientid with user = device_id, a
   * certificate's CN, AWS IoT's thing name), docs/security.md. */
  if (!cfg->mqtt.client_id[0] && cfg->device_id[0])
    snprintf(cfg->mqtt.client_id, sizeof cfg->mqtt.client_id, "%s", cfg->device_id);
  if (c->count == 0) rc = EF_OK;
out:
  cJSON_Delete(root);
  free(copy);
  return rc;
}

/* The status of a load: the first problem stands for all of them. */
static ef_err report(const ctx_t *c, ef_err rc, ef_status *st) {
  if (rc == EF_OK) return EF_OK;
  if (c->count > 1)
    return ef_status_fail(st, rc, "%s (and %zu more problem%s)", c->first, c->count - 1,
                          c->count > 2 ? "s" : "");
  return ef_status_fail(st, rc, "%s", c->first);
}

ef_err ef_config_parse(const char *json, size_t len, unsigned flags, ef_config *out, ef_config_problems *p,
                       ef_status *st) {
  ctx_t c = {.p = p, .flags = flags};
  if (p) memset(p, 0, sizeof *p);
  if (!json) {
    ef_config_defaults(out);
    problem(&c, "config: empty");
    return report(&c, EF_ERR_CONFIG, st);
  }
  return report(&c, parse(&c, json, len, out), st);
}

ef_err ef_config_load(const char *path, ef_config *out, ef_config_problems *p, ef_status *st) {
  return ef_config_load_flags(path, 0, out, p, st);
}

ef_err ef_config_load_flags(const char *path, unsigned flags, ef_config *out, ef_config_problems *p,
                            ef_status *st) {
  ctx_t c = {.p = p, .flags = flags};
  char *buf = NULL;
  size_t used = 0;
  ef_err rc = EF_ERR_CONFIG;
  FILE *f = NULL;

  if (p) memset(p, 0, sizeof *p);
  ef_config_defaults(out);
  f = path ? fopen(path, "re") : NULL;
  if (!f) {
    problem(&c, "config: cannot read %s: %s", path ? path : "(none)", path ? strerror(errno) : "no path");
    goto out;
  }
  buf = malloc(EF_CONFIG_MAX_BYTES + 1);
  if (!buf) {
    rc = EF_ERR_NOMEM;
    problem(&c, "config: out of memory");
    goto out;
  }
  used = fread(buf, 1, EF_CONFIG_MAX_BYTES + 1, f);
  if (ferror(f)) {
    problem(&c, "config: cannot read %s", path);
    goto out;
  }
  rc = parse(&c, buf, used, out);
out:
  if (f) fclose(f);
  free(buf);
  return report(&c, rc, st);
}
