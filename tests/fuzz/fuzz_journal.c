/* The journal loader on any file: it loads (never fails on a regular file),
 * stays within its limits, and what it read is stable: saved and loaded
 * again it comes back the same, with nothing dropped: a damaged file costs
 * what could not be read, once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/journal.h"
#include "memfs.h"

static bool same(const ef_journal *a, const ef_journal *b) {
  if (a->has_current != b->has_current || a->has_waiting != b->has_waiting) return false;
  if (a->has_current && (memcmp(&a->current, &b->current, sizeof a->current) != 0 ||
                         a->attempt != b->attempt || a->phase != b->phase))
    return false;
  if (a->has_waiting && memcmp(&a->waiting, &b->waiting, sizeof a->waiting) != 0) return false;
  if (memcmp(&a->installed, &b->installed, sizeof a->installed) != 0 || a->floor != b->floor) return false;
  if (a->n_results != b->n_results || a->n_decisions != b->n_decisions) return false;
  return memcmp(a->results, b->results, a->n_results * sizeof a->results[0]) == 0 &&
         memcmp(a->decisions, b->decisions, a->n_decisions * sizeof a->decisions[0]) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ef_journal j, k;
  ef_journal_damage d, d2;
  ef_status st = EF_STATUS_INIT;

  ef_journal_io_set(&memfs_io);
  memfs_reset();
  memfs_put(EF_JOURNAL_FILE, data, size);
  if (ef_journal_load(&j, MEMFS_DIR, &d, &st) != EF_OK) abort();
  if (j.n_results > EF_JOURNAL_MAX_RESULTS || j.n_decisions > EF_JOURNAL_MAX_DECISIONS) abort();
  if ((d.dropped || d.truncated) && d.summary[0] == '\0') abort();
  if (memchr(d.summary, 0, sizeof d.summary) == NULL) abort();
  if (d.floor_lost && ef_journal_floor(&j) != 0) abort();
  if (!ef_journal_durable(&j)) abort();
  if (ef_journal_save(&j, &st) != EF_OK) abort();
  if (ef_journal_load(&k, MEMFS_DIR, &d2, &st) != EF_OK) abort();
  if (d2.dropped || d2.truncated || d2.floor_lost || !same(&j, &k)) abort();
  memfs_reset();
  ef_journal_io_set(NULL);
  return 0;
}
