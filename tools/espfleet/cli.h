/*
 * Shared pieces of the espfleet CLI: one error line format, argument parsing
 * helpers and the subcommands' entry points.
 */
#ifndef ESPFLEET_CLI_H
#define ESPFLEET_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "espfleet/error.h"

/* Exit codes: 0 success, 1 failure (error line printed), 2 usage error. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/** Longest timeout an option takes, in ms (an hour). */
#define CLI_MAX_TIMEOUT_MS 3600000

/**
 * Prints "espfleet: error: <code_name>: <sentence> (<detail>)" to stderr
 * (without the parenthesis when @p detail is NULL or empty).
 * @return CLI_FAIL.
 */
int cli_fail(ef_err err, const char *detail);

/** Prints "espfleet <cmd>: <message>" and a hint to stderr. @return CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * Parses a byte count: decimal digits with an optional K, M or G suffix
 * (powers of 1024, case-insensitive, optionally followed by "iB" or "B").
 */
bool cli_parse_size(const char *s, uint64_t *out);

/** Parses a decimal integer within [min, max]. */
bool cli_parse_long(const char *s, long min, long max, long *out);

/** True when @p argv holds -h or --help (before a lone "--"). */
bool cli_wants_help(int argc, char **argv);

int cmd_inspect(int argc, char **argv);
int cmd_mkimage(int argc, char **argv);
int cmd_flash(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);

extern const char cli_inspect_usage[];
extern const char cli_mkimage_usage[];
extern const char cli_flash_usage[];
extern const char cli_info_usage[];
extern const char cli_keygen_usage[];
extern const char cli_sign_usage[];
extern const char cli_verify_usage[];

#endif
