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

bool ef_topic_same(const char *delivered, const char *ours) {
  for (;; delivered++, ours++) {
    char a = *delivered == '.' ? '/' : *delivered, b = *ours == '.' ? '/' : *ours;
    if (a != b) return false;
    if (!a) return true;
  }
}

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

/* Joins levels [from, to) of @p s back into an id with '.', as RabbitMQ
 * split it; false when it is not a valid id. */
static bool join_dotted(const char *from, const char *to, char out[EF_JOB_ID_MAX + 1]) {
  size_t n = (size_t)(to - from);
  if (n == 0 || n > EF_JOB_ID_MAX) return false;
  for (size_t i = 0; i < n; i++) out[i] = from[i] == '/' ? '.' : from[i];
  out[n] = '\0';
  return ef_id_valid(out);
}

/*
 * A topic whose ids came back with their '.' turned into '/' (RabbitMQ maps
 * '/' to '.' in routing keys and back): more levels than its shape has.
 * Our topics never have extra levels otherwise, so the leaf (and, for a
 * result, the last "/jobs/") tells where the ids were.
 */
static ef_topic_kind parse_dotted(const char *rest, char id[EF_JOB_ID_MAX + 1], char sub[EF_JOB_ID_MAX + 1]) {
  const char *slash = strchr(rest, '/');
  if (!slash) return EF_TOPIC_UNKNOWN;
  size_t level_len = (size_t)(slash - rest);
  const char *ids = slash + 1;
  if (level_len == 7 && strncmp(rest, "devices", 7) == 0) {
    const char *jobs = NULL;
    for (const char *p = strstr(ids, "/jobs/"); p; p = strstr(p + 1, "/jobs/")) jobs = p;
    if (jobs && join_dotted(ids, jobs, id) && join_dotted(jobs + 6, jobs + 6 + strlen(jobs + 6), sub))
      return EF_TOPIC_DEVICE_RESULT;
  }
  const char *leaf = strrchr(ids, '/');
  if (!leaf) return EF_TOPIC_UNKNOWN;
  for (size_t k = 1; k < N_KINDS; k++)
    if (k != EF_TOPIC_DEVICE_RESULT && SHAPE[k].leaf[0] && strlen(SHAPE[k].level) == level_len &&
        strncmp(SHAPE[k].level, rest, level_len) == 0 && strcmp(SHAPE[k].leaf, leaf + 1) == 0 &&
        join_dotted(ids, leaf, id))
      return (ef_topic_kind)k;
  return EF_TOPIC_UNKNOWN;
}

ef_topic_kind ef_topic_parse(const char *topic, const char *prefix, char id[EF_JOB_ID_MAX + 1],
                             char sub[EF_JOB_ID_MAX + 1]) {
  ef_topic_kind k = EF_TOPIC_UNKNOWN;
  size_t pl = strlen(prefix);
  id[0] = sub[0] = '\0';
  /* the prefix too may have had its '.' turned into '/' */
  char head[EF_TOPIC_MAX];
  if (strlen(topic) < pl || pl >= sizeof head) goto out;
  memcpy(head, topic, pl);
  head[pl] = '\0';
  if (!ef_topic_same(head, prefix) || topic[pl] != '/') goto out;
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
  if (k == EF_TOPIC_UNKNOWN) k = parse_dotted(rest, id, sub);
out:
  if (k == EF_TOPIC_UNKNOWN) id[0] = sub[0] = '\0';
  return k;
}
