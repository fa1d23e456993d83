/**
 * @file hex.h
 * @brief Lower-case hexadecimal text of bytes, and SHA-256 digests from hex.
 */
#ifndef ESPFLEET_HEX_H
#define ESPFLEET_HEX_H

#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"

/** Lower-case hex of @p len bytes into @p out (2*len+1 bytes). */
void ef_hex(const uint8_t *bytes, size_t len, char *out);

/** Parses 64 hex digits into 32 bytes. @return EF_OK or EF_ERR_INVALID_ARG. */
ef_err ef_hex_to_sha256(const char *hex, uint8_t out[32]) EF_MUST_CHECK;

#endif
