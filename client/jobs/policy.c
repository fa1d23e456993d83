/* The job policy: canary gate, expiry, "already installed", downgrade and
 * driver compatibility.
 * Pure functions: the caller passes the time and the installed app. */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "espfleet/image.h"
#include "espfleet/job.h"

uint32_t ef_canary_bucket(const char *job_id, const char *device_id) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  /* Hash "job_id/device_id" so each job draws a different, stable sample of
   * the fleet: the same device is not always the first canary. */
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) return 0;
  uint32_t bucket = 0;
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
      EVP_DigestUpdate(ctx, job_id, strlen(job_id)) == 1 && EVP_DigestUpdate(ctx, "/", 1) == 1 &&
      EVP_DigestUpdate(ctx, device_id, strlen(device_id)) == 1 &&
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

ef_job_decision ef_job_decide(const ef_job *job, const char *device_id, const char *installed_version,
                              const char *installed_sha256_hex, const char *driver_release, time_t now,
                              ef_err *err) {
  ef_err e = EF_OK;
  ef_job_decision d = EF_DECISION_RUN;
  if (ef_job_expired(job, now)) {
    e = EF_ERR_EXPIRED;
    d = EF_DECISION_REJECT;
  } else if (!ef_canary_selected(ef_canary_bucket(job->job_id, device_id), job->rollout_percent)) {
    d = EF_DECISION_SKIP;
  } else if (ef_job_already_installed(job, installed_version, installed_sha256_hex)) {
    d = EF_DECISION_INSTALLED;
  } else if ((e = ef_job_check_downgrade(job, installed_version)) != EF_OK) {
    d = EF_DECISION_REJECT;
  } else if ((e = ef_job_check_driver(job, driver_release)) != EF_OK) {
    d = EF_DECISION_REJECT;
  }
  if (err) *err = e;
  return d;
}
