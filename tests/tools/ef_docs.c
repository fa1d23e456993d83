/*
 * ef_docs: writes a sample of every document the espfleet library writes,
 * one per line, as
 *   <schema file name> <compact JSON>
 * for tests/integration/test_schemas.sh, which validates each line against
 * docs/schema/<schema file name>. The samples walk the writers' cases: every
 * state (with and without error, app, driver release, groups), every error
 * code in a failed state, the last will and the document of a clean stop,
 * progress, cancel, announce, jobs (ef_job_to_json of parsed jobs, signed and
 * unsigned), release manifests, rollouts (ef_rollout_spec_json of parsed rollouts), rollout
 * control, status and devices.
 *
 * Exit status 0; 1 when a writer returned NULL or a sample did not parse
 * (said on stderr); 2 for bad usage.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/error.h"
#include "espfleet/job.h"
#include "espfleet/protocol.h"
#include "espfleet/release.h"
#include "espfleet/report.h"
#include "espfleet/rollout_doc.h"
#include "espfleet/status.h"

#define TS_MS  1737367200120LL /* 2025-01-20T10:00:00.120Z */
#define DEVICE "gw-0042"
#define SHA_A  "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
#define SHA_B  "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
#define SIG    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="
#define ID64   "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.:"
#define WEIRD  "quote \" backslash \\ tab \t newline \n bell \a unicode \xc3\xa9\xe2\x82\xac"

static int problems;

static void problem(const char *what, const char *detail) {
  fprintf(stderr, "ef_docs: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  problems++;
}

/* Drops the whitespace outside strings: manifests are written indented, for people. */
static void compact(char *json) {
  char *w = json;
  bool in_string = false, escaped = false;
  for (const char *r = json; *r; r++) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (*r == '\\')
        escaped = true;
      else if (*r == '"')
        in_string = false;
    } else if (*r == '"') {
      in_string = true;
    } else if (*r == ' ' || *r == '\n' || *r == '\r' || *r == '\t') {
      continue;
    }
    *w++ = *r;
  }
  *w = '\0';
}

/* Prints "<schema> <json>" and frees @p json; a NULL @p json is a writer that failed. */
static void emit(const char *schema, char *json, const char *what) {
  if (!json) {
    problem(what, "the writer returned NULL");
    return;
  }
  if (strchr(json, '\n')) problem(what, "the document spans several lines");
  printf("%s %s\n", schema, json);
  free(json);
}

/* ---- state, per-job result, will, progress ---- */

/* The first @p n of 16 groups: odd characters, the longest id, then group-i. */
static void set_groups(ef_state *s, size_t n) {
  static const char *const names[] = {"site-a", "canary", "a.b:c-d_9", ID64};
  s->n_groups = 0;
  for (size_t i = 0; i < n && i < EF_STATE_MAX_GROUPS; i++) {
    if (i < sizeof names / sizeof names[0])
      snprintf(s->groups[i], sizeof s->groups[0], "%s", names[i]);
    else
      snprintf(s->groups[i], sizeof s->groups[0], "group-%zu", i);
    s->n_groups++;
  }
}

static void emit_state(const ef_state *s, const char *what) {
  char *json = ef_report_state_json(s);
  /* A job's final state is also its result on P/devices/ID/jobs/JOB_ID. */
  if (json && s->online && ef_state_is_final(s->state) && s->job_id[0]) {
    char *copy = strdup(json);
    emit("job-result.schema.json", copy, what);
  }
  emit("state.schema.json", json, what);
}

/* Three variants of every state: bare (no job for idle, nothing known),
 * everything known with an error set (the writer decides where it shows),
 * and an app known only by its version with an error without detail. */
static void state_samples(void) {
  for (int st = 0; st < EF_STATE__COUNT; st++) {
    ef_state s;
    char what[64];
    ef_job_state state = (ef_job_state)st;

    ef_state_init(&s, DEVICE);
    s.state = state;
    s.ts_ms = TS_MS;
    if (state != EF_STATE_IDLE) {
      snprintf(s.job_id, sizeof s.job_id, "job-1");
      s.total = 307200;
    }
    snprintf(what, sizeof what, "state %s, bare", ef_state_name(state));
    emit_state(&s, what);

    ef_state_init(&s, DEVICE);
    s.state = state;
    s.ts_ms = TS_MS + 1;
    snprintf(s.job_id, sizeof s.job_id, "hosted-1.0.4-rollout-7");
    snprintf(s.fw_version, sizeof s.fw_version, "FG-1.0.3.0.0");
    snprintf(s.driver_release, sizeof s.driver_release, "FG-1.0.3.0.0");
    s.driver_source = EF_DRIVER_SOURCE_CONFIG;
    s.signed_releases = true;
    snprintf(s.app.version, sizeof s.app.version, "1.0.3");
    snprintf(s.app.project, sizeof s.app.project, "network_adapter");
    snprintf(s.app.sha256_hex, sizeof s.app.sha256_hex, "%s", SHA_A);
    set_groups(&s, 3);
    s.bytes = 524288;
    s.total = 1048576;
    s.attempt = 2;
    if (state == EF_STATE_CANCELED) {
      s.error = EF_ERR_JOB_REPLACED;
      snprintf(s.detail, sizeof s.detail, "replaced by job hosted-1.0.5 while it waited");
    } else {
      s.error = EF_ERR_HASH_MISMATCH;
      snprintf(s.detail, sizeof s.detail, "expected 9f86d081..., got 2c26b46b... " WEIRD);
    }
    snprintf(what, sizeof what, "state %s, everything known, error set", ef_state_name(state));
    emit_state(&s, what);

    ef_state_init(&s, ID64);
    s.state = state;
    s.ts_ms = 0;
    snprintf(s.job_id, sizeof s.job_id, "%s", ID64);
    snprintf(s.fw_version, sizeof s.fw_version, "%s", WEIRD);
    snprintf(s.driver_release, sizeof s.driver_release, "Custom_Name-4294967295.0.0.0.10");
    s.driver_source = EF_DRIVER_SOURCE_KERNEL_LOG;
    snprintf(s.app.version, sizeof s.app.version, "12345678901234567890123456789012");
    set_groups(&s, 16);
    s.error = state == EF_STATE_CANCELED ? EF_ERR_CANCELED : EF_ERR_BAD_JOB;
    s.attempt = 1;
    snprintf(what, sizeof what, "state %s, app version only, 16 groups", ef_state_name(state));
    emit_state(&s, what);
  }

  /* failed and rejected without a code (the writer reports internal) */
  for (int i = 0; i < 2; i++) {
    ef_state s;
    ef_state_init(&s, DEVICE);
    s.state = i ? EF_STATE_REJECTED : EF_STATE_FAILED;
    snprintf(s.job_id, sizeof s.job_id, "job-2");
    s.ts_ms = TS_MS;
    emit_state(&s, i ? "rejected without a code" : "failed without a code");
  }

  /* every error code in a failed state */
  for (int e = 1; e < EF_ERR__COUNT; e++) {
    ef_state s;
    char what[96];
    ef_state_init(&s, DEVICE);
    s.state = EF_STATE_FAILED;
    snprintf(s.job_id, sizeof s.job_id, "job-3");
    s.error = (ef_err)e;
    snprintf(s.detail, sizeof s.detail, "detail of %s", ef_err_name((ef_err)e));
    s.ts_ms = TS_MS;
    s.attempt = 1;
    snprintf(what, sizeof what, "failed with %s", ef_err_name((ef_err)e));
    emit_state(&s, what);
  }

  /* a clean stop publishes the full document once more with online false */
  ef_state s;
  ef_state_init(&s, DEVICE);
  s.state = EF_STATE_SUCCEEDED;
  snprintf(s.job_id, sizeof s.job_id, "job-3");
  set_groups(&s, 1);
  s.online = false;
  s.ts_ms = TS_MS;
  emit_state(&s, "clean stop (online false)");

  emit("state.schema.json", ef_report_offline_json(DEVICE), "last will");
  emit("state.schema.json", ef_report_offline_json(ID64), "last will, 64-character id");
}

static void progress_samples(void) {
  static const struct {
    uint64_t bytes, total;
  } p[] = {{0, 0},
           {0, 1048576},
           {524288, 1048576},
           {1048575, 1048576},
           {1048576, 1048576},
           {2000000, 1048576},
           {7, 0},
           {UINT64_C(9007199254740992), UINT64_C(9007199254740992)}};
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) {
    char what[64];
    snprintf(what, sizeof what, "progress %" PRIu64 "/%" PRIu64, p[i].bytes, p[i].total);
    emit("progress.schema.json", ef_report_progress_json(DEVICE, "job-1", p[i].bytes, p[i].total, TS_MS),
         what);
  }
}

/* ---- cancel, announce ---- */

static void command_samples(void) {
  emit("cancel.schema.json", ef_cancel_json("job-1"), "cancel");
  emit("cancel.schema.json", ef_cancel_json(ID64), "cancel, 64-character job_id");
  for (int scope = EF_ANNOUNCE_ALL; scope <= EF_ANNOUNCE_ROLLOUTS; scope++) {
    ef_announce a = {.scope = (ef_announce_scope)scope};
    emit("announce.schema.json", ef_announce_json(&a), "announce without job_id");
    snprintf(a.job_id, sizeof a.job_id, "hosted-1.0.4-rollout-7");
    emit("announce.schema.json", ef_announce_json(&a), "announce with job_id");
  }
}

/* ---- job ---- */

static const char *const JOBS[] = {
    /* the minimum */
    "{\"job_id\":\"job-1\",\"url\":\"https://fw.example.com/a.bin\",\"sha256\":\"" SHA_A
    "\","
    "\"size\":307200,\"version\":\"1.1.0\"}",
    /* every unsigned member, unknown keys (dropped), a chip written the long way, an offset */
    "{\"job_id\":\"hosted-1.0.4-rollout-7\",\"url\":\"https://user:pw@fw.example.com:8443/a.bin?token=x\","
    "\"sha256\":\"" SHA_B
    "\",\"size\":1048576,\"version\":\"1.0.4\",\"project\":\"network_adapter\","
    "\"chip\":\"ESP32-S3\",\"allow_downgrade\":true,\"rollout\":{\"percent\":0},"
    "\"not_after\":\"2030-01-31T00:00:00.5+02:00\",\"expect_fw_version\":\"FG-1.0.4.0.0\","
    "\"driver_update\":true,\"controller\":{\"anything\":1}}",
    /* signed */
    "{\"job_id\":\"signed-1\",\"url\":\"https://fw.example.com/s.bin\",\"sha256\":\"" SHA_A
    "\","
    "\"size\":4096,\"version\":\"2.0.0\",\"project\":\"demo\",\"chip\":\"esp32c6\",\"rollout\":{\"percent\":"
    "100},"
    "\"release\":{\"key_id\":\"rel-2026\",\"signature\":\"" SIG
    "\",\"secure_version\":4294967295,"
    "\"allow_downgrade\":true}}",
    /* signed without allow_downgrade, the largest size, http, a deadline beyond 9999 UTC */
    "{\"job_id\":\"" ID64 "\",\"url\":\"http://10.0.0.1/x\",\"sha256\":\"" SHA_A
    "\","
    "\"size\":9007199254740992,\"version\":\"v\",\"project\":\"p\",\"chip\":\"esp32\","
    "\"not_after\":\"9999-12-31T23:59:59-01:00\","
    "\"release\":{\"key_id\":\"k\",\"signature\":\"" SIG "\",\"secure_version\":0}}",
};

static void job_samples(void) {
  ef_job_limits lim;
  ef_job_limits_default(&lim);
  lim.max_image_size = UINT64_MAX;
  lim.allow_http = true;
  for (size_t i = 0; i < sizeof JOBS / sizeof JOBS[0]; i++) {
    ef_job job;
    ef_status st = EF_STATUS_INIT;
    char what[48];
    snprintf(what, sizeof what, "job sample %zu", i);
    if (ef_job_parse(JOBS[i], strlen(JOBS[i]), &lim, &job, &st) != EF_OK) {
      problem(what, st.detail);
      continue;
    }
    emit("job.schema.json", ef_job_to_json(&job), what);
    /* the manifest a signed job stands for (an image of at most 4 GiB, as espfleet sign makes) */
    if (job.has_release && job.size <= UINT32_MAX) {
      ef_manifest m;
      ef_job_manifest(&job, &m);
      char *json = ef_manifest_to_json(&m);
      if (json) compact(json);
      emit("manifest.schema.json", json, "the manifest of a signed job");
    }
  }
}

static const char *const MANIFESTS[] = {
    "{\"format\":\"espfleet-release-v1\",\"key_id\":\"test-2026\",\"signature\":\"" SIG
    "\","
    "\"sha256\":\"" SHA_A
    "\",\"size\":307200,\"version\":\"1.2.3\",\"project\":\"demo\","
    "\"chip\":\"esp32s3\",\"secure_version\":2,\"hosted_release\":\"FG-1.0.3.0.0\","
    "\"driver_update\":true,\"allow_downgrade\":false}",
    "{\"format\":\"espfleet-release-v1\",\"key_id\":\"k\",\"signature\":\"" SIG
    "\","
    "\"sha256\":\"" SHA_A
    "\",\"size\":4294967295,\"version\":\"~ printable ~\",\"project\":\"p\","
    "\"chip\":\"esp32p4\",\"secure_version\":4294967295,\"driver_update\":false,\"allow_downgrade\":true}",
};

static void manifest_samples(void) {
  for (size_t i = 0; i < sizeof MANIFESTS / sizeof MANIFESTS[0]; i++) {
    ef_manifest m;
    ef_status st = EF_STATUS_INIT;
    char what[48];
    snprintf(what, sizeof what, "manifest sample %zu", i);
    if (ef_manifest_parse(MANIFESTS[i], strlen(MANIFESTS[i]), &m, &st) != EF_OK) {
      problem(what, st.detail);
      continue;
    }
    char *json = ef_manifest_to_json(&m);
    if (json) compact(json);
    emit("manifest.schema.json", json, what);
  }
}

/* ---- rollout, control, status, devices ---- */

static const char *const ROLLOUTS[] = {
    /* everything: groups and devices, count and percent steps, windows (one wrapping, one all day) */
    "{\"rollout_id\":\"hosted-1.0.4\",\"job\":{\"job_id\":\"hosted-1.0.4-rollout-7\","
    "\"url\":\"https://fw.example.com/a.bin\",\"sha256\":\"" SHA_B
    "\",\"size\":1048576,\"version\":\"1.0.4\","
    "\"project\":\"network_adapter\",\"chip\":\"esp32\",\"expect_fw_version\":\"FG-1.0.4.0.0\","
    "\"not_after\":\"2030-01-31T00:00:00Z\"},"
    "\"target\":{\"groups\":[\"site-a\",\"site-b\"],\"devices\":[\"gw-0042\",\"gw-0043\"]},"
    "\"steps\":[{\"count\":1},{\"percent\":10},{\"count\":50},{\"percent\":50},{\"percent\":100}],"
    "\"policy\":{\"success_percent\":95,\"abort\":{\"failure_percent\":5,\"min_finished\":3},\"soak_s\":600,"
    "\"in_progress_timeout_s\":3600,\"offline_timeout_s\":900,"
    "\"windows\":[{\"start\":\"22:00\",\"end\":\"06:00\"},{\"start\":\"00:00\",\"end\":\"00:00\"},"
    "{\"start\":\"09:05\",\"end\":\"23:59\"}]}}",
    /* the least: devices only, no steps, no policy (the writer fills in the defaults) */
    "{\"rollout_id\":\"r2\",\"job\":{\"job_id\":\"j2\",\"url\":\"https://fw.example.com/b.bin\","
    "\"sha256\":\"" SHA_A
    "\",\"size\":1,\"version\":\"1\"},\"target\":{\"devices\":[\"gw-1\"],\"groups\":[]}}",
    /* groups only, a signed job over http, a policy given in part */
    "{\"rollout_id\":\"" ID64
    "\",\"job\":{\"job_id\":\"signed-1\",\"url\":\"http://10.0.0.1/s.bin\","
    "\"sha256\":\"" SHA_A
    "\",\"size\":4096,\"version\":\"2.0.0\",\"project\":\"demo\",\"chip\":\"esp32s3\","
    "\"release\":{\"key_id\":\"rel-2026\",\"signature\":\"" SIG
    "\",\"secure_version\":3}},"
    "\"target\":{\"groups\":[\"canary\"]},\"steps\":[{\"percent\":1},{\"percent\":100}],"
    "\"policy\":{\"abort\":{\"min_finished\":10},\"windows\":[]}}",
};

static void rollout_samples(void) {
  for (size_t i = 0; i < sizeof ROLLOUTS / sizeof ROLLOUTS[0]; i++) {
    ef_rollout_spec spec, again;
    ef_status st = EF_STATUS_INIT;
    char what[48];
    snprintf(what, sizeof what, "rollout sample %zu", i);
    if (ef_rollout_spec_parse(ROLLOUTS[i], strlen(ROLLOUTS[i]), &spec, &st) != EF_OK) {
      problem(what, st.detail);
      continue;
    }
    char *json = ef_rollout_spec_json(&spec);
    /* what the writer wrote must also read back */
    if (json && ef_rollout_spec_parse(json, strlen(json), &again, &st) != EF_OK) {
      char msg[96];
      snprintf(msg, sizeof msg, "%s as written does not parse again", what);
      problem(msg, st.detail);
    } else if (json) {
      ef_rollout_spec_free(&again);
    }
    emit("rollout.schema.json", json, what);
    /* the job the controller sends the devices */
    emit("job.schema.json", spec.job_json ? strdup(spec.job_json) : NULL, "a rollout's job_json");
    ef_rollout_spec_free(&spec);
  }
}

static void control_samples(void) {
  for (int a = EF_ROLLOUT_PAUSE; a <= EF_ROLLOUT_DEVICES; a++) {
    emit("rollout-control.schema.json", ef_rollout_control_json((ef_rollout_action)a, NULL), "control");
    emit("rollout-control.schema.json", ef_rollout_control_json((ef_rollout_action)a, ""),
         "control, reason \"\"");
    emit("rollout-control.schema.json", ef_rollout_control_json((ef_rollout_action)a, "site-b fails " WEIRD),
         "control with reason");
  }
}

static void status_samples(void) {
  for (int rs = 0; rs < EF_RS__COUNT; rs++) {
    ef_rollout_status s;
    char what[48];
    memset(&s, 0, sizeof s);
    snprintf(s.rollout_id, sizeof s.rollout_id, "hosted-1.0.4");
    s.state = (ef_rollout_state)rs;
    s.created_ms = TS_MS;
    s.updated_ms = TS_MS + 60000;
    if (s.state == EF_RS_INVALID) {
      s.step = -1;
      snprintf(s.reason, sizeof s.reason, "steps: the last step must be {\"percent\": 100}");
    } else {
      snprintf(s.job_id, sizeof s.job_id, "hosted-1.0.4-rollout-7");
      s.n_steps = 4;
      s.step = s.state == EF_RS_PENDING ? -1 : s.state == EF_RS_COMPLETED ? 3 : 1;
      s.devices = 200;
      s.step_devices = s.step < 0 ? 0 : 20;
      for (int c = 0; c < EF_RD__COUNT; c++) s.counts[c] = c * 3;
      if (s.state == EF_RS_HALTED || s.state == EF_RS_PAUSED || s.state == EF_RS_ABORTED)
        snprintf(s.reason, sizeof s.reason, "%s", "2 of 20 devices failed " WEIRD);
    }
    snprintf(what, sizeof what, "rollout status %s", ef_rollout_state_name(s.state));
    emit("rollout-status.schema.json", ef_rollout_status_json(&s), what);
  }
}

static void devices_samples(void) {
  ef_rollout_device_row rows[EF_RD__COUNT];
  memset(rows, 0, sizeof rows);
  for (int i = 0; i < EF_RD__COUNT; i++) {
    ef_rollout_device_row *r = &rows[i];
    snprintf(r->device_id, sizeof r->device_id, "gw-%04d", i);
    r->state = (ef_rollout_device_state)i;
    r->step = r->state == EF_RD_WAITING ? -1 : i % 3;
    r->updated_ms = TS_MS + i;
    switch (r->state) {
    case EF_RD_RUNNING: snprintf(r->job_state, sizeof r->job_state, "downloading"); break;
    case EF_RD_SUCCEEDED: snprintf(r->job_state, sizeof r->job_state, "succeeded"); break;
    case EF_RD_FAILED:
      snprintf(r->job_state, sizeof r->job_state, "failed");
      snprintf(r->error, sizeof r->error, "hash_mismatch: expected 9f86d081..., got 2c26b46b...");
      break;
    case EF_RD_TIMED_OUT:
      snprintf(r->job_state, sizeof r->job_state, "verifying");
      snprintf(r->error, sizeof r->error, "not final 3600 s after its job was sent");
      break;
    case EF_RD_OFFLINE: snprintf(r->error, sizeof r->error, "offline for 600 s " WEIRD); break;
    default: break;
    }
  }
  emit("rollout-devices.schema.json", ef_rollout_devices_json("hosted-1.0.4", rows, EF_RD__COUNT),
       "rollout devices");
  emit("rollout-devices.schema.json", ef_rollout_devices_json("hosted-1.0.4", rows, 0),
       "rollout devices, none");
}

int main(int argc, char **argv) {
  (void)argv;
  if (argc != 1) {
    fprintf(stderr,
            "usage: ef_docs\nwrites \"<schema file> <document>\" lines for every document espfleet writes\n");
    return 2;
  }
  state_samples();
  progress_samples();
  command_samples();
  job_samples();
  manifest_samples();
  rollout_samples();
  control_samples();
  status_samples();
  devices_samples();
  return problems ? 1 : 0;
}
