/* A file as an ef_source: what `espfleet flash` streams a local image from. */
#include "espfleet/source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct file_ctx {
  int fd;
};

static ef_err file_read(ef_source *s, uint8_t *buf, size_t cap, size_t *got, ef_status *st) {
  struct file_ctx *f = s->ctx;
  for (;;) {
    ssize_t n = read(f->fd, buf, cap);
    if (n >= 0) {
      *got = (size_t)n;
      return EF_OK;
    }
    if (errno == EINTR) continue;
    *got = 0;
    return ef_status_fail(st, EF_ERR_IO, "read failed: %s", strerror(errno));
  }
}

ef_err ef_file_source_open(const char *path, ef_source *src, ef_status *st) {
  ef_err err = EF_OK;
  struct file_ctx *f = calloc(1, sizeof *f);
  if (!f) {
    err = ef_status_fail(st, EF_ERR_NOMEM, NULL);
    goto out;
  }
  f->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) {
    err = ef_status_fail(st, EF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  /* The engine reads front to back once; tell the kernel so it reads ahead. */
  (void)posix_fadvise(f->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  src->read = file_read;
  src->ctx = f;
  f = NULL;
out:
  free(f);
  return err;
}

void ef_file_source_close(ef_source *src) {
  struct file_ctx *f = src ? src->ctx : NULL;
  if (!f) return;
  close(f->fd);
  free(f);
  src->ctx = NULL;
}
