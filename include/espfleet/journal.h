/**
 * @file journal.h
 * @brief The daemon's crash-safe memory: state_dir/journal.json.
 *
 * Holds the job in progress (with its attempt number and phase), the app this
 * client installed last, and the final results of recent jobs. The in-memory
 * functions below only change the struct; ef_journal_save writes it with an
 * atomic replace (temp file in the same directory, fsync, rename, fsync of the
 * directory), so after a crash the file holds either the old or the new
 * journal, never a mix.
 *
 * A process that starts with has_current set was killed mid-job: it reports
 * the interruption and runs the job again with attempt + 1 (see
 * docs/protocol.md). A job_id found with ef_journal_find_final is not run
 * again, except a skipped one, which a wider rollout may select later.
 */
#ifndef ESPFLEET_JOURNAL_H
#define ESPFLEET_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/job.h"
#include "espfleet/report.h"

#define EF_JOURNAL_FILE "journal.json"
#define EF_JOURNAL_MAX_RESULTS 64 /**< results kept; the oldest is dropped first */
#define EF_JOURNAL_DIR_MAX 1024

/** The final result of one job. */
typedef struct {
  char job_id[EF_JOB_ID_MAX + 1];
  char fingerprint[65];  /**< ef_job_fingerprint, "" when the job never parsed */
  ef_job_state state;    /**< a final state */
  ef_err error;          /**< EF_OK for succeeded, canceled, skipped */
  char message[256];     /**< the detail sentence, may be "" */
  int64_t ts_ms;         /**< when the job ended, Unix milliseconds */
  int attempt;
} ef_journal_result;

typedef struct {
  char dir[EF_JOURNAL_DIR_MAX];  /**< state_dir, set by ef_journal_load */
  bool has_current;
  ef_job current;                /**< valid when has_current */
  int attempt;                   /**< attempt of the current job, starting at 1 */
  ef_job_state phase;            /**< last state of the current job */
  bool has_waiting;
  ef_job waiting;                /**< the job that waits for the current one, when has_waiting */
  ef_app_info installed;
  size_t n_results;
  ef_journal_result results[EF_JOURNAL_MAX_RESULTS]; /**< oldest first */
} ef_journal;

/**
 * Loads state_dir/journal.json into @p j (and remembers @p state_dir for saves).
 * A missing file gives an empty journal. A file that cannot be understood is
 * renamed to journal.json.corrupt (replacing an older one) and the journal
 * starts empty, so a damaged file never stops the daemon.
 * @param recovered set true when a corrupt file was moved aside (may be NULL)
 * @param st why it failed (the path and the system's reason); may be NULL
 * @return EF_OK; EF_ERR_INVALID_ARG for a too long path; EF_ERR_IO when the
 *         file exists but cannot be read or moved aside; EF_ERR_NOMEM.
 */
ef_err ef_journal_load(ef_journal *j, const char *state_dir, bool *recovered, ef_status *st) EF_MUST_CHECK;

/**
 * Writes the journal atomically to the directory given at load.
 * @param st why it failed ("cannot rename /var/lib/espfleet/journal.json:
 *        No space left on device"); may be NULL. Nothing is logged here:
 *        the caller decides what a failed save means.
 * @return EF_OK, EF_ERR_IO, EF_ERR_NOMEM, EF_ERR_INVALID_ARG (path too long).
 */
ef_err ef_journal_save(const ef_journal *j, ef_status *st) EF_MUST_CHECK;

/** Records @p job as the job in progress at @p attempt, in @p phase. */
void ef_journal_set_current(ef_journal *j, const ef_job *job, int attempt, ef_job_state phase);

/** Forgets the job in progress. */
void ef_journal_clear_current(ef_journal *j);

/**
 * Records @p job as the one waiting for the current job (only the newest
 * waits), or forgets it when @p job is NULL. Kept so that a restart does not
 * lose a job that was delivered, and acknowledged, while another ran.
 */
void ef_journal_set_waiting(ef_journal *j, const ef_job *job);

/** Records the app now installed (after a successful update). */
void ef_journal_set_installed(ef_journal *j, const ef_app_info *app);

/**
 * Records a final result. An older result of the same job_id is replaced;
 * beyond EF_JOURNAL_MAX_RESULTS the oldest result is dropped.
 */
void ef_journal_record_final(ef_journal *j, const ef_journal_result *r);

/** The final result recorded for @p job_id, or NULL. */
const ef_journal_result *ef_journal_find_final(const ef_journal *j, const char *job_id);

#endif
