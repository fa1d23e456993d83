/* Topic names of docs/protocol.md: P/devices/ID/{job,cancel,state,progress}, P/groups/G/job. */
#include <stdio.h>
#include <string.h>

#include "console.h"

bool con_topic(char *out, size_t n, const char *prefix, const char *kind, const char *id, const char *leaf) {
  int w = snprintf(out, n, "%s/%s/%s/%s", prefix, kind, id, leaf);
  return w > 0 && (size_t)w < n;
}

bool con_topic_parse(const char *topic, const char *prefix, char device[EF_JOB_ID_MAX + 1], bool *progress) {
  size_t pl = strlen(prefix);
  if (strncmp(topic, prefix, pl) != 0 || strncmp(topic + pl, "/devices/", 9) != 0) return false;
  const char *id = topic + pl + 9;
  const char *slash = strchr(id, '/');
  if (!slash || slash == id || (size_t)(slash - id) > EF_JOB_ID_MAX) return false;
  if (strcmp(slash + 1, "state") == 0)
    *progress = false;
  else if (strcmp(slash + 1, "progress") == 0)
    *progress = true;
  else
    return false;
  memcpy(device, id, (size_t)(slash - id));
  device[slash - id] = '\0';
  /* a broker may carry any UTF-8 in a topic: only real device ids show */
  return ef_id_valid(device);
}
