/* espfleet-controller: runs rollouts (docs/rollouts.md) and serves the HTTP
 * API and page (docs/api.md). Argument handling and the history query only;
 * the work is ef_controller (client/rollout/) and ef_api (client/api/). */
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/api.h"
#include "espfleet/config.h"
#include "espfleet/controller.h"
#include "espfleet/job.h"
#include "espfleet/log.h"
#include "espfleet/report.h"
#include "espfleet/store.h"

#define PROGRAM "espfleet-controller"

static void usage(FILE *f) {
  fprintf(f, "usage: " PROGRAM
             " [--config FILE] [--check-config] [--log-level LEVEL]\n"
             "       " PROGRAM
             " history [--config FILE | --database DB] [--device ID] [--job ID]\n"
             "                           [--limit N]\n"
             "       " PROGRAM
             " --version | --help\n"
             "\n"
             "Runs the rollouts published on the MQTT broker (P/rollouts/ID): sends each step's\n"
             "devices the job, watches their results, advances, halts or aborts by the\n"
             "rollout's thresholds, and keeps every decision in its database so that a\n"
             "restart resumes where it was. `history` prints who ran which job, when, and\n"
             "how it ended. With http.listen set (default 127.0.0.1:8787) it also serves the\n"
             "HTTP API and the dashboard page (docs/api.md).\n"
             "\n"
             "  --config FILE      JSON configuration (docs/rollouts.md; default\n"
             "                     "
             "/etc/espfleet/controller.json)\n"
             "  --check-config     validate the configuration and exit: 0 when valid,\n"
             "                     2 with one line per problem\n"
             "  --log-level LEVEL  error, warn, info (default) or debug\n"
             "  --database DB      history: read this database instead of the configured one\n"
             "  --device ID, --job ID  history: only these lines\n"
             "  --limit N          history: at most N lines (default all)\n");
}

static atomic_bool stop_flag;
static void on_signal(int sig) {
  (void)sig;
  atomic_store(&stop_flag, true);
}
static bool should_stop(void) { return atomic_load(&stop_flag); }

/* Loads @p path; on failure prints every problem and returns false. */
static bool load_config(const char *path, ef_config *cfg) {
  static ef_config_problems problems;
  if (ef_config_load_flags(path, EF_CONFIG_CONTROLLER, cfg, &problems, NULL) == EF_OK) return true;
  for (size_t i = 0; i < problems.count; i++) fprintf(stderr, "%s: %s\n", path, problems.lines[i]);
  if (problems.dropped) fprintf(stderr, "%s: ... and %zu more problems\n", path, problems.dropped);
  if (problems.count == 0) fprintf(stderr, "%s: the configuration is invalid\n", path);
  return false;
}

static void print_token_problem(void *arg, unsigned line, const char *problem) {
  const char *path = arg;
  if (line)
    fprintf(stderr, "%s:%u: %s\n", path, line, problem);
  else
    fprintf(stderr, "%s: %s\n", path, problem);
}

/* The tokens file of http.tokens_file: every bad line, with its number. */
static bool check_tokens(const char *path) {
  ef_status st = EF_STATUS_INIT;
  ef_err err = ef_api_tokens_load(path, NULL, NULL, print_token_problem, (void *)path, &st);
  if (err == EF_ERR_IO || err == EF_ERR_NOMEM) fprintf(stderr, "%s\n", st.detail);
  return err == EF_OK;
}

static int run(const ef_config *cfg) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  ef_controller_config cc = {
      .mqtt =
          {
              .uri = cfg->mqtt.uri,
              .client_id = cfg->mqtt.client_id,
              .username = cfg->mqtt.username[0] ? cfg->mqtt.username : NULL,
              .password = cfg->mqtt.has_password ? cfg->mqtt.password : NULL,
              .ca_file = cfg->mqtt.ca_file[0] ? cfg->mqtt.ca_file : NULL,
              .cert_file = cfg->mqtt.cert_file[0] ? cfg->mqtt.cert_file : NULL,
              .key_file = cfg->mqtt.key_file[0] ? cfg->mqtt.key_file : NULL,
              .keepalive_s = cfg->mqtt.keepalive_s,
          },
      .topic_prefix = cfg->mqtt.topic_prefix,
      .database = cfg->controller.database,
      .discovery_s = cfg->controller.discovery_s,
      .tick_ms = cfg->controller.tick_ms,
  };
  ef_controller *c = NULL;
  ef_api *api = NULL;
  ef_status st = EF_STATUS_INIT;
  char line[EF_STATUS_DETAIL_MAX + 64];
  int rc = 1;
  ef_err err;
  if (ef_controller_new(&cc, &c, &st) != EF_OK) {
    ef_error("%s", ef_status_text(&st, line, sizeof line));
    goto out;
  }
  ef_info(PROGRAM " %s starting (database %s)", ESPFLEET_VERSION, cfg->controller.database);
  if (cfg->http.listen[0]) {
    /* before the loop: the API is the controller's observer from its first message on */
    ef_api_config ac = {
        .listen = cfg->http.listen,
        .cert_file = cfg->http.cert_file,
        .key_file = cfg->http.key_file,
        .tokens_file = cfg->http.tokens_file,
        .public_origin = cfg->http.public_origin,
        .database = cfg->controller.database,
        .prefix = cfg->mqtt.topic_prefix,
    };
    if (ef_api_start(&ac, c, &api, &st) != EF_OK) {
      ef_error("http: %s", ef_status_text(&st, line, sizeof line));
      goto out;
    }
    ef_info("dashboard: %s://%s/", cfg->http.cert_file[0] ? "https" : "http", cfg->http.listen);
  }
  err = ef_controller_run(c, should_stop, &st);
  if (err != EF_OK) {
    ef_error("%s (%s)", ef_status_text(&st, line, sizeof line), ef_err_message(err));
    goto out;
  }
  ef_info("stopped");
  rc = 0;
out:
  ef_api_stop(api);
  ef_controller_free(c);
  return rc;
}

static void print_history(void *arg, const ef_store_history *h) {
  int *count = arg;
  char ts[32];
  ef_rfc3339_format(h->ts_ms, ts);
  printf("%-24s  %-24s  %-20s  %-16s  %-9s  %d  %s\n", ts, h->device_id, h->job_id,
         h->rollout_id[0] ? h->rollout_id : "-", h->state, h->attempt, h->error[0] ? h->error : "");
  (*count)++;
}

static int history(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"database", required_argument, NULL, 'd'},
                                       {"device", required_argument, NULL, 'D'},
                                       {"job", required_argument, NULL, 'j'},
                                       {"limit", required_argument, NULL, 'n'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *config = NULL, *database = NULL, *device = NULL, *job = NULL;
  long limit = 0;
  int c, rc = 1, count = 0;
  ef_store *s = NULL;
  ef_status st = EF_STATUS_INIT;
  static ef_config cfg;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'd': database = optarg; break;
    case 'D': device = optarg; break;
    case 'j': job = optarg; break;
    case 'n': {
      char *end = NULL;
      limit = strtol(optarg, &end, 10);
      if (!*optarg || *end || limit < 1) {
        fprintf(stderr, PROGRAM " history: --limit: expected a number of lines (1 or more)\n");
        return 2;
      }
      break;
    }
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc || limit < 0 || (device && !ef_id_valid(device)) || (job && !ef_id_valid(job))) {
    usage(stderr);
    return 2;
  }
  if (!database) {
    if (!load_config(config ? config : "/etc/espfleet/controller.json", &cfg)) return 2;
    database = cfg.controller.database;
  }
  /* A reader: it works beside a running controller and never creates a
   * database (a mistyped path would). */
  if (ef_store_open_reader(database, &s, &st) != EF_OK) {
    fprintf(stderr, PROGRAM ": %s: %s\n", ef_err_name(st.code), st.detail);
    goto out;
  }
  printf("%-24s  %-24s  %-20s  %-16s  %-9s  %s  %s\n", "TIME", "DEVICE", "JOB", "ROLLOUT", "STATE", "#",
         "ERROR");
  if (ef_store_query_history(s, device, job, (size_t)limit, print_history, &count, &st) != EF_OK) {
    fprintf(stderr, PROGRAM ": %s: %s\n", ef_err_name(st.code), st.detail);
    goto out;
  }
  rc = 0;
out:
  ef_store_close(s);
  return rc;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"check-config", no_argument, NULL, 'k'},
                                       {"log-level", required_argument, NULL, 'l'},
                                       {"version", no_argument, NULL, 'V'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  static ef_config cfg;
  const char *config = "/etc/espfleet/controller.json";
  bool check_only = false;
  int c, level = EF_LOG_INFO;
  ef_log_set_ident(PROGRAM);
  if (argc > 1 && strcmp(argv[1], "history") == 0) return history(argc - 1, argv + 1);
  while ((c = getopt_long(argc, argv, "c:l:hV", opts, NULL)) != -1) {
    switch (c) {
    case 'c': config = optarg; break;
    case 'k': check_only = true; break;
    case 'l':
      level = ef_log_level_parse(optarg);
      if (level < 0) {
        fprintf(stderr, PROGRAM ": --log-level: expected error, warn, info or debug\n");
        return 2;
      }
      break;
    case 'V': printf(PROGRAM " %s\n", ESPFLEET_VERSION); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  ef_log_set_level((ef_log_level)level);
  if (!load_config(config, &cfg)) return 2;
  if (cfg.http.tokens_file[0] && !check_tokens(cfg.http.tokens_file)) return 2;
  if (check_only) {
    printf("%s: valid (broker %s, database %s)\n", config, cfg.mqtt.uri, cfg.controller.database);
    return 0;
  }
  return run(&cfg);
}
