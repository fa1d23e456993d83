/*
 * The console's broker connection: an espfleet MQTT session with a fresh
 * client id and a clean session, plus an inbox that hands the messages the
 * session receives (on the MQTT library's threads) to the command's thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "console.h"
#include "espfleet/clock.h"
#include "espfleet/log.h"

/* Messages kept unread; a console that cannot keep up drops the oldest
 * rather than growing without bound. */
#define INBOX_MAX 10000

struct con_link {
  ef_mqtt *session;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  con_msg *head, *tail;
  int queued;
  long dropped;
  char uri[512];
};

static void on_message(void *arg, const char *topic, const void *payload, size_t len) {
  con_link *l = arg;
  con_msg *m = calloc(1, sizeof *m);
  char *t = strdup(topic);
  char *p = malloc(len + 1);
  if (!m || !t || !p) {
    free(m);
    free(t);
    free(p);
    return;
  }
  if (len) memcpy(p, payload, len);
  p[len] = '\0';
  m->topic = t;
  m->payload = p;
  m->len = len;
  pthread_mutex_lock(&l->mu);
  if (l->queued >= INBOX_MAX) {
    con_msg *old = l->head;
    l->head = old->next;
    if (!l->head) l->tail = NULL;
    l->queued--;
    l->dropped++;
    con_msg_free(old);
  }
  if (l->tail)
    l->tail->next = m;
  else
    l->head = m;
  l->tail = m;
  l->queued++;
  pthread_cond_signal(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

/* First line of the file, without the line end. */
static ef_err read_password(const char *path, char *out, size_t n) {
  ef_err err = EF_ERR_IO;
  FILE *f = fopen(path, "re");
  if (!f) {
    con_fail(EF_ERR_IO, "cannot open password file %s: %s", path, strerror(errno));
    goto out;
  }
  if (!fgets(out, (int)n, f)) out[0] = '\0';
  out[strcspn(out, "\r\n")] = '\0';
  err = EF_OK;
out:
  if (f) fclose(f);
  return err;
}

/* The TLS files must be readable: checked here so the error line names the
 * option (the session would log its own line first). */
static ef_err check_files(const con_common *c) {
  const char *files[][2] = {{"--ca", c->ca_file}, {"--cert", c->cert_file}, {"--key", c->key_file}};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    if (files[i][1] && access(files[i][1], R_OK) != 0) {
      con_fail(EF_ERR_IO, "cannot read %s %s: %s", files[i][0], files[i][1], strerror(errno));
      return EF_ERR_IO;
    }
  }
  return EF_OK;
}

/* A unique client id: two consoles (or a console and a daemon) under one id
 * would keep kicking each other off the broker. */
static void unique_client_id(char *out, size_t n) {
  unsigned char rnd[4] = {0};
  if (RAND_bytes(rnd, sizeof rnd) != 1) memset(rnd, 0, sizeof rnd); /* the pid still tells us apart */
  snprintf(out, n, "espfleet-console-%ld-%02x%02x%02x%02x", (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3]);
}

/* Waits for the session's first connection. @return EF_OK, or EF_ERR_MQTT
 * (error printed) on timeout or interrupt. */
static ef_err wait_connected(const con_common *c, con_link *l, double connect_timeout_s) {
  int64_t deadline = ef_mono_ms() + (int64_t)(connect_timeout_s * 1000);
  while (!ef_mqtt_is_connected(l->session)) {
    if (con_interrupted() || ef_mono_ms() >= deadline) {
      con_fail(EF_ERR_MQTT, "no connection to %s within %g s%s", c->broker, connect_timeout_s,
               c->verbose ? "" : "; --verbose says why");
      return EF_ERR_MQTT;
    }
    ef_sleep_ms(20);
  }
  return EF_OK;
}

ef_err con_link_open(const con_common *c, const char *const *topics, size_t n_topics,
                     double connect_timeout_s, con_link **out) {
  ef_err err = EF_ERR_NOMEM;
  con_link *l = NULL;
  char password[512] = "";
  char client_id[64];
  ef_mqtt_subscription subs[EF_MQTT_MAX_SUBSCRIPTIONS];
  *out = NULL;

  ef_log_set_ident(CON_PROGRAM);
  ef_log_set_level(c->verbose ? EF_LOG_INFO : EF_LOG_ERROR);
  if (n_topics > EF_MQTT_MAX_SUBSCRIPTIONS) {
    err = EF_ERR_INVALID_ARG;
    con_fail(err, "at most %d topics", EF_MQTT_MAX_SUBSCRIPTIONS);
    goto out;
  }
  if ((err = check_files(c)) != EF_OK) goto out;
  if (c->password_file && (err = read_password(c->password_file, password, sizeof password)) != EF_OK)
    goto out;
  l = calloc(1, sizeof *l);
  if (!l) {
    con_fail(EF_ERR_NOMEM, NULL);
    goto out;
  }
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, NULL);
  snprintf(l->uri, sizeof l->uri, "%s", c->broker);
  unique_client_id(client_id, sizeof client_id);
  for (size_t i = 0; i < n_topics; i++) subs[i] = (ef_mqtt_subscription){topics[i], 1};

  ef_mqtt_options o = {
      .uri = c->broker,
      .client_id = client_id,
      .username = c->username,
      .password = c->password_file ? password : NULL,
      .ca_file = c->ca_file,
      .cert_file = c->cert_file,
      .key_file = c->key_file,
      .keepalive_s = EF_MQTT_DEFAULT_KEEPALIVE_S,
      .connect_timeout_s = connect_timeout_s < EF_MQTT_DEFAULT_CONNECT_TIMEOUT_S
                               ? (int)connect_timeout_s + 1
                               : EF_MQTT_DEFAULT_CONNECT_TIMEOUT_S,
      /* Nothing of ours should outlive the command on the broker. */
      .clean_session = true,
      .subscriptions = n_topics ? subs : NULL,
      .n_subscriptions = n_topics,
      .reconnect_min_ms = 250,
      .reconnect_max_ms = 2000,
      .on_message = on_message,
      .arg = l,
  };
  ef_status st = EF_STATUS_INIT;
  err = ef_mqtt_start(&o, &l->session, &st);
  if (err != EF_OK) {
    con_fail(err, "cannot start an MQTT session for %s: %s", c->broker, st.detail);
    goto out;
  }
  err = wait_connected(c, l, connect_timeout_s);
out:
  explicit_bzero(password, sizeof password);
  if (err != EF_OK) {
    con_link_close(l);
    l = NULL;
  }
  *out = l;
  return err;
}

ef_err con_link_publish(con_link *l, const char *topic, const char *payload, bool retain, double timeout_s) {
  ef_status st = EF_STATUS_INIT;
  ef_err err = ef_mqtt_publish(l->session, topic, payload, strlen(payload), 1, retain, &st);
  if (err != EF_OK) {
    con_fail(err, "cannot publish to %s: %s", topic, st.detail);
    goto out;
  }
  err = ef_mqtt_flush(l->session, (int)(timeout_s * 1000), NULL);
  if (err != EF_OK)
    con_fail(err, "%s did not acknowledge the message on %s within %g s", l->uri, topic, timeout_s);
out:
  return err;
}

con_msg *con_link_next(con_link *l, int64_t deadline_ms) {
  con_msg *m = NULL;
  pthread_mutex_lock(&l->mu);
  while (!l->head && !con_interrupted()) {
    int64_t now = ef_mono_ms();
    if (deadline_ms >= 0 && now >= deadline_ms) break;
    /* Wake up now and then to notice signals, which do not signal the condvar. */
    int64_t wait = deadline_ms >= 0 && deadline_ms - now < 200 ? deadline_ms - now : 200;
    struct timespec ts = ef_ms_timespec(ef_wall_ms() + wait); /* the condvar's clock: CLOCK_REALTIME */
    pthread_cond_timedwait(&l->cv, &l->mu, &ts);
  }
  if (l->head) {
    m = l->head;
    l->head = m->next;
    if (!l->head) l->tail = NULL;
    l->queued--;
    m->next = NULL;
  }
  pthread_mutex_unlock(&l->mu);
  return m;
}

void con_msg_free(con_msg *m) {
  if (!m) return;
  free(m->topic);
  free(m->payload);
  free(m);
}

void con_link_close(con_link *l) {
  if (!l) return;
  ef_mqtt_stop(l->session, 2000);
  while (l->head) {
    con_msg *m = l->head;
    l->head = m->next;
    con_msg_free(m);
  }
  if (l->dropped) fprintf(stderr, CON_PROGRAM ": %ld message(s) dropped (too many unread)\n", l->dropped);
  pthread_cond_destroy(&l->cv);
  pthread_mutex_destroy(&l->mu);
  free(l);
}
