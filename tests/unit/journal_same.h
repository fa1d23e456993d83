/*
 * Journal equality for tests (test_journal_crash, fuzz_journal): the same
 * content, i.e. everything a load restores (not the bookkeeping).
 * Jobs are compared as whole objects on purpose, so a field added to ef_job
 * is covered without a change here: ef_job_parse zeroes the struct (padding
 * included) before filling it, on both sides.
 */
#ifndef ESPFLEET_TEST_JOURNAL_SAME_H
#define ESPFLEET_TEST_JOURNAL_SAME_H

#include <stdbool.h>
#include <string.h>

#include "espfleet/journal.h"

static inline bool journal_same(const ef_journal *a, const ef_journal *b) {
  if (a->has_current != b->has_current || a->has_waiting != b->has_waiting) return false;
  // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): whole ef_job on purpose, see above
  if (a->has_current && (memcmp(&a->current, &b->current, sizeof a->current) != 0 ||
                         a->attempt != b->attempt || a->phase != b->phase))
    return false;
  // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): whole ef_job on purpose, see above
  if (a->has_waiting && memcmp(&a->waiting, &b->waiting, sizeof a->waiting) != 0) return false;
  if (memcmp(&a->installed, &b->installed, sizeof a->installed) != 0 || a->floor != b->floor) return false;
  if (a->n_results != b->n_results || a->n_decisions != b->n_decisions) return false;
  return memcmp(a->results, b->results, a->n_results * sizeof a->results[0]) == 0 &&
         memcmp(a->decisions, b->decisions, a->n_decisions * sizeof a->decisions[0]) == 0;
}

#endif
