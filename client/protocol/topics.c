/* Topic names of docs/protocol.md and docs/rollouts.md. */
#include <stdio.h>
#include <string.h>

#include "espfleet/protocol.h"

/* The level under P and the leaf of each kind; "" = none. */
static const struct {
  const char *level, *leaf;
} SHAPE[] = {
    [EF_TOPIC_UNKNOWN] = {"", ""},
    [EF_TOPIC_DEVICE_JOB] = {"devices", "job"},
    [EF_TOPIC_DEVICE_CANCEL] = {"devices", "cancel"},
    [EF_TOPIC_DEVICE_STATE] = {"devices", "state"},
    [EF_TOPIC_DEVICE_PROGRESS] = {"devices", "progress"},
    [EF_TOPIC_DEVICE_RESULT] = {"devices", "jobs"},
    [EF_TOPIC_GROUP_JOB] = {"groups", "job"},
    [EF_TOPIC_GROUP_CANCEL] = {"groups", "cancel"},
    [EF_TOPIC_ROLLOUT] = {"rollouts", ""},
    [EF_TOPIC_ROLLOUT_STATUS] = {"rollouts", "status"},
    [EF_TOPIC_ROLLOUT_CONTROL] = {"rollouts", "control"},
    [EF_TOPIC_ROLLOUT_DEVICES] = {"rollouts", "devices"},
    [EF_TOPIC_ANNOUNCE] = {"announce", ""},
};
#define N_KINDS (sizeof SHAPE / sizeof SHAPE[0])

static bool id_or_wildcard(const char *s) { return s && (strcmp(s, "+") == 0 || ef_id_valid(s)); }

bool ef_topic(char *out, size_t n, const char *prefix, ef_topic_kind kind, const char *id, const char *sub) {
  int w = -1;
  if (n) out[0] = '\0';
  if ((size_t)kind >= N_KINDS || kind == EF_TOPIC_UNKNOWN) return false;
  if (kind == EF_TOPIC_ANNOUNCE)
    w = snprintf(out, n, "%s/announce", prefix);
  else if (!id_or_wildcard(id))
    return false;
  else if (kind == EF_TOPIC_DEVICE_RESULT)
    w = id_or_wildcard(sub) ? snprintf(out, n, "%s/devices/%s/jobs/%s", prefix, id, sub) : -1;
  else if (kind == EF_TOPIC_ROLLOUT)
    w = snprintf(out, n, "%s/rollouts/%s", prefix, id);
  else
    w = snprintf(out, n, "%s/%s/%s/%s", prefix, SHAPE[kind].level, id, SHAPE[kind].leaf);
  if (w < 0 || (size_t)w >= n) {
    if (n) out[0] = '\0';
    return false;
  }
  return true;
}

/* Copies the level that starts at @p s (up to '/' or the end) into @p out
 * when it is a valid id; returns the rest after the level ("" at the end),
 * or NULL. */
static const char *take_id(const char *s, char out[EF_JOB_ID_MAX + 1]) {
  size_t len = strcspn(s, "/");
  if (len == 0 || len > EF_JOB_ID_MAX) return NULL;
  memcpy(out, s, len);
  out[len] = '\0';
  if (!ef_id_valid(out)) return NULL;
  return s[len] == '/' ? s + len + 1 : s + len;
}

static ef_topic_kind parse_under(const char *level, const char *rest, char id[EF_JOB_ID_MAX + 1],
                                 char sub[EF_JOB_ID_MAX + 1]) {
  bool had_slash = strchr(rest, '/') != NULL;
  const char *leaf = take_id(rest, id);
  if (!leaf) return EF_TOPIC_UNKNOWN;
  if (strcmp(level, "rollouts") == 0 && !had_slash) return EF_TOPIC_ROLLOUT;
  if (strcmp(level, "devices") == 0 && strncmp(leaf, "jobs/", 5) == 0) {
    const char *end = take_id(leaf + 5, sub);
    return end && !*end ? EF_TOPIC_DEVICE_RESULT : EF_TOPIC_UNKNOWN;
  }
  for (size_t k = 1; k < N_KINDS; k++)
    if (strcmp(SHAPE[k].level, level) == 0 && SHAPE[k].leaf[0] && strcmp(SHAPE[k].leaf, leaf) == 0 &&
        k != EF_TOPIC_DEVICE_RESULT)
      return (ef_topic_kind)k;
  return EF_TOPIC_UNKNOWN;
}

ef_topic_kind ef_topic_parse(const char *topic, const char *prefix, char id[EF_JOB_ID_MAX + 1],
                             char sub[EF_JOB_ID_MAX + 1]) {
  ef_topic_kind k = EF_TOPIC_UNKNOWN;
  size_t pl = strlen(prefix);
  id[0] = sub[0] = '\0';
  if (strncmp(topic, prefix, pl) != 0 || topic[pl] != '/') goto out;
  const char *rest = topic + pl + 1;
  if (strcmp(rest, "announce") == 0) {
    k = EF_TOPIC_ANNOUNCE;
    goto out;
  }
  size_t level_len = strcspn(rest, "/");
  if (rest[level_len] != '/' || level_len >= 16) goto out;
  char level[16];
  memcpy(level, rest, level_len);
  level[level_len] = '\0';
  k = parse_under(level, rest + level_len + 1, id, sub);
out:
  if (k == EF_TOPIC_UNKNOWN) id[0] = sub[0] = '\0';
  return k;
}
