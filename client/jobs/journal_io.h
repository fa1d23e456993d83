/*
 * Internal to the jobs module: the journal's file I/O, as a table of the
 * system calls it makes, so that a test can put a simulated file system under
 * it (tests/unit/test_journal_crash.c drops whatever was not synced at every
 * step of a save, as a power loss would). Not a public header; the daemon
 * never replaces it.
 *
 * Every call has the system call's contract: -1 with errno on failure.
 */
#ifndef ESPFLEET_JOURNAL_IO_H
#define ESPFLEET_JOURNAL_IO_H

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

typedef struct {
  int (*open)(const char *path, int flags, mode_t mode);
  ssize_t (*read)(int fd, void *buf, size_t n);
  ssize_t (*write)(int fd, const void *buf, size_t n);
  int (*fstat)(int fd, struct stat *st);
  int (*fsync)(int fd); /* also of a directory opened with O_DIRECTORY */
  int (*close)(int fd);
  int (*rename)(const char *from, const char *to);
  int (*unlink)(const char *path);
  int (*mkdir)(const char *path, mode_t mode);
  int (*stat)(const char *path, struct stat *st); /* follows links: state_dir may be one */
  int (*statvfs)(const char *path, struct statvfs *s);
} ef_journal_io;

/* Puts @p io under every journal function; NULL restores the system's.
 * Not synchronised: set it before any journal call, in tests only. */
void ef_journal_io_set(const ef_journal_io *io);

#endif
