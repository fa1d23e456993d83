/**
 * @file journal.h
 * @brief The daemon's crash-safe memory: state_dir/journal.json.
 *
 * Holds the job in progress (with its attempt number and phase), the job
 * waiting for it, the app this client installed last, the secure_version
 * floor, and the final results of recent jobs. The in-memory functions below
 * only change the struct; ef_journal_save writes it with an atomic replace
 * (a new file in the same directory, fsync, rename, fsync of the directory),
 * so after a crash or a power loss the file holds either the old or the new
 * journal, never a mix (tests/unit/test_journal_crash.c simulates a power
 * loss at every step of a save).
 *
 * The file is one record per line, each with a CRC-32 of its data
 * (docs/protocol.md, "Crash safety"): a record that cannot be read (damaged
 * bytes, or content this version refuses) is dropped and reported, and the
 * others load. The floor is kept twice (first and last line), so damage to
 * one line never loses it.
 *
 * A process that starts with has_current set was killed mid-job: it reports
 * the interruption and runs the job again with attempt + 1 (see
 * docs/protocol.md). A job_id found with ef_journal_find_final is not run
 * again, except a skipped one, which a wider rollout may select later.
 *
 * Read the struct's fields freely; change them only with the functions
 * below, which keep the count ef_journal_durable relies on.
 */
#ifndef ESPFLEET_JOURNAL_H
#define ESPFLEET_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/job.h"
#include "espfleet/report.h"
#include "espfleet/status.h"

#define EF_JOURNAL_FILE "journal.json"
/** Results of jobs that ran, or ended without running other than rejected or
 *  skipped (already installed, canceled while waiting); the oldest is dropped
 *  first. */
#define EF_JOURNAL_MAX_RESULTS 64
/** Results of documents refused or skipped before anything ran (rejected or
 *  skipped with attempt 0), kept apart so that a flood of them never drops a
 *  result of a job that ran; the oldest is dropped first. */
#define EF_JOURNAL_MAX_DECISIONS 64
#define EF_JOURNAL_DIR_MAX       1024
/** Free space state_dir must have (ef_journal_check_dir): a save writes a new
 *  journal beside the old one, and a journal is at most 1 MiB. */
#define EF_JOURNAL_MIN_FREE (2u * 1024 * 1024)

/** The final result of one job. */
typedef struct {
  char job_id[EF_JOB_ID_MAX + 1];
  char fingerprint[65]; /**< ef_job_fingerprint, "" when the job never parsed */
  ef_job_state state;   /**< a final state */
  ef_err error;         /**< EF_OK for succeeded, canceled, skipped */
  char message[256];    /**< the detail sentence, may be "" */
  int64_t ts_ms;        /**< when the job ended, Unix milliseconds */
  int attempt;          /**< 0 when nothing ran */
} ef_journal_result;

typedef struct {
  char dir[EF_JOURNAL_DIR_MAX]; /**< state_dir, set by ef_journal_load */
  bool has_current;
  ef_job current;     /**< valid when has_current */
  int attempt;        /**< attempt of the current job, starting at 1 */
  ef_job_state phase; /**< last state of the current job */
  bool has_waiting;
  ef_job waiting; /**< the job that waits for the current one, when has_waiting */
  ef_app_info installed;
  uint32_t floor; /**< highest secure_version installed (ef_journal_floor) */
  size_t n_results;
  ef_journal_result results[EF_JOURNAL_MAX_RESULTS]; /**< oldest first */
  size_t n_decisions;
  ef_journal_result decisions[EF_JOURNAL_MAX_DECISIONS]; /**< oldest first */
  uint64_t changes;                                      /**< bumped by every change */
  uint64_t saved;                                        /**< changes at the last successful save */
} ef_journal;

/** What ef_journal_load could not read. */
typedef struct {
  size_t dropped;  /**< records dropped; 0 and !truncated = the file was whole */
  bool truncated;  /**< the file ends before its last record */
  bool floor_lost; /**< no copy of the floor could be read: floor is 0, unknown */
  /** The job_id of a job in progress whose record was dropped although its
   *  job_id could still be read ("" otherwise): its job will not resume, and
   *  the caller reports a final state for it. */
  char lost_current[EF_JOB_ID_MAX + 1];
  char summary[512]; /**< what was dropped and why, for the log */
} ef_journal_damage;

/**
 * Loads state_dir/journal.json into @p j (and remembers @p state_dir for saves).
 * A missing file gives an empty journal. Records that cannot be read are
 * dropped and listed in @p damage; every other record loads. When anything
 * was dropped, the file as it was is copied to journal.json.corrupt
 * (replacing an older copy) for a human to look at; journal.json itself is
 * replaced by the next save. Reads journal files of format 1 (one JSON
 * object, espfleet 0.1) the same way, record by record.
 * The file is opened without following a symbolic link and without
 * blocking, and must be a regular file: a FIFO, a device node or a link at
 * its path is refused, never read or followed.
 * @param damage what was dropped (may be NULL); zeroed first
 * @param st why it failed (the path and the system's reason); may be NULL
 * @return EF_OK (also with damage); EF_ERR_INVALID_ARG for a too long path;
 *         EF_ERR_IO when the file exists but cannot be read or is not a
 *         regular file; EF_ERR_NOMEM.
 */
ef_err ef_journal_load(ef_journal *j, const char *state_dir, ef_journal_damage *damage,
                       ef_status *st) EF_MUST_CHECK;

/**
 * Writes the journal atomically to the directory given at load; once it
 * returns EF_OK the new journal survives a power loss. On failure the old
 * journal is still in place.
 * @param st why it failed ("cannot rename /var/lib/espfleet/journal.json:
 *        No space left on device"); may be NULL. Nothing is logged here:
 *        the caller decides what a failed save means.
 * @return EF_OK, EF_ERR_IO, EF_ERR_NOMEM, EF_ERR_INVALID_ARG (path too long).
 */
ef_err ef_journal_save(ef_journal *j, ef_status *st) EF_MUST_CHECK;

/** True when everything in @p j was saved: no change since the last
 *  successful ef_journal_save (or the load). */
bool ef_journal_durable(const ef_journal *j);

/**
 * Checks that @p state_dir can hold the journal: a directory (created, mode
 * 0700, when missing and @p create), writable (a probe file is created,
 * written, synced and removed), with EF_JOURNAL_MIN_FREE bytes free, and
 * journal.json, when present, a regular file.
 * @param missing set true when the directory does not exist and @p create is
 *        false (then nothing else is checked and EF_OK returned); may be NULL
 * @param st what is wrong, a sentence that names the directory; may be NULL
 * @return EF_OK; EF_ERR_IO; EF_ERR_INVALID_ARG for a too long path.
 */
ef_err ef_journal_check_dir(const char *state_dir, bool create, bool *missing, ef_status *st) EF_MUST_CHECK;

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

/** The highest secure_version this device installed (0 when none, or when
 *  the load reported floor_lost). */
uint32_t ef_journal_floor(const ef_journal *j);

/** Raises the floor to @p secure_version; a lower value changes nothing (the
 *  floor is never lowered). */
void ef_journal_set_floor(ef_journal *j, uint32_t secure_version);

/**
 * Records a final result. An older result of the same job_id is replaced.
 * Rejected and skipped results with attempt 0 go to the decisions, the
 * others to the results; beyond their limits the oldest of the same kind is
 * dropped.
 */
void ef_journal_record_final(ef_journal *j, const ef_journal_result *r);

/** Forgets the final result of @p job_id, if any (a result that could not
 *  be saved, so that the job is decided on again when delivered again). */
void ef_journal_forget_final(ef_journal *j, const char *job_id);

/** The final result recorded for @p job_id, or NULL. */
const ef_journal_result *ef_journal_find_final(const ef_journal *j, const char *job_id);

/** The newest final result (by ts_ms, of both kinds), or NULL. */
const ef_journal_result *ef_journal_last_final(const ef_journal *j);

#endif
