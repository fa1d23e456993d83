/**
 * @file esp.h
 * @brief The simulated ESP's state, shared by the link loop (server.c) and
 *        the request handlers (firmware.c). Private to espfleet-sim.
 *
 * The firmware has two tasks on the control path, and so has the model:
 * - the receive task (esp_hosted_coprocessor.c: recv_task,
 *   process_serial_rx_pkt) copies each host message into the one 4096-byte
 *   buffer `r` and waits in vTaskDelay(10) loops while `r` still holds a
 *   message nobody took;
 * - the control task (protocomm_pserial.c: pserial_task) takes the message
 *   out of `r` (serial_read_data), handles it and sends the answer.
 * server.c runs both as one event loop on virtual deadlines, so handling a
 * request (erase, flash write) and receiving the next one overlap as on the
 * chip.
 */
#ifndef ESPFLEET_SIM_ESP_H
#define ESPFLEET_SIM_ESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctrl_msg.h"
#include "espfleet/ctrl.h"
#include "espfleet/tlv.h"
#include "flash.h"
#include "pty.h"
#include "server.h"

/* resp values: every handler answers one of these (slave_control.c). */
#define SIM_SUCCESS 0
#define SIM_FAILURE (-1)

#define NS_PER_MS 1000000ull

/* Size of sim_esp.scratch. */
#define SIM_SCRATCH_SIZE (64 * 1024)

/** One host message as the firmware's buffer `r` holds it. */
typedef struct {
  bool valid;
  bool truncated;   /**< longer than EF_CTRL_FW_MSG_MAX: the rest was dropped */
  size_t frame_len; /**< the whole frame's length as the host sent it */
  char endpoint[EF_TLV_MAX_EP + 1];
  uint8_t payload[EF_CTRL_FW_MSG_MAX];
  size_t payload_len;
  uint64_t at; /**< when it entered the buffer (monotonic ns) */
} sim_msg;

typedef struct {
  sim_config *cfg;
  sim_flash *flash;
  sim_pty pty;
  int sig_fd;
  bool quit;
  ef_err fatal;

  ef_tlv_reader *rx;
  uint8_t *out; /* unsent bytes are out[out_off, out_len) */
  size_t out_off, out_len;
  uint8_t *scratch; /* SIM_SCRATCH_SIZE bytes: pty reads (server.c), flash read-back (firmware.c) */

  /* receive task */
  sim_msg r;    /* the firmware's reassembly buffer */
  sim_msg held; /* the message the stalled receive task holds */
  uint64_t stall_since;
  uint64_t r_freed_at; /* when the control task last took `r` */
  uint64_t moves;      /* messages moved along the path, to know when to stop looping */

  /* control task */
  uint64_t busy_until;  /* handling the current request until then; 0 = idle */
  uint8_t answer[1024]; /* its answer, sent when the handling is done */
  size_t answer_len;
  const char *answer_name; /* for the log */
  bool reset_when_done;    /* the chip resets instead of answering */

  int running; /* slot that runs, -1 for the factory app */
  bool ota_active;
  unsigned ota_slot;
  uint64_t ota_written, ota_writes;

  uint64_t responses;      /* since start, for drop-response */
  uint64_t reboot_at;      /* monotonic ns; 0 = none scheduled */
  uint64_t reboot_planned; /* reboot_at as first scheduled */
  bool reset_now;          /* reboot as soon as possible */
  uint64_t init_at;        /* when to send ESPInit; 0 = not pending */
  bool hb_enabled;
  uint64_t hb_period, hb_next;
  int32_t hb_num;
} sim_esp;

/** Monotonic clock in nanoseconds. */
uint64_t sim_now_ns(void);

/** Writes the flash header (see flash.h); a failure stops the simulator. */
void sim_save_header(sim_esp *s, bool durable);

/**
 * Handles one request the control task took out of `r`: updates the flash
 * and the OTA state, and leaves the answer in s->answer (or none), with
 * s->busy_until set to when the answer may go out.
 */
void sim_handle_request(sim_esp *s, const Espfleet__CtrlMsg *req, uint64_t start);

/** Queues an event (ESPInit, Heartbeat) for the host. */
void sim_send_event(sim_esp *s, const Espfleet__CtrlMsg *ev);

#endif
