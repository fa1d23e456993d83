/*
 * A small in-memory file system for the journal's file I/O seam
 * (client/jobs/journal_io.h), for the fuzz harnesses: one directory, MEMFS_DIR,
 * files as byte strings. A harness runs thousands of loads and saves a
 * second, with no disk and nothing left behind. Not a crash model (that is
 * tests/unit/test_journal_crash.c).
 */
#ifndef ESPFLEET_FUZZ_MEMFS_H
#define ESPFLEET_FUZZ_MEMFS_H

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "journal_io.h"

#define MEMFS_DIR   "/mem"
#define MEMFS_FILES 8
#define MEMFS_FDS   4

static struct {
  char name[64];
  unsigned char *data;
  size_t len;
  int used;
} memfs_file[MEMFS_FILES];
static struct {
  int used, file, dir;
  size_t off;
} memfs_fd[MEMFS_FDS];

static void memfs_reset(void) {
  for (int i = 0; i < MEMFS_FILES; i++) free(memfs_file[i].data);
  memset(memfs_file, 0, sizeof memfs_file);
  memset(memfs_fd, 0, sizeof memfs_fd);
}

static const char *memfs_name(const char *path) {
  size_t n = strlen(MEMFS_DIR);
  return strncmp(path, MEMFS_DIR "/", n + 1) == 0 ? path + n + 1 : NULL;
}

static int memfs_find(const char *name) {
  for (int i = 0; i < MEMFS_FILES; i++)
    if (memfs_file[i].used && strcmp(memfs_file[i].name, name) == 0) return i;
  return -1;
}

/* Puts @p len bytes at MEMFS_DIR/@p name. */
static void memfs_put(const char *name, const void *data, size_t len) {
  int i = memfs_find(name);
  for (int k = 0; i < 0 && k < MEMFS_FILES; k++)
    if (!memfs_file[k].used) i = k;
  if (i < 0) abort();
  free(memfs_file[i].data);
  memfs_file[i].used = 1;
  strncpy(memfs_file[i].name, name, sizeof memfs_file[i].name - 1);
  memfs_file[i].data = malloc(len ? len : 1);
  if (!memfs_file[i].data) abort();
  if (len) memcpy(memfs_file[i].data, data, len);
  memfs_file[i].len = len;
}

static int memfs_newfd(int file, int dir) {
  for (int i = 0; i < MEMFS_FDS; i++)
    if (!memfs_fd[i].used) {
      memfs_fd[i].used = 1;
      memfs_fd[i].file = file;
      memfs_fd[i].dir = dir;
      memfs_fd[i].off = 0;
      return 100 + i;
    }
  errno = EMFILE;
  return -1;
}

static int memfs_fdi(int fd) {
  int i = fd - 100;
  return i >= 0 && i < MEMFS_FDS && memfs_fd[i].used ? i : -1;
}

static int memfs_open(const char *path, int flags, mode_t mode) {
  (void)mode;
  if (strcmp(path, MEMFS_DIR) == 0) return memfs_newfd(-1, 1);
  const char *name = memfs_name(path);
  if (!name) {
    errno = ENOENT;
    return -1;
  }
  int i = memfs_find(name);
  if (i >= 0 && (flags & O_CREAT) && (flags & O_EXCL)) {
    errno = EEXIST;
    return -1;
  }
  if (i < 0) {
    if (!(flags & O_CREAT)) {
      errno = ENOENT;
      return -1;
    }
    memfs_put(name, "", 0);
    i = memfs_find(name);
  }
  if (flags & O_TRUNC) memfs_file[i].len = 0;
  return memfs_newfd(i, 0);
}

static ssize_t memfs_read(int fd, void *buf, size_t n) {
  int i = memfs_fdi(fd);
  if (i < 0 || memfs_fd[i].dir) {
    errno = EBADF;
    return -1;
  }
  size_t len = memfs_file[memfs_fd[i].file].len, off = memfs_fd[i].off;
  if (n > len - off) n = len - off;
  memcpy(buf, memfs_file[memfs_fd[i].file].data + off, n);
  memfs_fd[i].off += n;
  return (ssize_t)n;
}

static ssize_t memfs_write(int fd, const void *buf, size_t n) {
  int i = memfs_fdi(fd);
  if (i < 0 || memfs_fd[i].dir) {
    errno = EBADF;
    return -1;
  }
  int f = memfs_fd[i].file;
  size_t end = memfs_fd[i].off + n;
  if (end > memfs_file[f].len) {
    unsigned char *p = realloc(memfs_file[f].data, end);
    if (!p) abort();
    memfs_file[f].data = p;
    memfs_file[f].len = end;
  }
  memcpy(memfs_file[f].data + memfs_fd[i].off, buf, n);
  memfs_fd[i].off = end;
  return (ssize_t)n;
}

static int memfs_fstat(int fd, struct stat *sb) {
  int i = memfs_fdi(fd);
  if (i < 0) {
    errno = EBADF;
    return -1;
  }
  memset(sb, 0, sizeof *sb);
  sb->st_mode = memfs_fd[i].dir ? S_IFDIR | 0700 : S_IFREG | 0600;
  if (!memfs_fd[i].dir) sb->st_size = (off_t)memfs_file[memfs_fd[i].file].len;
  return 0;
}

static int memfs_fsync(int fd) { return memfs_fdi(fd) < 0 ? (errno = EBADF, -1) : 0; }

static int memfs_close(int fd) {
  int i = memfs_fdi(fd);
  if (i < 0) {
    errno = EBADF;
    return -1;
  }
  memfs_fd[i].used = 0;
  return 0;
}

static int memfs_rename(const char *from, const char *to) {
  const char *a = memfs_name(from), *b = memfs_name(to);
  int i = a ? memfs_find(a) : -1;
  if (i < 0 || !b) {
    errno = ENOENT;
    return -1;
  }
  int j = memfs_find(b);
  if (j >= 0 && j != i) {
    free(memfs_file[j].data);
    memset(&memfs_file[j], 0, sizeof memfs_file[j]);
  }
  memset(memfs_file[i].name, 0, sizeof memfs_file[i].name);
  strncpy(memfs_file[i].name, b, sizeof memfs_file[i].name - 1);
  return 0;
}

static int memfs_unlink(const char *path) {
  const char *name = memfs_name(path);
  int i = name ? memfs_find(name) : -1;
  if (i < 0) {
    errno = ENOENT;
    return -1;
  }
  free(memfs_file[i].data);
  memset(&memfs_file[i], 0, sizeof memfs_file[i]);
  return 0;
}

static int memfs_mkdir(const char *path, mode_t mode) {
  (void)path;
  (void)mode;
  errno = EEXIST;
  return -1;
}

static int memfs_stat(const char *path, struct stat *sb) {
  memset(sb, 0, sizeof *sb);
  if (strcmp(path, MEMFS_DIR) != 0) {
    errno = ENOENT;
    return -1;
  }
  sb->st_mode = S_IFDIR | 0700;
  return 0;
}

static int memfs_statvfs(const char *path, struct statvfs *s) {
  (void)path;
  memset(s, 0, sizeof *s);
  s->f_bavail = 1u << 20;
  s->f_frsize = 4096;
  return 0;
}

static const ef_journal_io memfs_io = {
    .open = memfs_open,
    .read = memfs_read,
    .write = memfs_write,
    .fstat = memfs_fstat,
    .fsync = memfs_fsync,
    .close = memfs_close,
    .rename = memfs_rename,
    .unlink = memfs_unlink,
    .mkdir = memfs_mkdir,
    .stat = memfs_stat,
    .statvfs = memfs_statvfs,
};

#endif
