/*
 * A fake ESP for unit tests: a thread answering ESP-Hosted-FG control
 * requests on a real pseudo-terminal, reached through a symlink the way the
 * simulator exposes its pty. Far smaller than espfleet-sim: no flash, no
 * image check; it records what it was sent (requests counted, the OTA bytes
 * kept) and misbehaves on demand, so a test can assert on what reached the
 * "ESP" without waiting for real timeouts.
 *
 *   struct fake *f = fake_new();
 *   f->refuse_write = 3;          // behaviour: set before fake_start
 *   fake_start(f);
 *   ... open an ef_ctrl on f->link, run the code under test ...
 *   assert_int_equal(SEEN(f, ends), 0);
 *   fake_free(f);
 *
 * Failures inside the fake are cmocka assertions: link with cmocka.
 */
#ifndef ESPFLEET_TEST_FAKE_ESP_H
#define ESPFLEET_TEST_FAKE_ESP_H

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/tlv.h"

enum { FAKE_HOLD_MAX = 16 };

struct fake {
  char dir[PATH_MAX];
  char link[PATH_MAX + 8]; /**< the device path to give the client */
  int master, keeper;      /* keeper: a slave fd held open so the master never sees EIO */
  int stop_pipe[2];
  pthread_t th;
  pthread_mutex_t mu;
  ef_tlv_reader *rd;

  /* behaviour, set before fake_start (or later with fake_set) */
  int late_mode;         /**< first GetFwVersion unanswered; answered late with name LATE */
  int events_mode;       /**< events around the GetFwVersion answer */
  int hold_writes;       /**< answer OTA writes only once this many are pending */
  int refuse_begin;      /**< answer OTA begin with resp -1 */
  int silent_begin;      /**< never answer OTA begin (an ESP that hangs while erasing) */
  int end_delay_ms;      /**< answer OTA end this late (validating a large image) */
  int refuse_write;      /**< 1-based index of the write answered with resp -1 */
  int silent_from_write; /**< 1-based index of the first write never answered (a stall) */
  int hangup_on_write;   /**< 1-based index of the write after which the pty goes away */
  int reboot_after_end;  /**< after answering OTA end: hang up, come back */
  int uid_zero;          /**< firmware without uids */

  /* what the fake saw; read with SEEN() while the thread runs */
  int begins, writes, ends, fw_reqs, features, last_feature, last_enable;
  int32_t last_uid;
  int uids_increasing;
  int max_held;
  int recreated;
  int first_after_boot; /* next GetFwVersion after a reboot gets only ESPInit */
  int32_t late_uid;
  int32_t held[FAKE_HOLD_MAX];
  int held_n;
  uint8_t *img; /**< bytes of every OTA write since the last OTA begin */
  size_t img_len;
  int pending_hangup;
};

/** Makes a fake with its pty published at f->link; not yet answering. */
struct fake *fake_new(void);

/** Starts the thread that answers requests. */
void fake_start(struct fake *f);

/** Stops the thread, removes the pty and its folder, frees @p f. */
void fake_free(struct fake *f);

/** Reads one int field under the fake's lock (see SEEN). */
int fake_seen(struct fake *f, const int *field);
#define SEEN(f, field) fake_seen((f), &(f)->field)

/** Sets one int field under the fake's lock. */
void fake_set(struct fake *f, int *field, int v);

/** True when the OTA bytes received since the last OTA begin are exactly @p img. */
int fake_got_image(struct fake *f, const uint8_t *img, size_t n);

#endif
