#include "espfleet/error.h"

#include <string.h>

struct err_entry {
  const char *name;
  const char *cls;
  const char *msg;
};

static const struct err_entry table[] = {
#define EF_X_ROW(e, name, cls, msg) [e] = {name, cls, msg},
    EF_ERROR_TABLE(EF_X_ROW)
#undef EF_X_ROW
};

static const struct err_entry *entry(ef_err err) {
  if ((int)err < 0 || err >= EF_ERR__COUNT) return NULL;
  return &table[err];
}

const char *ef_err_name(ef_err err) {
  const struct err_entry *e = entry(err);
  return e ? e->name : "unknown";
}

const char *ef_err_message(ef_err err) {
  const struct err_entry *e = entry(err);
  return e ? e->msg : "Unknown error.";
}

const char *ef_err_class(ef_err err) {
  const struct err_entry *e = entry(err);
  return e ? e->cls : "internal";
}

ef_err ef_err_from_name(const char *name) {
  for (int i = 0; i < EF_ERR__COUNT; i++)
    if (name && strcmp(table[i].name, name) == 0) return (ef_err)i;
  return EF_ERR__COUNT;
}

bool ef_err_retryable(ef_err err) {
  switch (err) {
  case EF_ERR_ESP_UNAVAILABLE:
  case EF_ERR_ESP_TIMEOUT:
  case EF_ERR_ESP_BUSY:
  case EF_ERR_DOWNLOAD_FAILED:
  case EF_ERR_MQTT: return true;
  default: return false;
  }
}
