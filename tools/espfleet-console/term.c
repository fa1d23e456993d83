/*
 * Terminal output: whether stdout is a terminal, its size, a live view that
 * is redrawn in place (watch), and aligned tables that are plain on a pipe
 * and readable on a terminal (bold header, coloured states).
 *
 * Every cell comes from the protocol module's readers or from the console
 * itself, so it holds no control characters: the only escape sequences on
 * the screen are the ones written here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "console.h"

#define SGR_RESET "\033[0m"
#define SGR_BOLD  "\033[1m"

bool con_term_is_tty(void) {
  const char *term = getenv("TERM");
  return isatty(STDOUT_FILENO) && term && *term && strcmp(term, "dumb") != 0;
}

void con_term_size(int *cols, int *rows) {
  struct winsize ws;
  *cols = 80;
  *rows = 24;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
    *cols = ws.ws_col;
    *rows = ws.ws_row;
  }
}

static bool live;

static void live_end_at_exit(void) { con_term_live_end(); }

void con_term_live_begin(void) {
  static bool registered;
  if (!registered) registered = atexit(live_end_at_exit) == 0;
  live = true;
  /* hide the cursor, no autowrap, home, clear */
  fputs("\033[?25l\033[?7l\033[H\033[2J", stdout);
  fflush(stdout);
}

void con_term_live_end(void) {
  if (!live) return;
  live = false;
  fputs(SGR_RESET "\033[?7h\033[?25h", stdout);
  fflush(stdout);
}

const char *con_term_state_color(const char *state_name) {
  ef_job_state s;
  if (!state_name || ef_state_from_name(state_name, &s) != EF_OK) return "";
  switch (s) {
  case EF_STATE_SUCCEEDED: return "\033[32m"; /* green */
  case EF_STATE_FAILED:
  case EF_STATE_REJECTED:
  case EF_STATE_CANCELED: return "\033[31m"; /* red */
  case EF_STATE_SKIPPED:
  case EF_STATE_IDLE: return "\033[2m"; /* dim */
  default: return "\033[33m";           /* yellow: in progress */
  }
}

size_t con_text_width(const char *s) {
  size_t w = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) w++; /* count lead bytes, not continuations */
  return w;
}

struct con_table {
  size_t cols;
  char **head;
  char **cells;  /* rows × cols */
  char **colors; /* rows × cols, NULL = none */
  size_t rows, cap;
};

static void free_cells(char **cells, size_t n) {
  for (size_t i = 0; cells && i < n; i++) free(cells[i]);
  free(cells);
}

con_table *con_table_new(size_t cols, const char *const *head) {
  con_table *t = calloc(1, sizeof *t);
  if (!t || !(t->head = calloc(cols, sizeof *t->head))) goto fail;
  t->cols = cols;
  for (size_t i = 0; i < cols; i++)
    if (!(t->head[i] = strdup(head[i]))) goto fail;
  return t;
fail:
  con_table_free(t);
  return NULL;
}

bool con_table_add(con_table *t, const char *const *cells, const char *const *colors) {
  if (t->rows == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    char **c = calloc(cap * t->cols, sizeof *c), **k = calloc(cap * t->cols, sizeof *k);
    if (!c || !k) {
      free(c);
      free(k);
      return false;
    }
    if (t->rows) {
      memcpy(c, t->cells, t->rows * t->cols * sizeof *c);
      memcpy(k, t->colors, t->rows * t->cols * sizeof *k);
    }
    free(t->cells);
    free(t->colors);
    t->cells = c;
    t->colors = k;
    t->cap = cap;
  }
  char **row = &t->cells[t->rows * t->cols], **rowc = &t->colors[t->rows * t->cols];
  bool ok = true;
  for (size_t i = 0; i < t->cols; i++) {
    row[i] = strdup(cells[i] ? cells[i] : "");
    /* an empty cell needs no colour: it would only add escape sequences */
    bool colored = colors && colors[i] && *colors[i] && cells[i] && *cells[i];
    rowc[i] = colored ? strdup(colors[i]) : NULL;
    ok = ok && row[i] && (!colored || rowc[i]);
  }
  t->rows++; /* counted even when a copy failed, so con_table_free frees what was copied */
  return ok;
}

size_t con_table_rows(const con_table *t) { return t->rows; }

/* Each element is a pointer to a row's first cell. */
static int by_first_cell(const void *a, const void *b) {
  return strcmp(**(char **const *)a, **(char **const *)b);
}

void con_table_sort(con_table *t) {
  if (t->rows < 2) return;
  /* Rows move as blocks of cols pointers; sort an index of row starts, then rebuild. */
  char ***idx = malloc(t->rows * sizeof *idx);
  char **cells = malloc(t->rows * t->cols * sizeof *cells);
  char **colors = malloc(t->rows * t->cols * sizeof *colors);
  if (!idx || !cells || !colors) goto out; /* unsorted is still a table */
  for (size_t r = 0; r < t->rows; r++) idx[r] = &t->cells[r * t->cols];
  qsort(idx, t->rows, sizeof *idx, by_first_cell);
  for (size_t r = 0; r < t->rows; r++) {
    size_t from = (size_t)(idx[r] - t->cells);
    memcpy(&cells[r * t->cols], &t->cells[from], t->cols * sizeof *cells);
    memcpy(&colors[r * t->cols], &t->colors[from], t->cols * sizeof *colors);
  }
  free(t->cells);
  free(t->colors);
  t->cells = cells;
  t->colors = colors;
  cells = colors = NULL;
out:
  free(idx);
  free(cells);
  free(colors);
}

static void print_cell(FILE *f, const char *text, const char *color, size_t width, bool last) {
  if (color) fputs(color, f);
  fputs(text, f);
  if (color) fputs(SGR_RESET, f);
  if (!last)
    for (size_t w = con_text_width(text); w < width + 2; w++) fputc(' ', f);
}

void con_table_print(const con_table *t, FILE *f, bool tty, size_t max_rows, const char *eol) {
  size_t *w = calloc(t->cols, sizeof *w);
  size_t shown = max_rows && t->rows > max_rows ? max_rows : t->rows;
  if (!w) return;
  for (size_t i = 0; i < t->cols; i++) w[i] = con_text_width(t->head[i]);
  for (size_t r = 0; r < shown; r++)
    for (size_t i = 0; i < t->cols; i++) {
      size_t cw = con_text_width(t->cells[r * t->cols + i]);
      if (cw > w[i]) w[i] = cw;
    }
  for (size_t i = 0; i < t->cols; i++)
    print_cell(f, t->head[i], tty ? SGR_BOLD : NULL, w[i], i + 1 == t->cols);
  fputs(eol, f);
  for (size_t r = 0; r < shown; r++) {
    for (size_t i = 0; i < t->cols; i++)
      print_cell(f, t->cells[r * t->cols + i], tty ? t->colors[r * t->cols + i] : NULL, w[i],
                 i + 1 == t->cols);
    fputs(eol, f);
  }
  if (shown < t->rows) fprintf(f, "... %zu more%s", t->rows - shown, eol);
  free(w);
}

void con_table_free(con_table *t) {
  if (!t) return;
  free_cells(t->head, t->cols);
  free_cells(t->cells, t->rows * t->cols);
  free_cells(t->colors, t->rows * t->cols);
  free(t);
}
