/* The image validator: any input, fed whole or in pieces, gives the same
 * verdict and the same facts, and never reads outside what it was given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/image.h"

static ef_err run(const uint8_t *data, size_t size, size_t step, ef_image_summary *sum,
                  ef_image_header *hdr) {
  ef_image_validator *v = NULL;
  ef_err err = ef_image_validator_new(&v);
  if (err != EF_OK) abort();
  for (size_t off = 0; off < size && err == EF_OK; off += step) {
    size_t n = size - off < step ? size - off : step;
    /* a copy of exactly n bytes, so ASan sees any read past the piece */
    uint8_t *piece = malloc(n);
    memcpy(piece, data + off, n);
    err = ef_image_feed(v, piece, n, NULL);
    free(piece);
  }
  ef_err fin = ef_image_finish(v, sum, NULL);
  if (err == EF_OK)
    err = fin;
  else if (fin != err)
    abort(); /* finish repeats the first error */
  *hdr = *ef_image_get_header(v);
  ef_image_validator_free(v);
  return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ef_image_summary a, b;
  ef_image_header ha, hb;
  if (size == 0) return 0;
  /* the first byte picks the piece size of the chunked run */
  size_t step = 1 + data[0] % 61;
  ef_err whole = run(data, size, size, &a, &ha);
  ef_err chunked = run(data, size, step, &b, &hb);
  if (whole != chunked) abort();
  if (whole == EF_OK && (a.image_size != b.image_size || a.hashed_size != b.hashed_size ||
                         a.checksum != b.checksum || ha.chip_id != hb.chip_id))
    abort();
  return 0;
}
