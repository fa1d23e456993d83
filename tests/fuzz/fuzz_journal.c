/* The journal loader on any file: it loads (never fails on a regular file),
 * stays within its limits, and what it read is stable: saved and loaded
 * again it comes back the same, with nothing dropped: a damaged file costs
 * what could not be read, once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/journal.h"
#include "memfs.h"
#include "../unit/journal_same.h"

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
  if (d2.dropped || d2.truncated || d2.floor_lost || !journal_same(&j, &k)) abort();
  memfs_reset();
  ef_journal_io_set(NULL);
  return 0;
}
