/*
 * Incremental ESP application image validator.
 *
 * A small state machine walks the layout (header, segment headers, segment
 * data, padding, checksum, digest) as bytes arrive. Only fixed-size fields are
 * buffered: the 24-byte header, the current 8-byte segment header, the
 * 256-byte app description and the 32-byte digest. Everything up to and
 * including the checksum byte goes through one incremental SHA-256.
 */
#include "espfleet/image.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

/*
 * No ESP has a memory region anywhere near this large, so a longer segment
 * means a corrupt header, not a big image; refusing it early keeps a bad
 * header from making the caller erase a slot and stream for minutes.
 */
#define MAX_SEGMENT_LEN EF_IMAGE_MAX_SEGMENT_LEN
#define DIGEST_LEN      32

typedef enum {
  ST_HEADER,
  ST_SEG_HEADER,
  ST_SEG_DATA,
  ST_PADDING,
  ST_CHECKSUM,
  ST_DIGEST,
  ST_DONE,
  ST_ERROR,
} state;

struct ef_image_validator {
  state st;
  ef_err err;
  uint64_t offset;                   /* bytes consumed so far */
  uint8_t buf[EF_IMAGE_HEADER_SIZE]; /* header or segment header being collected */
  size_t buf_len;
  unsigned seg_index; /* segment being read */
  uint32_t seg_left;  /* data bytes left in the current segment */
  uint8_t checksum;   /* running XOR over segment data */
  uint8_t stored_checksum;
  uint64_t checksum_offset;
  uint8_t desc_raw[EF_APP_DESC_SIZE];
  size_t desc_len; /* bytes of desc_raw filled */
  bool desc_ready;
  uint8_t digest[DIGEST_LEN];
  size_t digest_len;
  EVP_MD_CTX *sha;       /* every byte fed: the stream's SHA-256 */
  EVP_MD_CTX *sha_image; /* copy of sha where the appended digest begins */
  ef_image_header hdr;
  ef_app_desc desc;
  bool finished;
  ef_err finish_err;
  ef_image_summary summary;
  char detail[EF_STATUS_DETAIL_MAX]; /* goes to the caller's ef_status */
};

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static ef_err fail(ef_image_validator *v, ef_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ef_err fail(ef_image_validator *v, ef_err err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->detail, sizeof v->detail, fmt, ap);
  va_end(ap);
  v->st = ST_ERROR;
  v->err = err;
  return err;
}

ef_err ef_image_validator_new(ef_image_validator **out) {
  ef_err err = EF_ERR_NOMEM;
  ef_image_validator *v = calloc(1, sizeof *v);
  if (!v) goto out;
  v->sha = EVP_MD_CTX_new();
  if (!v->sha || EVP_DigestInit_ex(v->sha, EVP_sha256(), NULL) != 1) goto out;
  v->st = ST_HEADER;
  v->checksum = 0xEF;
  *out = v;
  v = NULL;
  err = EF_OK;
out:
  ef_image_validator_free(v);
  return err;
}

void ef_image_validator_free(ef_image_validator *v) {
  if (!v) return;
  EVP_MD_CTX_free(v->sha);
  EVP_MD_CTX_free(v->sha_image);
  free(v);
}

static void copy_field(char *dst, size_t dst_size, const uint8_t *src, size_t src_len) {
  size_t n = strnlen((const char *)src, src_len);
  if (n > dst_size - 1) n = dst_size - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

static void parse_desc(ef_image_validator *v) {
  const uint8_t *d = v->desc_raw;
  ef_app_desc *a = &v->desc;
  a->magic = le32(d);
  a->secure_version = le32(d + 4);
  copy_field(a->version, sizeof a->version, d + 16, 32);
  copy_field(a->project_name, sizeof a->project_name, d + 48, 32);
  copy_field(a->time, sizeof a->time, d + 80, 16);
  copy_field(a->date, sizeof a->date, d + 96, 16);
  copy_field(a->idf_ver, sizeof a->idf_ver, d + 112, 32);
  memcpy(a->app_elf_sha256, d + 144, sizeof a->app_elf_sha256);
  v->desc_ready = true;
}

static ef_err on_header(ef_image_validator *v) {
  const uint8_t *h = v->buf;
  ef_image_header *hdr = &v->hdr;
  hdr->segment_count = h[1];
  hdr->flash_mode = h[2];
  hdr->flash_speed = h[3] & 0x0F;
  hdr->flash_size = h[3] >> 4;
  hdr->entry_addr = le32(h + 4);
  hdr->chip_id = le16(h + 12);
  hdr->min_chip_rev = h[14];
  hdr->min_chip_rev_full = le16(h + 15);
  hdr->max_chip_rev_full = le16(h + 17);
  /* A boolean for ESP-IDF (`if (image.hash_appended)` in
   * esp_image_format.c): any non-zero byte means a digest follows. */
  hdr->hash_appended = h[23] != 0;
  if (hdr->segment_count == 0 || hdr->segment_count > EF_IMAGE_MAX_SEGMENTS)
    return fail(v, EF_ERR_IMAGE_SEGMENTS, "segment count at offset 1 is %u, expected 1 to %d",
                (unsigned)hdr->segment_count, EF_IMAGE_MAX_SEGMENTS);
  v->st = ST_SEG_HEADER;
  v->buf_len = 0;
  return EF_OK;
}

static ef_err on_segment_header(ef_image_validator *v) {
  ef_image_segment *s = &v->hdr.segments[v->seg_index];
  uint64_t data_offset = v->offset; /* the header's last byte was already counted */
  s->load_addr = le32(v->buf);
  s->length = le32(v->buf + 4);
  if (s->length > MAX_SEGMENT_LEN)
    return fail(v, EF_ERR_IMAGE_SEGMENTS,
                "segment %u header at offset %" PRIu64 " gives length %" PRIu32
                ", more than the %u bytes any segment can have",
                v->seg_index, data_offset - EF_IMAGE_SEGMENT_HEADER_SIZE, s->length, MAX_SEGMENT_LEN);
  /* ESP-IDF's loader refuses unaligned segments, so the ESP would too. */
  if (s->length % 4 != 0)
    return fail(v, EF_ERR_IMAGE_SEGMENTS,
                "segment %u header at offset %" PRIu64 " gives length %" PRIu32 ", not a multiple of 4",
                v->seg_index, data_offset - EF_IMAGE_SEGMENT_HEADER_SIZE, s->length);
  if (data_offset + s->length + 1 + DIGEST_LEN > UINT32_MAX)
    return fail(v, EF_ERR_IMAGE_SEGMENTS,
                "segment %u (offset %" PRIu64 ", length %" PRIu32 ") would end past 4 GiB", v->seg_index,
                data_offset, s->length);
  if (v->seg_index == 0 && s->length < EF_APP_DESC_SIZE)
    return fail(v, EF_ERR_IMAGE_BAD_DESC,
                "first segment has %" PRIu32 " bytes, too short for the %d-byte app description", s->length,
                EF_APP_DESC_SIZE);
  s->file_offset = (uint32_t)data_offset;
  v->seg_left = s->length;
  v->buf_len = 0;
  v->st = ST_SEG_DATA;
  return EF_OK;
}

static void after_segments(ef_image_validator *v) {
  v->st = (v->offset % 16 == 15) ? ST_CHECKSUM : ST_PADDING;
}

static void end_of_segment(ef_image_validator *v) {
  v->seg_index++;
  if (v->seg_index < v->hdr.segment_count)
    v->st = ST_SEG_HEADER;
  else
    after_segments(v);
}

/* Consumes segment data from p; returns the bytes used or sets an error. */
static size_t feed_segment_data(ef_image_validator *v, const uint8_t *p, size_t len) {
  size_t n = len < v->seg_left ? len : v->seg_left;
  if (v->seg_index == 0 && v->desc_len < EF_APP_DESC_SIZE) {
    size_t want = EF_APP_DESC_SIZE - v->desc_len;
    size_t take = n < want ? n : want;
    memcpy(v->desc_raw + v->desc_len, p, take);
    size_t before = v->desc_len;
    v->desc_len += take;
    /* The magic alone decides whether this is an app image: say so at once. */
    if (before < 4 && v->desc_len >= 4 && le32(v->desc_raw) != EF_APP_DESC_MAGIC) {
      fail(v, EF_ERR_IMAGE_BAD_DESC,
           "app description magic at offset %d is 0x%08" PRIx32 ", expected 0x%08" PRIx32, EF_APP_DESC_OFFSET,
           le32(v->desc_raw), (uint32_t)EF_APP_DESC_MAGIC);
      return 0;
    }
    if (v->desc_len == EF_APP_DESC_SIZE) parse_desc(v);
  }
  for (size_t i = 0; i < n; i++) v->checksum ^= p[i];
  v->seg_left -= (uint32_t)n;
  return n;
}

/* The bytes the current state takes from the @p left at @p p (into
 * *used), keeping what it needs. Fails on a bad magic or description. */
static ef_err take_bytes(ef_image_validator *v, const uint8_t *p, size_t left, size_t *used) {
  switch (v->st) {
  case ST_ERROR: return v->err;
  case ST_HEADER:
    if (v->offset == 0 && p[0] != EF_IMAGE_MAGIC)
      return fail(v, EF_ERR_IMAGE_BAD_MAGIC, "byte 0 is 0x%02x, expected 0x%02x", p[0], EF_IMAGE_MAGIC);
    *used = EF_IMAGE_HEADER_SIZE - v->buf_len;
    if (*used > left) *used = left;
    memcpy(v->buf + v->buf_len, p, *used);
    v->buf_len += *used;
    break;
  case ST_SEG_HEADER:
    *used = EF_IMAGE_SEGMENT_HEADER_SIZE - v->buf_len;
    if (*used > left) *used = left;
    memcpy(v->buf + v->buf_len, p, *used);
    v->buf_len += *used;
    break;
  case ST_SEG_DATA:
    *used = feed_segment_data(v, p, left);
    if (v->st == ST_ERROR) return v->err;
    break;
  case ST_PADDING: {
    uint64_t to_checksum = 15 - v->offset % 16;
    *used = to_checksum < left ? (size_t)to_checksum : left;
    break;
  }
  case ST_CHECKSUM:
    v->stored_checksum = p[0];
    v->checksum_offset = v->offset;
    *used = 1;
    break;
  case ST_DIGEST:
    *used = DIGEST_LEN - v->digest_len;
    if (*used > left) *used = left;
    memcpy(v->digest + v->digest_len, p, *used);
    v->digest_len += *used;
    break;
  case ST_DONE:
    /* A signature block (secure boot v2) may follow the digest. */
    *used = left;
    break;
  }
  return EF_OK;
}

/* Once the current state has what it needs: checks it and moves on. */
static ef_err advance(ef_image_validator *v) {
  ef_err err = EF_OK;
  switch (v->st) {
  case ST_HEADER:
    if (v->buf_len == EF_IMAGE_HEADER_SIZE) err = on_header(v);
    break;
  case ST_SEG_HEADER:
    if (v->buf_len == EF_IMAGE_SEGMENT_HEADER_SIZE) {
      err = on_segment_header(v);
      if (err == EF_OK && v->seg_left == 0) end_of_segment(v);
    }
    break;
  case ST_SEG_DATA:
    if (v->seg_left == 0) end_of_segment(v);
    break;
  case ST_PADDING:
    if (v->offset % 16 == 15) v->st = ST_CHECKSUM;
    break;
  case ST_CHECKSUM:
    v->st = v->hdr.hash_appended ? ST_DIGEST : ST_DONE;
    if (v->hdr.hash_appended) {
      v->sha_image = EVP_MD_CTX_new();
      if (!v->sha_image || EVP_MD_CTX_copy_ex(v->sha_image, v->sha) != 1)
        err = fail(v, EF_ERR_NOMEM, "cannot copy the SHA-256 state");
    }
    break;
  case ST_DIGEST:
    if (v->digest_len == DIGEST_LEN) v->st = ST_DONE;
    break;
  default: break;
  }
  return err;
}

static ef_err feed(ef_image_validator *v, const uint8_t *data, size_t len) {
  size_t i = 0;
  while (i < len) {
    const uint8_t *p = data + i;
    size_t used = 0;
    ef_err err = take_bytes(v, p, len - i, &used);
    if (err != EF_OK) return err;
    /* One pass of SHA-256 serves both the stream's hash (the job's sha256)
     * and, through the copy taken at the digest, the appended digest. */
    if (EVP_DigestUpdate(v->sha, p, used) != 1) return fail(v, EF_ERR_INTERNAL, "SHA-256 update failed");
    v->offset += used;
    i += used;
    err = advance(v);
    if (err != EF_OK) return err;
  }
  return v->st == ST_ERROR ? v->err : EF_OK;
}

/* The validator keeps its defect's sentence, so every later call reports it
 * again: a caller may pass a status to any of them. */
static ef_err report(const ef_image_validator *v, ef_err err, ef_status *st) {
  if (err == EF_OK) return EF_OK;
  return ef_status_fail(st, err, "%s", v->detail);
}

ef_err ef_image_feed(ef_image_validator *v, const uint8_t *data, size_t len, ef_status *st) {
  return report(v, feed(v, data, len), st);
}

bool ef_image_desc_ready(const ef_image_validator *v) { return v->desc_ready; }

const ef_image_header *ef_image_get_header(const ef_image_validator *v) { return &v->hdr; }

const ef_app_desc *ef_image_get_app_desc(const ef_image_validator *v) { return &v->desc; }

static const char *state_name(const ef_image_validator *v) {
  switch (v->st) {
  case ST_HEADER: return "the image header";
  case ST_SEG_HEADER: return "a segment header";
  case ST_SEG_DATA: return "segment data";
  case ST_PADDING: return "the padding before the checksum";
  case ST_CHECKSUM: return "the checksum";
  case ST_DIGEST: return "the SHA-256 digest";
  default: return "the image";
  }
}

/* Offset one past the byte the stream would have to reach to be complete. */
static uint64_t expected_end(const ef_image_validator *v) {
  uint64_t end;
  switch (v->st) {
  case ST_HEADER: return EF_IMAGE_HEADER_SIZE;
  case ST_SEG_HEADER: return v->offset - v->buf_len + EF_IMAGE_SEGMENT_HEADER_SIZE;
  case ST_SEG_DATA: return v->offset + v->seg_left;
  case ST_PADDING: end = v->offset + (15 - v->offset % 16) + 1; break;
  case ST_CHECKSUM: end = v->offset + 1; break;
  case ST_DIGEST: return v->checksum_offset + 1 + DIGEST_LEN;
  default: return v->offset;
  }
  return v->hdr.hash_appended ? end + DIGEST_LEN : end;
}

static ef_err do_finish(ef_image_validator *v) {
  if (v->st == ST_ERROR) return v->err;
  if (v->st != ST_DONE) {
    if (v->st == ST_SEG_DATA || v->st == ST_SEG_HEADER)
      return fail(v, EF_ERR_IMAGE_TRUNCATED,
                  "stream ended at offset %" PRIu64
                  " inside %s of segment %u of %u; the image needs at least %" PRIu64 " bytes",
                  v->offset, state_name(v), v->seg_index, (unsigned)v->hdr.segment_count, expected_end(v));
    return fail(v, EF_ERR_IMAGE_TRUNCATED,
                "stream ended at offset %" PRIu64 " inside %s; the image needs %s%" PRIu64 " bytes",
                v->offset, state_name(v), v->st == ST_HEADER ? "" : "at least ", expected_end(v));
  }
  if (v->stored_checksum != v->checksum)
    return fail(v, EF_ERR_IMAGE_BAD_CHECKSUM,
                "checksum byte at offset %" PRIu64 " is 0x%02x, segment data gives 0x%02x",
                v->checksum_offset, v->stored_checksum, v->checksum);
  if (v->hdr.hash_appended) {
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    if (!v->sha_image || EVP_DigestFinal_ex(v->sha_image, md, &md_len) != 1 || md_len != DIGEST_LEN)
      return fail(v, EF_ERR_INTERNAL, "SHA-256 final failed");
    if (memcmp(md, v->digest, DIGEST_LEN) != 0) {
      char want[17], got[17];
      for (int i = 0; i < 8; i++) {
        snprintf(want + 2 * i, 3, "%02x", md[i]);
        snprintf(got + 2 * i, 3, "%02x", v->digest[i]);
      }
      return fail(v, EF_ERR_IMAGE_BAD_DIGEST,
                  "digest at offset %" PRIu64 " starts %s..., SHA-256 of the first %" PRIu64
                  " bytes starts %s...",
                  v->checksum_offset + 1, got, v->checksum_offset + 1, want);
    }
  }
  return EF_OK;
}

ef_err ef_image_finish(ef_image_validator *v, ef_image_summary *summary, ef_status *st) {
  if (!v->finished) {
    v->finished = true;
    v->finish_err = do_finish(v);
    if (v->finish_err == EF_OK) {
      v->detail[0] = '\0';
      v->summary.checksum = v->stored_checksum;
      v->summary.checksum_offset = v->checksum_offset;
      v->summary.hashed_size = v->checksum_offset + 1;
      v->summary.image_size = v->summary.hashed_size + (v->hdr.hash_appended ? DIGEST_LEN : 0);
      v->summary.total_size = v->offset;
    }
  }
  if (summary) {
    if (v->finish_err == EF_OK) {
      *summary = v->summary;
    } else {
      memset(summary, 0, sizeof *summary);
      summary->total_size = v->offset;
    }
  }
  return report(v, v->finish_err, st);
}

ef_err ef_image_check_file(const char *path, ef_image_header *hdr, ef_app_desc *desc,
                           ef_image_summary *summary, ef_status *st) {
  enum { READ_SIZE = 64 * 1024 };
  ef_err err;
  ef_image_validator *v = NULL;
  uint8_t *buf = NULL;
  int fd = -1;

  if (summary) memset(summary, 0, sizeof *summary);
  err = ef_image_validator_new(&v);
  if (err != EF_OK) goto out;
  buf = malloc(READ_SIZE);
  if (!buf) {
    err = ef_status_fail(st, EF_ERR_NOMEM, "cannot allocate a read buffer");
    goto out;
  }
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = ef_status_fail(st, EF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  for (;;) {
    ssize_t n = read(fd, buf, READ_SIZE);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = ef_status_fail(st, EF_ERR_IO, "cannot read %s: %s", path, strerror(errno));
      goto out;
    }
    if (n == 0) break;
    /* Keep reading past a feed error would only waste time: it is sticky,
     * and ef_image_finish below reports it. */
    if (feed(v, buf, (size_t)n) != EF_OK) break;
  }
  err = ef_image_finish(v, summary, st);
out:
  if (err != EF_OK) ef_status_fail(st, err, NULL); /* a code without specifics (no memory) */
  if (v) {
    if (hdr) *hdr = *ef_image_get_header(v);
    if (desc) {
      if (ef_image_desc_ready(v))
        *desc = *ef_image_get_app_desc(v);
      else
        memset(desc, 0, sizeof *desc);
    }
  } else {
    if (hdr) memset(hdr, 0, sizeof *hdr);
    if (desc) memset(desc, 0, sizeof *desc);
  }
  if (fd >= 0) close(fd);
  free(buf);
  ef_image_validator_free(v);
  return err;
}

ef_err ef_image_stream_sha256(const ef_image_validator *v, uint8_t out[32]) {
  ef_err err = EF_ERR_NOMEM;
  unsigned len = 0;
  /* finalise a copy: the stream may go on */
  EVP_MD_CTX *copy = EVP_MD_CTX_new();
  if (!copy) goto out;
  err = EF_ERR_INTERNAL;
  if (EVP_MD_CTX_copy_ex(copy, v->sha) != 1 || EVP_DigestFinal_ex(copy, out, &len) != 1 || len != 32)
    goto out;
  err = EF_OK;
out:
  EVP_MD_CTX_free(copy);
  return err;
}
