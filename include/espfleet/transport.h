/**
 * @file transport.h
 * @brief The ESP-Hosted control device: a raw byte stream opened by path.
 *
 * Opens the character device (default /dev/esps0; the simulator's
 * pseudo-terminal in tests), puts it in raw mode when it is a terminal, and
 * drains stale bytes. When a read or write fails or the peer hangs up (the
 * ESP reboots after OTA end), the transport closes the descriptor and the
 * next call re-opens the same path, waiting for it to come back.
 *
 * Every call that can fail takes an ef_status (may be NULL) that says why
 * ("cannot open /dev/esps0: No such file or directory", "read failed on
 * /dev/esps0: Input/output error").
 */
#ifndef ESPFLEET_TRANSPORT_H
#define ESPFLEET_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/status.h"

/** The control device ESP-Hosted-FG's host driver creates. */
#define EF_DEFAULT_DEVICE "/dev/esps0"

/** How often a waiting call asks its cancel callback, at most (ms). */
#define EF_TRANSPORT_CANCEL_POLL_MS 100

typedef struct ef_transport ef_transport;

/** Asked while a call waits (for the node, for room, for bytes): true ends
 *  the wait with EF_ERR_CANCELED. Runs on the caller's thread. */
typedef bool (*ef_transport_cancel_cb)(void *arg);

/**
 * Creates a transport for @p path and opens it, waiting up to
 * @p open_timeout_ms for the node to appear.
 * @return EF_OK; EF_ERR_ESP_BUSY when open() fails with EBUSY (another
 *         program has the node; returned at once); EF_ERR_ESP_UNAVAILABLE when
 *         the node cannot be opened in time; EF_ERR_NOMEM.
 */
ef_err ef_transport_open(const char *path, int open_timeout_ms, ef_transport **out,
                         ef_status *st) EF_MUST_CHECK;

/**
 * Creates a transport for @p path without opening it: the first call that
 * needs the device (or ef_transport_reopen) opens it. Lets a caller set the
 * cancel callback before the first wait.
 * @return EF_OK; EF_ERR_INVALID_ARG for an empty path; EF_ERR_NOMEM.
 */
ef_err ef_transport_new(const char *path, ef_transport **out, ef_status *st) EF_MUST_CHECK;

/**
 * Sets the callback every wait of @p t asks, at least every
 * EF_TRANSPORT_CANCEL_POLL_MS (NULL: waits run to their timeout). A wait it
 * ends returns EF_ERR_CANCELED; a frame cut short by it is not finished.
 */
void ef_transport_set_cancel_cb(ef_transport *t, ef_transport_cancel_cb cb, void *arg);

/** Closes the device and frees @p t (NULL is fine). */
void ef_transport_close(ef_transport *t);

/**
 * Writes one frame of @p len bytes within @p timeout_ms, re-opening the
 * device first if it was closed. The driver treats each write() as one
 * message, so on it a frame is one write() and a short count is an error; a
 * terminal (the simulator's pty) is a byte stream and takes the rest of a
 * frame in further writes.
 * @return EF_OK; EF_ERR_ESP_TIMEOUT when the device does not accept the bytes
 *         in time; EF_ERR_ESP_WRITE_REFUSED when write() returned 0 (the
 *         driver's size limit) or a short count; EF_ERR_ESP_BUSY;
 *         EF_ERR_ESP_UNAVAILABLE when it fails or cannot be re-opened;
 *         EF_ERR_CANCELED.
 */
ef_err ef_transport_write(ef_transport *t, const uint8_t *buf, size_t len, int timeout_ms,
                          ef_status *st) EF_MUST_CHECK;

/**
 * Reads what is available, waiting up to @p timeout_ms for the first byte.
 * @param got bytes read; 0 with EF_OK means the wait timed out.
 * @return EF_OK; EF_ERR_ESP_UNAVAILABLE when the device failed or hung up
 *         (it is closed and will be re-opened by the next call);
 *         EF_ERR_CANCELED.
 */
ef_err ef_transport_read(ef_transport *t, uint8_t *buf, size_t cap, size_t *got, int timeout_ms,
                         ef_status *st) EF_MUST_CHECK;

/**
 * Closes the device now (if open) and re-opens it, waiting up to
 * @p timeout_ms for the node to come back, then drains stale bytes.
 * @return as ef_transport_open; EF_ERR_CANCELED.
 */
ef_err ef_transport_reopen(ef_transport *t, int timeout_ms, ef_status *st) EF_MUST_CHECK;

/** True when a descriptor is currently open. */
int ef_transport_is_open(const ef_transport *t);

/** Number of times the device was (re-)opened since creation. */
unsigned ef_transport_open_count(const ef_transport *t);

#endif
