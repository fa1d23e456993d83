/* Common options, the error line, topics, number and list parsing, clock and signals. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "console.h"

const char con_common_usage[] =
    "Broker options (every command):\n"
    "  --broker URI          mqtt://host[:port] or mqtts://host[:port]\n"
    "                        (default " CON_DEFAULT_BROKER
    ")\n"
    "  --ca FILE             CA bundle (PEM) that signed the broker's certificate\n"
    "  --cert FILE           client certificate (PEM), mqtts only\n"
    "  --key FILE            client key (PEM) for --cert\n"
    "  --username U          MQTT user name\n"
    "  --password-file F     file whose first line is the password\n"
    "  --prefix P            topic prefix (default " CON_DEFAULT_PREFIX
    ")\n"
    "  --timeout S           seconds; what it bounds depends on the command\n"
    "  --verbose             log the MQTT connection on stderr\n"
    "  -h, --help            show this help\n";

void con_common_init(con_common *c) {
  memset(c, 0, sizeof *c);
  c->broker = CON_DEFAULT_BROKER;
  c->prefix = CON_DEFAULT_PREFIX;
  c->timeout_s = -1;
}

int con_common_opt(con_common *c, const char *cmd, int opt, const char *arg) {
  switch (opt) {
  case CON_OPT_BROKER: c->broker = arg; return 1;
  case CON_OPT_CA: c->ca_file = arg; return 1;
  case CON_OPT_CERT: c->cert_file = arg; return 1;
  case CON_OPT_KEY: c->key_file = arg; return 1;
  case CON_OPT_USERNAME: c->username = arg; return 1;
  case CON_OPT_PASSWORD_FILE: c->password_file = arg; return 1;
  case CON_OPT_PREFIX: c->prefix = arg; return 1;
  case CON_OPT_VERBOSE: c->verbose = true; return 1;
  case CON_OPT_TIMEOUT:
    if (!con_parse_seconds(arg, &c->timeout_s) || c->timeout_s <= 0) {
      con_usage_error(cmd, "--timeout: '%s' is not a number of seconds > 0", arg);
      return -1;
    }
    return 1;
  default: return 0;
  }
}

int con_common_check(const con_common *c, const char *cmd) {
  bool tls = strncmp(c->broker, "mqtts://", 8) == 0 || strncmp(c->broker, "ssl://", 6) == 0;
  bool plain = strncmp(c->broker, "mqtt://", 7) == 0 || strncmp(c->broker, "tcp://", 6) == 0;
  if (!tls && !plain)
    return con_usage_error(cmd, "--broker: '%s' must start with mqtt:// or mqtts://", c->broker);
  if (!tls && (c->ca_file || c->cert_file || c->key_file))
    return con_usage_error(cmd, "--ca, --cert and --key need an mqtts:// broker");
  if (c->key_file && !c->cert_file) return con_usage_error(cmd, "--key needs --cert");
  if (c->password_file && !c->username) return con_usage_error(cmd, "--password-file needs --username");
  /* The prefix is the first levels of every topic: wildcards would turn a
   * publish into an error and a subscription into someone else's traffic. */
  if (!*c->prefix || strpbrk(c->prefix, "+#") || c->prefix[strlen(c->prefix) - 1] == '/')
    return con_usage_error(cmd, "--prefix: '%s' must be non-empty, without '+', '#' or a trailing '/'",
                           c->prefix);
  /* The protocol module names every topic in EF_TOPIC_MAX with a prefix of
   * up to 255 characters: a longer one is refused here, not topic by topic. */
  if (strlen(c->prefix) > 255) return con_usage_error(cmd, "--prefix: at most 255 characters");
  return CON_OK;
}

bool con_topic(char out[EF_TOPIC_MAX], const char *prefix, ef_topic_kind kind, const char *id) {
  if (ef_topic(out, EF_TOPIC_MAX, prefix, kind, id, NULL)) return true;
  con_fail(EF_ERR_INVALID_ARG, "cannot name a topic under '%s' for '%s'", prefix, id ? id : "");
  return false;
}

int con_fail(ef_err err, const char *fmt, ...) {
  char detail[1024] = "";
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
  }
  if (*detail)
    fprintf(stderr, CON_PROGRAM ": error: %s: %s (%s)\n", ef_err_name(err), ef_err_message(err), detail);
  else
    fprintf(stderr, CON_PROGRAM ": error: %s: %s\n", ef_err_name(err), ef_err_message(err));
  return CON_FAIL;
}

int con_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, CON_PROGRAM "%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry '" CON_PROGRAM " %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
  return CON_USAGE;
}

bool con_parse_long(const char *s, long min, long max, long *out) {
  char *end = NULL;
  if (!s || !*s || isspace((unsigned char)*s)) return false;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

bool con_parse_seconds(const char *s, double *out) {
  char *end = NULL;
  if (!s || !isdigit((unsigned char)*s)) return false;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0 || v > 86400) return false;
  *out = v;
  return true;
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

void con_catch_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

bool con_interrupted(void) { return interrupted != 0; }
