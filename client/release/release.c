/* Signed releases: canonical text, Ed25519 keys, signatures, manifests.
 * See include/espfleet/release.h and docs/security.md. */
#include "espfleet/release.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "espfleet/image.h"

struct ef_release_key {
  EVP_PKEY *pkey;
  bool priv;
};

/* ---- the canonical text --------------------------------------------------- */

static bool printable(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7E) return false;
  return true;
}

static bool lower_hex64(const char *s) {
  if (strlen(s) != 64) return false;
  for (; *s; s++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
  return true;
}

size_t ef_release_canonical(const ef_release *r, char *out, size_t n, ef_status *st) {
  if (!lower_hex64(r->sha256_hex)) {
    ef_status_fail(st, EF_ERR_INVALID_ARG, "sha256: must be 64 lower-case hex digits");
    return 0;
  }
  const char *texts[] = {r->version, r->project, r->chip, r->hosted_release};
  const char *names[] = {"version", "project", "chip", "hosted_release"};
  for (int i = 0; i < 4; i++) {
    if (!printable(texts[i])) {
      ef_status_fail(st, EF_ERR_INVALID_ARG, "%s: only printable ASCII can be signed", names[i]);
      return 0;
    }
  }
  if (!r->version[0] || !r->project[0] || !r->chip[0]) {
    ef_status_fail(st, EF_ERR_INVALID_ARG, "version, project and chip are required in a release");
    return 0;
  }
  int len = snprintf(out, n,
                     EF_RELEASE_FORMAT "\nsha256=%s\nsize=%" PRIu64
                                       "\nversion=%s\nproject=%s\nchip=%s\n"
                                       "secure_version=%" PRIu32
                                       "\nhosted_release=%s\ndriver_update=%s\nallow_downgrade=%s\n",
                     r->sha256_hex, r->size, r->version, r->project, r->chip, r->secure_version,
                     r->hosted_release, r->driver_update ? "yes" : "no", r->allow_downgrade ? "yes" : "no");
  if (len < 0 || (size_t)len >= n) {
    ef_status_fail(st, EF_ERR_INVALID_ARG, "the release text does not fit %zu bytes", n);
    return 0;
  }
  return (size_t)len;
}

/* ---- keys ------------------------------------------------------------------ */

static ef_err key_from_bio(BIO *bio, ef_release_key **out, ef_status *st) {
  ef_err err = EF_ERR_NOMEM;
  ef_release_key *k = calloc(1, sizeof *k);
  if (!k) goto out;
  err = EF_ERR_CONFIG;
  k->pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  if (k->pkey) {
    k->priv = true;
  } else {
    (void)BIO_reset(bio);
    k->pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
  }
  if (!k->pkey) {
    ef_status_fail(st, err, "not a PEM private or public key");
    goto out;
  }
  if (EVP_PKEY_get_id(k->pkey) != EVP_PKEY_ED25519) {
    ef_status_fail(st, err, "not an Ed25519 key (release keys are Ed25519)");
    goto out;
  }
  *out = k;
  k = NULL;
  err = EF_OK;
out:
  ef_release_key_free(k);
  return err;
}

ef_err ef_release_key_parse(const char *pem, size_t len, ef_release_key **out, ef_status *st) {
  *out = NULL;
  if (len > INT32_MAX) return ef_status_fail(st, EF_ERR_CONFIG, "key text too long");
  BIO *bio = BIO_new_mem_buf(pem, (int)len);
  if (!bio) return ef_status_fail(st, EF_ERR_NOMEM, NULL);
  ef_err err = key_from_bio(bio, out, st);
  BIO_free(bio);
  return err;
}

ef_err ef_release_key_load(const char *path, ef_release_key **out, ef_status *st) {
  *out = NULL;
  BIO *bio = BIO_new_file(path, "r");
  if (!bio) return ef_status_fail(st, EF_ERR_IO, "cannot read %s: %s", path, strerror(errno));
  ef_err err = key_from_bio(bio, out, st);
  BIO_free(bio);
  if (err != EF_OK) ef_status_prefix(st, path);
  return err;
}

void ef_release_key_free(ef_release_key *k) {
  if (!k) return;
  EVP_PKEY_free(k->pkey);
  free(k);
}

bool ef_release_key_is_private(const ef_release_key *k) { return k && k->priv; }

void ef_release_key_fingerprint(const ef_release_key *k, char out[65]) {
  uint8_t raw[32], md[32];
  size_t len = sizeof raw;
  unsigned int mdlen = 0;
  out[0] = '\0';
  if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &len) != 1 ||
      EVP_Digest(raw, len, md, &mdlen, EVP_sha256(), NULL) != 1)
    return;
  for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Writes @p pkey's PEM to a new file (never over an existing one). */
static ef_err write_pem(const char *path, EVP_PKEY *pkey, bool priv, ef_status *st) {
  ef_err err = EF_ERR_IO;
  FILE *f = NULL;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, priv ? 0600 : 0644);
  if (fd < 0) {
    ef_status_fail(st, err, "cannot create %s: %s", path, strerror(errno));
    goto out;
  }
  f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    ef_status_fail(st, err, "%s: %s", path, strerror(errno));
    goto out;
  }
  int ok = priv ? PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) : PEM_write_PUBKEY(f, pkey);
  if (!ok || fflush(f) != 0 || fsync(fileno(f)) != 0) {
    ef_status_fail(st, err, "cannot write %s", path);
    goto out;
  }
  err = EF_OK;
out:
  if (f && fclose(f) != 0 && err == EF_OK) err = ef_status_fail(st, EF_ERR_IO, "cannot write %s", path);
  return err;
}

ef_err ef_release_keygen(const char *priv_path, const char *pub_path, ef_status *st) {
  ef_err err = EF_ERR_INTERNAL;
  EVP_PKEY *pkey = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
  if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &pkey) != 1) {
    ef_status_fail(st, err, "key generation failed");
    goto out;
  }
  err = write_pem(priv_path, pkey, true, st);
  if (err != EF_OK) goto out;
  err = write_pem(pub_path, pkey, false, st);
  if (err != EF_OK) unlink(priv_path); /* no half pair */
out:
  EVP_PKEY_free(pkey);
  EVP_PKEY_CTX_free(ctx);
  return err;
}

/* ---- signatures ------------------------------------------------------------ */

ef_err ef_release_sign(ef_manifest *m, const ef_release_key *k, ef_status *st) {
  char text[EF_RELEASE_TEXT_MAX];
  size_t siglen = EF_RELEASE_SIG_LEN;
  ef_err err = EF_ERR_INVALID_ARG;
  EVP_MD_CTX *ctx = NULL;
  if (!ef_release_key_is_private(k)) return ef_status_fail(st, err, "signing needs the private key");
  size_t len = ef_release_canonical(&m->rel, text, sizeof text, st);
  if (len == 0) return err;
  err = EF_ERR_INTERNAL;
  ctx = EVP_MD_CTX_new();
  /* Ed25519 is "pure": no digest, the whole text is signed in one call */
  if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) != 1 ||
      EVP_DigestSign(ctx, m->sig, &siglen, (const uint8_t *)text, len) != 1 || siglen != EF_RELEASE_SIG_LEN) {
    ef_status_fail(st, err, "signing failed");
    goto out;
  }
  err = EF_OK;
out:
  EVP_MD_CTX_free(ctx);
  return err;
}

ef_err ef_release_verify(const ef_manifest *m, const ef_release_key *k, ef_status *st) {
  char text[EF_RELEASE_TEXT_MAX];
  ef_err err = EF_ERR_INVALID_ARG;
  EVP_MD_CTX *ctx = NULL;
  size_t len = ef_release_canonical(&m->rel, text, sizeof text, st);
  if (len == 0) return err;
  err = EF_ERR_RELEASE_BAD_SIGNATURE;
  ctx = EVP_MD_CTX_new();
  if (!ctx || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->pkey) != 1 ||
      EVP_DigestVerify(ctx, m->sig, EF_RELEASE_SIG_LEN, (const uint8_t *)text, len) != 1) {
    ef_status_fail(st, err, "signature of key %s does not match this release", m->key_id);
    goto out;
  }
  err = EF_OK;
out:
  EVP_MD_CTX_free(ctx);
  return err;
}

void ef_release_sig_to_base64(const uint8_t sig[EF_RELEASE_SIG_LEN], char out[89]) {
  EVP_EncodeBlock((unsigned char *)out, sig, EF_RELEASE_SIG_LEN);
}

bool ef_release_sig_from_base64(const char *b64, uint8_t sig[EF_RELEASE_SIG_LEN]) {
  uint8_t buf[72];
  /* 64 bytes are 88 characters with two '=' of padding, nothing else */
  if (!b64 || strlen(b64) != 88 || b64[86] != '=' || b64[87] != '=') return false;
  if (EVP_DecodeBlock(buf, (const unsigned char *)b64, 88) != 66) return false;
  memcpy(sig, buf, EF_RELEASE_SIG_LEN);
  return true;
}

/* ---- manifests ------------------------------------------------------------- */

char *ef_manifest_to_json(const ef_manifest *m) {
  char sig[89];
  char *text = NULL;
  cJSON *o = cJSON_CreateObject();
  ef_release_sig_to_base64(m->sig, sig);
  bool ok =
      o && cJSON_AddStringToObject(o, "format", EF_RELEASE_FORMAT) &&
      cJSON_AddStringToObject(o, "key_id", m->key_id) && cJSON_AddStringToObject(o, "signature", sig) &&
      cJSON_AddStringToObject(o, "sha256", m->rel.sha256_hex) &&
      cJSON_AddNumberToObject(o, "size", (double)m->rel.size) &&
      cJSON_AddStringToObject(o, "version", m->rel.version) &&
      cJSON_AddStringToObject(o, "project", m->rel.project) &&
      cJSON_AddStringToObject(o, "chip", m->rel.chip) &&
      cJSON_AddNumberToObject(o, "secure_version", m->rel.secure_version) &&
      (!m->rel.hosted_release[0] || cJSON_AddStringToObject(o, "hosted_release", m->rel.hosted_release)) &&
      cJSON_AddBoolToObject(o, "driver_update", m->rel.driver_update) &&
      cJSON_AddBoolToObject(o, "allow_downgrade", m->rel.allow_downgrade);
  if (ok) text = cJSON_Print(o);
  cJSON_Delete(o);
  return text;
}

/* Copies string member @p key of @p o into @p dst. */
static bool get_text(const cJSON *o, const char *key, bool required, char *dst, size_t n, ef_status *st) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v && !required) return true;
  if (!v || !cJSON_IsString(v) || strlen(v->valuestring) >= n || !v->valuestring[0] ||
      !printable(v->valuestring)) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "%s: must be printable text of 1 to %zu characters", key, n - 1);
    return false;
  }
  memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
  return true;
}

static bool get_uint(const cJSON *o, const char *key, double max, uint64_t *dst, ef_status *st) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max ||
      (double)(uint64_t)v->valuedouble != v->valuedouble) {
    ef_status_fail(st, EF_ERR_BAD_JOB, "%s: must be an integer 0..%.0f", key, max);
    return false;
  }
  *dst = (uint64_t)v->valuedouble;
  return true;
}

ef_err ef_manifest_parse(const char *json, size_t len, ef_manifest *out, ef_status *st) {
  static const char *const known[] = {"format",         "key_id",         "signature",     "sha256",
                                      "size",           "version",        "project",       "chip",
                                      "secure_version", "hosted_release", "driver_update", "allow_downgrade"};
  ef_err err = EF_ERR_BAD_JOB;
  char sig[100], format[32];
  uint64_t size = 0, secv = 0;
  cJSON *o = cJSON_ParseWithLength(json, len);
  memset(out, 0, sizeof *out);
  if (!cJSON_IsObject(o)) {
    ef_status_fail(st, err, "manifest: not a JSON object");
    goto out;
  }
  for (const cJSON *c = o->child; c; c = c->next) {
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) ok = ok || strcmp(c->string, known[i]) == 0;
    if (!ok) {
      ef_status_fail(st, err, "%s: unknown key in a manifest", c->string);
      goto out;
    }
  }
  if (!get_text(o, "format", true, format, sizeof format, st)) goto out;
  if (strcmp(format, EF_RELEASE_FORMAT) != 0) {
    ef_status_fail(st, err, "format: must be \"" EF_RELEASE_FORMAT "\"");
    goto out;
  }
  if (!get_text(o, "key_id", true, out->key_id, sizeof out->key_id, st) ||
      !get_text(o, "signature", true, sig, sizeof sig, st) ||
      !get_text(o, "sha256", true, out->rel.sha256_hex, sizeof out->rel.sha256_hex, st) ||
      !get_uint(o, "size", 4294967295.0, &size, st) ||
      !get_text(o, "version", true, out->rel.version, sizeof out->rel.version, st) ||
      !get_text(o, "project", true, out->rel.project, sizeof out->rel.project, st) ||
      !get_text(o, "chip", true, out->rel.chip, sizeof out->rel.chip, st) ||
      !get_uint(o, "secure_version", 4294967295.0, &secv, st) ||
      !get_text(o, "hosted_release", false, out->rel.hosted_release, sizeof out->rel.hosted_release, st))
    goto out;
  const cJSON *dg = cJSON_GetObjectItemCaseSensitive(o, "allow_downgrade");
  const cJSON *du = cJSON_GetObjectItemCaseSensitive(o, "driver_update");
  if (!cJSON_IsBool(dg) || !cJSON_IsBool(du)) {
    ef_status_fail(st, err, "%s: must be true or false",
                   cJSON_IsBool(dg) ? "driver_update" : "allow_downgrade");
    goto out;
  }
  if (!ef_release_sig_from_base64(sig, out->sig)) {
    ef_status_fail(st, err, "signature: must be the base64 of 64 bytes");
    goto out;
  }
  if (!lower_hex64(out->rel.sha256_hex)) {
    ef_status_fail(st, err, "sha256: must be 64 lower-case hex digits");
    goto out;
  }
  out->rel.size = size;
  out->rel.secure_version = (uint32_t)secv;
  out->rel.allow_downgrade = cJSON_IsTrue(dg);
  out->rel.driver_update = cJSON_IsTrue(du);
  err = EF_OK;
out:
  cJSON_Delete(o);
  return err;
}
