/* Progress display for `espfleet flash`. */
#include "progress.h"

#include <inttypes.h>
#include <unistd.h>

#include "espfleet/clock.h"

#define BAR_WIDTH 30
#define REDRAW_MS 100 /* at most 10 redraws a second: a terminal is slow too */

void cli_progress_init(cli_progress *p, FILE *out) {
  p->out = out;
  p->tty = isatty(fileno(out)) == 1;
  p->drawn = false;
  p->last_step = 0;
  p->start_ms = ef_mono_ms();
  p->last_draw_ms = 0;
}

void cli_progress_update(cli_progress *p, uint64_t done, uint64_t total) {
  int pct = total ? (int)(done * 100 / total) : 0;
  if (pct > 100) pct = 100;
  if (!p->tty) {
    if (!total) return;
    int step = pct / 10;
    if (step > p->last_step) {
      p->last_step = step;
      fprintf(p->out, "progress %d%%\n", step * 10);
      fflush(p->out);
    }
    return;
  }
  int64_t now = ef_mono_ms();
  bool final = total && done >= total;
  if (!final && p->drawn && now - p->last_draw_ms < REDRAW_MS) return;
  p->last_draw_ms = now;
  double elapsed = (double)(now - p->start_ms) / 1000.0;
  double kib_s = elapsed > 0 ? (double)done / 1024.0 / elapsed : 0;
  char bar[BAR_WIDTH + 1];
  int fill = total ? (int)(done * BAR_WIDTH / total) : 0;
  if (fill > BAR_WIDTH) fill = BAR_WIDTH;
  for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < fill ? '#' : '.';
  bar[BAR_WIDTH] = '\0';
  fprintf(p->out, "\r[%s] %3d%%  %.1f/%.1f MiB  %6.0f KiB/s", bar, pct, (double)done / 1048576.0,
          (double)total / 1048576.0, kib_s);
  fflush(p->out);
  p->drawn = true;
}

void cli_progress_end(cli_progress *p) {
  if (p->tty && p->drawn) fputc('\n', p->out);
  p->drawn = false;
  fflush(p->out);
}
