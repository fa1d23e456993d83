/**
 * @file pipe.h
 * @brief Bounded byte pipe between one producer thread and one consumer.
 *
 * The download thread writes, the OTA engine reads; the capacity bounds the
 * memory in between, and lets both run at once. Either side can end it:
 * the producer closes with its outcome (an ef_status: the consumer gets its
 * code, retryable flag and detail after the buffered bytes), the consumer
 * aborts (its further writes fail, so the producer stops downloading).
 */
#ifndef ESPFLEET_PIPE_H
#define ESPFLEET_PIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/source.h"
#include "espfleet/status.h"

typedef struct ef_pipe ef_pipe;

/**
 * Creates a pipe holding at most @p capacity bytes (allocated once, never
 * grown). A few hundred KiB keeps a 64 KiB-chunk producer and consumer busy.
 * @return EF_OK; EF_ERR_INVALID_ARG for capacity 0; EF_ERR_NOMEM.
 */
ef_err ef_pipe_new(size_t capacity, ef_pipe **out) EF_MUST_CHECK;

/** Frees @p p; both sides must be done with it. */
void ef_pipe_free(ef_pipe *p);

/**
 * Writes all @p len bytes, blocking while the pipe is full.
 * @return EF_OK; EF_ERR_CANCELED when the consumer aborted (some of the bytes
 *         may have been buffered); EF_ERR_INVALID_ARG after ef_pipe_close.
 */
ef_err ef_pipe_write(ef_pipe *p, const void *data, size_t len) EF_MUST_CHECK;

/**
 * Producer's end of stream. @p outcome NULL (or holding EF_OK) for a complete
 * stream, otherwise the failure the consumer will get after the buffered
 * bytes; it is copied. Only the first close counts.
 */
void ef_pipe_close(ef_pipe *p, const ef_status *outcome);

/**
 * Reads up to @p cap bytes, blocking until some are available.
 * @param st receives the producer's outcome with its error, or the abort;
 *        may be NULL
 * @return EF_OK with *got > 0; EF_OK with *got == 0 at a clean end; the
 *         producer's error once the buffered bytes are consumed;
 *         EF_ERR_CANCELED after ef_pipe_abort.
 */
ef_err ef_pipe_read(ef_pipe *p, void *buf, size_t cap, size_t *got, ef_status *st) EF_MUST_CHECK;

/**
 * Consumer gives up: wakes and fails the producer's writes (and any read).
 * Safe to call from any thread, more than once.
 */
void ef_pipe_abort(ef_pipe *p);

/** True once ef_pipe_abort was called: lets a producer that is not blocked
 *  in ef_pipe_write (e.g. waiting on the network) notice and stop. */
bool ef_pipe_aborted(ef_pipe *p);

/** Presents the consumer side of @p p as an ef_source (read = ef_pipe_read).
 *  @p p must outlive @p src. */
void ef_pipe_source(ef_pipe *p, ef_source *src);

#endif
