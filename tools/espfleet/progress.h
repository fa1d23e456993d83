/*
 * Transfer progress for the CLI: a redrawn bar when stderr is a terminal,
 * plain "progress N%" lines every 10 % otherwise (logs, CI, pipes).
 */
#ifndef ESPFLEET_CLI_PROGRESS_H
#define ESPFLEET_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
  FILE *out;
  bool tty;
  bool drawn;           /* a bar is on screen without its newline */
  int last_step;        /* last 10 % step printed (plain mode) */
  int64_t start_ms;     /* monotonic */
  int64_t last_draw_ms; /* monotonic; 0 = never */
} cli_progress;

/** Starts tracking; decides between bar and plain lines from isatty(@p out). */
void cli_progress_init(cli_progress *p, FILE *out);

/** Reports @p done of @p total bytes (total 0: unknown). Rate-limited. */
void cli_progress_update(cli_progress *p, uint64_t done, uint64_t total);

/** Ends the bar's line so that the next message starts on its own line. */
void cli_progress_end(cli_progress *p);

#endif
