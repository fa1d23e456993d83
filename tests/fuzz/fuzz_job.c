/* Job documents: a refused document says why; an accepted one writes back
 * (ef_job_to_json) to a document that parses to the same job with the same
 * fingerprint, and comes back exactly from the journal (saved as the job in
 * progress and as the waiting one, loaded again, nothing dropped). The input
 * is also given to ef_rfc3339_parse in a buffer of exactly its size (the
 * over-read of red-team finding 4), and a time it accepts must be written
 * back by ef_rfc3339_format_seconds to the same instant. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "espfleet/job.h"
#include "espfleet/journal.h"
#include "memfs.h"

static void check_rfc3339(const uint8_t *data, size_t size) {
  if (size > 64 || memchr(data, 0, size)) return;
  char *exact = malloc(size + 1);
  if (!exact) abort();
  memcpy(exact, data, size);
  exact[size] = '\0';
  time_t t, back;
  char text[32];
  if (ef_rfc3339_parse(exact, &t) == EF_OK) {
    if (!ef_rfc3339_format_seconds(t, text) || ef_rfc3339_parse(text, &back) != EF_OK || back != t) abort();
  }
  free(exact);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ef_journal j, k;
  ef_job_limits lim = {.max_payload = 16384, .max_image_size = UINT64_MAX, .allow_http = true};
  ef_job job, back;
  ef_status st = EF_STATUS_INIT;
  char fa[65], fb[65];

  check_rfc3339(data, size);
  ef_err rc = ef_job_parse((const char *)data, size, &lim, &job, &st);
  if (rc != EF_OK) {
    if (st.code != rc || st.detail[0] == '\0') abort();
    return 0;
  }
  char *text = ef_job_to_json(&job);
  if (!text) abort();
  ef_status_clear(&st);
  if (ef_job_parse(text, strlen(text), &lim, &back, &st) != EF_OK) abort();
  free(text);
  /* whole structs: padding is zeroed by the parser, and a field the writer
   * forgot differs here */
  if (memcmp(&job, &back, sizeof job) != 0) abort();
  ef_job_fingerprint(&job, fa);
  ef_job_fingerprint(&back, fb);
  if (strcmp(fa, fb) != 0) abort();

  /* parse -> save -> load is the identity */
  ef_journal_io_set(&memfs_io);
  memfs_reset();
  memset(&j, 0, sizeof j);
  memcpy(j.dir, MEMFS_DIR, sizeof MEMFS_DIR);
  ef_journal_set_current(&j, &job, 1, EF_STATE_DOWNLOADING);
  ef_journal_set_waiting(&j, &job);
  if (ef_journal_save(&j, NULL) != EF_OK) abort();
  ef_journal_damage d;
  if (ef_journal_load(&k, MEMFS_DIR, &d, NULL) != EF_OK || d.dropped || d.truncated) abort();
  if (!k.has_current || !k.has_waiting || memcmp(&k.current, &job, sizeof job) != 0 ||
      memcmp(&k.waiting, &job, sizeof job) != 0)
    abort();
  memfs_reset();
  ef_journal_io_set(NULL);
  return 0;
}
