/*
 * Shared pieces of espfleet-console, the fleet operator's tool: common
 * options, the error line, the broker connection with its inbox of received
 * messages, image facts, job documents and state documents. Each subcommand
 * lives in its own cmd_*.c file.
 */
#ifndef ESPFLEET_CONSOLE_H
#define ESPFLEET_CONSOLE_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "espfleet/clock.h"
#include "espfleet/error.h"
#include "espfleet/job.h"
#include "espfleet/mqtt.h"
#include "espfleet/report.h"

/* Exit codes: 0 success, 1 failure (error line printed), 2 usage error,
 * 3 watch --until-final ran out of time, 130 interrupted. */
enum { CON_OK = 0, CON_FAIL = 1, CON_USAGE = 2, CON_TIMEOUT = 3, CON_INTERRUPTED = 130 };

#define CON_PROGRAM        "espfleet-console"
#define CON_DEFAULT_BROKER "mqtt://127.0.0.1:1883"
#define CON_DEFAULT_PREFIX EF_DEFAULT_TOPIC_PREFIX
/** How long a command waits for the first connection when --timeout does not say. */
#define CON_CONNECT_TIMEOUT_S 10.0
/** Most devices a command lists with --device / --devices. */
#define CON_MAX_DEVICES 32

/* ---- common options (common.c) ---- */

/** Options every command accepts. Strings point into argv. */
typedef struct {
  const char *broker;
  const char *ca_file;
  const char *cert_file;
  const char *key_file;
  const char *username;
  const char *password_file;
  const char *prefix;
  double timeout_s; /**< < 0 when not given */
  bool verbose;
} con_common;

/* getopt_long codes of the common options; command options start at CON_OPT_CMD. */
enum {
  CON_OPT_BROKER = 1000,
  CON_OPT_CA,
  CON_OPT_CERT,
  CON_OPT_KEY,
  CON_OPT_USERNAME,
  CON_OPT_PASSWORD_FILE,
  CON_OPT_PREFIX,
  CON_OPT_TIMEOUT,
  CON_OPT_VERBOSE,
  CON_OPT_CMD = 1100,
};

/** The common entries of a getopt_long table; end a command's table with it. */
#define CON_COMMON_LONGOPTS                                                                           \
  {"broker", required_argument, NULL, CON_OPT_BROKER}, {"ca", required_argument, NULL, CON_OPT_CA},   \
      {"cert", required_argument, NULL, CON_OPT_CERT}, {"key", required_argument, NULL, CON_OPT_KEY}, \
      {"username", required_argument, NULL, CON_OPT_USERNAME},                                        \
      {"password-file", required_argument, NULL, CON_OPT_PASSWORD_FILE},                              \
      {"prefix", required_argument, NULL, CON_OPT_PREFIX},                                            \
      {"timeout", required_argument, NULL, CON_OPT_TIMEOUT},                                          \
      {"verbose", no_argument, NULL, CON_OPT_VERBOSE}, {"help", no_argument, NULL, 'h'}, {            \
    NULL, 0, NULL, 0                                                                                  \
  }

/** The common options' help text, appended to every command's usage. */
extern const char con_common_usage[];

/** Fills @p c with the defaults. */
void con_common_init(con_common *c);

/**
 * Handles one common option returned by getopt_long.
 * @return 1 when @p opt was a common option and its value is fine, 0 when it
 *         is not a common option, -1 after printing a usage error.
 */
int con_common_opt(con_common *c, const char *cmd, int opt, const char *arg);

/**
 * Checks the combination of common options (TLS files only with mqtts://,
 * --key only with --cert, --password-file only with --username, a prefix
 * without wildcards). @return CON_OK or CON_USAGE after printing why.
 */
int con_common_check(const con_common *c, const char *cmd);

/**
 * Prints "espfleet-console: error: <code>: <sentence> (<detail>)" on stderr
 * (without the parenthesis when @p detail is NULL or empty). @return CON_FAIL.
 */
int con_fail(ef_err err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Prints "espfleet-console <cmd>: <message>" and a hint to stderr. @return CON_USAGE. */
int con_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Parses a decimal integer within [min, max]. */
bool con_parse_long(const char *s, long min, long max, long *out);

/** Parses a non-negative number of seconds (fractions allowed) up to a day. */
bool con_parse_seconds(const char *s, double *out);

/** True once SIGINT or SIGTERM arrived (after con_catch_signals). */
bool con_interrupted(void);

/** Makes SIGINT and SIGTERM set the flag con_interrupted reads. */
void con_catch_signals(void);

/**
 * Splits a comma-separated list of ids into @p ids (pointers into @p list,
 * which is modified). @return the count, or -1 when an id is invalid or
 * there are more than @p max.
 */
int con_split_ids(char *list, const char **ids, int max);

/* ---- broker connection (link.c) ---- */

/** A received message, owned by the caller after con_link_next. */
typedef struct con_msg {
  struct con_msg *next;
  char *topic;
  char *payload; /**< NUL-terminated copy */
  size_t len;
} con_msg;

typedef struct con_link con_link;

/**
 * Connects to the broker named by @p c with a fresh client id and a clean
 * session, subscribes to @p topics (QoS 1) and waits until the session is
 * connected with the subscriptions in place, at most @p connect_timeout_s.
 * Messages arriving from then on queue up for con_link_next.
 * @return EF_OK; EF_ERR_IO when the password file cannot be read;
 *         EF_ERR_CONFIG when the session refuses the options; EF_ERR_MQTT
 *         when no connection came up in time. An error line is printed.
 */
ef_err con_link_open(const con_common *c, const char *const *topics, size_t n_topics,
                     double connect_timeout_s, con_link **out) EF_MUST_CHECK;

/**
 * Publishes one message with QoS 1 and waits until the broker acknowledged
 * it, at most @p timeout_s. @return EF_OK or EF_ERR_MQTT (error line printed).
 */
ef_err con_link_publish(con_link *l, const char *topic, const char *payload, bool retain,
                        double timeout_s) EF_MUST_CHECK;

/**
 * Waits for the next received message until @p deadline_ms (ef_mono_ms
 * clock; < 0 = no deadline) or an interrupt. @return the message (free with
 * con_msg_free) or NULL.
 */
con_msg *con_link_next(con_link *l, int64_t deadline_ms);

/** Frees a message from con_link_next (NULL is fine). */
void con_msg_free(con_msg *m);

/** Disconnects cleanly and frees @p l (NULL is fine). */
void con_link_close(con_link *l);

/* ---- topics (topics.c) ---- */

/** "P/devices/ID/<leaf>" or "P/groups/G/job" into @p out. @return false when it does not fit. */
bool con_topic(char *out, size_t n, const char *prefix, const char *kind, const char *id, const char *leaf);

/**
 * Splits a received topic "P/devices/ID/state" or ".../progress".
 * @param device receives ID (EF_JOB_ID_MAX + 1 bytes)
 * @param progress set when the leaf is "progress"
 * @return false for any other topic.
 */
bool con_topic_parse(const char *topic, const char *prefix, char device[EF_JOB_ID_MAX + 1], bool *progress);

/* ---- image facts (image_facts.c) ---- */

/** What a job needs to know about an image file. */
typedef struct {
  uint64_t size;
  char sha256_hex[65];
  char version[EF_JOB_VERSION_MAX + 1];
  char project[EF_JOB_PROJECT_MAX + 1];
  char chip[EF_JOB_CHIP_MAX + 1]; /**< "" when the chip id is unknown */
  uint32_t secure_version;        /**< the app description's anti-rollback counter */
} con_image;

/**
 * Reads @p path once through the image validator and SHA-256.
 * @param detail receives specifics of an error
 * @return EF_OK; EF_ERR_IO; EF_ERR_NOMEM; or the validator's image_* error.
 */
ef_err con_image_read(const char *path, con_image *img, char *detail, size_t n) EF_MUST_CHECK;

/* ---- job documents (jobdoc.c) ---- */

/** Options of a job beyond the image's facts. */
typedef struct {
  const char *url;
  const char *job_id; /**< NULL = derived from the image */
  int percent;        /**< -1 = no rollout object */
  bool allow_downgrade;
  const char *not_after;         /**< NULL = none */
  const char *expect_fw_version; /**< NULL = none */
  bool driver_update;            /**< the host driver is updated in the same rollout */
  bool allow_http;               /**< accept an http:// url */
  const char *manifest;          /**< --manifest FILE: the signed release, or NULL */
  const char *sign_key;          /**< --sign-key KEY: sign here, or NULL */
  const char *key_id;            /**< --key-id ID with --sign-key */
} con_job_opts;

/** The default job_id: "<project>-<version>-<first 8 hex of sha256>", made a valid id. */
void con_job_default_id(const con_image *img, char out[EF_JOB_ID_MAX + 1]);

/**
 * Builds the job document for @p img and validates it with ef_job_parse.
 * @param json receives the malloc'ed compact JSON (free())
 * @param job receives the parsed job (may be NULL)
 * @param reason receives ef_job_parse's sentence on failure
 * @return EF_OK; EF_ERR_NOMEM; EF_ERR_BAD_JOB (a bad --url, --job-id, ...).
 */
ef_err con_job_build(const con_image *img, const con_job_opts *o, const ef_manifest *release, char **json,
                     ef_job *job, char *reason, size_t n) EF_MUST_CHECK;

/**
 * The signed release for a job, from --manifest (checked against @p img: the
 * same SHA-256, size, version, project, chip and secure_version) or made with
 * --sign-key/--key-id from @p img and the options.
 * @param release receives the manifest
 * @param have set when there is one (neither option: false, EF_OK)
 * @return EF_OK; the mismatch's code (hash_mismatch, ...); EF_ERR_BAD_JOB for
 *         an unreadable manifest or conflicting options; a key's error.
 */
ef_err con_job_release(const con_image *img, const con_job_opts *o, ef_manifest *release, bool *have,
                       char *reason, size_t n) EF_MUST_CHECK;

/* ---- the image/url/job options shared by `job` and `rollout` (cmd_job.c) ---- */

/** Usage line of --job-id where it is optional (`job`; `rollout` requires it
 *  and says so in its own words). */
#define CON_JOB_ID_USAGE                                                    \
  "  --job-id ID             default <project>-<version>-<first 8 hex of\n" \
  "                          the sha256>\n"

/** Usage lines of the other options con_job_opt handles. */
#define CON_JOB_OPTS_USAGE                                                       \
  "  --url URL               where devices download the image (required)\n"      \
  "  --allow-downgrade       let devices install an older version\n"             \
  "  --not-after TIME        RFC 3339 time after which devices reject the job\n" \
  "  --expect-fw-version V   the ESP-Hosted release the image carries: what\n"   \
  "                          GetFwVersion must report after the reboot, and\n"   \
  "                          what the host driver must accept (FG-1.0.4.0.0)\n"  \
  "  --driver-update         the hosts' driver is updated to accept that\n"      \
  "                          release in the same rollout (needs\n"               \
  "                          --expect-fw-version)\n"                             \
  "  --allow-http            accept an http:// url (for devices that set\n"      \
  "                          download.allow_http)\n"                             \
  "  --manifest FILE         sign the job with this release manifest\n"          \
  "                          (espfleet sign); it must describe IMAGE\n"          \
  "  --sign-key KEY --key-id ID  sign the job here with the release key\n"

/**
 * Handles --url, --job-id, --allow-downgrade, --not-after,
 * --expect-fw-version, --driver-update and --allow-http. @return 1 when
 * handled, 0 when not.
 */
int con_job_opt(con_job_opts *o, int opt, const char *arg);

enum {
  CON_OPT_URL = CON_OPT_CMD,
  CON_OPT_JOB_ID,
  CON_OPT_ALLOW_DOWNGRADE,
  CON_OPT_NOT_AFTER,
  CON_OPT_EXPECT_FW,
  CON_OPT_DRIVER_UPDATE,
  CON_OPT_ALLOW_HTTP,
  CON_OPT_MANIFEST,
  CON_OPT_SIGN_KEY,
  CON_OPT_KEY_ID,
  CON_OPT_CMD2,
};

#define CON_JOB_LONGOPTS                                                                              \
  {"url", required_argument, NULL, CON_OPT_URL}, {"job-id", required_argument, NULL, CON_OPT_JOB_ID}, \
      {"allow-downgrade", no_argument, NULL, CON_OPT_ALLOW_DOWNGRADE},                                \
      {"not-after", required_argument, NULL, CON_OPT_NOT_AFTER},                                      \
      {"expect-fw-version", required_argument, NULL, CON_OPT_EXPECT_FW},                              \
      {"driver-update", no_argument, NULL, CON_OPT_DRIVER_UPDATE},                                    \
      {"allow-http", no_argument, NULL, CON_OPT_ALLOW_HTTP},                                          \
      {"manifest", required_argument, NULL, CON_OPT_MANIFEST},                                        \
      {"sign-key", required_argument, NULL, CON_OPT_SIGN_KEY}, {                                      \
    "key-id", required_argument, NULL, CON_OPT_KEY_ID                                                 \
  }

/**
 * Reads IMAGE and builds its job; prints the error line on failure.
 * @return CON_OK or CON_FAIL.
 */
int con_job_prepare(const char *image, const con_job_opts *o, con_image *img, char **json, ef_job *job);

/* ---- state and progress documents (states.c) ---- */

/** The fields of a state or progress document the console shows. */
typedef struct {
  char device[EF_JOB_ID_MAX + 1]; /**< from the topic */
  bool progress;                  /**< a progress document */
  bool has_online;
  bool online;
  bool state_known;
  ef_job_state state;
  char state_name[24];            /**< as received ("" when absent) */
  char job_id[EF_JOB_ID_MAX + 1]; /**< "" when null or absent */
  char app_version[EF_JOB_VERSION_MAX + 1];
  char fw_version[64];
  char error_code[48];
  char error_detail[256];
  char ts[40];
  uint64_t bytes, total;
  int percent;
  cJSON *doc; /**< the parsed document */
} con_doc;

/**
 * Parses a message from a state or progress topic.
 * @return false for a topic that is neither, an empty payload (a cleared
 *         retained message) or a payload that is not a JSON object.
 */
bool con_doc_parse(const con_msg *m, const char *prefix, con_doc *d);

/** Frees what con_doc_parse allocated. */
void con_doc_clear(con_doc *d);

/** True when @p d is a state document of @p job_id in a final state. */
bool con_doc_final_for(const con_doc *d, const char *job_id);

/** True for failed, rejected and canceled. */
bool con_state_is_bad(ef_job_state s);

/** The ef_err named by a document's error.code, or @p fallback when unknown. */
ef_err con_doc_error(const con_doc *d, ef_err fallback);

/* ---- commands ---- */

int cmd_job(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_rollout(int argc, char **argv);

extern const char con_job_usage[];
extern const char con_cancel_usage[];
extern const char con_status_usage[];
extern const char con_watch_usage[];
extern const char con_rollout_usage[];

#endif
