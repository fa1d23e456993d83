/*
 * The console's broker connection: an espfleet MQTT session with a fresh
 * client id and a clean session, feeding the library's inbox (inbox.h),
 * which hands the messages the session receives on the MQTT library's
 * threads to the command's thread. Received device documents are read
 * with the protocol module's readers (protocol.h), which escape every text.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
  ef_inbox *inbox;
  char uri[512];
};

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
  ef_status st = EF_STATUS_INIT;
  *out = NULL;

  ef_log_set_ident(CON_PROGRAM);
  ef_log_set_level(c->verbose ? EF_LOG_INFO : EF_LOG_ERROR);
  if (n_topics > EF_MQTT_MAX_SUBSCRIPTIONS) {
    err = EF_ERR_INVALID_ARG;
    con_fail(err, "at most %d topics", EF_MQTT_MAX_SUBSCRIPTIONS);
    goto out;
  }
  if ((err = check_files(c)) != EF_OK) goto out;
  if (c->password_file &&
      (err = ef_read_secret_file(c->password_file, password, sizeof password, &st)) != EF_OK) {
    con_fail(err, "--password-file: %s", st.detail);
    goto out;
  }
  err = EF_ERR_NOMEM;
  l = calloc(1, sizeof *l);
  if (!l || !(l->inbox = ef_inbox_new(INBOX_MAX, con_interrupted))) {
    con_fail(err, NULL);
    goto out;
  }
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
      .on_message = ef_inbox_on_message,
      .arg = l->inbox,
  };
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

ef_err con_link_announce(con_link *l, const char *prefix, ef_announce_scope scope, const char *job_id,
                         double timeout_s) {
  ef_err err = EF_ERR_NOMEM;
  char topic[EF_TOPIC_MAX];
  ef_announce a = {.scope = scope};
  char *json = NULL;
  if (job_id) snprintf(a.job_id, sizeof a.job_id, "%s", job_id);
  if (!con_topic(topic, prefix, EF_TOPIC_ANNOUNCE, NULL)) {
    err = EF_ERR_INVALID_ARG;
    goto out;
  }
  if (!(json = ef_announce_json(&a))) {
    con_fail(err, NULL);
    goto out;
  }
  err = con_link_publish(l, topic, json, false, timeout_s);
out:
  free(json);
  return err;
}

ef_inbox_msg *con_link_next(con_link *l, int64_t deadline_ms) { return ef_inbox_next(l->inbox, deadline_ms); }

void con_link_close(con_link *l) {
  if (!l) return;
  /* The session feeds the inbox: it stops first. */
  ef_mqtt_stop(l->session, 2000);
  if (l->inbox) {
    long dropped = ef_inbox_dropped(l->inbox);
    if (dropped) fprintf(stderr, CON_PROGRAM ": %ld message(s) dropped (too many unread)\n", dropped);
  }
  ef_inbox_free(l->inbox);
  free(l);
}

bool con_device_doc_read(const ef_inbox_msg *m, const char *prefix, con_device_doc *d) {
  char sub[EF_JOB_ID_MAX + 1];
  memset(d, 0, sizeof *d);
  d->kind = ef_topic_parse(m->topic, prefix, d->device, sub);
  if (d->kind != EF_TOPIC_DEVICE_STATE && d->kind != EF_TOPIC_DEVICE_PROGRESS) return false;
  /* An empty payload (a cleared retained state) or one that is not an object shows nothing. */
  if (ef_state_view_parse(m->payload, m->len, &d->v, NULL) != EF_OK) return false;
  d->offline = d->kind == EF_TOPIC_DEVICE_STATE && d->v.has_online && !d->v.online;
  return true;
}

ef_err con_device_error(const ef_state_view *v, ef_err fallback) {
  if (v->state_known && v->state == EF_STATE_CANCELED) return EF_ERR_CANCELED;
  ef_err e = ef_err_from_name(v->error_code);
  return e == EF_ERR__COUNT || e == EF_OK ? fallback : e;
}
