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
  char detail[128];
};

static ef_err file_read(ef_source *s, uint8_t *buf, size_t cap, size_t *got) {
  struct file_ctx *f = s->ctx;
  for (;;) {
    ssize_t n = read(f->fd, buf, cap);
    if (n >= 0) {
      *got = (size_t)n;
      return EF_OK;
    }
    if (errno == EINTR) continue;
    snprintf(f->detail, sizeof f->detail, "read failed: %s", strerror(errno));
    *got = 0;
    return EF_ERR_IO;
  }
}

static const char *file_detail(ef_source *s) { return ((struct file_ctx *)s->ctx)->detail; }

ef_err ef_file_source_open(const char *path, ef_source *src) {
  struct file_ctx *f = calloc(1, sizeof *f);
  if (!f) return EF_ERR_NOMEM;
  f->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) {
    free(f);
    return EF_ERR_IO;
  }
  /* The engine reads front to back once; tell the kernel so it reads ahead. */
  (void)posix_fadvise(f->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  src->read = file_read;
  src->detail = file_detail;
  src->ctx = f;
  return EF_OK;
}

void ef_file_source_close(ef_source *src) {
  struct file_ctx *f = src ? src->ctx : NULL;
  if (!f) return;
  close(f->fd);
  free(f);
  src->ctx = NULL;
}
