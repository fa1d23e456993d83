/*
 * The job thread: one update from start to end. Download, hash, validate and
 * write (ef_ota_run over the download pipe), retry a download that broke for
 * a passing reason, wait for the reboot and check what came back, then record
 * the final state. It owns the ESP control device while it runs; everything
 * it shares with the agent thread is in struct ef_agent, under a->lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent_internal.h"
#include "espfleet/clock.h"
#include "espfleet/ctrl.h"
#include "espfleet/download.h"
#include "espfleet/log.h"
#include "espfleet/ota.h"

/* How often a control device held by another program is tried again. */
#define BUSY_RETRY_MS 250

static void enter_phase(ef_agent *a, ef_job_state st) {
  pthread_mutex_lock(&a->lock);
  a->state.state = st;
  a->state.bytes = atomic_load(&a->bytes);
  ef_journal_set_current(&a->journal, &a->job, a->attempt, st);
  ef_status why = EF_STATUS_INIT;
  if (!save_journal_locked(a, &why) && !a->journal_failed) {
    /* An update whose record cannot be kept is not activated: before OTA
     * end the job stops (ota_should_cancel) and ends failed with io_error.
     * After it, the final state says whether its record was saved. */
    a->journal_failed = true;
    ef_status_copy(&a->journal_failure, &why);
  }
  publish_state_locked(a);
  pthread_mutex_unlock(&a->lock);
}

static void ota_on_phase(void *arg, ef_ota_phase phase) {
  ef_agent *a = arg;
  if (phase == EF_OTA_PHASE_VERIFY) {
    /* Every byte is written: the 100 % document goes out now, not at the
     * next tick, so it always precedes the final state. */
    pthread_mutex_lock(&a->lock);
    progress_tick_locked(a);
    pthread_mutex_unlock(&a->lock);
    enter_phase(a, EF_STATE_VERIFYING);
  } else if (phase == EF_OTA_PHASE_ACTIVATE) {
    pthread_mutex_lock(&a->lock);
    bool unrecorded = a->journal_failed; /* the engine stops before OTA end */
    if (!unrecorded) a->activating = true;
    pthread_mutex_unlock(&a->lock);
    if (!unrecorded) enter_phase(a, EF_STATE_ACTIVATING);
  }
}

static void ota_on_progress(void *arg, uint64_t done, uint64_t total) {
  (void)total;
  atomic_store(&((ef_agent *)arg)->bytes, done);
}

static bool ota_should_cancel(void *arg) {
  ef_agent *a = arg;
  pthread_mutex_lock(&a->lock);
  bool c = a->cancel_requested || a->stop || (a->journal_failed && !a->past_ota_end);
  pthread_mutex_unlock(&a->lock);
  return c;
}

/* After OTA end a cancel has no effect; only a service stop ends the waits
 * (the boot check runs again at the next start). */
static bool stop_requested(void *arg) {
  ef_agent *a = arg;
  pthread_mutex_lock(&a->lock);
  bool s = a->stop;
  pthread_mutex_unlock(&a->lock);
  return s;
}

static bool pause_unless(ef_agent *a, int ms, ef_ctrl_cancel_cb until);

/* The control client asks @p until while it waits (an answer, the device,
 * the reboot), so a cancel or a stop takes effect within
 * EF_TRANSPORT_CANCEL_POLL_MS rather than after esp.begin_timeout_s. */
static ef_err open_ctrl(ef_agent *a, ef_ctrl_cancel_cb until, ef_ctrl **ctrl, ef_status *st) {
  ef_ctrl_options o;
  ef_ctrl_options_default(&o);
  o.device = a->cfg.esp.device;
  o.window = a->cfg.esp.window;
  o.ota_begin_timeout_ms = a->cfg.esp.begin_timeout_s * 1000;
  o.should_cancel = until;
  o.cancel_arg = a;
  return ef_ctrl_open(&o, ctrl, st);
}

/*
 * Opens the control device, waiting up to @p wait_s while another program
 * holds it: the driver lets one program at a time open it (a second open()
 * gets EBUSY), and an operator's `espfleet info` or a vendor tool usually
 * lets go within seconds, so failing the job at once would be wrong. Stops
 * waiting when @p until says so (the job is canceled or the daemon stops).
 * @return EF_OK; EF_ERR_ESP_BUSY when the device was still held at the
 *         deadline (@p st says for how long); EF_ERR_CANCELED; open_ctrl's
 *         errors (with its status).
 */
static ef_err open_ctrl_waiting(ef_agent *a, int wait_s, ef_ctrl_cancel_cb until, ef_ctrl **ctrl,
                                ef_status *st) {
  int64_t deadline = ef_mono_ms() + (int64_t)wait_s * 1000;
  bool said = false;
  for (;;) {
    ef_status why = EF_STATUS_INIT; /* this attempt's; a busy one is not the last word */
    ef_err err = open_ctrl(a, until, ctrl, &why);
    if (err == EF_OK) {
      if (said) ef_info("job %s: the control device is free again", a->job.job_id);
      return EF_OK;
    }
    *ctrl = NULL;
    if (err != EF_ERR_ESP_BUSY) return ef_status_copy(st, &why);
    if (!said) {
      ef_warn("job %s: control device busy: another program holds it (%s); waiting up to %d s", a->job.job_id,
              a->cfg.esp.device, wait_s);
      said = true;
    }
    int left = ef_ms_left(deadline);
    if (left == 0)
      return ef_status_fail(st, EF_ERR_ESP_BUSY, "another program held %.150s for %d s", a->cfg.esp.device,
                            wait_s);
    if (!pause_unless(a, left < BUSY_RETRY_MS ? left : BUSY_RETRY_MS, until))
      return ef_status_fail(st, EF_ERR_CANCELED, "while waiting for the control device");
  }
}

/* Errors that mean "this job does not fit this device": nothing was changed. */
static bool is_rejection(ef_err err) {
  return err == EF_ERR_CHIP_MISMATCH || err == EF_ERR_PROJECT_MISMATCH || err == EF_ERR_VERSION_MISMATCH ||
         err == EF_ERR_TOO_LARGE || err == EF_ERR_DOWNGRADE_REFUSED;
}

/* Starts fetching the job's image from byte @p offset into a new pipe
 * (a->pipe, a->dl) and points @p src at it. */
static ef_err start_download(ef_agent *a, uint64_t offset, ef_source *src, ef_status *st) {
  ef_pipe *pipe = NULL;
  ef_download *dl = NULL;
  ef_err err = ef_pipe_new(PIPE_CAPACITY, &pipe);
  if (err != EF_OK) return ef_status_fail(st, err, "cannot allocate the download pipe");
  ef_download_options d = {
      .url = a->job.url,
      .ca_file = a->cfg.download.ca_file[0] ? a->cfg.download.ca_file : NULL,
      .connect_timeout_s = a->cfg.download.connect_timeout_s,
      .stall_timeout_s = a->cfg.download.stall_timeout_s,
      .allow_http = a->cfg.download.allow_http,
      .max_bytes = a->job.size - offset,
      .offset = offset,
  };
  err = ef_download_start(&d, pipe, &dl, st);
  if (err != EF_OK) {
    ef_pipe_free(pipe);
    return err;
  }
  a->dl = dl;
  pthread_mutex_lock(&a->lock);
  a->pipe = pipe;
  bool cancel_early = a->cancel_requested || a->stop;
  pthread_mutex_unlock(&a->lock);
  if (cancel_early) ef_pipe_abort(pipe);
  ef_pipe_source(pipe, src);
  return EF_OK;
}

/* Ends the download of start_download (aborting it when still running: the
 * engine may stop first) and returns its outcome (in @p st too). */
static ef_err stop_download(ef_agent *a, ef_status *st) {
  pthread_mutex_lock(&a->lock);
  ef_pipe *pipe = a->pipe;
  a->pipe = NULL;
  pthread_mutex_unlock(&a->lock);
  if (!pipe) return EF_OK;
  ef_pipe_abort(pipe);
  ef_err err = ef_download_join(a->dl, st);
  a->dl = NULL;
  ef_pipe_free(pipe);
  return err;
}

/* Waits @p ms unless @p until says stop meanwhile. */
static bool pause_unless(ef_agent *a, int ms, ef_ctrl_cancel_cb until) {
  for (int64_t end = ef_mono_ms() + ms; ef_mono_ms() < end;) {
    if (until(a)) return false;
    ef_sleep_ms(50);
  }
  return !until(a);
}

/* Waits @p ms unless the job is canceled or the daemon stops meanwhile. */
static bool pause_unless_canceled(ef_agent *a, int ms) { return pause_unless(a, ms, ota_should_cancel); }

/*
 * Whether a failed transfer is worth another attempt: the download itself
 * failed, and the download module says the failure may pass (a 5xx, a
 * refused or reset connection, a timeout, a stall; not a 4xx, a TLS or
 * certificate failure, a refused redirect). An ESP that fails during the
 * transfer is not a reason to fetch the image again.
 */
static bool download_may_pass(const ef_status *st) {
  return (st->code == EF_ERR_DOWNLOAD_FAILED || st->code == EF_ERR_DOWNLOAD_NO_RANGE) && st->retryable;
}

/* Pause before the next attempt: 1 s, 2 s, 4 s, ... at most 32 s. */
static int retry_pause_ms(const ef_agent *a) { return 1000 << (a->attempt - 1 < 5 ? a->attempt - 1 : 5); }

/* Counts the next attempt of the running job and reports it. */
static void next_attempt(ef_agent *a) {
  pthread_mutex_lock(&a->lock);
  a->attempt++;
  a->state.attempt = a->attempt;
  pthread_mutex_unlock(&a->lock);
  enter_phase(a, EF_STATE_DOWNLOADING);
}

/* ef_ota_request.resume: the download broke mid-image; fetch the rest with
 * an HTTP Range request instead of starting over. Counts as an attempt. A
 * server that just answered a Range request without the range cannot resume:
 * the transfer fails, and retry_download starts it over. */
static bool ota_resume(void *arg, const ef_status *why, uint64_t offset, ef_source *src) {
  ef_agent *a = arg;
  if (!download_may_pass(why) || why->code == EF_ERR_DOWNLOAD_NO_RANGE) return false;
  if (offset == 0 || offset >= a->job.size) return false;
  if (a->attempt >= a->cfg.download.max_attempts || ota_should_cancel(a)) return false;
  (void)stop_download(a, NULL); /* its outcome is @p why */
  int pause_ms = retry_pause_ms(a);
  ef_warn("job %s: download broke after %" PRIu64 " bytes (%s); resuming in %d s (attempt %d of %d)",
          a->job.job_id, offset, why->detail, pause_ms / 1000, a->attempt + 1, a->cfg.download.max_attempts);
  if (!pause_unless_canceled(a, pause_ms)) return false;
  next_attempt(a);
  ef_status start = EF_STATUS_INIT;
  if (start_download(a, offset, src, &start) != EF_OK) {
    ef_warn("job %s: cannot resume the download: %s", a->job.job_id, start.detail);
    return false;
  }
  ef_info("job %s: resuming the download at byte %" PRIu64, a->job.job_id, offset);
  return true;
}

/* Download and flash. Returns the outcome (in @p st too); res->ota_end_sent
 * tells whether the ESP may now boot the new image. */
/* ef_ota_request.on_image, before OTA begin: the image's own anti-rollback
 * counter. It must be the one the release signed, and never below the
 * highest this device installed, whatever the job says (ESP-IDF's
 * anti-rollback does the same with eFuses at boot). */
static ef_err ota_on_image(void *arg, const ef_image_header *hdr, const ef_app_desc *desc, ef_status *st) {
  ef_agent *a = arg;
  (void)hdr;
  pthread_mutex_lock(&a->lock);
  uint32_t floor = ef_journal_floor(&a->journal);
  pthread_mutex_unlock(&a->lock);
  if (a->job.has_release && desc->secure_version != a->job.secure_version)
    return ef_status_fail(st, EF_ERR_VERSION_MISMATCH,
                          "image secure_version is %" PRIu32 ", the release signed %" PRIu32,
                          desc->secure_version, a->job.secure_version);
  if (desc->secure_version < floor)
    return ef_status_fail(st, EF_ERR_SECURE_VERSION_ROLLBACK,
                          "image secure_version %" PRIu32 " is below %" PRIu32
                          ", the highest this device installed",
                          desc->secure_version, floor);
  return EF_OK;
}

static ef_err transfer(ef_agent *a, ef_ctrl *ctrl, ef_ota_result *res, ef_status *st) {
  ef_source src;
  memset(res, 0, sizeof *res);
  ef_err err = start_download(a, 0, &src, st);
  if (err != EF_OK) return err;
  ef_ota_request req;
  ef_ota_request_init(&req);
  req.chip_id = a->cfg.esp.chip_id >= 0 ? a->cfg.esp.chip_id : a->job.chip_id;
  req.version = a->job.version;
  req.project = a->job.project[0] ? a->job.project : NULL;
  req.size = a->job.size;
  req.max_size = a->cfg.esp.max_image_size;
  req.sha256 = a->job.sha256;
  req.chunk_size = (size_t)a->cfg.esp.chunk_size;
  req.disable_bt = a->cfg.esp.disable_bt_during_ota;
  req.arg = a;
  req.on_phase = ota_on_phase;
  req.on_progress = ota_on_progress;
  req.should_cancel = ota_should_cancel;
  req.resume = ota_resume;
  req.on_image = ota_on_image;
  err = ef_ota_run(ctrl, &src, &req, res, st);
  ef_status dl = EF_STATUS_INIT;
  ef_err dl_err = stop_download(a, &dl);
  if (err == EF_ERR_CANCELED && dl_err != EF_OK && dl_err != EF_ERR_CANCELED && !ota_should_cancel(a)) {
    /* the pipe reported our own abort; the download's error is the cause */
    ef_status_clear(st);
    err = ef_status_copy(st, &dl);
  }
  return err;
}

/*
 * Waits for the ESP after OTA end and checks what came back.
 *
 * @p end_unknown: OTA end was sent but its answer was lost (the link broke
 * or the answer timed out), so the ESP may or may not have taken the image.
 * The firmware tells by restarting: it restarts about 5 s after answering a
 * successful OTA end (a timer in slave_control.c, req_ota_end_handler) and
 * never after a failed one. ef_ctrl_wait_boot counts only a restart (the
 * link going down, or ESPInit), so a restart within esp.boot_timeout_s means
 * the image was taken. GetFwVersion cannot tell: it reports the ESP-Hosted
 * release compiled into the firmware, which an application update usually
 * leaves unchanged.
 */
static ef_err verify_boot(ef_agent *a, ef_ctrl **ctrl, bool end_unknown, ef_status *st) {
  ef_err err = EF_OK;
  ef_fw_version fw;
  char fw_text[64] = "";
  ef_status why = EF_STATUS_INIT;
  if (!*ctrl) {
    err = open_ctrl_waiting(a, a->cfg.esp.boot_timeout_s, stop_requested, ctrl, &why);
    if (err == EF_ERR_ESP_BUSY || err == EF_ERR_CANCELED) return ef_status_copy(st, &why);
  }
  if (*ctrl) {
    ef_ctrl_set_cancel_cb(*ctrl, stop_requested, a); /* OTA end is past any cancel */
    err = ef_ctrl_wait_boot(*ctrl, a->cfg.esp.boot_timeout_s * 1000, &fw, &why);
    if (err == EF_ERR_CANCELED) return ef_status_copy(st, &why);
  }
  if (err == EF_OK) {
    /* ESPInit may have answered the wait; ask for the version explicitly. */
    if (ef_ctrl_get_fw_version(*ctrl, &fw, NULL) == EF_OK) ef_fw_version_format(&fw, fw_text, sizeof fw_text);
  }
  pthread_mutex_lock(&a->lock);
  if (fw_text[0]) copy_truncating(a->state.fw_version, sizeof a->state.fw_version, fw_text);
  pthread_mutex_unlock(&a->lock);
  if (err != EF_OK && end_unknown)
    return ef_status_fail(
        st, EF_ERR_BOOT_VERIFY_FAILED,
        "OTA end was not answered and the ESP did not restart within %d s: it did not take the "
        "image (the firmware restarts only after a successful OTA end)",
        a->cfg.esp.boot_timeout_s);
  if (err != EF_OK) {
    ef_info("job %s: boot check: %s", a->job.job_id, why.detail);
    return ef_status_fail(st, EF_ERR_BOOT_VERIFY_FAILED,
                          "the ESP did not come back within %d s after OTA end", a->cfg.esp.boot_timeout_s);
  }
  if (end_unknown)
    ef_info("job %s: the ESP restarted after the unanswered OTA end: it took the image", a->job.job_id);
  if (a->job.expect_fw_version[0] && strcmp(a->job.expect_fw_version, fw_text) != 0)
    return ef_status_fail(st, EF_ERR_BOOT_VERIFY_FAILED, "ESP reports firmware %s, expected %s",
                          fw_text[0] ? fw_text : "(none)", a->job.expect_fw_version);
  return EF_OK;
}

/* A download that broke for a reason that may pass (download_may_pass) is
 * tried again, from the start, with a growing pause, until
 * download.max_attempts. Returns true when the caller should transfer
 * again. */
static bool retry_download(ef_agent *a, const ef_status *st, const ef_ota_result *res) {
  if (!download_may_pass(st) || res->ota_end_sent) return false;
  if (a->attempt >= a->cfg.download.max_attempts || ota_should_cancel(a)) return false;
  int pause_ms = retry_pause_ms(a);
  ef_warn("job %s: download failed (%s); attempt %d of %d in %d s", a->job.job_id, st->detail, a->attempt + 1,
          a->cfg.download.max_attempts, pause_ms / 1000);
  if (!pause_unless_canceled(a, pause_ms)) return false;
  pthread_mutex_lock(&a->lock);
  atomic_store(&a->bytes, 0);
  ef_progress_limiter_init(&a->progress);
  pthread_mutex_unlock(&a->lock);
  next_attempt(a);
  return true;
}

/* No reboot comes to reset it after a failed update: whatever the engine
 * turned off (even for an OTA begin that was refused or timed out) goes back
 * on. A canceled job still does it (a stop does not wait: the job resumes at
 * the next start). */
static void restore_bluetooth(ef_agent *a, ef_ctrl *ctrl, bool bt_off) {
  ef_status bt = EF_STATUS_INIT;
  ef_ctrl_set_cancel_cb(ctrl, stop_requested, a);
  if (bt_off && ef_ctrl_feature(ctrl, EF_FEATURE_BLUETOOTH, true, &bt) != EF_OK)
    ef_warn("could not re-enable Bluetooth after the failed update: %s", bt.detail);
}

/* A successful update: the journal's installed app and anti-rollback floor
 * (it rises with what was installed, never falls), and the state's app. */
static void record_install(ef_agent *a, const ef_ota_result *res) {
  ef_app_info app;
  pthread_mutex_lock(&a->lock);
  memset(&app, 0, sizeof app);
  copy_truncating(app.version, sizeof app.version, a->job.version);
  copy_truncating(app.project, sizeof app.project, res->desc_known ? res->app.project_name : a->job.project);
  copy_truncating(app.sha256_hex, sizeof app.sha256_hex, a->job.sha256_hex);
  ef_journal_set_installed(&a->journal, &app);
  if (res->desc_known)
    ef_journal_set_floor(&a->journal, res->app.secure_version);
  else if (a->job.has_release)
    ef_journal_set_floor(&a->journal, a->job.secure_version);
  a->state.app = app;
  pthread_mutex_unlock(&a->lock);
}

static void report_outcome(ef_agent *a, ef_job_state final, ef_err err, ef_status *st, bool record);

void *ef_agent_job_main(void *arg) {
  ef_agent *a = arg;
  ef_ctrl *ctrl = NULL;
  ef_ota_result res;
  ef_status st = EF_STATUS_INIT; /* the outcome reported in the final state */
  ef_err err = EF_OK;
  ef_job_state final = EF_STATE_FAILED;
  bool record = true;

  memset(&res, 0, sizeof res);
  bool end_unknown = false;
  if (!a->verify_only) {
    /* Waiting for a busy device counts against the time OTA begin may take:
     * nothing has been sent to the ESP yet. */
    err = open_ctrl_waiting(a, a->cfg.esp.begin_timeout_s, ota_should_cancel, &ctrl, &st);
    if (err == EF_ERR_CANCELED) {
      pthread_mutex_lock(&a->lock);
      bool stopping = a->stop;
      pthread_mutex_unlock(&a->lock);
      if (stopping) record = false; /* resumes at the next start */
      final = EF_STATE_CANCELED;
      err = EF_OK;
      ef_status_clear(&st);
      goto done;
    }
    if (err != EF_OK) goto done;
    bool bt_off = false; /* Bluetooth turned off by any attempt */
    for (;;) {
      ef_status_clear(&st); /* each attempt reports its own outcome */
      err = transfer(a, ctrl, &res, &st);
      bt_off = bt_off || res.bt_disabled;
      if (err == EF_OK || !retry_download(a, &st, &res)) break;
    }
    if (err != EF_OK) {
      pthread_mutex_lock(&a->lock);
      bool stopping = a->stop, canceled = a->cancel_requested;
      pthread_mutex_unlock(&a->lock);
      if (res.ota_end_sent && (err == EF_ERR_ESP_UNAVAILABLE || err == EF_ERR_ESP_TIMEOUT)) {
        /* OTA end went out but its answer did not come back (the ESP reset
         * or the link broke): the ESP may be booting the new image. Find out
         * instead of reporting a failure that may not be one. */
        ef_warn("job %s: no answer to OTA end (%s: %s); waiting to see what the ESP boots", a->job.job_id,
                ef_err_name(err), st.detail);
        end_unknown = true;
        err = EF_OK;
        ef_status_clear(&st);
      } else if (res.ota_end_sent) {
        final = EF_STATE_FAILED;
      } else if (stopping) {
        /* Service stop: the job stays in the journal and resumes at start. */
        record = false;
      } else if (canceled) {
        final = EF_STATE_CANCELED;
        err = EF_OK;
        ef_status_clear(&st);
      } else if (!res.ota_begin_sent && is_rejection(err)) {
        final = EF_STATE_REJECTED;
      }
      if (!end_unknown) {
        restore_bluetooth(a, ctrl, bt_off);
        goto done;
      }
    }
  }
  pthread_mutex_lock(&a->lock);
  a->past_ota_end = true;
  pthread_mutex_unlock(&a->lock);
  enter_phase(a, EF_STATE_REBOOTING);
  err = verify_boot(a, &ctrl, end_unknown, &st);
  if (err == EF_ERR_CANCELED) {
    /* Only a service stop interrupts the boot check (OTA end is past any
     * cancel): the journal keeps the job in rebooting, and the check runs
     * again at the next start. */
    record = false;
    goto done;
  }
  if (err != EF_OK) goto done;
  final = EF_STATE_SUCCEEDED;
  record_install(a, &res);

done:
  ef_ctrl_close(ctrl);
  report_outcome(a, final, err, &st, record);
  return NULL;
}

/* The end of ef_agent_job_main: the final state, unless a service stop
 * left the job to resume at the next start. */
static void report_outcome(ef_agent *a, ef_job_state final, ef_err err, ef_status *st, bool record) {
  pthread_mutex_lock(&a->lock);
  a->state.bytes = atomic_load(&a->bytes);
  if (record && a->journal_failed && !a->past_ota_end) {
    /* whatever stopped it (the failed save, through ota_should_cancel) */
    final = EF_STATE_FAILED;
    err = EF_ERR_IO;
    ef_status_clear(st);
    ef_status_fail(st, EF_ERR_IO, "stopped before OTA end: %s", a->journal_failure.detail);
  }
  if (record) {
    ef_journal_clear_current(&a->journal);
    a->job_running = false; /* report as the state itself, not in passing */
    report_final_locked(a, a->job.job_id, a->job_fingerprint, final, err, st->detail, a->attempt,
                        REPORT_RECORD);
    a->job_running = true;
  } else {
    ef_info("job %s: stopped before it finished; it resumes at the next start", a->job.job_id);
  }
  a->job_done = true;
  pthread_cond_signal(&a->wake);
  pthread_mutex_unlock(&a->lock);
}
