#include "pty.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <termios.h>
#include <unistd.h>

#include "espfleet/log.h"

static ef_err publish_link(const char *target, const char *link) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", link) >= (int)sizeof tmp) return EF_ERR_INVALID_ARG;
  unlink(tmp);
  /* symlink + rename: a host polling the path never sees a half-made link */
  if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
    ef_error("cannot publish %s -> %s: %s", link, target, strerror(errno));
    unlink(tmp);
    return EF_ERR_IO;
  }
  return EF_OK;
}

ef_err sim_pty_up(sim_pty *p, const char *link) {
  ef_err err = EF_ERR_IO;
  struct termios tio;
  p->master = p->slave = p->watch_fd = -1;
  p->link = link;

  p->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (p->master < 0 || grantpt(p->master) != 0 || unlockpt(p->master) != 0 ||
      ptsname_r(p->master, p->slave_path, sizeof p->slave_path) != 0) {
    ef_error("cannot create a pseudo-terminal: %s", strerror(errno));
    goto out;
  }
  p->slave = open(p->slave_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (p->slave < 0 || tcgetattr(p->slave, &tio) != 0) {
    ef_error("%s: %s", p->slave_path, strerror(errno));
    goto out;
  }
  /* raw before anyone can open it: no echo, no line editing, no CR/LF mapping */
  cfmakeraw(&tio);
  if (tcsetattr(p->slave, TCSANOW, &tio) != 0) {
    ef_error("%s: cannot set raw mode: %s", p->slave_path, strerror(errno));
    goto out;
  }
  int fl = fcntl(p->master, F_GETFL);
  if (fl < 0 || fcntl(p->master, F_SETFL, fl | O_NONBLOCK) != 0) goto out;

  /* Best effort: lets the server send ESPInit when the host is there to read it. */
  p->watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (p->watch_fd >= 0 && inotify_add_watch(p->watch_fd, p->slave_path, IN_OPEN) < 0) {
    close(p->watch_fd);
    p->watch_fd = -1;
  }
  err = publish_link(p->slave_path, link);
out:
  if (err != EF_OK) sim_pty_down(p);
  return err;
}

void sim_pty_down(sim_pty *p) {
  if (p->link && p->master >= 0) {
    /* only remove the link if it is still ours */
    char target[sizeof p->slave_path];
    ssize_t n = readlink(p->link, target, sizeof target - 1);
    if (n > 0) {
      target[n] = '\0';
      if (strcmp(target, p->slave_path) == 0) unlink(p->link);
    }
  }
  if (p->watch_fd >= 0) close(p->watch_fd);
  if (p->slave >= 0) close(p->slave);
  if (p->master >= 0) close(p->master);
  p->master = p->slave = p->watch_fd = -1;
}

bool sim_pty_host_opened(sim_pty *p) {
  bool opened = false;
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  if (p->watch_fd < 0) return false;
  for (;;) {
    ssize_t n = read(p->watch_fd, buf, sizeof buf);
    if (n <= 0) break;
    for (char *q = buf; q < buf + n;) {
      const struct inotify_event *ev = (const struct inotify_event *)q;
      if (ev->mask & IN_OPEN) opened = true;
      q += sizeof *ev + ev->len;
    }
  }
  return opened;
}
