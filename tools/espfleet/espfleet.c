/*
 * espfleet: the local CLI. Inspect and generate ESP application images,
 * flash one over ESP-Hosted, ask the ESP for its firmware version, sign
 * releases.
 * Each subcommand lives in its own file; this one only dispatches.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char main_usage[] =
    "Usage: espfleet COMMAND [OPTIONS] [ARGS]\n"
    "       espfleet --help | --version\n"
    "\n"
    "Update an ESP-Hosted coprocessor from the host, and work with ESP-IDF\n"
    "application images.\n"
    "\n"
    "Commands:\n"
    "  inspect   validate an image file and print what it contains\n"
    "  mkimage   write a valid, deterministic test image\n"
    "  flash     write an image to the ESP over the ESP-Hosted control path\n"
    "  info      print the ESP's firmware version\n"
    "  keygen    write a new Ed25519 release key pair\n"
    "  sign      print the signed release manifest of an image\n"
    "  verify    check a manifest's signature (and an image against it)\n"
    "\n"
    "Run 'espfleet COMMAND --help' for a command's options.\n"
    "\n"
    "Exit status: 0 success; 1 failure, with one line on stderr:\n"
    "  espfleet: error: <code>: <sentence> (<detail>)\n"
    "2 usage error.\n";

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *usage;
} commands[] = {
    {"inspect", cmd_inspect, cli_inspect_usage}, {"mkimage", cmd_mkimage, cli_mkimage_usage},
    {"flash", cmd_flash, cli_flash_usage},       {"info", cmd_info, cli_info_usage},
    {"keygen", cmd_keygen, cli_keygen_usage},    {"sign", cmd_sign, cli_sign_usage},
    {"verify", cmd_verify, cli_verify_usage},
};

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(main_usage, stderr);
    return CLI_USAGE;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    if (argc > 2 && strcmp(cmd, "help") == 0) {
      for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[2], commands[i].name) == 0) {
          fputs(commands[i].usage, stdout);
          return CLI_OK;
        }
      return cli_usage_error(NULL, "unknown command '%s'", argv[2]);
    }
    fputs(main_usage, stdout);
    return CLI_OK;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
    printf("espfleet %s\n", ESPFLEET_VERSION);
    return CLI_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp(cmd, commands[i].name) != 0) continue;
    if (cli_wants_help(argc - 1, argv + 1)) {
      fputs(commands[i].usage, stdout);
      return CLI_OK;
    }
    return commands[i].run(argc - 1, argv + 1);
  }
  return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
