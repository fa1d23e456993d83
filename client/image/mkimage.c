/*
 * Generator of valid ESP application images for tests, demos and benchmarks.
 *
 * Layout: header; segment 0 (DROM) holding the app description; segment 1
 * (IRAM) and segments 2.. (IROM) of pseudo-random bytes; zero padding; the
 * checksum; the SHA-256 digest. The pseudo-random stream is seeded from every
 * option, so two versions of the same project never share their bytes, and
 * the same options always give the same file.
 */
#include "espfleet/mkimage.h"

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "espfleet/image.h"

#define DROM_ADDR 0x3C000020u
#define IRAM_ADDR 0x40374000u
#define IROM_ADDR 0x42000020u
#define IRAM_MAX  (128u * 1024u)
/* Stays below the validator's per-segment limit. */
#define IROM_SEG_MAX   EF_IMAGE_MAX_SEGMENT_LEN
#define FLASH_MODE_DIO 2

typedef struct {
  FILE *out;
  EVP_MD_CTX *sha;
  uint8_t checksum;
  uint64_t written;
} writer;

static ef_err emit(writer *w, const void *data, size_t len, bool segment_data) {
  const uint8_t *p = data;
  if (segment_data)
    for (size_t i = 0; i < len; i++) w->checksum ^= p[i];
  if (EVP_DigestUpdate(w->sha, p, len) != 1) return EF_ERR_INTERNAL;
  if (fwrite(p, 1, len, w->out) != len) return EF_ERR_IO;
  w->written += len;
  return EF_OK;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* xorshift64*: fast, and good enough to make the bytes look like code. */
static uint64_t next_random(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1DULL;
}

/* SHA-256 of every option: the PRNG seed and the app description's ELF hash. */
static ef_err options_hash(const ef_mkimage_options *o, uint8_t md[32]) {
  ef_err err = EF_ERR_INTERNAL;
  uint8_t fixed[14];
  unsigned len = 0;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  if (!c) return EF_ERR_NOMEM;
  put16(fixed, o->chip_id);
  put32(fixed + 2, o->secure_version);
  put32(fixed + 6, (uint32_t)o->size);
  put32(fixed + 10, (uint32_t)(o->size >> 32));
  if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 ||
      EVP_DigestUpdate(c, o->version, strlen(o->version) + 1) != 1 ||
      EVP_DigestUpdate(c, o->project, strlen(o->project) + 1) != 1 ||
      EVP_DigestUpdate(c, fixed, sizeof fixed) != 1 || EVP_DigestFinal_ex(c, md, &len) != 1)
    goto out;
  err = EF_OK;
out:
  EVP_MD_CTX_free(c);
  return err;
}

typedef struct {
  unsigned count;
  uint32_t iram_len;
  uint64_t rom_len; /* spread over count - 2 IROM segments */
  uint32_t pad;
} plan;

/*
 * Sizes the segments so that the file comes out at o->size rounded down to
 * 16 bytes plus the digest alignment: the hashed part ends on a 16-byte
 * boundary (checksum at 15 mod 16), and the digest adds 32.
 */
static ef_err make_plan(uint64_t size, uint32_t seg0_len, plan *pl) {
  if (size < EF_MKIMAGE_MIN_SIZE || size > EF_MKIMAGE_MAX_SIZE) return EF_ERR_INVALID_ARG;
  uint64_t hashed = (size - 32) & ~(uint64_t)15;
  for (unsigned count = 3; count <= EF_IMAGE_MAX_SEGMENTS; count++) {
    uint64_t fixed = EF_IMAGE_HEADER_SIZE + (uint64_t)count * EF_IMAGE_SEGMENT_HEADER_SIZE + seg0_len + 1;
    if (hashed < fixed + 8) return EF_ERR_INVALID_ARG;
    uint64_t data = (hashed - fixed) & ~(uint64_t)3;
    uint64_t iram = (data / 8) & ~(uint64_t)3;
    if (iram < 4) iram = 4;
    if (iram > IRAM_MAX) iram = IRAM_MAX;
    uint64_t rom = data - iram;
    if (rom < 4) return EF_ERR_INVALID_ARG;
    if (rom > (uint64_t)(count - 2) * IROM_SEG_MAX) continue;
    pl->count = count;
    pl->iram_len = (uint32_t)iram;
    pl->rom_len = rom;
    pl->pad = (uint32_t)(hashed - fixed - data);
    return EF_OK;
  }
  return EF_ERR_INVALID_ARG;
}

static ef_err write_header(writer *w, const ef_mkimage_options *o, const plan *pl) {
  uint8_t h[EF_IMAGE_HEADER_SIZE] = {0};
  /* Flash size: room for two OTA slots of this image, at least 4 MB. */
  unsigned flash_size = 2; /* 4 MB */
  while (flash_size < 7 && ((uint64_t)1 << (20 + flash_size)) < 2 * o->size + 0x10000) flash_size++;
  h[0] = EF_IMAGE_MAGIC;
  h[1] = (uint8_t)pl->count;
  h[2] = FLASH_MODE_DIO;
  h[3] = (uint8_t)(flash_size << 4); /* speed code 0 */
  put32(h + 4, IRAM_ADDR + 0x400);
  h[8] = 0xEE; /* WP pin: not used */
  put16(h + 12, o->chip_id);
  put16(h + 17, 0xFFFF);
  h[23] = 1;
  return emit(w, h, sizeof h, false);
}

static ef_err write_seg_header(writer *w, uint32_t addr, uint32_t len) {
  uint8_t s[EF_IMAGE_SEGMENT_HEADER_SIZE];
  put32(s, addr);
  put32(s + 4, len);
  return emit(w, s, sizeof s, false);
}

/* A fixed-width text field of a zeroed buffer: the NUL padding is already
 * there (lengths were checked by the caller, at most 31). */
static void put_str(uint8_t *dst, const char *s) {
  memcpy(dst, s, strlen(s)); // NOLINT(bugprone-not-null-terminated-result): NUL-padded field, see above
}

static ef_err write_app_desc(writer *w, const ef_mkimage_options *o, const uint8_t seed[32]) {
  uint8_t d[EF_APP_DESC_SIZE] = {0};
  put32(d, EF_APP_DESC_MAGIC);
  put32(d + 4, o->secure_version);
  put_str(d + 16, o->version);
  put_str(d + 48, o->project);
  put_str(d + 80, "00:00:00");
  put_str(d + 96, "Jan  1 2026");
  put_str(d + 112, "espfleet-mkimage");
  memcpy(d + 144, seed, 32);
  return emit(w, d, sizeof d, true);
}

static ef_err write_release(writer *w, const char *release) {
  uint8_t r[EF_MKIMAGE_RELEASE_RECORD_SIZE] = {0};
  // NOLINTNEXTLINE(bugprone-not-null-terminated-result): an 8-byte magic, no NUL
  memcpy(r, EF_MKIMAGE_RELEASE_MAGIC, 8);
  put_str(r + 8, release);
  return emit(w, r, sizeof r, true);
}

bool ef_mkimage_find_release(const uint8_t *data, size_t len, char *text) {
  for (size_t i = 0; i + EF_MKIMAGE_RELEASE_RECORD_SIZE <= len; i += 4) {
    if (memcmp(data + i, EF_MKIMAGE_RELEASE_MAGIC, 8) != 0) continue;
    const uint8_t *t = data + i + 8;
    if (t[EF_MKIMAGE_RELEASE_MAX] != '\0' || t[0] == '\0') continue;
    memcpy(text, t, EF_MKIMAGE_RELEASE_MAX + 1);
    return true;
  }
  return false;
}

static ef_err write_random(writer *w, uint64_t *rng, uint64_t len) {
  uint8_t buf[16384];
  while (len > 0) {
    size_t n = len < sizeof buf ? (size_t)len : sizeof buf;
    for (size_t i = 0; i < n; i += 8) {
      uint64_t r = next_random(rng);
      for (size_t k = 0; k < 8 && i + k < n; k++) buf[i + k] = (uint8_t)(r >> (8 * k));
    }
    ef_err err = emit(w, buf, n, true);
    if (err != EF_OK) return err;
    len -= n;
  }
  return EF_OK;
}

ef_err ef_mkimage_write(const ef_mkimage_options *o, FILE *out, uint64_t *written, ef_status *st) {
  ef_err err = EF_ERR_INVALID_ARG;
  writer w = {out, NULL, 0xEF, 0};
  uint8_t seed[32];
  uint64_t rng = 0;
  plan pl;

  if (written) *written = 0;
  if (!o || !out) {
    ef_status_fail(st, err, "no options or no output");
    goto out;
  }
  if (!o->version || !o->project || strlen(o->version) > 31 || strlen(o->project) > 31) {
    ef_status_fail(st, err, "version and project must be at most 31 characters");
    goto out;
  }
  if (o->chip_id == EF_CHIP_INVALID) {
    ef_status_fail(st, err, "chip id 0x%04x is not a chip", o->chip_id);
    goto out;
  }
  if (o->hosted_release && (!*o->hosted_release || strlen(o->hosted_release) > EF_MKIMAGE_RELEASE_MAX)) {
    ef_status_fail(st, err, "hosted_release must be 1-%d characters", EF_MKIMAGE_RELEASE_MAX);
    goto out;
  }
  uint32_t seg0_len = EF_APP_DESC_SIZE + (o->hosted_release ? EF_MKIMAGE_RELEASE_RECORD_SIZE : 0);
  err = make_plan(o->size, seg0_len, &pl);
  if (err != EF_OK) {
    ef_status_fail(st, err, "size %llu is outside %u..%llu bytes", (unsigned long long)o->size,
                   EF_MKIMAGE_MIN_SIZE, (unsigned long long)EF_MKIMAGE_MAX_SIZE);
    goto out;
  }
  err = options_hash(o, seed);
  if (err != EF_OK) goto out;
  for (int i = 0; i < 8; i++) rng |= (uint64_t)seed[i] << (8 * i);
  if (rng == 0) rng = 0x9E3779B97F4A7C15ULL; /* xorshift must not start at 0 */

  err = EF_ERR_NOMEM;
  w.sha = EVP_MD_CTX_new();
  if (!w.sha) goto out;
  err = EF_ERR_INTERNAL;
  if (EVP_DigestInit_ex(w.sha, EVP_sha256(), NULL) != 1) goto out;

  if ((err = write_header(&w, o, &pl)) != EF_OK) goto out;
  if ((err = write_seg_header(&w, DROM_ADDR, seg0_len)) != EF_OK) goto out;
  if ((err = write_app_desc(&w, o, seed)) != EF_OK) goto out;
  if (o->hosted_release && (err = write_release(&w, o->hosted_release)) != EF_OK) goto out;
  if ((err = write_seg_header(&w, IRAM_ADDR, pl.iram_len)) != EF_OK) goto out;
  if ((err = write_random(&w, &rng, pl.iram_len)) != EF_OK) goto out;
  uint64_t rom_left = pl.rom_len;
  for (unsigned i = 2; i < pl.count; i++) {
    /* Spread evenly, 4-byte aligned; the last segment takes the remainder. */
    unsigned segs_left = pl.count - i;
    uint64_t len = segs_left == 1 ? rom_left : (rom_left / segs_left) & ~(uint64_t)3;
    uint32_t addr = IROM_ADDR + (uint32_t)(i - 2) * IROM_SEG_MAX;
    if ((err = write_seg_header(&w, addr, (uint32_t)len)) != EF_OK) goto out;
    if ((err = write_random(&w, &rng, len)) != EF_OK) goto out;
    rom_left -= len;
  }
  uint8_t tail[16] = {0};
  if ((err = emit(&w, tail, pl.pad, false)) != EF_OK) goto out;
  uint8_t checksum = w.checksum;
  if ((err = emit(&w, &checksum, 1, false)) != EF_OK) goto out;
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned md_len = 0;
  err = EF_ERR_INTERNAL;
  if (EVP_DigestFinal_ex(w.sha, md, &md_len) != 1) goto out;
  err = EF_ERR_IO;
  if (fwrite(md, 1, md_len, out) != md_len || fflush(out) != 0) goto out;
  w.written += md_len;
  err = EF_OK;
out:
  /* errno is still the failed write's: nothing since has touched it */
  if (err == EF_ERR_IO) ef_status_fail(st, err, "write failed: %s", strerror(errno));
  if (err != EF_OK) ef_status_fail(st, err, NULL);
  if (written) *written = w.written;
  EVP_MD_CTX_free(w.sha);
  return err;
}
