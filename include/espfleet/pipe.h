/**
 * @file pipe.h
 * @brief Bounded byte pipe between one producer thread and one consumer.
 *
 * The download thread writes, the OTA engine reads; the capacity bounds the
 * memory in between, and lets both run at once. Either side can end it:
 * the producer closes with a status (EF_OK at a clean end), the consumer
 * aborts (its further writes fail, so the producer stops downloading).
 */
#ifndef ESPFLEET_PIPE_H
#define ESPFLEET_PIPE_H

#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/source.h"

typedef struct ef_pipe ef_pipe;

/** Creates a pipe holding at most @p capacity bytes. */
ef_err ef_pipe_new(size_t capacity, ef_pipe **out) EF_MUST_CHECK;

/** Frees @p p; both sides must be done with it. */
void ef_pipe_free(ef_pipe *p);

/**
 * Writes all @p len bytes, blocking while the pipe is full.
 * @return EF_OK; EF_ERR_CANCELED when the consumer aborted.
 */
ef_err ef_pipe_write(ef_pipe *p, const void *data, size_t len) EF_MUST_CHECK;

/**
 * Producer's end of stream. @p status EF_OK for a complete stream, otherwise
 * the error the consumer will get after the buffered bytes; @p detail (may be
 * NULL) is copied.
 */
void ef_pipe_close(ef_pipe *p, ef_err status, const char *detail);

/**
 * Reads up to @p cap bytes, blocking until some are available.
 * @return EF_OK with *got > 0; EF_OK with *got == 0 at a clean end; the
 *         producer's error status once the buffered bytes are consumed.
 */
ef_err ef_pipe_read(ef_pipe *p, void *buf, size_t cap, size_t *got) EF_MUST_CHECK;

/** Consumer gives up: wakes and fails the producer's writes. */
void ef_pipe_abort(ef_pipe *p);

/** The producer's detail sentence (after an error), or "". */
const char *ef_pipe_detail(ef_pipe *p);

/** Presents the consumer side of @p p as an ef_source. */
void ef_pipe_source(ef_pipe *p, ef_source *src);

#endif
