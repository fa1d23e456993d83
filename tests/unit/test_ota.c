/*
 * The OTA engine's safety rules, in milliseconds: ef_ota_run reads a
 * generated image from an in-memory source and writes it through a real
 * control client to the fake ESP (fake_esp.h), which counts OTA begins,
 * writes and ends and keeps the bytes it was sent.
 *
 *  - No OTA begin before the image introduced itself: a wrong chip, project
 *    or version, a refusal by the caller's policy, a too-large, bad-magic,
 *    bad-description or too-short image reach zero OTA begins.
 *  - No OTA end unless size, SHA-256 and validator agree: short and long
 *    streams, a flipped segment byte, checksum or digest, a wrong expected
 *    hash; a refused, stalled or lost write; a failed source; a cancel
 *    before or during the transfer reach zero OTA ends.
 *  - A good image: one begin, exactly its bytes, one end, for any chunk size
 *    and any read size of the source.
 *
 * Assertions are on codes and on what the fake ESP saw, never on texts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "espfleet/ctrl.h"
#include "espfleet/image.h"
#include "espfleet/log.h"
#include "espfleet/mkimage.h"
#include "espfleet/ota.h"
#include "espfleet/source.h"
#include "fake_esp.h"

#define CHIP_S3 0x0009
#define CHIP_C3 0x0005
#define VERSION "1.2.3"
#define PROJECT "ota-unit"
/* Several chunks of every size tried, one partial: ~9 KiB */
#define IMAGE_SIZE 9000

/* ------------------------------------------------------------- the image */

typedef struct {
  uint8_t *data;
  size_t len;
} blob;

static blob make_image(uint16_t chip, uint64_t size) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  ef_mkimage_options o = {.chip_id = chip, .version = VERSION, .project = PROJECT, .size = size};
  uint64_t written = 0;
  assert_int_equal(ef_mkimage_write(&o, f, &written, NULL), EF_OK);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(written, len);
  return (blob){(uint8_t *)buf, len};
}

static blob copy_blob(const blob *b, size_t len) {
  blob c = {malloc(len ? len : 1), len};
  assert_non_null(c.data);
  memcpy(c.data, b->data, len < b->len ? len : b->len);
  if (len > b->len) memset(c.data + b->len, 0xA5, len - b->len);
  return c;
}

static void sha256_of(const blob *b, uint8_t out[32]) { SHA256(b->data, b->len, out); }

/* --------------------------------------------------- an in-memory source */

typedef struct {
  const uint8_t *data;
  size_t len;
  size_t off;
  size_t max_read; /* bytes per read at most (0: as many as asked) */
  size_t fail_at;  /* fail the read that would pass this offset (0: never) */
  ef_err fail_err;
  int reads;
} mem_source;

static ef_err mem_read(ef_source *s, uint8_t *buf, size_t cap, size_t *got, ef_status *st) {
  mem_source *m = s->ctx;
  size_t n = m->len - m->off;
  m->reads++;
  if (n > cap) n = cap;
  if (m->max_read && n > m->max_read) n = m->max_read;
  if (m->fail_at && m->off + n > m->fail_at) {
    /* deliver up to the failure point first, then fail */
    n = m->fail_at - m->off;
    if (n == 0) {
      *got = 0;
      return ef_status_fail(st, m->fail_err, "in-memory source failed");
    }
  }
  memcpy(buf, m->data + m->off, n);
  m->off += n;
  *got = n;
  return EF_OK;
}

static ef_source mem_source_of(mem_source *m, const blob *b, size_t max_read) {
  memset(m, 0, sizeof *m);
  m->data = b->data;
  m->len = b->len;
  m->max_read = max_read;
  return (ef_source){.read = mem_read, .ctx = m};
}

/* ------------------------------------------------------------ a run */

/* What the callbacks saw. */
typedef struct {
  struct fake *fake;
  int images;             /* on_image calls */
  int begins_at_on_image; /* OTA begins the fake had seen when on_image ran */
  ef_err refuse_with;     /* on_image's answer */
  int phases[8];
  int nphases;
  uint64_t last_done;
  int progress_calls;
  int progress_backwards;
  int cancel_polls;
  int cancel_after;        /* should_cancel true from this poll on (1-based); 0 never */
  bool cancel_at_activate; /* should_cancel true from the ACTIVATE phase on */
  /* resume: once, continue the stream on a fresh source at the offset */
  mem_source *resume_with;
  int resumes;
} observer;

static ef_err on_image(void *arg, const ef_image_header *hdr, const ef_app_desc *desc, ef_status *st) {
  observer *o = arg;
  o->images++;
  o->begins_at_on_image = SEEN(o->fake, begins);
  return o->refuse_with;
}

static void on_phase(void *arg, ef_ota_phase phase) {
  observer *o = arg;
  if (o->nphases < 8) o->phases[o->nphases++] = (int)phase;
  if (phase == EF_OTA_PHASE_ACTIVATE && o->cancel_at_activate) o->cancel_after = o->cancel_polls + 1;
}

static void on_progress(void *arg, uint64_t done, uint64_t total) {
  observer *o = arg;
  if (done < o->last_done) o->progress_backwards++;
  o->last_done = done;
  o->progress_calls++;
}

static bool should_cancel(void *arg) {
  observer *o = arg;
  o->cancel_polls++;
  return o->cancel_after && o->cancel_polls >= o->cancel_after;
}

static bool resume(void *arg, const ef_status *why, uint64_t offset, ef_source *src) {
  observer *o = arg;
  if (!o->resume_with || o->resumes) return false;
  o->resumes++;
  o->resume_with->off = (size_t)offset;
  src->ctx = o->resume_with;
  return true;
}

typedef struct {
  struct fake *fake;
  ef_ctrl *ctrl;
  observer obs;
  ef_ota_request req;
  ef_ota_result res;
  ef_status st; /* ef_ota_run's */
} rig;

/* A fake ESP (behaviour set by @p setup, may be NULL), a client on it and a
 * request expecting the test image: esp32s3, VERSION, PROJECT. */
static void rig_open(rig *r, int timeout_ms, void (*setup)(struct fake *)) {
  memset(r, 0, sizeof *r);
  r->fake = fake_new();
  if (setup) setup(r->fake);
  fake_start(r->fake);
  ef_ctrl_options o;
  ef_ctrl_options_default(&o);
  o.device = r->fake->link;
  o.timeout_ms = o.ota_begin_timeout_ms = o.ota_end_timeout_ms = timeout_ms;
  o.open_timeout_ms = 2000;
  assert_int_equal(ef_ctrl_open(&o, &r->ctrl, NULL), EF_OK);
  r->obs.fake = r->fake;
  r->obs.begins_at_on_image = -1;
  ef_ota_request_init(&r->req);
  r->req.chip_id = CHIP_S3;
  r->req.version = VERSION;
  r->req.project = PROJECT;
  r->req.arg = &r->obs;
  r->req.on_image = on_image;
  r->req.on_phase = on_phase;
  r->req.on_progress = on_progress;
  r->req.should_cancel = should_cancel;
  r->req.resume = resume;
}

static ef_err rig_run(rig *r, ef_source *src) {
  ef_err err = ef_ota_run(r->ctrl, src, &r->req, &r->res, &r->st);
  assert_int_equal(r->st.code, err);
  if (err != EF_OK) assert_true(r->st.detail[0] != '\0'); /* every failure says why */
  /* OTA writes may still be in flight (window): one request answered means
   * the fake has handled every request sent before it. Not after a hang-up,
   * where the device is gone for a while. */
  if (err != EF_ERR_ESP_UNAVAILABLE) {
    ef_fw_version v;
    if (ef_ctrl_get_fw_version(r->ctrl, &v, NULL) != EF_OK) fail_msg("the fake ESP stopped answering");
  }
  /* the result's flags tell the truth about what reached the ESP */
  if (r->res.ota_begin_sent) assert_true(SEEN(r->fake, begins) > 0);
  assert_int_equal(r->res.ota_end_sent, SEEN(r->fake, ends) > 0);
  if (err == EF_OK) assert_true(r->res.ota_end_sent);
  return err;
}

static void rig_close(rig *r) {
  ef_ctrl_close(r->ctrl);
  fake_free(r->fake);
}

/* Runs @p img with the rig's request; returns the code. */
static ef_err run_blob(rig *r, const blob *img, size_t max_read) {
  mem_source m;
  ef_source src = mem_source_of(&m, img, max_read);
  return rig_run(r, &src);
}

/* ---------------------------------------------------------- a good image */

static void test_good_image(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  uint8_t sha[32];
  sha256_of(&img, sha);
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.size = img.len;
  r.req.max_size = img.len;
  r.req.sha256 = sha;
  assert_int_equal(run_blob(&r, &img, 0), EF_OK);
  assert_int_equal(SEEN(r.fake, begins), 1);
  assert_int_equal(SEEN(r.fake, ends), 1);
  assert_true(fake_got_image(r.fake, img.data, img.len));
  assert_int_equal(SEEN(r.fake, writes), (img.len + EF_CTRL_DEFAULT_CHUNK - 1) / EF_CTRL_DEFAULT_CHUNK);
  /* the image introduced itself before anything was erased */
  assert_int_equal(r.obs.images, 1);
  assert_int_equal(r.obs.begins_at_on_image, 0);
  /* result */
  assert_int_equal(r.res.bytes, img.len);
  assert_memory_equal(r.res.sha256, sha, 32);
  assert_true(r.res.desc_known);
  assert_int_equal(r.res.header.chip_id, CHIP_S3);
  assert_string_equal(r.res.app.version, VERSION);
  assert_string_equal(r.res.app.project_name, PROJECT);
  assert_true(r.res.ota_begin_sent);
  assert_true(r.res.ota_end_sent);
  /* phases in order, progress up to the end, never backwards */
  assert_int_equal(r.obs.nphases, 3);
  assert_int_equal(r.obs.phases[0], EF_OTA_PHASE_TRANSFER);
  assert_int_equal(r.obs.phases[1], EF_OTA_PHASE_VERIFY);
  assert_int_equal(r.obs.phases[2], EF_OTA_PHASE_ACTIVATE);
  assert_int_equal(r.obs.last_done, img.len);
  assert_int_equal(r.obs.progress_backwards, 0);
  rig_close(&r);
  free(img.data);
}

/* No expectations at all (the CLI without --chip): still one begin, one end. */
static void test_good_image_no_expectations(void **state) {
  blob img = make_image(CHIP_C3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, NULL);
  ef_ota_request_init(&r.req);
  assert_int_equal(run_blob(&r, &img, 0), EF_OK);
  assert_int_equal(SEEN(r.fake, begins), 1);
  assert_int_equal(SEEN(r.fake, ends), 1);
  assert_true(fake_got_image(r.fake, img.data, img.len));
  rig_close(&r);
  free(img.data);
}

/* The chunk size and the source's read size change the writes, never the bytes. */
static void test_chunking(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  static const size_t chunks[] = {1, 4000, EF_CTRL_MAX_CHUNK};
  static const size_t reads[] = {0, 1, 7, 300, 5000};
  for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
      /* chunk 1 makes one request per byte: once is enough */
      if (chunks[c] == 1 && i > 1) continue;
      rig r;
      rig_open(&r, 2000, NULL);
      r.req.chunk_size = chunks[c];
      r.req.size = img.len;
      assert_int_equal(run_blob(&r, &img, reads[i]), EF_OK);
      assert_int_equal(SEEN(r.fake, begins), 1);
      assert_int_equal(SEEN(r.fake, ends), 1);
      assert_int_equal(SEEN(r.fake, writes), (img.len + chunks[c] - 1) / chunks[c]);
      assert_true(fake_got_image(r.fake, img.data, img.len));
      assert_int_equal(r.obs.begins_at_on_image, 0);
      rig_close(&r);
    }
  }
  free(img.data);
}

/* A chunk above the firmware's buffer is refused before anything is sent. */
static void test_chunk_too_large(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.chunk_size = EF_CTRL_MAX_CHUNK + 1;
  assert_int_equal(run_blob(&r, &img, 0), EF_ERR_INVALID_ARG);
  assert_int_equal(SEEN(r.fake, begins), 0);
  assert_int_equal(SEEN(r.fake, writes), 0);
  rig_close(&r);
  free(img.data);
}

/* ------------------------------------- rule 1: no OTA begin before the image */

enum wrong {
  WRONG_CHIP,
  WRONG_PROJECT,
  WRONG_VERSION,
  WRONG_POLICY,
  WRONG_SIZE_LIMIT,
  WRONG_STREAM_LIMIT,
  WRONG_MAGIC,
  WRONG_DESC_MAGIC,
  WRONG_SHORT,
  WRONG_EMPTY
};

static ef_err run_wrong(enum wrong w) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.size = img.len;
  switch (w) {
  case WRONG_CHIP: r.req.chip_id = CHIP_C3; break;
  case WRONG_PROJECT: r.req.project = "another-project"; break;
  case WRONG_VERSION: r.req.version = "1.2.4"; break;
  case WRONG_POLICY: r.obs.refuse_with = EF_ERR_DOWNGRADE_REFUSED; break;
  case WRONG_SIZE_LIMIT: r.req.max_size = img.len - 1; break; /* announced size above the slot */
  case WRONG_STREAM_LIMIT: /* no size announced; the stream grows past the slot */
    r.req.size = 0;
    r.req.max_size = 200;
    break;
  case WRONG_MAGIC: img.data[0] = 0xE8; break;
  case WRONG_DESC_MAGIC: img.data[EF_APP_DESC_OFFSET + 1] ^= 0x01; break;
  case WRONG_SHORT: /* ends inside the app description */
    img.len = EF_APP_DESC_OFFSET + 100;
    r.req.size = 0;
    break;
  case WRONG_EMPTY:
    img.len = 0;
    r.req.size = 0;
    break;
  }
  ef_err err = run_blob(&r, &img, 0);
  assert_int_not_equal(err, EF_OK);
  assert_int_equal(SEEN(r.fake, begins), 0);
  assert_int_equal(SEEN(r.fake, writes), 0);
  assert_int_equal(SEEN(r.fake, ends), 0);
  assert_false(r.res.ota_begin_sent);
  assert_false(r.res.ota_end_sent);
  assert_int_equal(r.obs.nphases, 0);
  rig_close(&r);
  free(img.data);
  return err;
}

static void test_no_begin_wrong_chip(void **state) {
  assert_int_equal(run_wrong(WRONG_CHIP), EF_ERR_CHIP_MISMATCH);
}

static void test_no_begin_wrong_project(void **state) {
  assert_int_equal(run_wrong(WRONG_PROJECT), EF_ERR_PROJECT_MISMATCH);
}

static void test_no_begin_wrong_version(void **state) {
  assert_int_equal(run_wrong(WRONG_VERSION), EF_ERR_VERSION_MISMATCH);
}

static void test_no_begin_policy_refuses(void **state) {
  assert_int_equal(run_wrong(WRONG_POLICY), EF_ERR_DOWNGRADE_REFUSED);
}

static void test_no_begin_too_large(void **state) {
  assert_int_equal(run_wrong(WRONG_SIZE_LIMIT), EF_ERR_TOO_LARGE);
  assert_int_equal(run_wrong(WRONG_STREAM_LIMIT), EF_ERR_TOO_LARGE);
}

static void test_no_begin_bad_magic(void **state) {
  assert_int_equal(run_wrong(WRONG_MAGIC), EF_ERR_IMAGE_BAD_MAGIC);
  assert_int_equal(run_wrong(WRONG_DESC_MAGIC), EF_ERR_IMAGE_BAD_DESC);
}

static void test_no_begin_too_short(void **state) {
  assert_int_equal(run_wrong(WRONG_SHORT), EF_ERR_IMAGE_TRUNCATED);
  assert_int_equal(run_wrong(WRONG_EMPTY), EF_ERR_IMAGE_TRUNCATED);
}

/* The header check must not depend on how the bytes arrive: one byte per
 * read, the identity is still checked before OTA begin. */
static void test_no_begin_byte_by_byte(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.chip_id = CHIP_C3;
  assert_int_equal(run_blob(&r, &img, 1), EF_ERR_CHIP_MISMATCH);
  assert_int_equal(SEEN(r.fake, begins), 0);
  rig_close(&r);
  free(img.data);
}

/* An ESP that refuses OTA begin gets no write and no end. */
static void setup_refuse_begin(struct fake *f) { f->refuse_begin = 1; }

static void test_begin_refused(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, setup_refuse_begin);
  assert_int_equal(run_blob(&r, &img, 0), EF_ERR_OTA_BEGIN_FAILED);
  assert_int_equal(SEEN(r.fake, begins), 1);
  assert_int_equal(SEEN(r.fake, writes), 0);
  assert_int_equal(SEEN(r.fake, ends), 0);
  rig_close(&r);
  free(img.data);
}

/* Bluetooth: what the run turned off is reported, so the caller can turn it
 * back on; an OTA begin that was refused leaves it off and says so. */
static void test_bt_disabled_reported_when_begin_refused(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, setup_refuse_begin);
  r.req.disable_bt = true;
  assert_int_equal(run_blob(&r, &img, 0), EF_ERR_OTA_BEGIN_FAILED);
  assert_false(r.res.ota_begin_sent);
  assert_int_equal(SEEN(r.fake, features), 1);
  assert_int_equal(SEEN(r.fake, last_feature), EF_FEATURE_BLUETOOTH);
  assert_int_equal(SEEN(r.fake, last_enable), 0);
  assert_true(r.res.bt_disabled);
  rig_close(&r);
  free(img.data);
}

/* Refused before OTA begin (wrong chip): Bluetooth was never touched. */
static void test_bt_untouched_when_image_refused(void **state) {
  blob img = make_image(CHIP_C3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.disable_bt = true;
  assert_int_equal(run_blob(&r, &img, 0), EF_ERR_CHIP_MISMATCH);
  assert_int_equal(SEEN(r.fake, features), 0);
  assert_false(r.res.bt_disabled);
  rig_close(&r);
  free(img.data);
}

/* Without disable_bt nothing is turned off, and nothing is reported. */
static void test_bt_untouched_without_disable_bt(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, NULL);
  assert_int_equal(run_blob(&r, &img, 0), EF_OK);
  assert_int_equal(SEEN(r.fake, features), 0);
  assert_false(r.res.bt_disabled);
  rig_close(&r);
  free(img.data);
}

/* ------------------------- rule 2: no OTA end unless size, hash, image agree */

/* Runs @p img (after the good image's identity) and checks that the ESP got
 * OTA begin but never OTA end. */
static ef_err run_no_end(rig *r, const blob *img) {
  ef_err err = run_blob(r, img, 0);
  assert_int_not_equal(err, EF_OK);
  assert_int_equal(SEEN(r->fake, begins), 1);
  assert_int_equal(SEEN(r->fake, ends), 0);
  assert_false(r->res.ota_end_sent);
  for (int i = 0; i < r->obs.nphases; i++) assert_int_not_equal(r->obs.phases[i], EF_OTA_PHASE_ACTIVATE);
  return err;
}

static void test_no_end_short(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  static const size_t cut[] = {1, 32, 33, 100, 4067};
  for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
    blob s = copy_blob(&img, img.len - cut[i]);
    rig r;
    /* with the announced size */
    rig_open(&r, 2000, NULL);
    r.req.size = img.len;
    assert_int_equal(run_no_end(&r, &s), EF_ERR_SIZE_MISMATCH);
    rig_close(&r);
    /* without: the validator knows the image is incomplete */
    rig_open(&r, 2000, NULL);
    assert_int_equal(run_no_end(&r, &s), EF_ERR_IMAGE_TRUNCATED);
    rig_close(&r);
    free(s.data);
  }
  free(img.data);
}

/* A file longer than its image (a signature block after the digest), cut
 * after the image: the validator is satisfied, only the announced size
 * tells that bytes are missing. */
static void test_no_end_cut_signature_block(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  blob signed_img = copy_blob(&img, img.len + 4096);
  blob cut_img = copy_blob(&signed_img, img.len + 100);
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.size = signed_img.len;
  assert_int_equal(run_no_end(&r, &cut_img), EF_ERR_SIZE_MISMATCH);
  rig_close(&r);
  free(cut_img.data);
  free(signed_img.data);
  free(img.data);
}

static void test_no_end_long(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  uint8_t sha[32];
  sha256_of(&img, sha);
  static const size_t extra[] = {1, 16, 5000};
  for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
    blob l = copy_blob(&img, img.len + extra[i]);
    rig r;
    /* the announced size is exceeded */
    rig_open(&r, 2000, NULL);
    r.req.size = img.len;
    assert_int_equal(run_no_end(&r, &l), EF_ERR_SIZE_MISMATCH);
    rig_close(&r);
    /* no size announced, but the hash of the announced image */
    rig_open(&r, 2000, NULL);
    r.req.sha256 = sha;
    assert_int_equal(run_no_end(&r, &l), EF_ERR_HASH_MISMATCH);
    rig_close(&r);
    free(l.data);
  }
  free(img.data);
}

/* One byte flipped in a segment: the validator refuses it even when the
 * job's size and hash describe the corrupt file (a job built from it). */
static void test_no_end_flipped_segment_byte(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  const ef_image_header *h;
  ef_image_validator *v = NULL;
  assert_int_equal(ef_image_validator_new(&v), EF_OK);
  assert_int_equal(ef_image_feed(v, img.data, img.len, NULL), EF_OK);
  assert_int_equal(ef_image_finish(v, NULL, NULL), EF_OK);
  h = ef_image_get_header(v);
  assert_true(h->segment_count >= 2);
  /* in the middle of the last segment, well after the app description */
  const ef_image_segment *seg = &h->segments[h->segment_count - 1];
  size_t at = seg->file_offset + seg->length / 2;
  ef_image_validator_free(v);

  blob bad = copy_blob(&img, img.len);
  bad.data[at] ^= 0x5A;
  uint8_t sha[32];
  sha256_of(&bad, sha);
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.size = bad.len;
  r.req.sha256 = sha;
  ef_err err = run_no_end(&r, &bad);
  assert_true(err == EF_ERR_IMAGE_BAD_CHECKSUM || err == EF_ERR_IMAGE_BAD_DIGEST);
  /* every byte was written: only OTA end is withheld */
  assert_true(fake_got_image(r.fake, bad.data, bad.len));
  rig_close(&r);

  /* ...and with the good image's hash announced, the hash speaks first */
  uint8_t good_sha[32];
  sha256_of(&img, good_sha);
  rig_open(&r, 2000, NULL);
  r.req.sha256 = good_sha;
  assert_int_equal(run_no_end(&r, &bad), EF_ERR_HASH_MISMATCH);
  rig_close(&r);
  free(bad.data);
  free(img.data);
}

static void test_no_end_wrong_sha256(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  uint8_t sha[32];
  sha256_of(&img, sha);
  sha[31] ^= 0x01;
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.size = img.len;
  r.req.sha256 = sha;
  assert_int_equal(run_no_end(&r, &img), EF_ERR_HASH_MISMATCH);
  assert_true(fake_got_image(r.fake, img.data, img.len));
  rig_close(&r);
  free(img.data);
}

/* The appended digest (last 32 bytes) and the checksum byte before it. */
static void test_no_end_bad_digest_or_checksum(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  static const struct {
    size_t from_end;
    ef_err want;
  } cases[] = {{1, EF_ERR_IMAGE_BAD_DIGEST}, {32, EF_ERR_IMAGE_BAD_DIGEST}, {33, EF_ERR_IMAGE_BAD_CHECKSUM}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    blob bad = copy_blob(&img, img.len);
    bad.data[bad.len - cases[i].from_end] ^= 0x80;
    uint8_t sha[32];
    sha256_of(&bad, sha);
    rig r;
    rig_open(&r, 2000, NULL);
    r.req.size = bad.len;
    r.req.sha256 = sha; /* the job describes the corrupt file: only the validator can tell */
    assert_int_equal(run_no_end(&r, &bad), cases[i].want);
    rig_close(&r);
    free(bad.data);
  }
  free(img.data);
}

/* ------------------------------------ the ESP or the source failing midway */

static void setup_refuse_write(struct fake *f) { f->refuse_write = 2; }
static void setup_stall(struct fake *f) { f->silent_from_write = 2; }
static void setup_hangup(struct fake *f) { f->hangup_on_write = 2; }

static void test_no_end_refused_write(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, setup_refuse_write);
  r.req.chunk_size = 1000;
  mem_source m;
  ef_source src = mem_source_of(&m, &img, 0);
  assert_int_equal(rig_run(&r, &src), EF_ERR_OTA_WRITE_FAILED);
  assert_int_equal(SEEN(r.fake, ends), 0);
  assert_false(r.res.ota_end_sent);
  /* the transfer stops at the failure: neither all writes nor all bytes */
  assert_true(SEEN(r.fake, writes) < (int)((img.len + 999) / 1000));
  assert_true(m.off < img.len);
  rig_close(&r);
  free(img.data);
}

static void test_no_end_write_timeout(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 200, setup_stall);
  r.req.chunk_size = 1000;
  assert_int_equal(run_no_end(&r, &img), EF_ERR_ESP_TIMEOUT);
  rig_close(&r);
  free(img.data);
}

/* The last write is the one lost: only the flush before verification can
 * notice, and OTA end must not go out (nor be reported as sent: the agent
 * would wait for a reboot that never comes). */
static void setup_stall_last(struct fake *f) { f->silent_from_write = (IMAGE_SIZE + 999) / 1000; }

static void test_no_end_last_write_lost(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  assert_int_equal((img.len + 999) / 1000, (IMAGE_SIZE + 999) / 1000);
  rig r;
  rig_open(&r, 200, setup_stall_last);
  r.req.chunk_size = 1000;
  assert_int_equal(run_no_end(&r, &img), EF_ERR_ESP_TIMEOUT);
  assert_int_equal(SEEN(r.fake, writes), (int)((img.len + 999) / 1000));
  rig_close(&r);
  free(img.data);
}

static void test_no_end_hangup(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, setup_hangup);
  r.req.chunk_size = 1000;
  assert_int_equal(run_no_end(&r, &img), EF_ERR_ESP_UNAVAILABLE);
  rig_close(&r);
  free(img.data);
}

/* The download breaks after the header: its code, no OTA end. */
static void test_no_end_source_fails(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.size = img.len;
  mem_source m;
  ef_source src = mem_source_of(&m, &img, 0);
  m.fail_at = 5000;
  m.fail_err = EF_ERR_DOWNLOAD_FAILED;
  ef_err err = rig_run(&r, &src);
  assert_int_equal(err, EF_ERR_DOWNLOAD_FAILED);
  assert_int_equal(SEEN(r.fake, begins), 1);
  assert_int_equal(SEEN(r.fake, ends), 0);
  assert_int_equal(r.res.bytes, 5000);
  rig_close(&r);
  free(img.data);
}

/* ...unless the caller resumes it where it broke: the same bytes, one end. */
static void test_resume_after_source_failure(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  uint8_t sha[32];
  sha256_of(&img, sha);
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.size = img.len;
  r.req.sha256 = sha;
  mem_source m, rest;
  ef_source src = mem_source_of(&m, &img, 700);
  m.fail_at = 5000;
  m.fail_err = EF_ERR_DOWNLOAD_FAILED;
  (void)mem_source_of(&rest, &img, 700);
  r.obs.resume_with = &rest;
  assert_int_equal(rig_run(&r, &src), EF_OK);
  assert_int_equal(r.obs.resumes, 1);
  assert_int_equal(SEEN(r.fake, begins), 1);
  assert_int_equal(SEEN(r.fake, ends), 1);
  assert_true(fake_got_image(r.fake, img.data, img.len));
  assert_memory_equal(r.res.sha256, sha, 32);
  rig_close(&r);
  free(img.data);
}

/* ------------------------------------------------------------ cancel */

static void test_cancel_before_transfer(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, NULL);
  r.obs.cancel_after = 1; /* already canceled at the first poll */
  assert_int_equal(run_blob(&r, &img, 0), EF_ERR_CANCELED);
  assert_int_equal(SEEN(r.fake, writes), 0);
  assert_int_equal(SEEN(r.fake, ends), 0);
  assert_false(r.res.ota_end_sent);
  rig_close(&r);
  free(img.data);
}

static void test_cancel_during_transfer(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.chunk_size = 1000;
  r.obs.cancel_after = 4;
  assert_int_equal(run_no_end(&r, &img), EF_ERR_CANCELED);
  assert_int_equal(SEEN(r.fake, writes), 3); /* nothing after the cancel was seen */
  rig_close(&r);
  free(img.data);
}

/* Canceled at the last poll, with every chunk but the last one written. */
static void test_cancel_before_last_chunk(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  size_t chunks = (img.len + 999) / 1000;
  rig r;
  rig_open(&r, 2000, NULL);
  r.req.chunk_size = 1000;
  r.obs.cancel_after = (int)chunks;
  assert_int_equal(run_no_end(&r, &img), EF_ERR_CANCELED);
  assert_int_equal(SEEN(r.fake, writes), (int)chunks - 1);
  rig_close(&r);
  free(img.data);
}

/* Stopped in the ACTIVATE phase's callback (the daemon could not record that
 * OTA end goes out): everything was written and checked, OTA end is not sent. */
static void test_cancel_at_activate(void **state) {
  blob img = make_image(CHIP_S3, IMAGE_SIZE);
  rig r;
  rig_open(&r, 2000, NULL);
  r.obs.cancel_at_activate = true;
  assert_int_equal(run_blob(&r, &img, 0), EF_ERR_CANCELED);
  assert_string_equal(r.st.detail, "stopped before OTA end");
  assert_int_equal(r.obs.phases[r.obs.nphases - 1], EF_OTA_PHASE_ACTIVATE);
  assert_int_equal(SEEN(r.fake, begins), 1);
  assert_int_equal(SEEN(r.fake, ends), 0);
  assert_false(r.res.ota_end_sent);
  rig_close(&r);
  free(img.data);
}

int main(void) {
  ef_log_set_level(EF_LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_good_image),
      cmocka_unit_test(test_cancel_at_activate),
      cmocka_unit_test(test_good_image_no_expectations),
      cmocka_unit_test(test_chunking),
      cmocka_unit_test(test_chunk_too_large),
      cmocka_unit_test(test_no_begin_wrong_chip),
      cmocka_unit_test(test_no_begin_wrong_project),
      cmocka_unit_test(test_no_begin_wrong_version),
      cmocka_unit_test(test_no_begin_policy_refuses),
      cmocka_unit_test(test_no_begin_too_large),
      cmocka_unit_test(test_no_begin_bad_magic),
      cmocka_unit_test(test_no_begin_too_short),
      cmocka_unit_test(test_no_begin_byte_by_byte),
      cmocka_unit_test(test_begin_refused),
      cmocka_unit_test(test_bt_disabled_reported_when_begin_refused),
      cmocka_unit_test(test_bt_untouched_when_image_refused),
      cmocka_unit_test(test_bt_untouched_without_disable_bt),
      cmocka_unit_test(test_no_end_short),
      cmocka_unit_test(test_no_end_cut_signature_block),
      cmocka_unit_test(test_no_end_long),
      cmocka_unit_test(test_no_end_flipped_segment_byte),
      cmocka_unit_test(test_no_end_wrong_sha256),
      cmocka_unit_test(test_no_end_bad_digest_or_checksum),
      cmocka_unit_test(test_no_end_refused_write),
      cmocka_unit_test(test_no_end_write_timeout),
      cmocka_unit_test(test_no_end_last_write_lost),
      cmocka_unit_test(test_no_end_hangup),
      cmocka_unit_test(test_no_end_source_fails),
      cmocka_unit_test(test_resume_after_source_failure),
      cmocka_unit_test(test_cancel_before_transfer),
      cmocka_unit_test(test_cancel_during_transfer),
      cmocka_unit_test(test_cancel_before_last_chunk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
