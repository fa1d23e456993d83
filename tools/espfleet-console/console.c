/*
 * espfleet-console: the fleet operator's tool. Publishes update jobs built
 * from local images, cancels them, shows what the devices report, and
 * creates and steers the rollouts espfleet-controller runs, over the MQTT
 * contract of docs/protocol.md and docs/rollouts.md. Each command lives in
 * its own file; this one only dispatches.
 */
#include <stdio.h>
#include <string.h>

#include "console.h"

static const char main_usage[] =
    "Usage: espfleet-console COMMAND [OPTIONS] [ARGS]\n"
    "       espfleet-console --help | --version\n"
    "\n"
    "Operate a fleet of espfleetd devices over MQTT.\n"
    "\n"
    "Commands:\n"
    "  job       publish an update job for a local image to a device or group\n"
    "  cancel    cancel a job on a device or a group\n"
    "  status    print the current state of every device, and each job's counts\n"
    "  watch     follow state and progress as they arrive\n"
    "  rollout   create, pause, resume, abort, show, list or delete the staged\n"
    "            rollouts espfleet-controller runs\n"
    "\n"
    "Run 'espfleet-console COMMAND --help' for a command's options.\n"
    "\n"
    "Exit status: 0 success; 1 failure, with one line on stderr:\n"
    "  espfleet-console: error: <code>: <sentence> (<detail>)\n"
    "2 usage error; 3 'watch --until-final' or 'rollout create --wait' timed out;\n"
    "130 interrupted.\n";

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *usage;
} commands[] = {
    {"job", cmd_job, con_job_usage},
    {"cancel", cmd_cancel, con_cancel_usage},
    {"status", cmd_status, con_status_usage},
    {"watch", cmd_watch, con_watch_usage},
    {"rollout", cmd_rollout, con_rollout_usage},
};

/* True when @p argv holds -h or --help (before a lone "--"). */
static bool wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return true;
  }
  return false;
}

static int print_usage(const char *usage) {
  fputs(usage, stdout);
  fputs("\n", stdout);
  fputs(con_common_usage, stdout);
  return CON_OK;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(main_usage, stderr);
    return CON_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    if (argc > 2 && strcmp(cmd, "help") == 0) {
      for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[2], commands[i].name) == 0) return print_usage(commands[i].usage);
      return con_usage_error(NULL, "unknown command '%s'", argv[2]);
    }
    fputs(main_usage, stdout);
    return CON_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
    printf(CON_PROGRAM " %s\n", ESPFLEET_VERSION);
    return CON_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp(cmd, commands[i].name) != 0) continue;
    if (wants_help(argc - 1, argv + 1)) return print_usage(commands[i].usage);
    return commands[i].run(argc - 1, argv + 1);
  }
  return con_usage_error(NULL, "unknown command '%s'", cmd);
}
