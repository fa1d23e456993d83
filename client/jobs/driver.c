/* The host driver's ESP-Hosted release: its format and its line in the kernel log. */
#include "espfleet/driver.h"

#include "espfleet/ctrl.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A /dev/kmsg record is at most about 1 KiB of text plus its dictionary
 * lines; read() needs room for a whole record or it fails with EINVAL. */
#define READ_BUF 8192
/* Longer lines cannot be the driver's short one and are skipped. */
#define LINE_MAX_LEN 2048
/* The kernel ring buffer is a few MiB at most; this bounds a path that never
 * ends (a character device such as /dev/zero given by mistake). */
#define READ_LIMIT (16u * 1024 * 1024)

const char *ef_driver_source_name(ef_driver_source s) {
  switch (s) {
  case EF_DRIVER_SOURCE_CONFIG: return "config";
  case EF_DRIVER_SOURCE_KERNEL_LOG: return "kernel_log";
  default: return "unknown";
  }
}

/* Length of a valid release at the start of @p s (up to @p len bytes), or 0. */
static size_t release_len(const char *s, size_t len) {
  size_t i = 0;
  while (i < len && i < 31 && (isalnum((unsigned char)s[i]) || s[i] == '_')) i++;
  if (i == 0 || i >= len || s[i] != '-') return 0;
  i++;
  for (int part = 0; part < 5; part++) {
    if (part > 0) {
      if (i >= len || s[i] != '.') return 0;
      i++;
    }
    uint64_t v = 0;
    size_t start = i;
    while (i < len && isdigit((unsigned char)s[i])) {
      v = v * 10 + (uint64_t)(s[i] - '0');
      if (v > UINT32_MAX) return 0; /* the firmware's fields are 32 bits */
      i++;
    }
    if (i == start) return 0;
  }
  return i <= EF_FW_RELEASE_MAX ? i : 0;
}

bool ef_fw_release_valid(const char *s) {
  ef_fw_version v;
  /* one grammar for releases: the control client's parser */
  return s && strlen(s) <= EF_FW_RELEASE_MAX && ef_fw_version_parse(s, &v) == EF_OK;
}

bool ef_driver_release_from_line(const char *line, size_t len, char *out, size_t n) {
  static const char marker[] = EF_DRIVER_LOG_MARKER;
  const char *m = line ? memmem(line, len, marker, sizeof marker - 1) : NULL;
  if (!m) return false;
  const char *v = m + sizeof marker - 1;
  size_t rest = len - (size_t)(v - line);
  size_t k = release_len(v, rest);
  /* The release must end the word: "FG-1.0.0.0.0x" is not one. */
  if (k == 0 || (k < rest && !isspace((unsigned char)v[k])) || k >= n) return false;
  memcpy(out, v, k);
  out[k] = '\0';
  return true;
}

ef_err ef_driver_release_read_log(const char *path, char *out, size_t n, bool *found, ef_status *st) {
  char buf[READ_BUF];
  char line[LINE_MAX_LEN];
  size_t used = 0, total = 0;
  bool skipping = false; /* inside a line too long to keep */
  ef_err rc = EF_OK;
  int fd = -1;

  *found = false;
  /* Non-blocking: /dev/kmsg would otherwise wait for the next message once
   * the buffer is read, and a FIFO for a writer. */
  fd = path ? open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) : -1;
  if (fd < 0) {
    rc = path ? ef_status_fail(st, EF_ERR_IO, "cannot open %s: %s", path, strerror(errno))
              : ef_status_fail(st, EF_ERR_IO, "no kernel log path");
    goto out;
  }
  for (;;) {
    if (total >= READ_LIMIT) break;
    ssize_t got = read(fd, buf, sizeof buf);
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE) continue; /* /dev/kmsg: records overwritten meanwhile, read on */
      if (errno == EAGAIN || errno == EWOULDBLOCK) break; /* /dev/kmsg: nothing more now */
      rc = ef_status_fail(st, EF_ERR_IO, "cannot read %s: %s", path, strerror(errno));
      goto out;
    }
    total += (size_t)got;
    /* /dev/kmsg gives one record per read, a file any slice: split on
     * newlines either way. */
    for (ssize_t i = 0; i < got; i++) {
      char ch = buf[i];
      if (ch == '\n') {
        if (!skipping && ef_driver_release_from_line(line, used, out, n)) *found = true;
        used = 0;
        skipping = false;
      } else if (!skipping) {
        if (used < sizeof line)
          line[used++] = ch;
        else
          skipping = true;
      }
    }
  }
  if (!skipping && used > 0 && ef_driver_release_from_line(line, used, out, n)) *found = true;
out:
  if (fd >= 0) close(fd);
  return rc;
}
