/**
 * @file image.h
 * @brief ESP-IDF application image: incremental validator and chip table.
 *
 * The validator is fed the image chunk by chunk as it streams in and keeps
 * only a few fixed-size fields (no whole-file buffer). The header and the
 * application description are known after the first 288 bytes, so a caller
 * can refuse an image (wrong chip, wrong project, too large, bad magic)
 * before it erases anything. At the end, ef_image_finish checks that the
 * image is complete and that its checksum and appended SHA-256 are right.
 */
#ifndef ESPFLEET_IMAGE_H
#define ESPFLEET_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/error.h"
#include "espfleet/status.h"

#define EF_IMAGE_MAGIC               0xE9
#define EF_IMAGE_MAX_SEGMENTS        16
#define EF_IMAGE_HEADER_SIZE         24
#define EF_IMAGE_SEGMENT_HEADER_SIZE 8
#define EF_APP_DESC_MAGIC            0xABCD5432u
#define EF_APP_DESC_OFFSET           32
#define EF_APP_DESC_SIZE             256
/** Bytes after which ef_image_desc_ready is true for a well-formed image. */
#define EF_IMAGE_DESC_END (EF_APP_DESC_OFFSET + EF_APP_DESC_SIZE)
#define EF_CHIP_INVALID   0xFFFF
/** Longest segment accepted: no ESP memory region comes close. */
#define EF_IMAGE_MAX_SEGMENT_LEN (16u * 1024u * 1024u)

typedef struct {
  uint32_t load_addr;
  uint32_t length;
  uint32_t file_offset; /**< offset of the segment's data in the file */
} ef_image_segment;

typedef struct {
  uint16_t chip_id;
  uint8_t segment_count;
  uint8_t flash_mode;  /**< 0 QIO, 1 QOUT, 2 DIO, 3 DOUT, 4 FAST_READ, 5 SLOW_READ */
  uint8_t flash_speed; /**< low nibble of byte 3 */
  uint8_t flash_size;  /**< high nibble of byte 3: 0 = 1 MB, 1 = 2 MB, ... */
  uint32_t entry_addr;
  uint8_t min_chip_rev;
  uint16_t min_chip_rev_full;
  uint16_t max_chip_rev_full;
  bool hash_appended;
  /** Segments known so far (all of them once the image is complete). */
  ef_image_segment segments[EF_IMAGE_MAX_SEGMENTS];
} ef_image_header;

typedef struct {
  uint32_t magic;
  uint32_t secure_version;
  char version[33];
  char project_name[33];
  char time[17];
  char date[17];
  char idf_ver[33];
  uint8_t app_elf_sha256[32];
} ef_app_desc;

/** Final facts of a complete, valid image. */
typedef struct {
  uint8_t checksum; /**< the stored checksum byte */
  uint64_t checksum_offset;
  uint64_t hashed_size; /**< bytes covered by the appended digest */
  uint64_t image_size;  /**< header + segments + padding + checksum (+ digest) */
  uint64_t total_size;  /**< bytes fed (may exceed image_size: signature block) */
} ef_image_summary;

typedef struct ef_image_validator ef_image_validator;

/** Allocates a validator. @return EF_OK or EF_ERR_NOMEM. */
ef_err ef_image_validator_new(ef_image_validator **out) EF_MUST_CHECK;

/** Frees @p v (NULL is fine). */
void ef_image_validator_free(ef_image_validator *v);

/**
 * Feeds the next @p len bytes of the image. Any chunking gives the same result.
 * @param st on error, the defect with its specifics (offsets, values); may be NULL
 * @return EF_OK, or the first defect as soon as it is known:
 *         EF_ERR_IMAGE_BAD_MAGIC (byte 0 is not 0xE9);
 *         EF_ERR_IMAGE_SEGMENTS (segment count 0 or above 16, a segment
 *         longer than EF_IMAGE_MAX_SEGMENT_LEN or not a multiple of 4, as
 *         ESP-IDF's loader requires, or an image ending past 4 GiB);
 *         EF_ERR_IMAGE_BAD_DESC (first segment shorter than the app
 *         description, or its magic word is wrong: known after 36 bytes);
 *         after an error every further call returns the same error (and
 *         fills @p st alike). Bytes after the digest (a signature block)
 *         are accepted.
 */
ef_err ef_image_feed(ef_image_validator *v, const uint8_t *data, size_t len, ef_status *st) EF_MUST_CHECK;

/** True once the header and the application description are parsed. */
bool ef_image_desc_ready(const ef_image_validator *v);

/** The header (segments filled in as they are reached). */
const ef_image_header *ef_image_get_header(const ef_image_validator *v);

/** The application description; valid once ef_image_desc_ready is true. */
const ef_app_desc *ef_image_get_app_desc(const ef_image_validator *v);

/**
 * Ends the stream: checks completeness, checksum and (when hash_appended)
 * the appended SHA-256, in that order. Calling it again returns the same.
 * @param summary when not NULL, receives the final facts (zeroed except
 *        total_size on error).
 * @param st on error, the defect with its specifics; may be NULL
 * @return EF_OK; EF_ERR_IMAGE_TRUNCATED (the stream ended inside the header,
 *         a segment, the padding, the checksum or the digest);
 *         EF_ERR_IMAGE_BAD_CHECKSUM; EF_ERR_IMAGE_BAD_DIGEST; or an earlier
 *         feed error.
 */
ef_err ef_image_finish(ef_image_validator *v, ef_image_summary *summary, ef_status *st) EF_MUST_CHECK;

/**
 * SHA-256 of every byte fed so far (the whole file, signature block
 * included), computed in the same pass as the validation: callers that need
 * the file's hash (a job's sha256) need not hash the bytes again.
 * @param out 32 bytes
 * @return EF_OK; EF_ERR_NOMEM; EF_ERR_INTERNAL.
 */
ef_err ef_image_stream_sha256(const ef_image_validator *v, uint8_t out[32]) EF_MUST_CHECK;

/**
 * Validates a whole file by streaming it through a validator (64 KiB reads).
 * Fills @p hdr, @p desc and @p summary (each may be NULL) as far as known;
 * @p desc is zeroed when the app description was not reached.
 * @param st the validator's defect, or why the file could not be read
 *        ("cannot open PATH: No such file or directory"); may be NULL
 * @return EF_OK; EF_ERR_IO; EF_ERR_NOMEM; or the validator's error.
 */
ef_err ef_image_check_file(const char *path, ef_image_header *hdr, ef_app_desc *desc,
                           ef_image_summary *summary, ef_status *st) EF_MUST_CHECK;

/** Name of a chip id ("esp32s3"), or NULL when unknown. */
const char *ef_chip_name(uint16_t chip_id);

/**
 * Chip id for a name; accepts "esp32s3", "ESP32-S3", "esp32-s3".
 * @return EF_OK or EF_ERR_INVALID_ARG when unknown.
 */
ef_err ef_chip_from_name(const char *name, uint16_t *chip_id) EF_MUST_CHECK;

/**
 * Compares dotted versions by their numeric parts ("1.10.0" > "1.9.3").
 * A leading "v" or "V" before a digit is ignored ("v1.2" == "1.2"). Within a
 * part, the leading number is compared first, then the text after it as a
 * string; a part whose text starts with '-' or '~' (a pre-release,
 * "1.0.0-rc1") sorts before the same number with no text ("1.0.0"). A
 * missing part counts as 0 ("1.2" == "1.2.0"). NULL counts as "".
 * @return <0 when a is older, 0 when equal, >0 when a is newer.
 */
int ef_version_compare(const char *a, const char *b);

#endif
