/* Signed releases: the canonical text byte for byte, signatures against
 * test vectors made independently (the `openssl pkeyutl -sign -rawin` CLI,
 * docs/security.md), every signed field bound, manifests, keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "espfleet/release.h"

/* The test key of docs/security.md (never use it for anything else). */
static const char priv_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJgxBvsTCp7hspIA0MVf7tSwvkUS6Sc954zAAayRRazH\n"
    "-----END PRIVATE KEY-----\n";
static const char pub_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAKeOgkGhuxmJGuOVMjN7Iak4WJ4YqMpKMppEbidtDxMs=\n"
    "-----END PUBLIC KEY-----\n";

/* Vector 1: an ordinary release. */
static const ef_release v1 = {
    .sha256_hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    .size = 307200,
    .version = "1.2.3",
    .project = "demo",
    .chip = "esp32s3",
    .secure_version = 2,
    .hosted_release = "FG-1.0.3.0.0",
    .allow_downgrade = false};
static const char v1_text[] =
    "espfleet-release-v1\n"
    "sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
    "size=307200\n"
    "version=1.2.3\n"
    "project=demo\n"
    "chip=esp32s3\n"
    "secure_version=2\n"
    "hosted_release=FG-1.0.3.0.0\n"
    "driver_update=no\n"
    "allow_downgrade=no\n";
static const char v1_sig[] =
    "UerNmIYhVBhxi5/ntSvxDLfoguY25eeVstbM93EzS+jMtG7a4gANJWWQfDec2wRGAmUfmJ4ais+NsaRiGKwdDg==";

/* Vector 2: a signed downgrade, no ESP-Hosted release stated. */
static const ef_release v2 = {
    .sha256_hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    .size = 307200,
    .version = "1.2.2",
    .project = "demo",
    .chip = "esp32s3",
    .secure_version = 2,
    .hosted_release = "",
    .allow_downgrade = true};
static const char v2_sig[] =
    "mQdcXSWa5Mbo0EI/vEUYIQ8c1m7nymDAtMeCyUnAqVPeDubW82d026hoqjrNE/kB9mMR/GfEvC0gPfub6WtdDQ==";

static ef_release_key *key(const char *pem) {
  ef_release_key *k = NULL;
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_release_key_parse(pem, strlen(pem), &k, &st), EF_OK);
  return k;
}

static void test_canonical_text(void **state) {
  (void)state;
  char text[EF_RELEASE_TEXT_MAX];
  ef_status st = EF_STATUS_INIT;
  size_t n = ef_release_canonical(&v1, text, sizeof text, &st);
  assert_int_equal(n, strlen(v1_text));
  assert_string_equal(text, v1_text);
  /* a newline or a non-ASCII byte cannot be signed: it could forge a line */
  ef_release bad = v1;
  strcpy(bad.version, "1.2.3\nallow_downgrade=yes");
  assert_int_equal(ef_release_canonical(&bad, text, sizeof text, &st), 0);
  assert_int_equal(st.code, EF_ERR_INVALID_ARG);
  bad = v1;
  strcpy(bad.sha256_hex, "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08");
  ef_status_clear(&st);
  assert_int_equal(ef_release_canonical(&bad, text, sizeof text, &st), 0);
}

/* Ed25519 is deterministic: our signature equals OpenSSL's CLI's. */
static void test_vectors(void **state) {
  (void)state;
  ef_release_key *sk = key(priv_pem), *pk = key(pub_pem);
  const struct {
    const ef_release *rel;
    const char *sig;
  } vec[] = {{&v1, v1_sig}, {&v2, v2_sig}};
  for (size_t i = 0; i < 2; i++) {
    ef_manifest m = {.rel = *vec[i].rel, .key_id = "test-2026"};
    ef_status st = EF_STATUS_INIT;
    char b64[89];
    assert_int_equal(ef_release_sign(&m, sk, &st), EF_OK);
    ef_release_sig_to_base64(m.sig, b64);
    assert_string_equal(b64, vec[i].sig);
    ef_manifest given = {.rel = *vec[i].rel, .key_id = "test-2026"};
    assert_true(ef_release_sig_from_base64(vec[i].sig, given.sig));
    assert_int_equal(ef_release_verify(&given, pk, &st), EF_OK);
  }
  ef_release_key_free(sk);
  ef_release_key_free(pk);
}

/* Changing any signed field breaks the signature. */
static void test_every_field_is_bound(void **state) {
  (void)state;
  ef_release_key *pk = key(pub_pem);
  ef_manifest m = {.rel = v1, .key_id = "test-2026"};
  assert_true(ef_release_sig_from_base64(v1_sig, m.sig));
  for (int field = 0; field < 9; field++) {
    ef_manifest t = m;
    ef_status st = EF_STATUS_INIT;
    switch (field) {
    case 0: t.rel.sha256_hex[0] = 'a'; break;
    case 1: t.rel.size++; break;
    case 2: strcpy(t.rel.version, "1.2.4"); break;
    case 3: strcpy(t.rel.project, "anything"); break;
    case 4: strcpy(t.rel.chip, "esp32c3"); break;
    case 5: t.rel.secure_version = 1; break;
    case 6: strcpy(t.rel.hosted_release, "FG-1.0.4.0.0"); break;
    case 7: t.rel.allow_downgrade = true; break;
    case 8: t.rel.driver_update = true; break;
    }
    if (ef_release_verify(&t, pk, &st) != EF_ERR_RELEASE_BAD_SIGNATURE)
      fail_msg("field %d is not signed", field);
  }
  /* a signature of another release (v2) does not fit v1 */
  ef_manifest other = m;
  assert_true(ef_release_sig_from_base64(v2_sig, other.sig));
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_release_verify(&other, pk, &st), EF_ERR_RELEASE_BAD_SIGNATURE);
  ef_release_key_free(pk);
}

static void test_manifest_round_trip(void **state) {
  (void)state;
  ef_manifest m = {.rel = v1, .key_id = "test-2026"}, back;
  ef_status st = EF_STATUS_INIT;
  assert_true(ef_release_sig_from_base64(v1_sig, m.sig));
  char *json = ef_manifest_to_json(&m);
  assert_non_null(json);
  assert_int_equal(ef_manifest_parse(json, strlen(json), &back, &st), EF_OK);
  assert_memory_equal(&back.rel, &m.rel, sizeof m.rel);
  assert_string_equal(back.key_id, m.key_id);
  assert_memory_equal(back.sig, m.sig, sizeof m.sig);
  free(json);
  const char *bad[] = {
      "{}",
      "[]",
      "not json",
      "{\"format\":\"espfleet-release-v2\"}",
      // NOLINTNEXTLINE(bugprone-suspicious-missing-comma): one JSON document over two lines
      "{\"format\":\"espfleet-release-v1\",\"key_id\":\"k\",\"signature\":\"AAAA\",\"sha256\":\"x\",\"size\":"
      "1,"
      "\"version\":\"1\",\"project\":\"p\",\"chip\":\"esp32\",\"secure_version\":0,\"allow_downgrade\":"
      "false}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ef_status_clear(&st);
    assert_int_equal(ef_manifest_parse(bad[i], strlen(bad[i]), &back, &st), EF_ERR_BAD_JOB);
    assert_true(st.detail[0] != '\0');
  }
}

static void test_keys(void **state) {
  (void)state;
  char dir[] = "/tmp/ef-release-XXXXXX", priv[PATH_MAX], pub[PATH_MAX];
  assert_non_null(mkdtemp(dir));
  snprintf(priv, sizeof priv, "%s/k.key", dir);
  snprintf(pub, sizeof pub, "%s/k.pub", dir);
  ef_status st = EF_STATUS_INIT;
  assert_int_equal(ef_release_keygen(priv, pub, &st), EF_OK);
  struct stat sb;
  assert_int_equal(stat(priv, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  /* never over an existing key */
  assert_int_equal(ef_release_keygen(priv, pub, &st), EF_ERR_IO);
  ef_release_key *sk = NULL, *pk = NULL;
  ef_status_clear(&st);
  assert_int_equal(ef_release_key_load(priv, &sk, &st), EF_OK);
  assert_int_equal(ef_release_key_load(pub, &pk, &st), EF_OK);
  assert_true(ef_release_key_is_private(sk));
  assert_false(ef_release_key_is_private(pk));
  char f1[65], f2[65];
  ef_release_key_fingerprint(sk, f1);
  ef_release_key_fingerprint(pk, f2);
  assert_string_equal(f1, f2);
  ef_manifest m = {.rel = v1, .key_id = "new"};
  assert_int_equal(ef_release_sign(&m, sk, &st), EF_OK);
  assert_int_equal(ef_release_verify(&m, pk, &st), EF_OK);
  /* another key does not verify it; a public key cannot sign */
  ef_release_key *test_pk = key(pub_pem);
  assert_int_equal(ef_release_verify(&m, test_pk, &st), EF_ERR_RELEASE_BAD_SIGNATURE);
  ef_status_clear(&st);
  assert_int_equal(ef_release_sign(&m, pk, &st), EF_ERR_INVALID_ARG);
  /* not a key, and not Ed25519 */
  ef_release_key *x = NULL;
  ef_status_clear(&st);
  assert_int_equal(ef_release_key_parse("hello", 5, &x, &st), EF_ERR_CONFIG);
  static const char ec[] =
      "-----BEGIN PUBLIC KEY-----\n"
      "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMKBCTNIcKUSDii11ySs3526iDZ8A\n"
      "iTo7Tu6KPAqv7D7gS2XpJFbZiItSs3m9+9Ue6GnvHw/GW2ZZaVtszggXIw==\n"
      "-----END PUBLIC KEY-----\n";
  ef_status_clear(&st);
  assert_int_equal(ef_release_key_parse(ec, strlen(ec), &x, &st), EF_ERR_CONFIG);
  assert_null(x);
  ef_release_key_free(sk);
  ef_release_key_free(pk);
  ef_release_key_free(test_pk);
  unlink(priv);
  unlink(pub);
  rmdir(dir);
}

/* The device's check: revoked before unknown before signature; rotation. */
static void test_keyring(void **state) {
  (void)state;
  ef_keyring kr;
  ef_status st = EF_STATUS_INIT;
  memset(&kr, 0, sizeof kr);
  assert_int_equal(ef_keyring_add(&kr, "test-2026", key(pub_pem), &st), EF_OK);
  ef_manifest m = {.rel = v1, .key_id = "test-2026"};
  assert_true(ef_release_sig_from_base64(v1_sig, m.sig));
  assert_int_equal(ef_keyring_verify(&kr, &m, &st), EF_OK);
  /* signed by a key the device does not know */
  ef_manifest other = m;
  strcpy(other.key_id, "rel-2027");
  assert_int_equal(ef_keyring_verify(&kr, &other, &st), EF_ERR_RELEASE_KEY_UNKNOWN);
  /* any change is a bad signature, also an unsignable text */
  ef_manifest forged = m;
  forged.rel.allow_downgrade = true;
  ef_status_clear(&st);
  assert_int_equal(ef_keyring_verify(&kr, &forged, &st), EF_ERR_RELEASE_BAD_SIGNATURE);
  forged = m;
  strcpy(forged.rel.version, "1.2.3\n");
  ef_status_clear(&st);
  assert_int_equal(ef_keyring_verify(&kr, &forged, &st), EF_ERR_RELEASE_BAD_SIGNATURE);
  assert_int_equal(st.code, EF_ERR_RELEASE_BAD_SIGNATURE);
  /* revoked wins over trusted */
  assert_int_equal(ef_keyring_revoke(&kr, "test-2026", &st), EF_OK);
  ef_status_clear(&st);
  assert_int_equal(ef_keyring_verify(&kr, &m, &st), EF_ERR_RELEASE_KEY_REVOKED);
  /* refusals when building the ring: private key, duplicate id, bad id */
  ef_status_clear(&st);
  assert_int_equal(ef_keyring_add(&kr, "other", key(priv_pem), &st), EF_ERR_CONFIG);
  ef_status_clear(&st);
  assert_int_equal(ef_keyring_add(&kr, "test-2026", key(pub_pem), &st), EF_ERR_CONFIG);
  ef_status_clear(&st);
  assert_int_equal(ef_keyring_add(&kr, "bad id", key(pub_pem), &st), EF_ERR_CONFIG);
  ef_keyring_free(&kr);
  assert_int_equal(kr.n_keys, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_canonical_text),
      cmocka_unit_test(test_vectors),
      cmocka_unit_test(test_every_field_is_bound),
      cmocka_unit_test(test_manifest_round_trip),
      cmocka_unit_test(test_keys),
      cmocka_unit_test(test_keyring),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
