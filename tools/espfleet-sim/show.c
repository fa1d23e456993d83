#include "show.h"

#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "espfleet/hex.h"
#include "espfleet/image.h"

static int slot_or_null(cJSON *o, const char *key, uint32_t slot) {
  return (slot <= 1 ? cJSON_AddNumberToObject(o, key, slot) : cJSON_AddNullToObject(o, key)) != NULL;
}

/* The facts of an image; for an empty slot only what is known. */
static cJSON *image_json(const sim_slot_info *s, unsigned index, bool with_state) {
  bool has_image = s->state == SIM_SLOT_VALID || s->state == SIM_SLOT_BOOT_FAILED;
  const char *chip = ef_chip_name((uint16_t)s->chip_id);
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddNumberToObject(o, "slot", index);
  if (with_state) cJSON_AddStringToObject(o, "state", sim_slot_state_name(s->state));
  /* ESP-IDF's idea of the image is its own extent (header to appended
   * digest): bytes written past it are not part of it */
  cJSON_AddNumberToObject(o, "size", (double)(has_image ? s->image_length : s->length));
  cJSON_AddNumberToObject(o, "written", (double)s->length);
  if (has_image) {
    char sha[65];
    ef_hex(s->sha256, sizeof s->sha256, sha);
    cJSON_AddStringToObject(o, "sha256", sha);
    ef_hex(s->written_sha256, sizeof s->written_sha256, sha);
    cJSON_AddStringToObject(o, "written_sha256", sha);
    if (s->release[0])
      cJSON_AddStringToObject(o, "release", s->release);
    else
      cJSON_AddNullToObject(o, "release");
    cJSON_AddStringToObject(o, "version", s->version);
    cJSON_AddStringToObject(o, "project", s->project);
    cJSON_AddStringToObject(o, "idf_version", s->idf_version);
    if (chip)
      cJSON_AddStringToObject(o, "chip", chip);
    else
      cJSON_AddNumberToObject(o, "chip", s->chip_id);
    cJSON_AddNumberToObject(o, "secure_version", s->secure_version);
  } else {
    cJSON_AddNullToObject(o, "sha256");
    cJSON_AddNullToObject(o, "version");
    cJSON_AddNullToObject(o, "project");
  }
  return o;
}

ef_err sim_show(const sim_flash *f) {
  const sim_flash_header *h = &f->hdr;
  const sim_counters *c = &h->counters;
  ef_err err = EF_ERR_NOMEM;
  char *text = NULL;
  cJSON *root = cJSON_CreateObject(), *slots, *counters;
  int running = sim_flash_running_slot(f);
  if (!root) goto out;
  if (!slot_or_null(root, "boot_slot", h->boot_slot)) goto out;
  if (!cJSON_AddNumberToObject(root, "slot_size", (double)h->slot_size)) goto out;
  if (!(slots = cJSON_AddArrayToObject(root, "slots"))) goto out;
  for (unsigned i = 0; i < 2; i++) {
    cJSON *s = image_json(&h->slots[i], i, true);
    if (!s || !cJSON_AddItemToArray(slots, s)) goto out;
  }
  if (running >= 0) {
    cJSON *r = image_json(&h->slots[running], (unsigned)running, false);
    if (!r || !cJSON_AddItemToObject(root, "running", r)) goto out;
  } else if (!cJSON_AddNullToObject(root, "running")) {
    goto out;
  }
  if (!(counters = cJSON_AddObjectToObject(root, "counters"))) goto out;
  const struct {
    const char *name;
    uint64_t value;
  } rows[] = {
      {"ota_begin", c->ota_begin},
      {"ota_write", c->ota_write},
      {"ota_write_bytes", c->ota_write_bytes},
      {"ota_end", c->ota_end},
      {"ota_end_rejected", c->ota_end_rejected},
      {"boots", c->boots},
      {"requests", c->requests},
      {"truncated", c->truncated},
      {"unanswered", c->unanswered},
      {"rx_stalls", c->rx_stalls},
      {"dropped_closed", c->dropped_closed},
      {"concurrent_opens", c->concurrent_opens},
      {"panics", c->panics},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
    if (!cJSON_AddNumberToObject(counters, rows[i].name, (double)rows[i].value)) goto out;
  cJSON_AddBoolToObject(root, "bluetooth", h->bluetooth != 0);
  cJSON_AddBoolToObject(root, "wifi", h->wifi != 0);
  text = cJSON_Print(root);
  if (!text) goto out;
  puts(text);
  err = EF_OK;
out:
  free(text);
  cJSON_Delete(root);
  return err;
}
