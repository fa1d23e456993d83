#include "pty.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
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

  /* Unprivileged hosts may open it (grantpt made it 0620 for us): the
   * EBUSY rule below only applies to them. */
  if (fchmod(p->slave, 0666) != 0) ef_debug("%s: chmod: %s", p->slave_path, strerror(errno));
  /* Opens and closes of the slave: who is there to read what we send. */
  p->host_opens = 0;
  p->watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (p->watch_fd >= 0 &&
      inotify_add_watch(p->watch_fd, p->slave_path, IN_OPEN | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) < 0) {
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

sim_pty_events sim_pty_take_events(sim_pty *p) {
  sim_pty_events ev = {0, 0};
  char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  if (p->watch_fd < 0) return ev;
  int before = p->host_opens;
  for (;;) {
    ssize_t n = read(p->watch_fd, buf, sizeof buf);
    if (n <= 0) break;
    for (char *q = buf; q < buf + n;) {
      const struct inotify_event *e = (const struct inotify_event *)q;
      if (e->mask & IN_OPEN) {
        ev.opened++;
        if (p->host_opens++ > 0) ev.concurrent++;
      }
      if ((e->mask & (IN_CLOSE_WRITE | IN_CLOSE_NOWRITE)) && p->host_opens > 0) p->host_opens--;
      ef_debug("link: %s%s (%d open)", e->mask & IN_OPEN ? "open" : "",
               e->mask & (IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) ? "close" : "", p->host_opens);
      q += sizeof *e + e->len;
    }
  }
  /* esp_serial_open refuses a second opener with EBUSY; TIOCEXCL does the
   * same for every open() of the slave from now on, ours excepted (we hold
   * our descriptor already). */
  if ((before == 0) != (p->host_opens == 0) && p->slave >= 0 &&
      ioctl(p->slave, p->host_opens > 0 ? TIOCEXCL : TIOCNXCL) != 0)
    ef_debug("%s: exclusive mode: %s", p->slave_path, strerror(errno));
  return ev;
}
