/**
 * @file log.h
 * @brief Leveled logging to stderr, journald-friendly.
 *
 * When stderr is connected to journald (JOURNAL_STREAM is set), lines carry a
 * "<N>" syslog priority prefix that journald turns into the entry's priority;
 * otherwise they carry a readable level word. Thread-safe: one write(2) a line.
 */
#ifndef ESPFLEET_LOG_H
#define ESPFLEET_LOG_H

typedef enum { EF_LOG_ERROR = 0, EF_LOG_WARN, EF_LOG_INFO, EF_LOG_DEBUG } ef_log_level;

/** Sets the most verbose level that is printed (default EF_LOG_INFO). */
void ef_log_set_level(ef_log_level level);

/** Parses "error", "warn", "info" or "debug"; returns -1 when unknown. */
int ef_log_level_parse(const char *name);

/** Sets the program name printed on every line (default "espfleet"). */
void ef_log_set_ident(const char *ident);

/**
 * Where log lines go. The library never decides that for a program: by
 * default lines go to stderr as described above; a program that wants them
 * elsewhere (its own logger, a test that collects them) installs a handler.
 * @p line is the formatted message without level word or newline. The
 * handler may be called from any thread, concurrently.
 */
typedef void (*ef_log_handler)(void *arg, ef_log_level level, const char *line);

/** Installs @p fn (NULL restores the stderr default). Not thread-safe:
 *  call it before starting threads. */
void ef_log_set_handler(ef_log_handler fn, void *arg);

/** Prints one line at @p level, printf-style. */
void ef_log(ef_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ef_error(...) ef_log(EF_LOG_ERROR, __VA_ARGS__)
#define ef_warn(...)  ef_log(EF_LOG_WARN, __VA_ARGS__)
#define ef_info(...)  ef_log(EF_LOG_INFO, __VA_ARGS__)
#define ef_debug(...) ef_log(EF_LOG_DEBUG, __VA_ARGS__)

#endif
