/*
 * The fleet agent.
 *
 * Threads and who owns what:
 *  - MQTT callback thread: copies messages into the inbox, nothing else, so a
 *    slow decision never stalls the MQTT library.
 *  - agent thread (ef_agent_run): takes messages from the inbox, applies the
 *    job policy, starts at most one job thread, publishes progress ticks.
 *  - job thread: one update, start to end (job_thread.c).
 * Everything shared lives in struct ef_agent under `lock`; publishing happens
 * under the lock too, so the retained state document always ends with the
 * newest state (ef_mqtt_publish never waits for the network).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "agent_internal.h"
#include "espfleet/clock.h"
#include "espfleet/ctrl.h"
#include "espfleet/log.h"
#include "espfleet/protocol.h"
#include "espfleet/text.h"

/* ---- publishing (all under lock) ---- */

static void publish_on_locked(ef_agent *a, const char *topic, const ef_state *s, bool retain) {
  char *json = ef_report_state_json(s);
  if (!json) return;
  ef_status st = EF_STATUS_INIT;
  if (a->mqtt && ef_mqtt_publish(a->mqtt, topic, json, strlen(json), 1, retain, &st) != EF_OK)
    ef_warn("could not queue the state document: %s", st.detail);
  free(json);
}

static void publish_doc_locked(ef_agent *a, const ef_state *s) {
  publish_on_locked(a, a->topic_state, s, true);
}

/* The job's final state, retained on its own topic: a controller that
 * follows one job sees this device's outcome after the device moved on. */
static void publish_result_locked(ef_agent *a, const ef_state *s) {
  char topic[TOPIC_MAX];
  if (!ef_topic(topic, sizeof topic, a->cfg.mqtt.topic_prefix, EF_TOPIC_DEVICE_RESULT, a->cfg.device_id,
                s->job_id))
    return;
  publish_on_locked(a, topic, s, true);
}

void publish_state_locked(ef_agent *a) {
  a->state.ts_ms = ef_wall_ms();
  publish_doc_locked(a, &a->state);
}

bool save_journal_locked(ef_agent *a, ef_status *st) {
  ef_status why = EF_STATUS_INIT;
  /* The operator hears of it here; what it means for the job is the
   * caller's (docs/protocol.md, "Crash safety"): a job does not start, is
   * stopped before OTA end, or ends failed with io_error. */
  if (ef_journal_save(&a->journal, &why) != EF_OK) {
    ef_error("could not save the journal: %s", why.detail);
    ef_status_copy(st, &why);
  }
  return ef_journal_durable(&a->journal);
}

/*
 * Reports a job's final state (see report_how). A job other than the running
 * one (a rejected or canceled waiting job) is reported in passing; the
 * running job's state is published right after it so the retained document
 * shows the update in progress.
 */
void report_final_locked(ef_agent *a, const char *job_id, const char *fingerprint, ef_job_state st,
                         ef_err err, const char *detail, int attempt, report_how how) {
  char unrecorded[sizeof a->state.detail];
  if (how == REPORT_RECORD && job_id[0]) {
    ef_journal_result r;
    memset(&r, 0, sizeof r);
    copy_truncating(r.job_id, sizeof r.job_id, job_id);
    copy_truncating(r.fingerprint, sizeof r.fingerprint, fingerprint);
    r.state = st;
    r.error = err;
    copy_truncating(r.message, sizeof r.message, detail);
    r.ts_ms = ef_wall_ms();
    r.attempt = attempt;
    ef_journal_record_final(&a->journal, &r);
    ef_status why = EF_STATUS_INIT;
    /* The state goes out only once its record is durable: a final state the
     * journal lost would let the job run again after a restart. One that
     * cannot be saved is not kept in memory either (a redelivery is decided
     * again), and never reads succeeded. */
    if (!save_journal_locked(a, &why)) {
      how = REPORT_UNRECORDED;
      ef_journal_forget_final(&a->journal, job_id);
      if (st == EF_STATE_SUCCEEDED) {
        snprintf(unrecorded, sizeof unrecorded,
                 "the ESP runs the new image, but the journal could not record it: %s", why.detail);
        st = EF_STATE_FAILED;
        err = EF_ERR_IO;
        detail = unrecorded;
      }
    }
  }
  ef_state doc = a->state;
  copy_truncating(doc.job_id, sizeof doc.job_id, job_id);
  doc.state = st;
  doc.error = err;
  copy_truncating(doc.detail, sizeof doc.detail, detail);
  doc.attempt = attempt;
  if (strcmp(job_id, a->job.job_id) != 0 || strcmp(job_id, a->state.job_id) != 0) {
    /* bytes/total describe a transfer; a job that never ran had none */
    doc.bytes = 0;
    doc.total = 0;
  }
  doc.ts_ms = ef_wall_ms();
  if (st == EF_STATE_FAILED || st == EF_STATE_REJECTED)
    ef_info("job %s: %s: %s%s%s", job_id[0] ? job_id : "(no job_id)", ef_state_name(st), ef_err_name(err),
            detail && detail[0] ? ": " : "", detail ? detail : "");
  else
    ef_info("job %s: %s", job_id[0] ? job_id : "(no job_id)", ef_state_name(st));
  if (how == REPORT_REFUSAL) {
    /* Not retained: the retained state and the job's result stay the first result's. */
    publish_on_locked(a, a->topic_state, &doc, false);
    return;
  }
  if ((how == REPORT_RECORD || how == REPORT_AGAIN) && job_id[0]) publish_result_locked(a, &doc);
  if (a->job_running) {
    publish_doc_locked(a, &doc);
    publish_state_locked(a);
  } else {
    a->state = doc;
    publish_doc_locked(a, &a->state);
  }
}

static void republish_final_locked(ef_agent *a, const ef_journal_result *r) {
  report_final_locked(a, r->job_id, r->fingerprint, r->state, r->error, r->message, r->attempt, REPORT_AGAIN);
}

/* ---- MQTT callbacks (MQTT thread: copy and wake, nothing more) ---- */

static void on_message(void *arg, const char *topic, const void *payload, size_t len) {
  ef_agent *a = arg;
  msg_kind kind = MSG_JOB; /* the device job topic or one of the group topics */
  /* ef_topic_same: a broker may hand back a '.' of an id as '/' (RabbitMQ) */
  if (ef_topic_same(topic, a->topic_announce)) kind = MSG_ANNOUNCE;
  /* An empty payload is how a controller clears a retained job: nothing to do. */
  if (len == 0 && kind != MSG_ANNOUNCE) return;
  if (ef_topic_same(topic, a->topic_cancel)) kind = MSG_CANCEL;
  for (size_t i = 0; i < a->cfg.n_groups; i++)
    if (ef_topic_same(topic, a->topic_group_cancels[i])) kind = MSG_CANCEL;
  inbox_msg m = {kind, NULL, len};
  /* An oversized payload is refused without copying it. */
  if (len <= a->limits.max_payload) {
    m.payload = malloc(len + 1);
    if (!m.payload) return;
    memcpy(m.payload, payload, len);
    m.payload[len] = '\0';
  }
  pthread_mutex_lock(&a->inbox_lock);
  if (a->in_count == INBOX_CAP) {
    /* Only the newest job matters; drop the oldest message. */
    ef_warn("inbox full, dropping the oldest message");
    free(a->inbox[a->in_head].payload);
    a->in_head = (a->in_head + 1) % INBOX_CAP;
    a->in_count--;
  }
  a->inbox[(a->in_head + a->in_count) % INBOX_CAP] = m;
  a->in_count++;
  pthread_mutex_unlock(&a->inbox_lock);
  /* Without a->lock: a wake-up lost to the race costs one tick at most. */
  pthread_cond_signal(&a->wake);
}

static void on_connected(void *arg, bool reconnect) {
  ef_agent *a = arg;
  ef_info("%s to the broker", reconnect ? "reconnected" : "connected");
  /* The agent thread republishes (the retained state may have been replaced
   * by the last will). Not here: the MQTT library may hold its own lock while
   * it calls us, and publishing under a->lock takes that lock too. */
  atomic_store(&a->republish, true);
  pthread_cond_signal(&a->wake);
}

/* Takes the oldest message from the inbox; false when it is empty. */
static bool inbox_pop(ef_agent *a, inbox_msg *m) {
  pthread_mutex_lock(&a->inbox_lock);
  bool got = a->in_count > 0;
  if (got) {
    *m = a->inbox[a->in_head];
    a->in_head = (a->in_head + 1) % INBOX_CAP;
    a->in_count--;
  }
  pthread_mutex_unlock(&a->inbox_lock);
  return got;
}

static bool inbox_empty(ef_agent *a) {
  pthread_mutex_lock(&a->inbox_lock);
  bool empty = a->in_count == 0;
  pthread_mutex_unlock(&a->inbox_lock);
  return empty;
}

static void on_disconnected(void *arg, const char *cause) {
  (void)arg;
  ef_warn("lost the broker connection (%s); reconnecting", cause ? cause : "unknown cause");
}

/* ---- the agent thread: decisions ---- */

/*
 * The release the host driver accepts, into the state document:
 * esp.driver_release, else the driver's last line in the kernel log. Read
 * again before every job, since a driver reloaded (updated) in the meantime
 * logs its release again at the ESP's next boot. Runs under a->lock: the read
 * never blocks and takes milliseconds, and no job runs when it is called.
 */
static void refresh_driver_release_locked(ef_agent *a) {
  ef_state *s = &a->state;
  if (a->cfg.esp.driver_release[0]) {
    copy_truncating(s->driver_release, sizeof s->driver_release, a->cfg.esp.driver_release);
    s->driver_source = EF_DRIVER_SOURCE_CONFIG;
    return;
  }
  char rel[EF_FW_RELEASE_MAX + 1];
  bool found = false;
  ef_status st = EF_STATUS_INIT;
  ef_err err = ef_driver_release_read_log(a->cfg.esp.kernel_log, rel, sizeof rel, &found, &st);
  char why[EF_STATUS_DETAIL_MAX + EF_CONFIG_PATH_MAX];
  if (err != EF_OK)
    snprintf(why, sizeof why, "%s", st.detail);
  else
    snprintf(why, sizeof why, "%s: no \"Driver supports Firmware version\" line", a->cfg.esp.kernel_log);
  if (found) {
    if (s->driver_source != EF_DRIVER_SOURCE_KERNEL_LOG || strcmp(rel, s->driver_release) != 0)
      ef_info("the host driver accepts ESP-Hosted release %s (from %s)", rel, a->cfg.esp.kernel_log);
    copy_truncating(s->driver_release, sizeof s->driver_release, rel);
    s->driver_source = EF_DRIVER_SOURCE_KERNEL_LOG;
  } else if (s->driver_source == EF_DRIVER_SOURCE_KERNEL_LOG) {
    /* The kernel's ring buffer wrapped since the line was read: it still holds. */
    ef_debug("%s now; keeping the driver release %s read earlier", why, s->driver_release);
  } else if (!a->driver_unknown_logged) {
    ef_warn(
        "the host driver's ESP-Hosted release is unknown (%s): jobs are not checked against it; "
        "set esp.driver_release",
        why);
    a->driver_unknown_logged = true;
  }
}

/*
 * What the device knows when it decides on a document with @p job_id: the
 * facts ef_job_decide reads (gathering them is the only thing the agent
 * does for a decision; the decision itself is the pure function's).
 */
static ef_job_facts facts_locked(const ef_agent *a, const char *job_id, bool starting) {
  ef_job_facts f;
  memset(&f, 0, sizeof f);
  f.starting = starting;
  f.device_id = a->cfg.device_id;
  f.chip_id = a->cfg.esp.chip_id;
  f.installed_version = a->journal.installed.version;
  f.installed_sha256_hex = a->journal.installed.sha256_hex;
  f.driver_release = a->state.driver_release;
  f.driver_source = a->state.driver_source;
  f.keyring = &a->keyring;
  f.has_floor = true;
  f.secure_floor = ef_journal_floor(&a->journal);
  f.running = a->job_running ? &a->job : NULL;
  f.waiting = a->has_pending ? &a->pending : NULL;
  const ef_journal_result *rec = job_id[0] ? ef_journal_find_final(&a->journal, job_id) : NULL;
  f.has_final = rec != NULL;
  f.final_skipped = rec && rec->state == EF_STATE_SKIPPED;
  f.final_fingerprint = rec ? rec->fingerprint : NULL;
  f.now = time(NULL);
  return f;
}

/*
 * Carries out a decision that ends the job's intake without running it.
 * Returns false for the decisions that go on (run, wait).
 */
static bool settle_locked(ef_agent *a, ef_job_decision d, const ef_job *job, const char *fp,
                          const ef_status *st) {
  switch (d) {
  case EF_DECISION_SKIP:
    report_final_locked(a, job->job_id, fp, EF_STATE_SKIPPED, EF_OK, "outside the rollout percentage", 0,
                        REPORT_RECORD);
    return true;
  case EF_DECISION_INSTALLED:
    report_final_locked(a, job->job_id, fp, EF_STATE_SUCCEEDED, EF_OK, "this image is already installed", 0,
                        REPORT_RECORD);
    return true;
  case EF_DECISION_REJECT:
  case EF_DECISION_REFUSE:
    report_final_locked(a, job->job_id, fp, EF_STATE_REJECTED, st->code, st->detail, 0,
                        d == EF_DECISION_REJECT ? REPORT_RECORD : REPORT_REFUSAL);
    return true;
  case EF_DECISION_IGNORE:
    ef_debug("job %s: duplicate delivery while it runs, ignored", job->job_id);
    return true;
  case EF_DECISION_REPEAT:
    /* Finished before: never run twice, say again how it ended. */
    republish_final_locked(a, ef_journal_find_final(&a->journal, job->job_id));
    return true;
  case EF_DECISION_RUN:
  case EF_DECISION_WAIT: break;
  }
  return false;
}

static void start_job_locked(ef_agent *a) {
  ef_job job = a->pending;
  int attempt = a->pending_attempt;
  bool resume = a->pending_resume, verify_only = a->pending_verify_only;
  char fp[65];
  a->has_pending = false;
  if (!resume) ef_journal_set_waiting(&a->journal, NULL); /* saved with what follows */
  ef_job_fingerprint(&job, fp);

  /* A job from the journal was decided on before the restart. */
  if (!resume) {
    ef_status st = EF_STATUS_INIT;
    refresh_driver_release_locked(a);
    ef_job_facts f = facts_locked(a, job.job_id, true);
    if (settle_locked(a, ef_job_decide(&job, NULL, &f, &st), &job, fp, &st)) return;
  }

  a->job = job;
  copy_truncating(a->job_fingerprint, sizeof a->job_fingerprint, fp);
  a->attempt = attempt;
  a->verify_only = verify_only;
  a->cancel_requested = false;
  a->activating = verify_only;
  a->past_ota_end = verify_only;
  a->journal_failed = false;
  ef_status_clear(&a->journal_failure);
  a->job_done = false;
  atomic_store(&a->bytes, 0);
  ef_progress_limiter_init(&a->progress);

  a->state.state = verify_only ? EF_STATE_REBOOTING : EF_STATE_DOWNLOADING;
  copy_truncating(a->state.job_id, sizeof a->state.job_id, job.job_id);
  a->state.bytes = 0;
  a->state.total = job.size;
  a->state.attempt = attempt;
  a->state.error = EF_OK;
  a->state.detail[0] = '\0';
  ef_journal_set_current(&a->journal, &job, attempt, a->state.state);
  ef_status why = EF_STATUS_INIT;
  if (!save_journal_locked(a, &why)) {
    /* Without its record a restart would lose the job, and a finished one
     * could run twice: it does not start. Nothing was recorded for it, so a
     * redelivery is decided on again. */
    char detail[EF_STATUS_DETAIL_MAX + 40];
    snprintf(detail, sizeof detail, "not started: %s", why.detail);
    ef_journal_clear_current(&a->journal);
    report_final_locked(a, job.job_id, fp, EF_STATE_FAILED, EF_ERR_IO, detail, attempt, REPORT_UNRECORDED);
    return;
  }
  char url[EF_JOB_URL_MAX + 16];
  ef_url_redact(job.url, EF_URL_PATH, url, sizeof url); /* no credentials or tokens in logs */
  ef_info("job %s: installing %s from %s (attempt %d)", job.job_id, job.version, url, attempt);
  publish_state_locked(a);

  a->job_running = true;
  if (pthread_create(&a->job_thread, NULL, ef_agent_job_main, a) != 0) {
    a->job_running = false;
    ef_journal_clear_current(&a->journal);
    report_final_locked(a, job.job_id, fp, EF_STATE_FAILED, EF_ERR_INTERNAL, "cannot start the job thread",
                        attempt, REPORT_RECORD);
  }
}

static void handle_job_locked(ef_agent *a, const inbox_msg *m) {
  ef_job job;
  ef_status parsed = EF_STATUS_INIT, st = EF_STATUS_INIT;
  char fp[65] = ""; /* a document that did not parse has none */
  /* An oversized payload was not kept (NULL): the parser refuses it by its length. */
  if (ef_job_parse(m->payload, m->len, &a->limits, &job, &parsed) == EF_OK) ef_job_fingerprint(&job, fp);
  ef_job_facts f = facts_locked(a, job.job_id, false);
  if (settle_locked(a, ef_job_decide(&job, &parsed, &f, &st), &job, fp, &st)) return;
  if (a->has_pending && strcmp(a->pending.job_id, job.job_id) != 0) {
    /* The replaced job never runs: it ends canceled, with the reason, so
     * whoever sent it learns its outcome. Recorded like a cancel, so a
     * redelivery does not run it either. */
    char old_fp[65], why[EF_JOB_ID_MAX + 48];
    ef_job_fingerprint(&a->pending, old_fp);
    snprintf(why, sizeof why, "replaced by job %s while it waited", job.job_id);
    ef_info("job %s replaces waiting job %s", job.job_id, a->pending.job_id);
    report_final_locked(a, a->pending.job_id, old_fp, EF_STATE_CANCELED, EF_ERR_JOB_REPLACED, why, 0,
                        REPORT_RECORD);
  }
  a->pending = job;
  a->pending_attempt = 1;
  a->pending_resume = false;
  a->pending_verify_only = false;
  a->has_pending = true;
  /* Acknowledged to the broker: a restart must not lose it. */
  ef_journal_set_waiting(&a->journal, &job);
  /* When this save fails the job still waits here; it starts only once its
   * record can be saved (start_job_locked). */
  (void)save_journal_locked(a, NULL);
}

static void handle_cancel_locked(ef_agent *a, const inbox_msg *m) {
  char id[EF_JOB_ID_MAX + 1];
  if (ef_cancel_parse(m->payload, m->payload ? m->len : 0, id, NULL) != EF_OK) {
    ef_warn("ignoring a cancel without a valid job_id");
    return;
  }
  if (a->job_running && !a->job_done && strcmp(id, a->job.job_id) == 0) {
    if (a->activating) {
      ef_warn("job %s: cancel ignored, OTA end was already sent", a->job.job_id);
    } else {
      ef_info("job %s: cancel requested", a->job.job_id);
      a->cancel_requested = true;
      if (a->pipe) ef_pipe_abort(a->pipe);
    }
  } else if (a->has_pending && strcmp(id, a->pending.job_id) == 0) {
    char fp[65];
    ef_job_fingerprint(&a->pending, fp);
    a->has_pending = false;
    ef_journal_set_waiting(&a->journal, NULL);
    report_final_locked(a, a->pending.job_id, fp, EF_STATE_CANCELED, EF_OK, "canceled while waiting", 0,
                        REPORT_RECORD);
  } else {
    ef_info("cancel for job %s: not waiting or running, nothing to do", id);
  }
}

/*
 * An announce request (docs/protocol.md): say again what this device knows,
 * for a controller that cannot count on the broker's retained messages (a
 * clustered broker keeps them per node, RabbitMQ does not deliver them to
 * wildcard subscriptions).
 */
static void handle_announce_locked(ef_agent *a, const inbox_msg *m) {
  ef_announce req;
  ef_status st = EF_STATUS_INIT;
  if (ef_announce_parse(m->payload, m->payload ? m->len : 0, &req, &st) != EF_OK) {
    ef_warn("ignoring an announce request: %s", st.detail);
    return;
  }
  if (req.scope == EF_ANNOUNCE_ROLLOUTS) return;
  a->state.online = true;
  publish_doc_locked(a, &a->state);
  const ef_journal_result *r = req.job_id[0] ? ef_journal_find_final(&a->journal, req.job_id) : NULL;
  if (r && strcmp(r->job_id, a->state.job_id) != 0) {
    ef_state doc = a->state;
    copy_truncating(doc.job_id, sizeof doc.job_id, r->job_id);
    doc.state = r->state;
    doc.error = r->error;
    copy_truncating(doc.detail, sizeof doc.detail, r->message);
    doc.attempt = r->attempt;
    doc.bytes = doc.total = 0;
    doc.ts_ms = r->ts_ms;
    publish_result_locked(a, &doc);
  } else if (r) {
    publish_result_locked(a, &a->state);
  }
}

void progress_tick_locked(ef_agent *a) {
  /* progress describes a transfer: only while downloading */
  if (!a->job_running || a->progress.final_sent || a->state.state != EF_STATE_DOWNLOADING) return;
  uint64_t done = atomic_load(&a->bytes);
  if (!ef_progress_due(&a->progress, ef_mono_ms(), done, a->job.size)) return;
  char *json = ef_report_progress_json(a->cfg.device_id, a->job.job_id, done, a->job.size, ef_wall_ms());
  /* QoS 0: a lost progress document is replaced by the next one. */
  if (json && a->mqtt &&
      ef_mqtt_publish(a->mqtt, a->topic_progress, json, strlen(json), 0, false, NULL) != EF_OK)
    ef_debug("progress document not queued");
  free(json);
}

/* The job thread's last act is job_done; its final 100 % progress goes out here. */
static void reap_job_locked(ef_agent *a) {
  if (!a->job_running || !a->job_done) return;
  pthread_mutex_unlock(&a->lock);
  pthread_join(a->job_thread, NULL);
  pthread_mutex_lock(&a->lock);
  a->job_running = false;
  a->job_done = false;
}

/* ---- set-up ---- */

static void read_fw_version(ef_agent *a) {
  ef_ctrl *ctrl = NULL;
  ef_ctrl_options o;
  ef_fw_version fw;
  ef_ctrl_options_default(&o);
  o.device = a->cfg.esp.device;
  o.open_timeout_ms = 1000;
  o.timeout_ms = 2000;
  ef_status st = EF_STATUS_INIT;
  ef_err err = ef_ctrl_open(&o, &ctrl, &st);
  if (err == EF_ERR_ESP_BUSY) {
    /* Not worth waiting for: the version is only for the state document. */
    ef_warn("control device busy: another program holds %s; the firmware version is not known yet",
            a->cfg.esp.device);
    return;
  }
  if (err != EF_OK) {
    ef_warn("ESP control device %s is not available yet (%s)", a->cfg.esp.device, st.detail);
    return;
  }
  if (ef_ctrl_get_fw_version(ctrl, &fw, &st) == EF_OK) {
    ef_fw_version_format(&fw, a->state.fw_version, sizeof a->state.fw_version);
    ef_info("ESP firmware %s", a->state.fw_version);
  } else {
    ef_warn("the ESP did not report its firmware version (%s)", st.detail);
  }
  ef_ctrl_close(ctrl);
}

/*
 * The journal lost records: say which, keep what was read (saved at once, so
 * the damage is not met again), and give a job whose record was lost a final
 * state, since it will not resume.
 */
static void report_damage(ef_agent *a, const ef_journal_damage *d) {
  ef_warn("journal: %zu record(s) could not be read and were dropped%s: %s", d->dropped,
          d->truncated ? " (the file was cut short)" : "", d->summary);
  if (d->floor_lost)
    ef_error("journal: the secure_version floor could not be read: it starts again at 0 (docs/security.md)");
  (void)save_journal_locked(a, NULL);
  if (d->lost_current[0] && !ef_journal_find_final(&a->journal, d->lost_current))
    report_final_locked(a, d->lost_current, "", EF_STATE_FAILED, EF_ERR_INTERRUPTED,
                        "interrupted, and its journal record could not be read: it was not resumed", 1,
                        REPORT_RECORD);
}

/* A job in the journal means the last process died during it. */
static void resume_from_journal(ef_agent *a) {
  const ef_journal_result *last = ef_journal_last_final(&a->journal);
  if (last) {
    /* Start from the last final state so a restart never hides it. */
    a->state.state = last->state;
    copy_truncating(a->state.job_id, sizeof a->state.job_id, last->job_id);
    a->state.error = last->error;
    copy_truncating(a->state.detail, sizeof a->state.detail, last->message);
    a->state.attempt = last->attempt;
    a->state.ts_ms = last->ts_ms;
  } else {
    a->state.ts_ms = ef_wall_ms();
  }
  if (!a->journal.has_current) return;
  const ef_job job_copy = a->journal.current; /* clearing current wipes it */
  const ef_job *job = &job_copy;
  int attempt = a->journal.attempt + 1;
  char fp[65];
  ef_job_fingerprint(job, fp);
  ef_warn("job %s was interrupted in state %s (attempt %d)", job->job_id, ef_state_name(a->journal.phase),
          a->journal.attempt);
  if (a->journal.phase == EF_STATE_REBOOTING) {
    /* OTA end was accepted: only the boot check is left. */
    attempt = a->journal.attempt;
  } else if (attempt > a->cfg.download.max_attempts) {
    char why[160];
    int attempts = a->journal.attempt;
    snprintf(why, sizeof why, "interrupted %d times, giving up (download.max_attempts)", attempts);
    ef_journal_clear_current(&a->journal);
    report_final_locked(a, job->job_id, fp, EF_STATE_FAILED, EF_ERR_INTERRUPTED, why, attempts,
                        REPORT_RECORD);
    return;
  }
  a->pending = *job;
  a->pending_attempt = attempt;
  a->pending_resume = true;
  a->pending_verify_only = a->journal.phase == EF_STATE_REBOOTING;
  a->has_pending = true;
}

ef_err ef_agent_new(const ef_config *cfg, ef_agent **out, ef_status *st) {
  ef_err err = EF_OK;
  ef_journal_damage damage;
  ef_agent *a = calloc(1, sizeof *a);
  if (!a) {
    *out = NULL;
    return ef_status_fail(st, EF_ERR_NOMEM, NULL);
  }
  a->cfg = *cfg;
  ef_config_job_limits(cfg, &a->limits);
  pthread_mutex_init(&a->lock, NULL);
  pthread_mutex_init(&a->inbox_lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&a->wake, &ca);
  pthread_condattr_destroy(&ca);

  /* The configuration checked the prefix and ids, so every name fits. */
  const char *p = cfg->mqtt.topic_prefix, *id = cfg->device_id;
  (void)ef_topic(a->topic_job, TOPIC_MAX, p, EF_TOPIC_DEVICE_JOB, id, NULL);
  (void)ef_topic(a->topic_cancel, TOPIC_MAX, p, EF_TOPIC_DEVICE_CANCEL, id, NULL);
  (void)ef_topic(a->topic_state, TOPIC_MAX, p, EF_TOPIC_DEVICE_STATE, id, NULL);
  (void)ef_topic(a->topic_progress, TOPIC_MAX, p, EF_TOPIC_DEVICE_PROGRESS, id, NULL);
  (void)ef_topic(a->topic_announce, TOPIC_MAX, p, EF_TOPIC_ANNOUNCE, NULL, NULL);
  for (size_t i = 0; i < cfg->n_groups; i++) {
    (void)ef_topic(a->topic_groups[i], TOPIC_MAX, p, EF_TOPIC_GROUP_JOB, cfg->groups[i], NULL);
    (void)ef_topic(a->topic_group_cancels[i], TOPIC_MAX, p, EF_TOPIC_GROUP_CANCEL, cfg->groups[i], NULL);
  }

  /* A state_dir that cannot keep the journal is found now, not at the first
   * job: it exists (or is created), is a directory, takes a write, has room. */
  err = ef_journal_check_dir(cfg->state_dir, true, NULL, st);
  if (err != EF_OK) goto out;
  err = ef_config_keyring(cfg, &a->keyring, st);
  if (err != EF_OK) goto out;
  if (a->keyring.n_keys == 0)
    ef_warn(
        "NO RELEASE KEYS: this device installs unsigned jobs; anyone who can publish a job can install any "
        "image on it (set security.release_keys, docs/security.md)");
  else
    ef_info("signed releases: %zu release key(s), %zu revoked id(s)", a->keyring.n_keys,
            a->keyring.n_revoked);
  err = ef_journal_load(&a->journal, cfg->state_dir, &damage, st);
  if (err != EF_OK) goto out;
  ef_state_init(&a->state, cfg->device_id);
  _Static_assert(EF_STATE_MAX_GROUPS >= EF_CONFIG_MAX_GROUPS,
                 "the state document lists every configured group");
  for (size_t i = 0; i < cfg->n_groups && i < EF_STATE_MAX_GROUPS; i++)
    copy_truncating(a->state.groups[a->state.n_groups++], sizeof a->state.groups[0], cfg->groups[i]);
  a->state.app = a->journal.installed;
  a->state.signed_releases = a->keyring.n_keys > 0;
  refresh_driver_release_locked(a); /* nobody else has `a` yet */
  if (damage.dropped || damage.truncated) report_damage(a, &damage);
  resume_from_journal(a);
out:
  if (err != EF_OK) {
    ef_agent_free(a);
    a = NULL;
  }
  *out = a;
  return err;
}

void ef_agent_request_stop(ef_agent *a) {
  pthread_mutex_lock(&a->lock);
  a->stop = true;
  if (a->pipe && !a->activating) ef_pipe_abort(a->pipe);
  pthread_cond_signal(&a->wake);
  pthread_mutex_unlock(&a->lock);
}

ef_err ef_agent_run(ef_agent *a, ef_status *st) {
  ef_err err = EF_OK;
  char *will = NULL;
  ef_mqtt_subscription subs[3 + 2 * EF_CONFIG_MAX_GROUPS];
  size_t n = 0;

  read_fw_version(a);
  subs[n++] = (ef_mqtt_subscription){a->topic_job, 1};
  subs[n++] = (ef_mqtt_subscription){a->topic_cancel, 1};
  subs[n++] = (ef_mqtt_subscription){a->topic_announce, 1};
  for (size_t i = 0; i < a->cfg.n_groups; i++) {
    subs[n++] = (ef_mqtt_subscription){a->topic_groups[i], 1};
    subs[n++] = (ef_mqtt_subscription){a->topic_group_cancels[i], 1};
  }
  will = ef_report_offline_json(a->cfg.device_id);
  if (!will) return ef_status_fail(st, EF_ERR_NOMEM, "cannot build the last will");

  ef_mqtt_options o = {
      .uri = a->cfg.mqtt.uri,
      .client_id = a->cfg.mqtt.client_id,
      .username = a->cfg.mqtt.username[0] ? a->cfg.mqtt.username : NULL,
      .password = a->cfg.mqtt.has_password ? a->cfg.mqtt.password : NULL,
      .ca_file = a->cfg.mqtt.ca_file[0] ? a->cfg.mqtt.ca_file : NULL,
      .cert_file = a->cfg.mqtt.cert_file[0] ? a->cfg.mqtt.cert_file : NULL,
      .key_file = a->cfg.mqtt.key_file[0] ? a->cfg.mqtt.key_file : NULL,
      .keepalive_s = a->cfg.mqtt.keepalive_s,
      .will_topic = a->topic_state,
      .will_payload = will,
      .will_qos = 1,
      .will_retain = true,
      .subscriptions = subs,
      .n_subscriptions = n,
      .on_message = on_message,
      .on_connected = on_connected,
      .on_disconnected = on_disconnected,
      .arg = a,
  };
  ef_mqtt *mqtt = NULL;
  ef_status why = EF_STATUS_INIT;
  err = ef_mqtt_start(&o, &mqtt, &why);
  if (err != EF_OK) {
    ef_status_prefix(&why, "mqtt");
    ef_status_copy(st, &why);
    goto out;
  }

  pthread_mutex_lock(&a->lock);
  a->mqtt = mqtt;
  /* An interrupted job first, then the one that was waiting for it. */
  if (a->has_pending && a->pending_resume) start_job_locked(a);
  if (a->journal.has_waiting && !a->has_pending) {
    ef_info("job %s was waiting before the restart", a->journal.waiting.job_id);
    a->pending = a->journal.waiting;
    a->pending_attempt = 1;
    a->pending_resume = false;
    a->pending_verify_only = false;
    a->has_pending = true;
  }
  while (!a->stop) {
    if (atomic_exchange(&a->republish, false)) {
      a->state.online = true;
      publish_doc_locked(a, &a->state);
    }
    inbox_msg m;
    while (!a->stop && inbox_pop(a, &m)) {
      if (m.kind == MSG_CANCEL)
        handle_cancel_locked(a, &m);
      else if (m.kind == MSG_ANNOUNCE)
        handle_announce_locked(a, &m);
      else
        handle_job_locked(a, &m);
      free(m.payload);
    }
    reap_job_locked(a);
    if (!a->job_running && a->has_pending && !a->stop) start_job_locked(a);
    progress_tick_locked(a);
    struct timespec until = ef_ms_timespec(ef_mono_ms() + TICK_MS); /* a CLOCK_MONOTONIC condvar */
    if (inbox_empty(a) && !a->job_done && !atomic_load(&a->republish))
      pthread_cond_timedwait(&a->wake, &a->lock, &until);
  }
  /* Stop: let the job thread see it (transfers abort, OTA end is seen through). */
  if (a->job_running) {
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->job_thread, NULL);
    pthread_mutex_lock(&a->lock);
    a->job_running = false;
  }
  a->state.online = false;
  publish_state_locked(a);
  a->mqtt = NULL;
  pthread_mutex_unlock(&a->lock);
  ef_mqtt_stop(mqtt, 3000);
out:
  free(will);
  return err;
}

void ef_agent_free(ef_agent *a) {
  if (!a) return;
  inbox_msg m;
  while (inbox_pop(a, &m)) free(m.payload);
  pthread_mutex_destroy(&a->inbox_lock);
  pthread_cond_destroy(&a->wake);
  pthread_mutex_destroy(&a->lock);
  ef_keyring_free(&a->keyring);
  free(a);
}
