/* The configuration loader on any text (files it names are not read): it
 * accepts it with no problem listed, or refuses it with at least one problem
 * line; an accepted configuration has a valid device_id, a broker, a client
 * id and a state_dir. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ef_config cfg;
  static ef_config_problems p;
  ef_status st = EF_STATUS_INIT;
  ef_err rc = ef_config_parse((const char *)data, size, EF_CONFIG_SKIP_FILES, &cfg, &p, &st);
  if (rc == EF_OK) {
    if (p.count || p.dropped || st.code != EF_OK) abort();
    if (!ef_id_valid(cfg.device_id) || !cfg.mqtt.client_id[0] || !cfg.mqtt.uri[0] || !cfg.state_dir[0])
      abort();
    if (cfg.esp.window < 1 || cfg.esp.chunk_size < 1) abort();
    return 0;
  }
  if (rc != EF_ERR_CONFIG && rc != EF_ERR_NOMEM) abort();
  if (st.code != rc || st.detail[0] == '\0' || p.count == 0) abort();
  for (size_t i = 0; i < p.count; i++) {
    const char *line = p.lines[i];
    /* (a sentence may be cut at EF_CONFIG_PROBLEM_LEN: an unknown key is
     * quoted whole, whatever its length) */
    if (!memchr(line, 0, sizeof p.lines[i]) || line[0] == '\0') abort();
  }
  return 0;
}
