/* Chip ids as written in byte 12 of the image header, and their names. */
#include "espfleet/image.h"

#include <ctype.h>
#include <string.h>

static const struct {
  uint16_t id;
  const char *name;
} chips[] = {
    {0x0000, "esp32"},   {0x0002, "esp32s2"}, {0x0005, "esp32c3"}, {0x0009, "esp32s3"}, {0x000C, "esp32c2"},
    {0x000D, "esp32c6"}, {0x0010, "esp32h2"}, {0x0012, "esp32p4"}, {0x0017, "esp32c5"},
};

const char *ef_chip_name(uint16_t chip_id) {
  for (size_t i = 0; i < sizeof chips / sizeof chips[0]; i++)
    if (chips[i].id == chip_id) return chips[i].name;
  return NULL;
}

ef_err ef_chip_from_name(const char *name, uint16_t *chip_id) {
  /* Espressif writes "ESP32-S3" in datasheets and "esp32s3" in IDF targets:
   * both mean the same chip, so compare without case and separators. */
  char norm[16];
  size_t n = 0;
  if (!name) return EF_ERR_INVALID_ARG;
  for (const char *p = name; *p; p++) {
    if (*p == '-' || *p == '_') continue;
    if (n + 1 >= sizeof norm) return EF_ERR_INVALID_ARG;
    norm[n++] = (char)tolower((unsigned char)*p);
  }
  norm[n] = '\0';
  for (size_t i = 0; i < sizeof chips / sizeof chips[0]; i++) {
    if (strcmp(chips[i].name, norm) == 0) {
      *chip_id = chips[i].id;
      return EF_OK;
    }
  }
  return EF_ERR_INVALID_ARG;
}
