/* Release manifests: any document either parses into a release whose
 * canonical text can be built and that writes back to the same manifest, or
 * is refused with a detail. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/release.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ef_manifest m, back;
  ef_status st = EF_STATUS_INIT;
  char text[EF_RELEASE_TEXT_MAX];
  if (ef_manifest_parse((const char *)data, size, &m, &st) != EF_OK) {
    if (st.detail[0] == '\0') abort();
    return 0;
  }
  ef_status_clear(&st);
  if (ef_release_canonical(&m.rel, text, sizeof text, &st) == 0 && m.rel.version[0] && m.rel.project[0] &&
      m.rel.chip[0])
    abort();
  char *json = ef_manifest_to_json(&m);
  if (!json) abort();
  if (ef_manifest_parse(json, strlen(json), &back, &st) != EF_OK) abort();
  if (memcmp(&back.rel, &m.rel, sizeof m.rel) != 0 || memcmp(back.sig, m.sig, sizeof m.sig) != 0) abort();
  free(json);
  return 0;
}
