/*
 * Shared pieces of espfleet-console, the fleet operator's tool: common
 * options, the error line, the broker connection (an MQTT session feeding
 * the library's inbox), terminal output, image facts and job documents.
 * Topics and every document other than the job are the protocol module's
 * (protocol.h, rollout_doc.h). Each subcommand lives in its own cmd_*.c file.
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
#include "espfleet/inbox.h"
#include "espfleet/job.h"
#include "espfleet/mqtt.h"
#include "espfleet/protocol.h"
#include "espfleet/report.h"
#include "espfleet/rollout_doc.h"

/* Exit codes: 0 success, 1 failure (error line printed), 2 usage error,
 * 3 a wait ran out of time (watch --until-final, rollout create --wait),
 * 130 interrupted. */
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
 * of 1-255 characters without wildcards). @return CON_OK or CON_USAGE
 * after printing why.
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

/* ---- broker connection (link.c) ---- */

typedef struct con_link con_link;

/**
 * Connects to the broker named by @p c with a fresh client id and a clean
 * session, subscribes to @p topics (QoS 1) and waits until the session is
 * connected with the subscriptions in place, at most @p connect_timeout_s.
 * Messages arriving from then on queue up in an inbox (inbox.h) for
 * con_link_next; a wait there ends early on SIGINT/SIGTERM.
 * @return EF_OK; EF_ERR_IO when a TLS or password file cannot be read;
 *         EF_ERR_CONFIG when the session refuses the options; EF_ERR_MQTT
 *         when no connection came up in time. An error line is printed.
 */
ef_err con_link_open(const con_common *c, const char *const *topics, size_t n_topics,
                     double connect_timeout_s, con_link **out) EF_MUST_CHECK;

/**
 * Publishes one message with QoS 1 and waits until the broker acknowledged
 * it, at most @p timeout_s. An empty @p payload clears a retained message.
 * @return EF_OK or EF_ERR_MQTT (error line printed).
 */
ef_err con_link_publish(con_link *l, const char *topic, const char *payload, bool retain,
                        double timeout_s) EF_MUST_CHECK;

/**
 * Publishes an announce request (ef_announce_json) on P/announce, QoS 1, not
 * retained: the devices (or controllers) of @p scope publish their state
 * again. Needed where a broker does not deliver retained messages to
 * wildcard subscriptions (RabbitMQ). @p job_id may be NULL.
 * @return EF_OK or the error (error line printed).
 */
ef_err con_link_announce(con_link *l, const char *prefix, ef_announce_scope scope, const char *job_id,
                         double timeout_s) EF_MUST_CHECK;

/**
 * Waits for the next received message until @p deadline_ms (ef_mono_ms
 * clock; < 0 = no deadline) or an interrupt. @return the message (free with
 * ef_inbox_msg_free) or NULL.
 */
ef_inbox_msg *con_link_next(con_link *l, int64_t deadline_ms);

/** Disconnects cleanly and frees @p l (NULL is fine). */
void con_link_close(con_link *l);

/** A state or progress document as received, read by ef_state_view_parse (texts escaped). */
typedef struct {
  ef_topic_kind kind;             /**< EF_TOPIC_DEVICE_STATE or EF_TOPIC_DEVICE_PROGRESS */
  char device[EF_JOB_ID_MAX + 1]; /**< from the topic, which the broker's ACL vouches for */
  bool offline;                   /**< a state document with "online": false (the last will) */
  ef_state_view v;
} con_device_doc;

/**
 * Reads a message from a device's state or progress topic.
 * @return false for any other topic, a device id that is not one, an empty
 *         payload (a cleared retained message) or one that is not a JSON object.
 */
bool con_device_doc_read(const ef_inbox_msg *m, const char *prefix, con_device_doc *d);

/** The ef_err named by a document's error.code (canceled for a canceled state), or @p fallback. */
ef_err con_device_error(const ef_state_view *v, ef_err fallback);

/* ---- topics (common.c) ---- */

/**
 * ef_topic for a topic a command names (@p id may be "+" for a filter).
 * @return false after printing an error line when it cannot be named.
 */
bool con_topic(char out[EF_TOPIC_MAX], const char *prefix, ef_topic_kind kind, const char *id);

/* ---- terminal and tables (term.c) ---- */

/** True when stdout is a terminal that takes ANSI sequences (not TERM=dumb). */
bool con_term_is_tty(void);

/** The terminal's columns and rows (80 x 24 when they cannot be read). */
void con_term_size(int *cols, int *rows);

/**
 * Starts a live view on stdout: hides the cursor, stops line wrapping (a
 * long row is cut at the edge rather than pushing the view down) and clears
 * the screen. Undone by con_term_live_end, which also runs at exit.
 */
void con_term_live_begin(void);

/** Shows the cursor and wraps lines again; the last view stays on screen. Safe to repeat. */
void con_term_live_end(void);

/** The SGR colour a job state is shown in on a terminal ("" for none). */
const char *con_term_state_color(const char *state_name);

/** Display columns of UTF-8 text @p s (one per character; escaped texts hold no controls). */
size_t con_text_width(const char *s);

typedef struct con_table con_table;

/** A table of @p cols columns with the header @p head. @return NULL on OOM. */
con_table *con_table_new(size_t cols, const char *const *head);

/**
 * Adds a row (the cells are copied). @p colors, when not NULL, holds an SGR
 * sequence (or NULL) per cell, used only on a terminal. @return false on OOM.
 */
bool con_table_add(con_table *t, const char *const *cells, const char *const *colors);

/** Rows added so far. */
size_t con_table_rows(const con_table *t);

/** Sorts the rows by their first cell. */
void con_table_sort(con_table *t);

/**
 * Prints the table: columns padded to their widest cell, two spaces apart,
 * the last one unpadded. @p tty makes the header bold and colours cells;
 * @p max_rows > 0 prints at most that many rows and says how many were left
 * out. @p eol ends each line ("\n", or "\033[K\n" in a live view).
 */
void con_table_print(const con_table *t, FILE *f, bool tty, size_t max_rows, const char *eol);

/** Frees @p t (NULL is fine). */
void con_table_free(con_table *t);

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

/* ---- the image/url/job options shared by `job` and `rollout create` (cmd_job.c) ---- */

/** Usage line of --job-id. */
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

/* ---- rollouts (cmd_rollout.c, rollout_create.c) ---- */

/** How long retained messages may take to follow a subscription: the
 *  broker sends them right after its SUBACK, so at once or not at all. */
#define CON_SETTLE_MS 300

/**
 * One line for a rollout's status: "R running: step 2/4, 10 of 40
 * device(s) reached: 7 succeeded, 1 failed, 2 running (reason)".
 */
void con_rollout_line(const ef_rollout_status *s, char *out, size_t n);

/**
 * Reads a message from P/rollouts/R/status (of @p rollout_id, or of any
 * rollout when NULL) with ef_rollout_status_parse. @return false for any
 * other topic, a cleared (empty) status, or a document that is not one or
 * names another rollout than its topic.
 */
bool con_rollout_status_read(const ef_inbox_msg *m, const char *prefix, const char *rollout_id,
                             ef_rollout_status *s);

/** rollout create (argv[0] is "create"). @return the exit status. */
int con_rollout_create(int argc, char **argv);

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
