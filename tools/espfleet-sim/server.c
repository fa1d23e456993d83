/*
 * The simulated ESP's event loop: the link (a pty), the firmware's receive
 * path and control task on virtual deadlines, boots and reboots. The
 * request handlers are in firmware.c; esp.h describes the model.
 */
#include "server.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "esp.h"
#include "espfleet/clock.h"
#include "espfleet/image.h"
#include "espfleet/log.h"

#define OUT_CAP        (256 * 1024)
#define OUT_HIGH_WATER (64 * 1024) /* stop handling requests while this much is unsent */

uint64_t sim_now_ns(void) { return (uint64_t)ef_mono_ns(); }

static uint64_t earliest(uint64_t a, uint64_t b) { return a == 0 ? b : (b == 0 || a < b ? a : b); }

static void take_signal(sim_esp *s) {
  struct signalfd_siginfo si;
  while (read(s->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
    ef_info("signal %u: stopping", si.ssi_signo);
    s->quit = true;
  }
}

/* Sleeps until @p deadline, waking early only to stop on a signal. */
static void sleep_until(sim_esp *s, uint64_t deadline) {
  for (;;) {
    uint64_t now = sim_now_ns();
    if (s->quit || now >= deadline) return;
    struct timespec ts = ef_ns_timespec((int64_t)(deadline - now));
    struct pollfd pfd = {.fd = s->sig_fd, .events = POLLIN};
    if (ppoll(&pfd, 1, &ts, NULL) > 0) take_signal(s);
  }
}

void sim_save_header(sim_esp *s, bool durable) {
  if (sim_flash_save(s->flash, durable) != EF_OK) {
    ef_error("cannot write the flash header: %s", strerror(errno));
    s->fatal = EF_ERR_IO;
    s->quit = true;
  }
}

/* ---- the driver's side of the link -------------------------------------- */

/* Opens and closes of the node since we last looked. A second opener is
 * what esp_serial_open refuses with EBUSY. */
static void take_link_events(sim_esp *s) {
  sim_pty_events ev = sim_pty_take_events(&s->pty);
  if (ev.concurrent) {
    s->flash->hdr.counters.concurrent_opens += ev.concurrent;
    ef_warn("a second program opened the link while one had it open: the driver would refuse it (EBUSY)");
  }
}

static void flush_out(sim_esp *s) {
  while (s->out_off < s->out_len && s->pty.master >= 0) {
    ssize_t n = write(s->pty.master, s->out + s->out_off, s->out_len - s->out_off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* EAGAIN: the host is not reading; poll tells us when */
    s->out_off += (size_t)n;
  }
  if (s->out_off == s->out_len) s->out_off = s->out_len = 0;
}

/*
 * Hands one message to the host. The driver drops what the ESP sends while
 * no program has the node open (esp_serial_data_received: "no user app
 * listening"), so nothing waits for the next opener.
 */
static void to_host(sim_esp *s, const uint8_t *frame, size_t len, const char *name) {
  take_link_events(s);
  if (s->pty.watch_fd >= 0 && s->pty.host_opens == 0) {
    s->flash->hdr.counters.dropped_closed++;
    ef_debug("%s dropped: nobody has the device open", name);
    return;
  }
  if (s->out_off > 0) {
    memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
    s->out_len -= s->out_off;
    s->out_off = 0;
  }
  if (len > OUT_CAP - s->out_len) {
    ef_warn("output full: %s not sent", name);
    return;
  }
  memcpy(s->out + s->out_len, frame, len);
  s->out_len += len;
  flush_out(s);
}

void sim_send_event(sim_esp *s, const Espfleet__CtrlMsg *ev) {
  uint8_t frame[256];
  size_t n = ef_ctrl_msg_frame(ev, EF_TLV_EP_EVENT, frame, sizeof frame);
  if (n > 0) to_host(s, frame, n, ef_ctrl_msg_name((int)ev->msg_id));
}

/* ---- the receive task --------------------------------------------------- */

/* Copies a frame as the firmware's buffer would hold it: at most 4096 bytes
 * of it (process_serial_rx_pkt copies min(payload_len, rem_buff_size)). */
static void msg_from_frame(sim_msg *m, const ef_tlv_frame *f, uint64_t now) {
  size_t frame_len = ef_tlv_frame_size(f->endpoint, f->payload_len);
  m->valid = true;
  m->at = now;
  m->frame_len = frame_len;
  m->truncated = frame_len > EF_CTRL_FW_MSG_MAX;
  snprintf(m->endpoint, sizeof m->endpoint, "%s", f->endpoint);
  m->payload_len = m->truncated ? 0 : f->payload_len;
  if (!m->truncated) memcpy(m->payload, f->payload, f->payload_len);
}

/*
 * When the stalled receive task gets the buffer: it re-checks every
 * rx_poll_ms after it started waiting (vTaskDelay(10) at 1000 Hz), so the
 * held message enters at the first such tick after the control task took
 * the previous one.
 */
static uint64_t held_enters_at(const sim_esp *s) {
  uint64_t poll = s->cfg->rx_poll_ms * NS_PER_MS;
  if (poll == 0 || s->r_freed_at <= s->stall_since) return s->stall_since + poll;
  uint64_t ticks = (s->r_freed_at - s->stall_since + poll - 1) / poll;
  return s->stall_since + (ticks ? ticks : 1) * poll;
}

/* The control task can take a message now (it is not blocked on output). */
static bool can_take(const sim_esp *s) { return !s->reset_now && s->out_len - s->out_off < OUT_HIGH_WATER; }

/* Moves messages along the receive path as far as the firmware would have
 * by @p now. Returns the next time something will move, or 0. */
static uint64_t receive(sim_esp *s, uint64_t now) {
  ef_tlv_frame f;
  uint64_t dropped = s->rx->dropped;
  uint64_t next = 0;
  for (;;) {
    if (s->held.valid) {
      if (s->r.valid) break; /* still stalled */
      uint64_t at = held_enters_at(s);
      if (at > now) {
        next = at;
        break;
      }
      s->r = s->held;
      s->r.at = at;
      s->held.valid = false;
      s->moves++;
      continue;
    }
    /* an idle control task takes `r` at once: the next message finds it free */
    if (s->r.valid && s->busy_until == 0 && can_take(s)) break;
    if (!ef_tlv_reader_next(s->rx, &f)) break;
    s->moves++;
    if (!s->r.valid) {
      msg_from_frame(&s->r, &f, now);
    } else {
      /* `while (r.valid) vTaskDelay(10)`: the whole receive path waits */
      msg_from_frame(&s->held, &f, now);
      s->stall_since = now;
      s->flash->hdr.counters.rx_stalls++;
    }
  }
  if (s->rx->dropped != dropped)
    ef_warn("skipped %llu bytes that were not a frame", (unsigned long long)(s->rx->dropped - dropped));
  return next;
}

/* ---- the control task ----------------------------------------------------- */

/* The answer of the request in hand goes out once its handling is done. */
static void finish_request(sim_esp *s) {
  s->busy_until = 0;
  if (s->reset_when_done) {
    s->reset_when_done = false;
    sim_save_header(s, false);
    s->reset_now = true;
    return;
  }
  if (s->answer_len == 0) return;
  s->responses++;
  /* the file is current before the host hears the outcome: a --show right
   * after the host's call returns sees what the host was told */
  sim_save_header(s, false);
  if (sim_faults_fire(&s->cfg->faults, SIM_FAULT_DROP_RESPONSE, s->responses)) {
    ef_info("fault drop-response: response #%llu (%s) not sent", (unsigned long long)s->responses,
            s->answer_name);
  } else {
    to_host(s, s->answer, s->answer_len, s->answer_name);
  }
  s->answer_len = 0;
}

/*
 * Takes the message out of `r` (serial_read_data) and handles it. What the
 * firmware cannot parse it never answers: a truncated message, an endpoint
 * other than "ctrlResp", a payload that is not a CtrlMsg
 * (protocomm_pserial_ctrl_req_handler, data_transfer_handler). msg_type is
 * never looked at.
 */
static void take_request(sim_esp *s, uint64_t start) {
  sim_msg *m = &s->r;
  Espfleet__CtrlMsg *req = NULL;
  m->valid = false;
  s->r_freed_at = start;
  s->moves++;
  if (m->truncated) {
    s->flash->hdr.counters.truncated++;
    ef_warn("a %zu-byte message was cut to %d bytes: it does not decode and gets no answer", m->frame_len,
            EF_CTRL_FW_MSG_MAX);
  } else if (strcmp(m->endpoint, EF_TLV_EP_RESP) != 0) {
    s->flash->hdr.counters.unanswered++;
    ef_warn("message for endpoint \"%s\": no answer", m->endpoint);
  } else if (ef_ctrl_msg_parse(m->payload, m->payload_len, &req) != EF_OK) {
    s->flash->hdr.counters.unanswered++;
    ef_warn("undecodable CtrlMsg (%zu bytes): no answer", m->payload_len);
  } else if (sim_faults_armed(&s->cfg->faults, SIM_FAULT_NO_ANSWER)) {
    ef_debug("fault no-answer: %s ignored", ef_ctrl_msg_name((int)req->msg_id));
  } else {
    sim_handle_request(s, req, start);
    if (s->busy_until <= sim_now_ns()) finish_request(s);
  }
  /* --show sees what happened to a message that is never answered too */
  if (!s->busy_until) sim_save_header(s, false);
  ef_ctrl_msg_free(req);
}

/* Runs the control task up to @p now. Returns when it next has work, or 0. */
static uint64_t control(sim_esp *s, uint64_t now) {
  if (s->busy_until) {
    if (s->busy_until > now) return s->busy_until;
    uint64_t done = s->busy_until;
    finish_request(s);
    /* a queued request starts when the previous one ended, not when the
     * loop noticed: short sleeps that overshoot do not add up */
    if (s->r.valid && !s->reset_now) now = done > s->r.at ? done : s->r.at;
  }
  if (s->r.valid && can_take(s)) {
    uint64_t start = now > s->r.at ? now : s->r.at;
    take_request(s, start);
    if (s->busy_until) return s->busy_until;
  }
  return 0;
}

/* ---- events --------------------------------------------------------------- */

/* ESPInit carries nothing (ctrl_ntfy_ESPInit sets no init_data). */
static void send_init(sim_esp *s) {
  ef_ctrl_msg m;
  s->init_at = 0;
  if (sim_faults_armed(&s->cfg->faults, SIM_FAULT_NO_ANSWER)) return;
  if (ef_ctrl_msg_init(&m, EF_CTRL_EVENT_ESP_INIT, 0) != EF_OK) return;
  ef_debug("sending ESPInit");
  sim_send_event(s, &m.msg);
}

static void send_heartbeat(sim_esp *s) {
  ef_ctrl_msg m;
  s->hb_next += s->hb_period;
  if (ef_ctrl_msg_init(&m, EF_CTRL_EVENT_HEARTBEAT, 0) != EF_OK) return;
  m.body.event_heartbeat.hb_num = ++s->hb_num;
  sim_send_event(s, &m.msg);
}

/* ---- boot, link and the loop -------------------------------------------- */

/* What the bootloader does: boot the selected slot; a newly selected image
 * that fails to boot is marked and the previous one boots instead. */
static void boot(sim_esp *s) {
  sim_flash_header *h = &s->flash->hdr;
  int prev = sim_flash_running_slot(s->flash);
  int slot = (h->boot_slot <= 1 && h->slots[h->boot_slot].state == SIM_SLOT_VALID) ? (int)h->boot_slot : -1;
  h->counters.boots++;
  if (slot >= 0 && slot != prev && sim_faults_fire(&s->cfg->faults, SIM_FAULT_BOOT_FAIL, 0)) {
    ef_info("fault boot-fail: slot %d does not boot; rolling back", slot);
    h->slots[slot].state = SIM_SLOT_BOOT_FAILED;
    h->counters.boots++; /* the bootloader's second attempt */
    slot = -1;
  }
  if (slot < 0) {
    if (prev >= 0)
      slot = prev;
    else if (h->slots[0].state == SIM_SLOT_VALID)
      slot = 0;
    else if (h->slots[1].state == SIM_SLOT_VALID)
      slot = 1;
    h->boot_slot = slot >= 0 ? (uint32_t)slot : SIM_FLASH_NO_SLOT;
  }
  h->running_slot = slot >= 0 ? (uint32_t)slot : SIM_FLASH_NO_SLOT;
  s->running = slot;
  s->ota_active = false;
  s->hb_enabled = false;
  s->hb_num = 0;
  sim_save_header(s, true);
  if (slot >= 0)
    ef_info("booted slot %d: %s %s", slot, h->slots[slot].project, h->slots[slot].version);
  else
    ef_info("booted the factory app (no OTA image)");
}

/* Forgets whatever was on its way: a reboot loses the chip's RAM. */
static void reset_link_state(sim_esp *s) {
  ef_tlv_reader_reset(s->rx);
  s->out_off = s->out_len = 0;
  s->r.valid = s->held.valid = false;
  s->busy_until = 0;
  s->answer_len = 0;
  s->reset_when_done = false;
}

/* After a boot the firmware announces itself with ESPInit (host_reset_task);
 * a host that does not have the node open by then never sees it. */
static ef_err link_up(sim_esp *s) {
  ef_err err = sim_pty_up(&s->pty, s->cfg->link);
  if (err != EF_OK) return err;
  s->init_at = sim_now_ns() + s->cfg->init_delay_ms * NS_PER_MS;
  ef_debug("link %s -> %s", s->cfg->link, s->pty.slave_path);
  return EF_OK;
}

static ef_err reboot(sim_esp *s) {
  ef_info("rebooting");
  sim_pty_down(&s->pty);
  reset_link_state(s);
  s->reboot_at = 0;
  s->reset_now = false;
  sleep_until(s, sim_now_ns() + s->cfg->down_ms * NS_PER_MS);
  if (s->quit) return EF_OK;
  boot(s);
  return link_up(s);
}

static void read_input(sim_esp *s) {
  for (;;) {
    size_t cap = ef_tlv_reader_space(s->rx);
    if (cap > SIM_SCRATCH_SIZE) cap = SIM_SCRATCH_SIZE;
    if (cap == 0) return;
    ssize_t n = read(s->pty.master, s->scratch, cap);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    if (ef_tlv_reader_feed(s->rx, s->scratch, (size_t)n) != EF_OK) return;
    if ((size_t)n < cap) return;
  }
}

/* True while bytes we sent (the answer to OTA end) wait unread in the
 * host's side of the pty, for at most ANSWER_GRACE_MS after the planned
 * reboot: closing the pty would throw them away. */
#define ANSWER_GRACE_MS 1000
static bool answer_unread(sim_esp *s, uint64_t now) {
  int queued = 0;
  if (now >= s->reboot_planned + ANSWER_GRACE_MS * NS_PER_MS) return false;
  if (s->out_len > s->out_off) return true;
  if (s->pty.slave < 0 || ioctl(s->pty.slave, FIONREAD, &queued) != 0) return false;
  return queued > 0 && s->pty.host_opens > 0;
}

static void wait_io(sim_esp *s, uint64_t deadline) {
  struct pollfd pfd[3];
  nfds_t n = 0;
  if (s->init_at) deadline = earliest(deadline, s->init_at);
  if (s->hb_enabled) deadline = earliest(deadline, s->hb_next);
  deadline = earliest(deadline, s->reboot_at);

  pfd[n++] = (struct pollfd){.fd = s->sig_fd, .events = POLLIN};
  short ev = 0;
  if (ef_tlv_reader_space(s->rx) > 0) ev |= POLLIN;
  if (s->out_len > s->out_off) ev |= POLLOUT;
  pfd[n++] = (struct pollfd){.fd = s->pty.master, .events = ev};
  if (s->pty.watch_fd >= 0) pfd[n++] = (struct pollfd){.fd = s->pty.watch_fd, .events = POLLIN};

  struct timespec ts, *tsp = NULL;
  if (deadline) {
    uint64_t now = sim_now_ns();
    ts = ef_ns_timespec((int64_t)(deadline > now ? deadline - now : 0));
    tsp = &ts;
  }
  if (ppoll(pfd, n, tsp, NULL) <= 0) return;
  if (pfd[0].revents) take_signal(s);
  /* opens first: a host that opened and wrote must get its answer */
  if (n > 2 && pfd[2].revents) take_link_events(s);
  if (pfd[1].revents & POLLOUT) flush_out(s);
  if (pfd[1].revents & POLLIN) read_input(s);
}

ef_err sim_serve(sim_config *cfg, sim_flash *flash) {
  sim_esp srv = {.cfg = cfg,
                 .flash = flash,
                 .sig_fd = -1,
                 .running = -1,
                 .pty = {.master = -1, .slave = -1, .watch_fd = -1}};
  sim_esp *s = &srv;
  sigset_t mask;
  ef_err err = EF_ERR_NOMEM;

  s->rx = malloc(sizeof *s->rx);
  s->out = malloc(OUT_CAP);
  s->scratch = malloc(SIM_SCRATCH_SIZE);
  if (!s->rx || !s->out || !s->scratch) goto out;
  ef_tlv_reader_reset(s->rx);
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  s->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (s->sig_fd < 0) {
    err = EF_ERR_INTERNAL;
    goto out;
  }

  boot(s);
  err = link_up(s);
  if (err != EF_OK) goto out;
  ef_info("simulated %s at %s (%s)", ef_chip_name(cfg->chip_id), cfg->link, s->pty.slave_path);

  while (!s->quit) {
    uint64_t now = sim_now_ns();
    if (s->reboot_at && now >= s->reboot_at && !s->reset_now && answer_unread(s, now)) {
      /* the real firmware waits seconds before its restart; with a shorter
       * --reboot-delay-ms the host must at least get to read the answer */
      s->reboot_at = now + NS_PER_MS;
    }
    if (s->reset_now || (s->reboot_at && now >= s->reboot_at)) {
      err = reboot(s);
      if (err != EF_OK) goto out;
      continue;
    }
    if (s->init_at && now >= s->init_at) send_init(s);
    if (s->hb_enabled && now >= s->hb_next) send_heartbeat(s);
    /* Both tasks until neither can move: the control task first, since
     * taking `r` is what lets the next message in. */
    uint64_t next, moves;
    do {
      moves = s->moves;
      next = control(s, now);
      next = earliest(next, receive(s, now));
    } while (s->moves != moves && !s->quit && !s->reset_now);
    if (s->quit || s->reset_now) continue;
    wait_io(s, next);
  }
  err = s->fatal;
out:
  sim_pty_down(&s->pty);
  if (sim_flash_save(flash, true) != EF_OK && err == EF_OK) err = EF_ERR_IO;
  if (s->sig_fd >= 0) close(s->sig_fd);
  free(s->rx);
  free(s->out);
  free(s->scratch);
  return err;
}
