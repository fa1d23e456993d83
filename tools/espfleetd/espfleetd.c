/* espfleetd: the fleet update daemon. Argument handling only; the work is
 * ef_agent (client/agent/). */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/agent.h"
#include "espfleet/config.h"
#include "espfleet/download.h"
#include "espfleet/journal.h"
#include "espfleet/log.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: espfleetd --config FILE [--check-config] [--log-level LEVEL]\n"
          "       espfleetd --version | --help\n"
          "\n"
          "Takes update jobs for this device from an MQTT broker, downloads the image\n"
          "over HTTPS, checks its SHA-256 and installs it on the ESP-Hosted coprocessor.\n"
          "\n"
          "  --config FILE      JSON configuration (docs/configuration.md)\n"
          "  --check-config     validate the configuration and exit: 0 when valid,\n"
          "                     2 with one line per problem\n"
          "  --log-level LEVEL  error, warn, info (default) or debug\n"
          "  --version          print the version\n"
          "  --help             print this help\n");
}

struct signal_waiter {
  sigset_t set;
  ef_agent *agent;
};

/* Signals are taken by one thread with sigwait, so stopping the agent can use
 * ordinary locks instead of async-signal-safe tricks. */
static void *wait_signals(void *arg) {
  struct signal_waiter *w = arg;
  int sig = 0;
  if (sigwait(&w->set, &sig) == 0) {
    ef_info("received signal %d, stopping", sig);
    ef_agent_request_stop(w->agent);
  }
  return NULL;
}

/* Parses argv. @return -1 to run, 0 after --help or --version, 2 on a
 * usage error (printed). */
static int parse_args(int argc, char **argv, const char **config_path, bool *check_only) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"check-config", no_argument, NULL, 'k'},
                                       {"log-level", required_argument, NULL, 'l'},
                                       {"version", no_argument, NULL, 'V'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int level = EF_LOG_INFO;
  int c;
  while ((c = getopt_long(argc, argv, "c:l:hV", opts, NULL)) != -1) {
    switch (c) {
    case 'c': *config_path = optarg; break;
    case 'k': *check_only = true; break;
    case 'l':
      level = ef_log_level_parse(optarg);
      if (level < 0) {
        fprintf(stderr, "espfleetd: --log-level: expected error, warn, info or debug\n");
        return 2;
      }
      break;
    case 'V': printf("espfleetd %s\n", ESPFLEET_VERSION); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (!*config_path || optind != argc) {
    usage(stderr);
    return 2;
  }
  ef_log_set_level((ef_log_level)level);
  return -1;
}

/* Loads @p path into @p cfg; on failure prints every problem (so
 * --check-config shows them all at once) and returns false. */
static bool load_config(const char *path, ef_config *cfg) {
  static ef_config_problems problems;
  /* The problem list, not the status: --check-config shows every problem. */
  if (ef_config_load(path, cfg, &problems, NULL) == EF_OK) return true;
  for (size_t i = 0; i < problems.count; i++) fprintf(stderr, "%s: %s\n", path, problems.lines[i]);
  if (problems.dropped) fprintf(stderr, "%s: ... and %zu more problems\n", path, problems.dropped);
  if (problems.count == 0) fprintf(stderr, "%s: the configuration is invalid\n", path);
  return false;
}

/* --check-config asks the machine too: a state_dir the journal cannot live
 * in (read-only, full, not a directory, a FIFO at the journal's path) makes
 * the configuration useless here. A missing one is created at start. The
 * daemon checks again when it starts. */
static bool check_state_dir(const char *path, const ef_config *cfg) {
  ef_status st = EF_STATUS_INIT;
  bool missing = false;
  if (ef_journal_check_dir(cfg->state_dir, false, &missing, &st) != EF_OK) {
    fprintf(stderr, "%s: state_dir: %s\n", path, st.detail);
    return false;
  }
  if (missing)
    printf("%s: state_dir %s does not exist yet: espfleetd creates it at start\n", path, cfg->state_dir);
  return true;
}

/* Runs the agent until a signal stops it. @return the exit status. */
static int run_agent(const ef_config *cfg) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by every thread created below */
  signal(SIGPIPE, SIG_IGN);

  if (ef_download_global_init() != EF_OK) {
    ef_error("cannot initialise libcurl");
    return 1;
  }
  ef_agent *agent = NULL;
  ef_status st = EF_STATUS_INIT;
  char line[EF_STATUS_DETAIL_MAX + 64];
  if (ef_agent_new(cfg, &agent, &st) != EF_OK) {
    ef_error("%s", ef_status_text(&st, line, sizeof line));
    return 1;
  }
  struct signal_waiter w = {set, agent};
  pthread_t sig_thread;
  if (pthread_create(&sig_thread, NULL, wait_signals, &w) != 0) {
    ef_error("cannot start the signal thread");
    ef_agent_free(agent);
    return 1;
  }
  pthread_detach(sig_thread);
  ef_info("espfleetd %s starting for device %s", ESPFLEET_VERSION, cfg->device_id);
  ef_err err = ef_agent_run(agent, &st);
  ef_agent_free(agent);
  if (err != EF_OK) {
    ef_error("%s (%s)", ef_status_text(&st, line, sizeof line), ef_err_message(err));
    return 1;
  }
  ef_info("stopped");
  return 0;
}

int main(int argc, char **argv) {
  const char *config_path = NULL;
  bool check_only = false;
  static ef_config cfg;
  ef_log_set_ident("espfleetd");
  int rc = parse_args(argc, argv, &config_path, &check_only);
  if (rc >= 0) return rc;
  if (!load_config(config_path, &cfg)) return 2;
  if (check_only) {
    if (!check_state_dir(config_path, &cfg)) return 2;
    printf("%s: configuration is valid\n", config_path);
    return 0;
  }
  return run_agent(&cfg);
}
