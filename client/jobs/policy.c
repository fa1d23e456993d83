/* The job policy: canary gate, expiry, "already installed", downgrade and
 * driver compatibility, and the daemon's whole intake of a job built on
 * them (ef_job_decide).
 * Pure functions: the caller passes the time, the installed app and what
 * runs and waits. */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "espfleet/image.h"
#include "espfleet/job.h"
#include "espfleet/report.h"

uint32_t ef_canary_bucket(const char *job_id, const char *device_id) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  /* Hash "job_id/device_id" so each job draws a different, stable sample of
   * the fleet: the same device is not always the first canary. */
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) return 0;
  uint32_t bucket = 0;
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, job_id, strlen(job_id)) == 1 &&
      EVP_DigestUpdate(ctx, "/", 1) == 1 && EVP_DigestUpdate(ctx, device_id, strlen(device_id)) == 1 &&
      EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen >= 4) {
    uint32_t first = (uint32_t)md[0] << 24 | (uint32_t)md[1] << 16 | (uint32_t)md[2] << 8 | md[3];
    bucket = first % 10000u;
  }
  EVP_MD_CTX_free(ctx);
  return bucket;
}

bool ef_canary_selected(uint32_t bucket, int percent) {
  if (percent < 0) return true;
  return bucket < (uint32_t)percent * 100u;
}

bool ef_job_expired(const ef_job *job, time_t now) { return job->not_after != 0 && now > job->not_after; }

bool ef_job_already_installed(const ef_job *job, const char *installed_version,
                              const char *installed_sha256_hex) {
  if (!installed_version || !installed_version[0] || !installed_sha256_hex) return false;
  return strcmp(job->version, installed_version) == 0 &&
         strcasecmp(job->sha256_hex, installed_sha256_hex) == 0;
}

ef_err ef_job_check_downgrade(const ef_job *job, const char *installed_version) {
  if (job->allow_downgrade || !installed_version || !installed_version[0]) return EF_OK;
  return ef_version_compare(job->version, installed_version) < 0 ? EF_ERR_DOWNGRADE_REFUSED : EF_OK;
}

ef_err ef_job_check_driver(const ef_job *job, const char *driver_release) {
  /* Unknown: nothing to compare with; the state document says so, and the
   * after-boot check still applies. */
  if (job->driver_update || !job->expect_fw_version[0] || !driver_release || !driver_release[0]) return EF_OK;
  /* Equality, not the driver's own prefix comparison (strncmp over the
   * firmware string's length): stricter only for releases such as
   * FG-1.0.0.0.1 against a driver of FG-1.0.0.0.10, never more lenient. */
  return strcmp(job->expect_fw_version, driver_release) == 0 ? EF_OK : EF_ERR_DRIVER_INCOMPATIBLE;
}

const char *ef_job_decision_name(ef_job_decision d) {
  switch (d) {
  case EF_DECISION_RUN: return "run";
  case EF_DECISION_SKIP: return "skip";
  case EF_DECISION_INSTALLED: return "installed";
  case EF_DECISION_REJECT: return "reject";
  case EF_DECISION_REFUSE: return "refuse";
  case EF_DECISION_IGNORE: return "ignore";
  case EF_DECISION_REPEAT: return "repeat";
  case EF_DECISION_WAIT: return "wait";
  }
  return "unknown";
}

static bool same_id(const ef_job *a, const ef_job *b) { return b && strcmp(a->job_id, b->job_id) == 0; }

static bool same_content(const ef_job *a, const ef_job *b) {
  char fa[65], fb[65];
  ef_job_fingerprint(a, fa);
  ef_job_fingerprint(b, fb);
  return strcmp(fa, fb) == 0;
}

/* Decisions on the document itself: what arrived against what runs, waits
 * and was recorded. Returns EF_DECISION_WAIT when the job may go on. */
static ef_job_decision check_delivery(const ef_job *job, const ef_status *parsed, const ef_job_facts *f,
                                      ef_status *st) {
  if (parsed && parsed->code != EF_OK) {
    /* A refusal never overwrites the real result of a job that ran. */
    bool known = job->job_id[0] && (f->has_final || same_id(job, f->running));
    ef_status_copy(st, parsed);
    return known ? EF_DECISION_REFUSE : EF_DECISION_REJECT;
  }
  if (same_id(job, f->running)) {
    if (same_content(job, f->running)) return EF_DECISION_IGNORE;
    ef_status_fail(st, EF_ERR_JOB_CONFLICT, "differs from the job with this job_id that is running");
    return EF_DECISION_REFUSE;
  }
  if (same_id(job, f->waiting) && !same_content(job, f->waiting)) {
    ef_status_fail(st, EF_ERR_JOB_CONFLICT, "differs from the waiting job with this job_id");
    return EF_DECISION_REFUSE;
  }
  if (f->has_final && f->final_fingerprint && f->final_fingerprint[0]) {
    char fp[65];
    ef_job_fingerprint(job, fp);
    if (strcmp(fp, f->final_fingerprint) != 0) {
      ef_status_fail(st, EF_ERR_JOB_CONFLICT, "differs from an earlier job with this job_id");
      return EF_DECISION_REFUSE;
    }
  }
  /* Finished before: never run twice, say again how it ended. A skipped
   * job is evaluated again: a wider rollout may select it now. */
  /* A result recorded for a document that never parsed (no fingerprint)
   * says nothing about this one: a malformed first copy must not poison the
   * job_id for the correct job sent after it (red-team finding). */
  bool never_parsed = !f->final_fingerprint || !f->final_fingerprint[0];
  if (f->has_final && !f->final_skipped && !never_parsed) return EF_DECISION_REPEAT;
  return EF_DECISION_WAIT;
}

/* Signed releases: with release keys configured, only what a trusted key
 * signed runs, and never below the secure_version floor. */
static ef_job_decision check_release(const ef_job *job, const ef_job_facts *f, ef_status *st) {
  bool keys = f->keyring && f->keyring->n_keys > 0;
  if (keys && !job->has_release) {
    ef_status_fail(st, EF_ERR_RELEASE_UNSIGNED,
                   "this device installs only releases signed by its release keys");
    return EF_DECISION_REJECT;
  }
  if (keys) {
    ef_manifest m;
    ef_job_manifest(job, &m);
    if (ef_keyring_verify(f->keyring, &m, st) != EF_OK) return EF_DECISION_REJECT;
  }
  if (job->has_release && f->has_floor && job->secure_version < f->secure_floor) {
    ef_status_fail(st, EF_ERR_SECURE_VERSION_ROLLBACK,
                   "secure_version %" PRIu32 " is below %" PRIu32 ", the highest this device installed",
                   job->secure_version, f->secure_floor);
    return EF_DECISION_REJECT;
  }
  return EF_DECISION_WAIT;
}

/* The policy when the job's turn comes: does it run on this device now? */
static ef_job_decision check_policy(const ef_job *job, const ef_job_facts *f, ef_status *st) {
  ef_job_decision d = check_release(job, f, st);
  if (d != EF_DECISION_WAIT) return d;
  if (job->chip_id >= 0 && f->chip_id >= 0 && job->chip_id != f->chip_id) {
    const char *mine = ef_chip_name((uint16_t)f->chip_id);
    ef_status_fail(st, EF_ERR_CHIP_MISMATCH, "job is for %s, this device has %s", job->chip,
                   mine ? mine : "an unknown chip");
    return EF_DECISION_REJECT;
  }
  if (ef_job_expired(job, f->now)) {
    char deadline[32];
    ef_rfc3339_format((int64_t)job->not_after * 1000, deadline);
    ef_status_fail(st, EF_ERR_EXPIRED, "not_after %s has passed", deadline);
    return EF_DECISION_REJECT;
  }
  if (!ef_canary_selected(ef_canary_bucket(job->job_id, f->device_id ? f->device_id : ""),
                          job->rollout_percent))
    return EF_DECISION_SKIP;
  if (ef_job_already_installed(job, f->installed_version, f->installed_sha256_hex))
    return EF_DECISION_INSTALLED;
  /* With release keys only the signed permission to downgrade counts. */
  ef_job eff = *job;
  if (f->keyring && f->keyring->n_keys > 0) eff.allow_downgrade = job->signed_downgrade;
  if (ef_job_check_downgrade(&eff, f->installed_version) != EF_OK) {
    ef_status_fail(st, EF_ERR_DOWNGRADE_REFUSED, "installed %s is newer than %s", f->installed_version,
                   job->version);
    return EF_DECISION_REJECT;
  }
  if (ef_job_check_driver(job, f->driver_release) != EF_OK) {
    ef_status_fail(st, EF_ERR_DRIVER_INCOMPATIBLE,
                   "the image carries %s, the host driver accepts %s (%s); with driver_update the job may "
                   "install it",
                   job->expect_fw_version, f->driver_release, ef_driver_source_name(f->driver_source));
    return EF_DECISION_REJECT;
  }
  return EF_DECISION_RUN;
}

ef_job_decision ef_job_decide(const ef_job *job, const ef_status *parsed, const ef_job_facts *f,
                              ef_status *st) {
  ef_job_decision d = check_delivery(job, parsed, f, st);
  if (d != EF_DECISION_WAIT || !f->starting) return d;
  return check_policy(job, f, st);
}
