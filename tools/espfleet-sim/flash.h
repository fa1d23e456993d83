/**
 * @file flash.h
 * @brief The simulator's persistent flash: two OTA slots and the otadata.
 *
 * One regular file holds a 4 KiB header followed by the bytes of slot 0 and
 * slot 1 (slot_size each; the file is sparse, erased regions are holes).
 * The header records which slot boots, each slot's state and the facts of
 * the image in it (bytes written and their SHA-256, the image's own extent
 * and SHA-256, version, project, chip, secure_version, ESP-Hosted release), the bluetooth state and counters that
 * accumulate since the file was created. The header is in host byte order:
 * a flash file belongs to the machine that made it.
 *
 * Slot bytes are written straight through with pwrite; the header is
 * rewritten when the caller asks (sim_flash_save), which the server does
 * before every response so that a reader of the file (--show) never lags
 * behind what the host was told. Only OTA end asks for fsync.
 */
#ifndef ESPFLEET_SIM_FLASH_H
#define ESPFLEET_SIM_FLASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"

#define SIM_FLASH_HEADER_SIZE 4096
#define SIM_FLASH_NO_SLOT     0xFFFFFFFFu

/** Slot states, as stored and as printed by --show. */
typedef enum {
  SIM_SLOT_EMPTY = 0,   /**< never written, or erased */
  SIM_SLOT_WRITING,     /**< OTA begun and not (successfully) ended */
  SIM_SLOT_VALID,       /**< OTA end accepted the image: it can boot */
  SIM_SLOT_REJECTED,    /**< OTA end refused the bytes written */
  SIM_SLOT_BOOT_FAILED, /**< selected, but failed to boot: rolled back */
} sim_slot_state;

/** Facts of one slot (fixed layout: part of the file format). */
typedef struct {
  uint32_t state; /**< sim_slot_state */
  uint32_t chip_id;
  uint64_t length;    /**< bytes written by the OTA that filled it */
  uint8_t sha256[32]; /**< of the image itself: header to appended digest */
  uint32_t secure_version;
  uint32_t reserved;
  char version[40];
  char project[40];
  char idf_version[40];
  uint64_t image_length;      /**< the image's extent (<= length) */
  uint8_t written_sha256[32]; /**< of all `length` bytes written */
  char release[32];           /**< ESP-Hosted release record, "" when the image has none */
} sim_slot_info;

/** Totals since the file was created (fixed layout: part of the file format). */
typedef struct {
  uint64_t ota_begin;        /**< OTA begin requests received */
  uint64_t ota_write;        /**< OTA write requests received */
  uint64_t ota_write_bytes;  /**< bytes accepted by OTA writes */
  uint64_t ota_end;          /**< OTA end requests received */
  uint64_t ota_end_rejected; /**< OTA ends that refused the image */
  uint64_t boots;            /**< boots, including power-on (simulator start) */
  uint64_t requests;         /**< control messages taken by the handler */
  uint64_t truncated;        /**< messages above 4096 bytes: cut and never answered */
  uint64_t unanswered;       /**< messages the firmware would not answer (bad frame, unknown id) */
  uint64_t rx_stalls;        /**< times the receive task waited for the buffer */
  uint64_t dropped_closed;   /**< messages to the host dropped: nobody had the device open */
  uint64_t concurrent_opens; /**< opens while another was open (the driver says EBUSY) */
  uint64_t panics;           /**< requests that crash the firmware (a NULL payload) */
  uint64_t reserved[3];
} sim_counters;

/** The header as stored at offset 0. */
typedef struct {
  char magic[8]; /**< "EFSIMFL\0" */
  uint32_t format_version;
  uint32_t header_size; /**< sizeof(sim_flash_header), to refuse other layouts */
  uint64_t slot_size;
  uint32_t boot_slot;    /**< 0, 1 or SIM_FLASH_NO_SLOT (otadata) */
  uint32_t bluetooth;    /**< 1 when Bluetooth is enabled */
  uint32_t wifi;         /**< 1 when Wi-Fi is enabled */
  uint32_t running_slot; /**< slot that booted last, or SIM_FLASH_NO_SLOT */
  sim_slot_info slots[2];
  sim_counters counters;
} sim_flash_header;

typedef struct {
  int fd;
  sim_flash_header hdr;
} sim_flash;

/**
 * Opens @p path, creating it with both slots empty when it does not exist.
 * @param slot_size slot size for a new file; an existing file keeps its own.
 * @param lock take an exclusive lock (one simulator per file); fails with
 *        EF_ERR_CONFIG when another process holds it.
 * @return EF_OK; EF_ERR_IO; EF_ERR_CONFIG for a file that is not a flash file
 *         or is locked.
 */
ef_err sim_flash_open(sim_flash *f, const char *path, uint64_t slot_size, bool lock) EF_MUST_CHECK;

/** Opens an existing flash file read-only (for --show). Same errors. */
ef_err sim_flash_open_ro(sim_flash *f, const char *path) EF_MUST_CHECK;

/** Writes the header back (after fsync of the data when @p durable). */
ef_err sim_flash_save(sim_flash *f, bool durable) EF_MUST_CHECK;

/** Closes the file (saving nothing). */
void sim_flash_close(sim_flash *f);

/**
 * Erases slot @p slot: punches a hole over its bytes (zeroes when the file
 * system cannot) and resets its info to empty. Does not save the header.
 */
ef_err sim_flash_erase(sim_flash *f, unsigned slot) EF_MUST_CHECK;

/** Writes @p len bytes at @p offset inside slot @p slot (bounds are the caller's). */
ef_err sim_flash_write(sim_flash *f, unsigned slot, uint64_t offset, const uint8_t *data,
                       size_t len) EF_MUST_CHECK;

/** Reads @p len bytes at @p offset inside slot @p slot. */
ef_err sim_flash_read(sim_flash *f, unsigned slot, uint64_t offset, uint8_t *data, size_t len) EF_MUST_CHECK;

/** The slot that runs now: running_slot when it holds a valid image, else -1. */
int sim_flash_running_slot(const sim_flash *f);

/** Name of a slot state as printed by --show ("empty", "valid", ...). */
const char *sim_slot_state_name(uint32_t state);

#endif
