/* The ESP-Hosted control device as a raw, re-openable byte stream. */
#include "espfleet/clock.h"
#include "espfleet/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "espfleet/log.h"

/* How often a vanished node is probed while waiting for it to come back. A
 * failed open() costs microseconds, and the sooner the node is open again the
 * sooner the host sees the ESP's boot (benchmarks showed a 50 ms interval as
 * a fixed 40 ms in every update). */
#define REOPEN_INTERVAL_MS 10

struct ef_transport {
  char *path;
  int fd;
  int is_tty; /* a byte stream (pty, UART) rather than the driver's message device */
  unsigned opens;
  ef_transport_cancel_cb cancel; /* asked while waiting; NULL: never */
  void *cancel_arg;
};

static bool canceled(ef_transport *t) { return t->cancel && t->cancel(t->cancel_arg); }

/* How long one poll or sleep of a wait with @p left ms may take: short
 * enough that a cancel is seen within EF_TRANSPORT_CANCEL_POLL_MS. */
static int slice(const ef_transport *t, int left) {
  return t->cancel && left > EF_TRANSPORT_CANCEL_POLL_MS ? EF_TRANSPORT_CANCEL_POLL_MS : left;
}

static ef_err cancel_fail(ef_transport *t, const char *what, ef_status *st) {
  ef_debug("ctrl: canceled while %s %s", what, t->path);
  return ef_status_fail(st, EF_ERR_CANCELED, "canceled while %s %s", what, t->path);
}

static void close_fd(ef_transport *t) {
  if (t->fd >= 0) {
    close(t->fd);
    t->fd = -1;
  }
}

/*
 * Reads and discards whatever is queued: answers to a previous session's
 * requests must not be taken for answers to ours.
 * Returns 0, or -1 when the device is already gone.
 */
static int drain(int fd) {
  uint8_t junk[4096];
  /* Bounded, so a device that never stops talking cannot hold us here. */
  for (int i = 0; i < 256; i++) {
    ssize_t n = read(fd, junk, sizeof junk);
    if (n > 0) continue;
    if (n == 0) return -1; /* hung-up terminal: EOF */
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -1;
  }
  return 0;
}

/* One open attempt. Returns the descriptor or -1 with errno set. */
static int try_open(const char *path) {
  int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  if (isatty(fd)) {
    /* A terminal (the simulator's pty, a UART) would otherwise echo, map
     * CR/LF and buffer lines: the frames are binary. */
    struct termios tio;
    if (tcgetattr(fd, &tio) == 0) {
      cfmakeraw(&tio);
      if (tcsetattr(fd, TCSANOW, &tio) != 0)
        ef_debug("ctrl: cannot set raw mode on %s: %s", path, strerror(errno));
    }
  }
  if (drain(fd) != 0) {
    close(fd);
    errno = EIO;
    return -1;
  }
  return fd;
}

/* Opens the path, retrying until the node is back or the deadline passes. */
static ef_err open_wait(ef_transport *t, int timeout_ms, ef_status *st) {
  int64_t deadline = ef_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  int last_errno = 0;
  close_fd(t);
  for (;;) {
    int fd = try_open(t->path);
    if (fd >= 0) {
      t->fd = fd;
      t->is_tty = isatty(fd);
      t->opens++;
      return EF_OK;
    }
    last_errno = errno;
    if (last_errno == EBUSY) {
      /* esp_serial_open lets one program have the node at a time. Waiting
       * for the other program is the caller's decision, not ours. */
      ef_debug("ctrl: %s is busy: another program holds the ESP control device", t->path);
      return ef_status_fail(st, EF_ERR_ESP_BUSY, "%s is held by another program", t->path);
    }
    int left = ef_ms_left(deadline);
    if (left == 0) break;
    if (canceled(t)) return cancel_fail(t, "waiting for", st);
    ef_sleep_ms(left < REOPEN_INTERVAL_MS ? left : REOPEN_INTERVAL_MS);
  }
  ef_warn("ctrl: cannot open %s: %s", t->path, strerror(last_errno));
  return ef_status_fail(st, EF_ERR_ESP_UNAVAILABLE, "cannot open %s: %s", t->path, strerror(last_errno));
}

ef_err ef_transport_new(const char *path, ef_transport **out, ef_status *st) {
  ef_transport *t = NULL;
  *out = NULL;
  if (!path || !*path) return ef_status_fail(st, EF_ERR_INVALID_ARG, "no device path");
  t = calloc(1, sizeof *t);
  if (!t || !(t->path = strdup(path))) {
    free(t);
    return ef_status_fail(st, EF_ERR_NOMEM, NULL);
  }
  t->fd = -1;
  *out = t;
  return EF_OK;
}

void ef_transport_set_cancel_cb(ef_transport *t, ef_transport_cancel_cb cb, void *arg) {
  t->cancel = cb;
  t->cancel_arg = arg;
}

ef_err ef_transport_open(const char *path, int open_timeout_ms, ef_transport **out, ef_status *st) {
  ef_transport *t = NULL;
  ef_err err = ef_transport_new(path, &t, st);
  if (err == EF_OK) err = open_wait(t, open_timeout_ms, st);
  if (err != EF_OK) {
    ef_transport_close(t);
    t = NULL;
  }
  *out = t;
  return err;
}

void ef_transport_close(ef_transport *t) {
  if (!t) return;
  close_fd(t);
  free(t->path);
  free(t);
}

ef_err ef_transport_reopen(ef_transport *t, int timeout_ms, ef_status *st) {
  return open_wait(t, timeout_ms, st);
}

int ef_transport_is_open(const ef_transport *t) { return t->fd >= 0; }

unsigned ef_transport_open_count(const ef_transport *t) { return t->opens; }

/* The device hung up or failed: forget the descriptor so the next call re-opens. */
static ef_err gone(ef_transport *t, const char *what, int err, ef_status *st) {
  const char *why = err ? strerror(err) : "hang-up";
  ef_info("ctrl: %s on %s: %s; will re-open", what, t->path, why);
  close_fd(t);
  return ef_status_fail(st, EF_ERR_ESP_UNAVAILABLE, "%s on %s: %s", what, t->path, why);
}

ef_err ef_transport_write(ef_transport *t, const uint8_t *buf, size_t len, int timeout_ms, ef_status *st) {
  int64_t deadline = ef_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  size_t done = 0;
  if (t->fd < 0) {
    ef_err err = open_wait(t, timeout_ms, st);
    if (err != EF_OK) return err;
  }
  while (done < len) {
    ssize_t n = write(t->fd, buf + done, len - done);
    if (n > 0 && (size_t)n < len - done && t->is_tty) {
      /* A terminal (the simulator's pty, a UART) is a byte stream: the
       * rest of the frame simply follows. */
      done += (size_t)n;
      continue;
    }
    if (n >= 0) {
      /* The driver sends each write() as one message (esp_serial.c,
       * esp_serial_write: its own sequence number, fragments flagged
       * MORE_FRAGMENT), so the rest of a frame written again would be a
       * second, broken message. It refuses a write above its limit by
       * returning 0 and stops half way when it runs out of buffers: both
       * are errors of this frame, never a reason to write the remainder. */
      if ((size_t)n == len - done) return EF_OK;
      ef_warn("ctrl: %s took %zd of a %zu-byte message", t->path, n, len);
      return ef_status_fail(st, EF_ERR_ESP_WRITE_REFUSED, "%s took %zd of a %zu-byte message", t->path, n,
                            len);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return gone(t, "write failed", errno, st);
    /* Full (nothing was written): wait for room, bounded by the caller's deadline. */
    struct pollfd p = {.fd = t->fd, .events = POLLOUT};
    int left = ef_ms_left(deadline);
    if (left == 0)
      return ef_status_fail(st, EF_ERR_ESP_TIMEOUT, "%s took no bytes within %d ms", t->path, timeout_ms);
    if (canceled(t)) return cancel_fail(t, "writing to", st);
    int r = poll(&p, 1, slice(t, left));
    if (r < 0 && errno != EINTR) return gone(t, "poll failed", errno, st);
    if (r > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL))) return gone(t, "write", 0, st);
  }
  return EF_OK;
}

ef_err ef_transport_read(ef_transport *t, uint8_t *buf, size_t cap, size_t *got, int timeout_ms,
                         ef_status *st) {
  int64_t deadline = ef_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  *got = 0;
  if (t->fd < 0) {
    ef_err err = open_wait(t, timeout_ms, st);
    if (err != EF_OK) return err;
  }
  int spurious = 0; /* poll said readable, read found nothing */
  for (;;) {
    ssize_t n = read(t->fd, buf, cap);
    if (n > 0) {
      *got = (size_t)n;
      return EF_OK;
    }
    /* With VMIN=1 a live terminal never returns 0: 0 is a hung-up tty (its
     * pty master closed) or the end of a non-terminal device. */
    if (n == 0) return gone(t, "end of stream", 0, st);
    if (errno == EINTR) continue;
    /* EIO, ENXIO, ENODEV...: the ESP rebooted or the driver re-initialised. */
    if (errno != EAGAIN && errno != EWOULDBLOCK) return gone(t, "read failed", errno, st);
    struct pollfd p = {.fd = t->fd, .events = POLLIN};
    int left = ef_ms_left(deadline);
    if (left == 0) return EF_OK;
    if (canceled(t)) return cancel_fail(t, "reading from", st);
    /* A driver without poll support reports "readable" all the time; rather
     * than spin on it, fall back to reading every millisecond. */
    if (spurious >= 3) {
      ef_sleep_ms(1);
      continue;
    }
    int r = poll(&p, 1, slice(t, left));
    if (r < 0 && errno != EINTR) return gone(t, "poll failed", errno, st);
    if (r == 0) continue; /* the slice ended: the deadline or a cancel is next */
    if (r > 0 && (p.revents & POLLIN)) spurious++;
    /* Data that arrived before a hang-up is still read first: the loop
     * reads again and only then sees the error or EOF. */
    if (r > 0 && !(p.revents & POLLIN) && (p.revents & (POLLHUP | POLLERR | POLLNVAL)))
      return gone(t, "hang-up", 0, st);
  }
}
