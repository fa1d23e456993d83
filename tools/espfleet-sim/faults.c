#include "faults.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct {
  const char *name;
  bool needs_arg;
} kinds[SIM_FAULT__COUNT] = {
    [SIM_FAULT_BEGIN_FAIL] = {"begin-fail", false},  [SIM_FAULT_WRITE_FAIL] = {"write-fail", true},
    [SIM_FAULT_END_REJECT] = {"end-reject", false},  [SIM_FAULT_DROP_RESPONSE] = {"drop-response", true},
    [SIM_FAULT_RESET_AFTER] = {"reset-after", true}, [SIM_FAULT_BOOT_FAIL] = {"boot-fail", false},
    [SIM_FAULT_NO_ANSWER] = {"no-answer", false},
};

const char *sim_fault_name(sim_fault_kind kind) {
  return (unsigned)kind < SIM_FAULT__COUNT ? kinds[kind].name : "unknown";
}

/* Accepts a decimal count with an optional K/M/G (binary) suffix. */
static int parse_u64(const char *s, size_t len, uint64_t *out) {
  char buf[32];
  char *end;
  uint64_t mult = 1;
  if (len == 0 || len >= sizeof buf) return -1;
  memcpy(buf, s, len);
  buf[len] = '\0';
  switch (buf[len - 1]) {
  case 'k':
  case 'K':
    mult = 1024;
    buf[--len] = '\0';
    break;
  case 'm':
  case 'M':
    mult = 1024 * 1024;
    buf[--len] = '\0';
    break;
  case 'g':
  case 'G':
    mult = 1024 * 1024 * 1024;
    buf[--len] = '\0';
    break;
  default: break;
  }
  if (len == 0 || buf[0] == '-') return -1;
  errno = 0;
  unsigned long long v = strtoull(buf, &end, 10);
  if (errno != 0 || *end != '\0' || v > UINT64_MAX / mult) return -1;
  *out = (uint64_t)v * mult;
  return 0;
}

int sim_faults_parse(sim_faults *fs, const char *spec, const char **why) {
  const char *at = strchr(spec, '@');
  const char *end = at ? at : spec + strlen(spec);
  const char *colon = memchr(spec, ':', (size_t)(end - spec));
  size_t name_len = (size_t)((colon ? colon : end) - spec);
  uint64_t arg = 0, times = UINT64_MAX;
  int kind = -1;

  for (int i = 0; i < SIM_FAULT__COUNT; i++)
    if (strlen(kinds[i].name) == name_len && memcmp(kinds[i].name, spec, name_len) == 0) kind = i;
  if (kind < 0) {
    *why = "unknown fault name";
    return -1;
  }
  if (kinds[kind].needs_arg != (colon != NULL)) {
    *why = kinds[kind].needs_arg ? "this fault needs :N" : "this fault takes no :N";
    return -1;
  }
  if (colon && (parse_u64(colon + 1, (size_t)(end - colon - 1), &arg) != 0 || arg == 0)) {
    *why = "N must be a positive number";
    return -1;
  }
  if (at && (parse_u64(at + 1, strlen(at + 1), &times) != 0 || times == 0)) {
    *why = "@K must be a positive number";
    return -1;
  }
  fs->f[kind] = (sim_fault){.armed = true, .arg = arg, .remaining = times};
  return 0;
}

bool sim_faults_armed(const sim_faults *fs, sim_fault_kind kind) {
  return fs->f[kind].armed && fs->f[kind].remaining > 0;
}

bool sim_faults_fire(sim_faults *fs, sim_fault_kind kind, uint64_t value) {
  sim_fault *f = &fs->f[kind];
  if (!sim_faults_armed(fs, kind)) return false;
  switch (kind) {
  case SIM_FAULT_WRITE_FAIL:
  case SIM_FAULT_DROP_RESPONSE:
    if (value != f->arg) return false;
    break;
  case SIM_FAULT_RESET_AFTER:
    if (value < f->arg) return false;
    break;
  default: break;
  }
  if (f->remaining != UINT64_MAX) f->remaining--;
  return true;
}
