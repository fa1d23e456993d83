/* espfleet inspect: validates an image file and prints everything known about it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "cli.h"
#include "espfleet/hex.h"
#include "espfleet/image.h"

const char cli_inspect_usage[] =
    "Usage: espfleet inspect IMAGE [--json]\n"
    "\n"
    "Validates an ESP-IDF application image as the ESP's bootloader would\n"
    "(header, segments, checksum, appended SHA-256) and prints what it holds:\n"
    "chip, flash mode/size/speed, entry point, segment list, the app\n"
    "description (version, project, IDF version, secure_version, build date and\n"
    "time, ELF SHA-256), checksum, digest, sizes and the SHA-256 of the file.\n"
    "Bytes after the digest (a secure boot signature block) are allowed.\n"
    "\n"
    "  --json       print one JSON object on stdout (also for an invalid image:\n"
    "               \"valid\": false and an \"error\" object)\n"
    "  -h, --help   show this help\n"
    "\n"
    "Exit status: 0 only for a valid image; 1 otherwise, with\n"
    "  espfleet: error: <code>: <sentence> (<detail>) on stderr.\n";

static const char *const flash_modes[] = {"QIO", "QOUT", "DIO", "DOUT", "FAST_READ", "SLOW_READ"};

typedef struct {
  ef_err err;
  char detail[512];
  bool opened;
  bool desc_ready;
  ef_image_header hdr;
  ef_app_desc desc;
  ef_image_summary sum;
  uint64_t file_size;
  char sha256[65];
} scan;

/* One pass over the file: validator and a SHA-256 of every byte. */
static void scan_file(const char *path, scan *s) {
  enum { READ_SIZE = 64 * 1024 };
  ef_image_validator *v = NULL;
  EVP_MD_CTX *sha = NULL;
  uint8_t *buf = NULL;
  ef_err feed_err = EF_OK;
  int fd = -1;

  memset(s, 0, sizeof *s);
  s->err = ef_image_validator_new(&v);
  if (s->err != EF_OK) goto out;
  s->err = EF_ERR_NOMEM;
  sha = EVP_MD_CTX_new();
  buf = malloc(READ_SIZE);
  if (!sha || !buf) goto out;
  s->err = EF_ERR_INTERNAL;
  if (EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) goto out;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    s->err = EF_ERR_IO;
    snprintf(s->detail, sizeof s->detail, "cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  s->opened = true;
  for (;;) {
    ssize_t n = read(fd, buf, READ_SIZE);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s->err = EF_ERR_IO;
      snprintf(s->detail, sizeof s->detail, "cannot read %s: %s", path, strerror(errno));
      goto out;
    }
    if (n == 0) break;
    /* Keep hashing after a defect: the file's SHA-256 is still useful. */
    /* ef_image_finish reports a feed defect again, with its sentence */
    if (feed_err == EF_OK) feed_err = ef_image_feed(v, buf, (size_t)n, NULL);
    if (EVP_DigestUpdate(sha, buf, (size_t)n) != 1) goto out;
    s->file_size += (uint64_t)n;
  }
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned md_len = 0;
  if (EVP_DigestFinal_ex(sha, md, &md_len) != 1) goto out;
  ef_hex(md, 32, s->sha256);
  ef_status st = EF_STATUS_INIT;
  s->err = ef_image_finish(v, &s->sum, &st);
  if (s->err != EF_OK) snprintf(s->detail, sizeof s->detail, "%s", st.detail);
out:
  if (v) {
    s->hdr = *ef_image_get_header(v);
    s->desc_ready = ef_image_desc_ready(v);
    if (s->desc_ready) s->desc = *ef_image_get_app_desc(v);
  }
  if (fd >= 0) close(fd);
  free(buf);
  EVP_MD_CTX_free(sha);
  ef_image_validator_free(v);
}

static const char *flash_mode_name(uint8_t mode) {
  return mode < sizeof flash_modes / sizeof flash_modes[0] ? flash_modes[mode] : "unknown";
}

static void flash_size_name(uint8_t code, char *buf, size_t n) {
  if (code <= 7)
    snprintf(buf, n, "%uMB", 1u << code);
  else
    snprintf(buf, n, "unknown (code %u)", code);
}

/* The speed nibble means the same on ESP32, -S2, -S3 and -C3; elsewhere print the code. */
static const char *flash_speed_name(uint16_t chip, uint8_t code) {
  if (chip != 0x0000 && chip != 0x0002 && chip != 0x0005 && chip != 0x0009) return NULL;
  switch (code) {
  case 0x0: return "40m";
  case 0x1: return "26m";
  case 0x2: return "20m";
  case 0xF: return "80m";
  default: return NULL;
  }
}

/* Segments known so far: all of them for a complete image. */
static unsigned segments_known(const scan *s) {
  unsigned n = 0;
  while (n < s->hdr.segment_count && n < EF_IMAGE_MAX_SEGMENTS && s->hdr.segments[n].file_offset != 0) n++;
  return n;
}

static bool header_known(const scan *s) {
  return s->file_size >= EF_IMAGE_HEADER_SIZE && s->err != EF_ERR_IMAGE_BAD_MAGIC && s->err != EF_ERR_IO;
}

static void print_text(const char *path, const scan *s) {
  char fs[32];
  printf("file            %s\n", path);
  printf("size            %" PRIu64 " bytes\n", s->file_size);
  printf("sha256          %s\n", s->sha256);
  printf("valid           %s\n", s->err == EF_OK ? "yes" : "no");
  if (!header_known(s)) return;
  const ef_image_header *h = &s->hdr;
  const char *chip = ef_chip_name(h->chip_id);
  const char *speed = flash_speed_name(h->chip_id, h->flash_speed);
  flash_size_name(h->flash_size, fs, sizeof fs);
  printf("chip            %s (0x%04x)\n", chip ? chip : "unknown", h->chip_id);
  printf("flash mode      %s\n", flash_mode_name(h->flash_mode));
  printf("flash size      %s\n", fs);
  printf("flash speed     %s (code 0x%x)\n", speed ? speed : "chip-specific", h->flash_speed);
  printf("entry           0x%08" PRIx32 "\n", h->entry_addr);
  if (h->max_chip_rev_full == 0xFFFF)
    printf("chip revision   min v%u.%u, max any\n", (unsigned)h->min_chip_rev_full / 100,
           (unsigned)h->min_chip_rev_full % 100);
  else
    printf("chip revision   min v%u.%u, max v%u.%u\n", (unsigned)h->min_chip_rev_full / 100,
           (unsigned)h->min_chip_rev_full % 100, (unsigned)h->max_chip_rev_full / 100,
           (unsigned)h->max_chip_rev_full % 100);
  printf("hash appended   %s\n", h->hash_appended ? "yes" : "no");
  printf("segments        %u\n", h->segment_count);
  unsigned known = segments_known(s);
  for (unsigned i = 0; i < known; i++)
    printf("  %2u  load 0x%08" PRIx32 "  length %9" PRIu32 "  file offset %9" PRIu32 "\n", i,
           h->segments[i].load_addr, h->segments[i].length, h->segments[i].file_offset);
  if (s->desc_ready) {
    const ef_app_desc *d = &s->desc;
    char hex[65];
    ef_hex(d->app_elf_sha256, 32, hex);
    printf("version         %s\n", d->version);
    printf("project         %s\n", d->project_name);
    printf("idf version     %s\n", d->idf_ver);
    printf("secure version  %" PRIu32 "\n", d->secure_version);
    printf("build date      %s %s\n", d->date, d->time);
    printf("elf sha256      %s\n", hex);
  }
  if (s->err == EF_OK) {
    printf("checksum        0x%02x at offset %" PRIu64 " (ok)\n", s->sum.checksum, s->sum.checksum_offset);
    if (h->hash_appended)
      printf("digest          ok (SHA-256 of the first %" PRIu64 " bytes)\n", s->sum.hashed_size);
    printf("image size      %" PRIu64 " bytes\n", s->sum.image_size);
    printf("trailing bytes  %" PRIu64 "\n", s->sum.total_size - s->sum.image_size);
  }
}

static cJSON *json_hex32(uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof buf, "0x%08" PRIx32, v);
  return cJSON_CreateString(buf);
}

static cJSON *build_json(const char *path, const scan *s) {
  char fs[32];
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "file", path);
  cJSON_AddNumberToObject(root, "size", (double)s->file_size);
  cJSON_AddStringToObject(root, "sha256", s->sha256);
  cJSON_AddBoolToObject(root, "valid", s->err == EF_OK);
  if (s->err != EF_OK) {
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", ef_err_name(s->err));
    cJSON_AddStringToObject(e, "message", ef_err_message(s->err));
    cJSON_AddStringToObject(e, "detail", s->detail);
  }
  if (!header_known(s)) return root;
  const ef_image_header *h = &s->hdr;
  const char *chip = ef_chip_name(h->chip_id);
  const char *speed = flash_speed_name(h->chip_id, h->flash_speed);
  cJSON *c = cJSON_AddObjectToObject(root, "chip");
  cJSON_AddNumberToObject(c, "id", h->chip_id);
  if (chip)
    cJSON_AddStringToObject(c, "name", chip);
  else
    cJSON_AddNullToObject(c, "name");
  cJSON_AddNumberToObject(c, "min_rev_full", h->min_chip_rev_full);
  cJSON_AddNumberToObject(c, "max_rev_full", h->max_chip_rev_full);
  cJSON_AddNumberToObject(c, "min_rev_legacy", h->min_chip_rev);
  cJSON *f = cJSON_AddObjectToObject(root, "flash");
  cJSON_AddStringToObject(f, "mode", flash_mode_name(h->flash_mode));
  cJSON_AddNumberToObject(f, "mode_code", h->flash_mode);
  flash_size_name(h->flash_size, fs, sizeof fs);
  cJSON_AddStringToObject(f, "size", fs);
  cJSON_AddNumberToObject(f, "size_code", h->flash_size);
  if (speed)
    cJSON_AddStringToObject(f, "speed", speed);
  else
    cJSON_AddNullToObject(f, "speed");
  cJSON_AddNumberToObject(f, "speed_code", h->flash_speed);
  cJSON_AddItemToObject(root, "entry", json_hex32(h->entry_addr));
  cJSON_AddBoolToObject(root, "hash_appended", h->hash_appended);
  cJSON_AddNumberToObject(root, "segment_count", h->segment_count);
  cJSON *segs = cJSON_AddArrayToObject(root, "segments");
  unsigned known = segments_known(s);
  for (unsigned i = 0; i < known; i++) {
    cJSON *seg = cJSON_CreateObject();
    cJSON_AddItemToObject(seg, "load_addr", json_hex32(h->segments[i].load_addr));
    cJSON_AddNumberToObject(seg, "length", h->segments[i].length);
    cJSON_AddNumberToObject(seg, "file_offset", h->segments[i].file_offset);
    cJSON_AddItemToArray(segs, seg);
  }
  if (s->desc_ready) {
    const ef_app_desc *d = &s->desc;
    cJSON *a = cJSON_AddObjectToObject(root, "app");
    cJSON_AddStringToObject(a, "version", d->version);
    cJSON_AddStringToObject(a, "project", d->project_name);
    cJSON_AddStringToObject(a, "idf_version", d->idf_ver);
    cJSON_AddNumberToObject(a, "secure_version", d->secure_version);
    cJSON_AddStringToObject(a, "date", d->date);
    cJSON_AddStringToObject(a, "time", d->time);
    char hex[65];
    ef_hex(d->app_elf_sha256, 32, hex);
    cJSON_AddStringToObject(a, "elf_sha256", hex);
  }
  if (s->err == EF_OK) {
    char cs[8];
    snprintf(cs, sizeof cs, "0x%02x", s->sum.checksum);
    cJSON_AddStringToObject(root, "checksum", cs);
    cJSON_AddNumberToObject(root, "checksum_offset", (double)s->sum.checksum_offset);
    cJSON_AddBoolToObject(root, "checksum_ok", true);
    if (h->hash_appended)
      cJSON_AddBoolToObject(root, "digest_ok", true);
    else
      cJSON_AddNullToObject(root, "digest_ok");
    cJSON_AddNumberToObject(root, "hashed_size", (double)s->sum.hashed_size);
    cJSON_AddNumberToObject(root, "image_size", (double)s->sum.image_size);
    cJSON_AddNumberToObject(root, "trailing_bytes", (double)(s->sum.total_size - s->sum.image_size));
  }
  return root;
}

int cmd_inspect(int argc, char **argv) {
  static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
  bool json = false;
  int c;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == 'j')
      json = true;
    else
      return cli_usage_error("inspect", "unknown option '%s'", argv[optind - 1]);
  }
  if (argc - optind != 1) return cli_usage_error("inspect", "expected exactly one IMAGE");
  const char *path = argv[optind];

  scan *s = malloc(sizeof *s);
  if (!s) return cli_fail(EF_ERR_NOMEM, NULL);
  scan_file(path, s);
  if (s->opened) {
    if (json) {
      cJSON *root = build_json(path, s);
      char *text = root ? cJSON_Print(root) : NULL;
      if (text) puts(text);
      cJSON_free(text);
      cJSON_Delete(root);
    } else {
      print_text(path, s);
    }
    fflush(stdout);
  }
  int rc = s->err == EF_OK ? CLI_OK : cli_fail(s->err, s->detail);
  free(s);
  return rc;
}
