/* The fake ESP shared by the unit tests (see fake_esp.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "ctrl_msg.h"
#include "espfleet/clock.h"
#include "espfleet/ctrl.h"
#include "fake_esp.h"

static void make_raw(int fd) {
  struct termios t;
  assert_int_equal(tcgetattr(fd, &t), 0);
  cfmakeraw(&t);
  assert_int_equal(tcsetattr(fd, TCSANOW, &t), 0);
}

static void fake_make_pty(struct fake *f) {
  char name[128], tmp[PATH_MAX + 16];
  f->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  assert_true(f->master >= 0);
  assert_int_equal(grantpt(f->master), 0);
  assert_int_equal(unlockpt(f->master), 0);
  assert_int_equal(ptsname_r(f->master, name, sizeof name), 0);
  f->keeper = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  assert_true(f->keeper >= 0);
  /* Raw before any byte flows, or the line discipline would echo requests. */
  make_raw(f->keeper);
  snprintf(tmp, sizeof tmp, "%s.tmp", f->link);
  unlink(tmp);
  assert_int_equal(symlink(name, tmp), 0);
  assert_int_equal(rename(tmp, f->link), 0);
}

static void fake_kill_pty(struct fake *f) {
  unlink(f->link);
  if (f->keeper >= 0) close(f->keeper);
  if (f->master >= 0) close(f->master);
  f->keeper = f->master = -1;
}

static void fake_send(struct fake *f, ef_ctrl_msg *m, const char *ep) {
  static uint8_t buf[EF_TLV_MAX_FRAME];
  size_t n = ef_ctrl_msg_frame(&m->msg, ep, buf, sizeof buf);
  assert_true(n > 0);
  for (size_t off = 0; off < n;) {
    ssize_t w = write(f->master, buf + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return; /* the client is gone; the test will notice */
    off += (size_t)w;
  }
}

static void fake_resp(struct fake *f, int req_id, int32_t uid, int32_t resp) {
  ef_ctrl_msg m;
  assert_int_equal(ef_ctrl_msg_init(&m, req_id + EF_CTRL_RESP_OFFSET, f->uid_zero ? 0 : uid), EF_OK);
  assert_int_equal(ef_ctrl_msg_set_resp(&m, resp), EF_OK);
  fake_send(f, &m, EF_TLV_EP_RESP);
}

static void fake_fw(struct fake *f, int32_t uid, const char *name) {
  ef_ctrl_msg m;
  assert_int_equal(ef_ctrl_msg_init(&m, 223, f->uid_zero ? 0 : uid), EF_OK);
  m.body.resp_get_fw_version.name = (char *)name;
  m.body.resp_get_fw_version.major1 = 1;
  m.body.resp_get_fw_version.minor = 3;
  fake_send(f, &m, EF_TLV_EP_RESP);
}

static void fake_event(struct fake *f, int id, int32_t uid, int32_t hb, const char *ep) {
  ef_ctrl_msg m;
  static uint8_t init[] = {0x01, 0x02};
  assert_int_equal(ef_ctrl_msg_init(&m, id, uid), EF_OK);
  if (id == EF_CTRL_EVENT_HEARTBEAT) m.body.event_heartbeat.hb_num = hb;
  if (id == EF_CTRL_EVENT_ESP_INIT) {
    m.body.event_esp_init.init_data.data = init;
    m.body.event_esp_init.init_data.len = sizeof init;
  }
  fake_send(f, &m, ep);
}

static void fake_handle(struct fake *f, const Espfleet__CtrlMsg *m) {
  int32_t uid = m->uid;
  /* like the firmware, msg_type is not looked at: requests leave it unset */
  if (uid <= f->last_uid) f->uids_increasing = 0;
  f->last_uid = uid;
  switch ((int)m->msg_id) {
  case EF_CTRL_REQ_OTA_BEGIN:
    f->begins++;
    f->img_len = 0;
    if (f->silent_begin) break;
    fake_resp(f, EF_CTRL_REQ_OTA_BEGIN, uid, f->refuse_begin ? -1 : 0);
    break;
  case EF_CTRL_REQ_OTA_WRITE: {
    f->writes++;
    const ProtobufCBinaryData *d = &m->req_ota_write->ota_data;
    f->img = realloc(f->img, f->img_len + d->len);
    memcpy(f->img + f->img_len, d->data, d->len);
    f->img_len += d->len;
    if (f->hangup_on_write == f->writes) {
      f->pending_hangup = 1;
      break;
    }
    if (f->silent_from_write && f->writes >= f->silent_from_write) break; /* stalled: never answered */
    if (f->hold_writes) {
      f->held[f->held_n++] = uid;
      if (f->held_n > f->max_held) f->max_held = f->held_n;
      if (f->held_n >= f->hold_writes) {
        for (int i = 0; i < f->held_n; i++) fake_resp(f, EF_CTRL_REQ_OTA_WRITE, f->held[i], 0);
        f->held_n = 0;
      }
      break;
    }
    fake_resp(f, EF_CTRL_REQ_OTA_WRITE, uid, f->refuse_write == f->writes ? -1 : 0);
    break;
  }
  case EF_CTRL_REQ_OTA_END:
    f->ends++;
    if (f->end_delay_ms) ef_sleep_ms(f->end_delay_ms);
    fake_resp(f, EF_CTRL_REQ_OTA_END, uid, 0);
    if (f->reboot_after_end) f->pending_hangup = 1;
    break;
  case EF_CTRL_REQ_ENABLE_DISABLE:
    f->features++;
    f->last_feature = (int)m->req_enable_disable->feature;
    f->last_enable = m->req_enable_disable->enable;
    fake_resp(f, EF_CTRL_REQ_ENABLE_DISABLE, uid, 0);
    break;
  case EF_CTRL_REQ_GET_FW_VERSION:
    f->fw_reqs++;
    if (f->first_after_boot) {
      /* Booting: the request is lost, the firmware announces itself. */
      f->first_after_boot = 0;
      fake_event(f, EF_CTRL_EVENT_ESP_INIT, 0, 0, EF_TLV_EP_EVENT);
      break;
    }
    if (f->late_mode && f->fw_reqs == 1) {
      f->late_uid = uid;
      break;
    }
    if (f->late_mode && f->fw_reqs == 2) fake_fw(f, f->late_uid, "LATE");
    if (f->events_mode) {
      fake_event(f, EF_CTRL_EVENT_HEARTBEAT, 0, 7, EF_TLV_EP_EVENT);
      fake_event(f, EF_CTRL_EVENT_ESP_INIT, 0, 0, EF_TLV_EP_EVENT);
      /* An event carrying the request's uid, even on ctrlResp, is no answer. */
      fake_event(f, EF_CTRL_EVENT_HEARTBEAT, uid, 8, EF_TLV_EP_RESP);
    }
    fake_fw(f, uid, "FG");
    break;
  default: break;
  }
}

/* Waits @p ms unless asked to stop; returns 1 when asked to stop. */
static int fake_pause(struct fake *f, int ms) {
  struct pollfd p = {.fd = f->stop_pipe[0], .events = POLLIN};
  return poll(&p, 1, ms) > 0;
}

static void *fake_main(void *arg) {
  struct fake *f = arg;
  uint8_t buf[4096];
  for (;;) {
    struct pollfd p[2] = {{.fd = f->stop_pipe[0], .events = POLLIN}, {.fd = f->master, .events = POLLIN}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[0].revents) break;
    if (!(p[1].revents & POLLIN)) continue;
    ssize_t n = read(f->master, buf, sizeof buf);
    if (n <= 0) continue;
    pthread_mutex_lock(&f->mu);
    if (ef_tlv_reader_feed(f->rd, buf, (size_t)n) != EF_OK) ef_tlv_reader_reset(f->rd);
    ef_tlv_frame fr;
    while (ef_tlv_reader_next(f->rd, &fr)) {
      Espfleet__CtrlMsg *m = NULL;
      if (ef_ctrl_msg_parse(fr.payload, fr.payload_len, &m) == EF_OK) fake_handle(f, m);
      ef_ctrl_msg_free(m);
      if (f->pending_hangup) break;
    }
    int hang = f->pending_hangup;
    pthread_mutex_unlock(&f->mu);
    if (hang) {
      /* The ESP restarts: the node goes away for a while, then a new pty
       * appears at the same path and the firmware boots. */
      if (fake_pause(f, 50)) break;
      pthread_mutex_lock(&f->mu);
      fake_kill_pty(f);
      pthread_mutex_unlock(&f->mu);
      if (fake_pause(f, 300)) break;
      pthread_mutex_lock(&f->mu);
      fake_make_pty(f);
      ef_tlv_reader_reset(f->rd);
      f->pending_hangup = 0;
      f->recreated++;
      f->first_after_boot = 1;
      pthread_mutex_unlock(&f->mu);
    }
  }
  return NULL;
}

struct fake *fake_new(void) {
  struct fake *f = calloc(1, sizeof *f);
  assert_non_null(f);
  snprintf(f->dir, sizeof f->dir, "%s/ef-ctrl-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->link, sizeof f->link, "%s/esp", f->dir);
  f->rd = malloc(sizeof *f->rd);
  assert_non_null(f->rd);
  ef_tlv_reader_reset(f->rd);
  f->uids_increasing = 1;
  pthread_mutex_init(&f->mu, NULL);
  assert_int_equal(pipe(f->stop_pipe), 0);
  fake_make_pty(f);
  return f;
}

void fake_start(struct fake *f) { assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0); }

void fake_free(struct fake *f) {
  if (write(f->stop_pipe[1], "x", 1) != 1) fail();
  pthread_join(f->th, NULL);
  fake_kill_pty(f);
  rmdir(f->dir);
  close(f->stop_pipe[0]);
  close(f->stop_pipe[1]);
  pthread_mutex_destroy(&f->mu);
  free(f->rd);
  free(f->img);
  free(f);
}

int fake_seen(struct fake *f, const int *field) {
  pthread_mutex_lock(&f->mu);
  int v = *field;
  pthread_mutex_unlock(&f->mu);
  return v;
}

int fake_got_image(struct fake *f, const uint8_t *img, size_t n) {
  pthread_mutex_lock(&f->mu);
  int same = f->img_len == n && memcmp(f->img, img, n) == 0;
  pthread_mutex_unlock(&f->mu);
  return same;
}

void fake_set(struct fake *f, int *field, int v) {
  pthread_mutex_lock(&f->mu);
  *field = v;
  pthread_mutex_unlock(&f->mu);
}
