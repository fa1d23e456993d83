/**
 * @file config.h
 * @brief espfleetd's JSON configuration (docs/configuration.md).
 *
 * Loading never stops at the first mistake: every problem is collected as one
 * line that starts with the key ("esp.window: must be 1..8"), so
 * `espfleetd --check-config` can list them all at once. Unknown keys are
 * problems too, because a misspelt key would otherwise silently fall back to
 * its default.
 */
#ifndef ESPFLEET_CONFIG_H
#define ESPFLEET_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/ctrl.h"
#include "espfleet/download.h"
#include "espfleet/driver.h"
#include "espfleet/error.h"
#include "espfleet/job.h"
#include "espfleet/mqtt.h"
#include "espfleet/release.h"
#include "espfleet/report.h"
#include "espfleet/status.h"
#include "espfleet/transport.h"

#define EF_CONFIG_PATH_MAX     1024
#define EF_CONFIG_STR_MAX      256
#define EF_CONFIG_MAX_GROUPS   32
#define EF_CONFIG_MAX_PROBLEMS 64
#define EF_CONFIG_PROBLEM_LEN  256
#define EF_CONFIG_MAX_BYTES    (256 * 1024)

/* Defaults (documented in docs/configuration.md). Where a library module
 * has the default, the configuration takes it from there, so each value is
 * defined once. */
#define EF_CONFIG_DEFAULT_TOPIC_PREFIX EF_DEFAULT_TOPIC_PREFIX
#define EF_CONFIG_DEFAULT_KEEPALIVE_S  EF_MQTT_DEFAULT_KEEPALIVE_S
#define EF_CONFIG_DEFAULT_DEVICE       EF_DEFAULT_DEVICE
/* The control client's defaults, the measured best legal setting
 * (docs/performance.md): the daemon and the CLI flash alike. */
#define EF_CONFIG_DEFAULT_CHUNK_SIZE     EF_CTRL_DEFAULT_CHUNK
#define EF_CONFIG_DEFAULT_WINDOW         EF_CTRL_DEFAULT_WINDOW
#define EF_CONFIG_DEFAULT_MAX_IMAGE_SIZE EF_JOB_DEFAULT_MAX_IMAGE_SIZE
/* The daemon waits longer for the reboot than the CLI does (a fleet device
 * may boot slowly; someone at the CLI wants an answer). */
#define EF_CONFIG_DEFAULT_BOOT_TIMEOUT_S    60
#define EF_CONFIG_DEFAULT_BEGIN_TIMEOUT_S   (EF_CTRL_DEFAULT_OTA_BEGIN_TIMEOUT_MS / 1000)
#define EF_CONFIG_DEFAULT_CONNECT_TIMEOUT_S EF_DOWNLOAD_DEFAULT_CONNECT_TIMEOUT_S
#define EF_CONFIG_DEFAULT_STALL_TIMEOUT_S   EF_DOWNLOAD_DEFAULT_STALL_TIMEOUT_S
#define EF_CONFIG_DEFAULT_MAX_ATTEMPTS      3
#define EF_CONFIG_DEFAULT_STATE_DIR         "/var/lib/espfleet"

typedef struct {
  char device_id[EF_JOB_ID_MAX + 1];
  char groups[EF_CONFIG_MAX_GROUPS][EF_JOB_ID_MAX + 1];
  size_t n_groups;
  char state_dir[EF_CONFIG_PATH_MAX];
  struct {
    char uri[EF_CONFIG_STR_MAX];       /**< mqtt://host:port or mqtts://host:port */
    char client_id[EF_CONFIG_STR_MAX]; /**< default: the device_id */
    char username[EF_CONFIG_STR_MAX];  /**< "" = none */
    char password_file[EF_CONFIG_PATH_MAX];
    char password[EF_CONFIG_STR_MAX]; /**< read from password_file, trailing newline removed */
    bool has_password;
    char ca_file[EF_CONFIG_PATH_MAX];   /**< "" = system CA store */
    char cert_file[EF_CONFIG_PATH_MAX]; /**< client certificate, "" = none */
    char key_file[EF_CONFIG_PATH_MAX];
    int keepalive_s;
    char topic_prefix[EF_CONFIG_STR_MAX];
  } mqtt;
  struct {
    char device[EF_CONFIG_PATH_MAX];
    char chip[16]; /**< canonical chip name, "" = any */
    int chip_id;   /**< -1 = any */
    int chunk_size;
    int window;
    uint64_t max_image_size;
    bool disable_bt_during_ota;
    int boot_timeout_s;
    int begin_timeout_s;
    char driver_release[EF_FW_RELEASE_MAX + 1]; /**< "" = read it from kernel_log */
    char kernel_log[EF_CONFIG_PATH_MAX];        /**< where the driver logs its release */
  } esp;
  struct {
    char ca_file[EF_CONFIG_PATH_MAX]; /**< "" = system CA store */
    int connect_timeout_s;
    int stall_timeout_s;
    bool allow_http;
    int max_attempts;
  } download;
  /** Signed releases (docs/security.md): the public keys this device trusts,
   *  by id, and the ids it was told to distrust. No keys = unsigned jobs run. */
  struct {
    size_t n_keys;
    char key_ids[EF_RELEASE_MAX_KEYS][EF_RELEASE_KEY_ID_MAX + 1];
    char key_files[EF_RELEASE_MAX_KEYS][EF_CONFIG_PATH_MAX];
    size_t n_revoked;
    char revoked[EF_RELEASE_MAX_KEYS][EF_RELEASE_KEY_ID_MAX + 1];
  } security;
  /** espfleet-controller's file only (EF_CONFIG_CONTROLLER): its own settings. */
  struct {
    char database[EF_CONFIG_STR_MAX]; /**< the SQLite store */
    int discovery_s;                  /**< time devices have to announce before a new rollout starts */
    int tick_ms;                      /**< how often timeouts and soak times are evaluated */
  } controller;
  /** espfleet-controller's file only: the HTTP API and dashboard (docs/api.md). */
  struct {
    char listen[EF_CONFIG_STR_MAX];    /**< "host:port"; "" = off */
    char cert_file[EF_CONFIG_STR_MAX]; /**< TLS certificate (PEM); "" = plain HTTP (loopback only) */
    char key_file[EF_CONFIG_STR_MAX];  /**< its key */
    /** "ROLE NAME SHA256-OF-TOKEN" lines; "" = no login (loopback only) */
    char tokens_file[EF_CONFIG_STR_MAX];
    /** what browsers see behind a TLS-terminating proxy; "" = our own scheme and Host */
    char public_origin[EF_CONFIG_STR_MAX];
  } http;
} ef_config;

/** Problems found by a load, one line each. */
typedef struct {
  size_t count;   /**< lines stored (at most EF_CONFIG_MAX_PROBLEMS) */
  size_t dropped; /**< further problems that did not fit */
  char lines[EF_CONFIG_MAX_PROBLEMS][EF_CONFIG_PROBLEM_LEN];
} ef_config_problems;

/** Flags for ef_config_parse. */
enum {
  /** Do not read password_file or check that CA/cert/key files are readable
   *  (for checking a config meant for another machine). */
  EF_CONFIG_SKIP_FILES = 1u << 0,
  /** An espfleet-controller file: the sections "mqtt" and "controller" only,
   *  no device_id; the client id defaults to "espfleet-controller". The mqtt
   *  section has the same keys, rules and sentences as espfleetd's. */
  EF_CONFIG_CONTROLLER = 1u << 1,
};

#define EF_CONFIG_DEFAULT_CONTROLLER_DB "/var/lib/espfleet-controller/controller.db"
#define EF_CONFIG_DEFAULT_DISCOVERY_S   5
#define EF_CONFIG_DEFAULT_TICK_MS       1000
#define EF_CONFIG_DEFAULT_HTTP_LISTEN   "127.0.0.1:8787"

/** Fills @p c with the defaults (device_id "" and no groups). */
void ef_config_defaults(ef_config *c);

/**
 * Reads and validates the configuration file at @p path (files it names are
 * read too: the MQTT password; CA, certificate and key files must be readable).
 * @param p  receives every problem (may be NULL)
 * @param st the overall failure for a caller that wants one line: the first
 *        problem, and how many more there are ("esp.window: must be 1..4
 *        (and 2 more problems)"); may be NULL
 * @return EF_OK with no problems; EF_ERR_CONFIG when there are problems
 *         (@p out then holds defaults where a value was wrong); EF_ERR_NOMEM.
 */
ef_err ef_config_load(const char *path, ef_config *out, ef_config_problems *p, ef_status *st) EF_MUST_CHECK;

/** ef_config_load with @p flags (EF_CONFIG_CONTROLLER, EF_CONFIG_SKIP_FILES). */
ef_err ef_config_load_flags(const char *path, unsigned flags, ef_config *out, ef_config_problems *p,
                            ef_status *st) EF_MUST_CHECK;

/**
 * Validates a configuration given as text. @p flags: EF_CONFIG_SKIP_FILES.
 * @return as ef_config_load.
 */
ef_err ef_config_parse(const char *json, size_t len, unsigned flags, ef_config *out, ef_config_problems *p,
                       ef_status *st) EF_MUST_CHECK;

/**
 * Loads the release keys of @p c into @p kr (ef_keyring_free it).
 * @return EF_OK (also for no keys); EF_ERR_IO or EF_ERR_CONFIG for a key
 *         file that cannot be read or is not an Ed25519 public key.
 */
ef_err ef_config_keyring(const ef_config *c, ef_keyring *kr, ef_status *st) EF_MUST_CHECK;

/** Job limits implied by the configuration (max image size, allow_http). */
void ef_config_job_limits(const ef_config *c, ef_job_limits *lim);

#endif
