/*
 * Internal to the agent module: the shared state of the agent thread and the
 * job thread, and the helpers both use. Not a public header.
 */
#ifndef ESPFLEET_AGENT_INTERNAL_H
#define ESPFLEET_AGENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "espfleet/agent.h"
#include "espfleet/job.h"
#include "espfleet/journal.h"
#include "espfleet/mqtt.h"
#include "espfleet/pipe.h"
#include "espfleet/report.h"

#define INBOX_CAP 32
#define TOPIC_MAX (EF_CONFIG_STR_MAX + EF_JOB_ID_MAX + 32)
/* Bytes between the download and the ESP writer: enough to ride out jitter
 * on either side, small enough that memory does not depend on the image. */
#define PIPE_CAPACITY (256 * 1024)
#define TICK_MS       200

typedef enum { MSG_JOB, MSG_CANCEL, MSG_ANNOUNCE } msg_kind;

typedef struct {
  msg_kind kind;
  char *payload; /* NULL when oversized */
  size_t len;
} inbox_msg;

struct ef_agent {
  ef_config cfg;
  ef_job_limits limits;
  char topic_job[TOPIC_MAX];
  char topic_cancel[TOPIC_MAX];
  char topic_state[TOPIC_MAX];
  char topic_progress[TOPIC_MAX];
  char topic_groups[EF_CONFIG_MAX_GROUPS][TOPIC_MAX];
  char topic_group_cancels[EF_CONFIG_MAX_GROUPS][TOPIC_MAX];
  char topic_announce[TOPIC_MAX];
  ef_mqtt *mqtt;

  pthread_mutex_t lock;
  pthread_cond_t wake;
  bool stop;

  /* The inbox has its own lock, the only one the MQTT callbacks take: the
   * MQTT library may call them with its own lock held, and the agent takes
   * that one (by publishing) while holding `lock`. */
  pthread_mutex_t inbox_lock;
  inbox_msg inbox[INBOX_CAP];
  size_t in_head, in_count;
  atomic_bool republish; /* (re)connected: publish the state again */

  ef_journal journal;
  ef_state state;     /* the document on the state topic */
  ef_keyring keyring; /* security.release_keys, loaded at start; empty = unsigned jobs run */

  bool has_pending;
  ef_job pending;
  int pending_attempt;
  bool pending_resume; /* from the journal: skip the "seen before" checks */
  bool pending_verify_only;

  bool job_running, job_done;
  pthread_t job_thread;
  ef_job job; /* written by the agent thread before the job thread starts */
  char job_fingerprint[65];
  int attempt;
  bool verify_only;
  bool cancel_requested;
  bool activating;           /* OTA end is (about to be) sent: cancel no longer applies */
  bool past_ota_end;         /* the ESP may boot the new image: a failed save stops nothing */
  bool journal_failed;       /* a save of this job's record failed: it stops before OTA end */
  ef_status journal_failure; /* why, for the final state */
  ef_pipe *pipe;             /* set while the transfer runs, for cancel */
  struct ef_download *dl;    /* the download feeding pipe; job thread only */
  _Atomic uint64_t bytes;
  ef_progress_limiter progress;
  bool driver_unknown_logged; /* "driver release unknown" is said once */
};

/* Copies @p src (NULL as "") into @p dst of @p n bytes, cut to fit: for
 * texts where a cut is harmless (state documents, journal messages). */
static inline void copy_truncating(char *dst, size_t n, const char *src) {
  snprintf(dst, n, "%s", src ? src : "");
}

/* Publishing and the journal; the caller holds a->lock. */
void publish_state_locked(ef_agent *a);
/* Saves the journal; true when everything in it is durable. A failure is
 * logged, and its status copied to @p st (may be NULL). */
bool save_journal_locked(ef_agent *a, ef_status *st);
/* How report_final_locked reports a final state. */
typedef enum {
  REPORT_RECORD,     /* the job's result: saved in the journal, then published as the state and
                        as the job's retained result (P/devices/ID/jobs/J) */
  REPORT_AGAIN,      /* a result the journal holds, said again (state and result topics) */
  REPORT_UNRECORDED, /* a final state that is not the job's result (it may run when delivered
                        again): the state topic only */
  REPORT_REFUSAL,    /* a delivery refused because the job_id has a result of its own: said to
                        whoever listens now (not retained), so the recorded result stands */
} report_how;

void report_final_locked(ef_agent *a, const char *job_id, const char *fingerprint, ef_job_state st,
                         ef_err err, const char *detail, int attempt, report_how how);
void progress_tick_locked(ef_agent *a);

/* The job thread (job_thread.c): runs a->job from start to end, then sets
 * a->job_done and wakes the agent thread. */
void *ef_agent_job_main(void *arg);

#endif
