/**
 * @file release.h
 * @brief Signed releases: what a release key vouches for, and its check.
 *
 * A release manifest binds what gets installed: the image's SHA-256 and
 * size, its app description's version and project, the chip, its ESP-IDF
 * secure_version, the ESP-Hosted release it carries (when known) and whether
 * it may replace a newer version (the only way to downgrade on a device with
 * release keys). A release key signs the manifest's canonical text with
 * Ed25519 (OpenSSL EVP), offline; devices hold the public keys.
 *
 * The canonical text is defined byte for byte in docs/security.md ("What is
 * signed"), with test vectors, so that another implementation can sign
 * releases espfleet accepts:
 *
 *   espfleet-release-v1\n
 *   sha256=<64 lower-case hex digits>\n
 *   size=<decimal, no leading zeros>\n
 *   version=<text>\n
 *   project=<text>\n
 *   chip=<canonical chip name, e.g. esp32s3>\n
 *   secure_version=<decimal>\n
 *   hosted_release=<text, empty when unknown>\n
 *   driver_update=<yes|no>\n
 *   allow_downgrade=<yes|no>\n
 *
 * Texts are printable ASCII (0x20-0x7E); anything else makes the manifest
 * invalid, so no two manifests share a text.
 */
#ifndef ESPFLEET_RELEASE_H
#define ESPFLEET_RELEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "espfleet/status.h"

#define EF_RELEASE_FORMAT     "espfleet-release-v1"
#define EF_RELEASE_SIG_LEN    64  /**< an Ed25519 signature */
#define EF_RELEASE_KEY_ID_MAX 64  /**< characters of a key id: [A-Za-z0-9._:-] */
#define EF_RELEASE_TEXT_MAX   640 /**< the longest canonical text */

/** What a release key vouches for. */
typedef struct {
  char sha256_hex[65]; /**< lower case */
  uint64_t size;
  char version[33];
  char project[33];
  char chip[16];
  uint32_t secure_version;
  char hosted_release[64]; /**< "" = not stated */
  bool driver_update;      /**< the hosts' driver is updated to accept hosted_release
                                (lifts the driver-compatibility gate) */
  bool allow_downgrade;
} ef_release;

/** A manifest: the release, who signed it and the signature. */
typedef struct {
  ef_release rel;
  char key_id[EF_RELEASE_KEY_ID_MAX + 1];
  uint8_t sig[EF_RELEASE_SIG_LEN];
} ef_manifest;

/** An Ed25519 key (public, or private for signing). Opaque. */
typedef struct ef_release_key ef_release_key;

/**
 * Writes the canonical text of @p r into @p out (NUL-terminated).
 * @return its length in bytes (without the NUL); 0 with @p st set to
 *         EF_ERR_INVALID_ARG when a field is not printable ASCII, a hex
 *         digest is malformed, or @p n is too small.
 */
size_t ef_release_canonical(const ef_release *r, char *out, size_t n, ef_status *st);

/**
 * Loads a PEM key file: a private key (PKCS#8, as `espfleet keygen` writes
 * it) or a public key (SubjectPublicKeyInfo). Only Ed25519 keys are accepted.
 * @return EF_OK; EF_ERR_IO (unreadable); EF_ERR_CONFIG (not an Ed25519 key).
 */
ef_err ef_release_key_load(const char *path, ef_release_key **out, ef_status *st) EF_MUST_CHECK;

/** Parses a PEM key held in memory (same rules as ef_release_key_load). */
ef_err ef_release_key_parse(const char *pem, size_t len, ef_release_key **out, ef_status *st) EF_MUST_CHECK;

/** Frees @p k (NULL is fine). */
void ef_release_key_free(ef_release_key *k);

/** True when @p k holds a private key. */
bool ef_release_key_is_private(const ef_release_key *k);

/** The public key's fingerprint: SHA-256 of its 32 raw bytes, lower-case hex. */
void ef_release_key_fingerprint(const ef_release_key *k, char out[65]);

/**
 * Generates a new key pair and writes it as PEM: the private key to
 * @p priv_path (created with mode 0600, never over an existing file) and the
 * public key to @p pub_path.
 * @return EF_OK; EF_ERR_IO (a file exists or cannot be written); EF_ERR_INTERNAL.
 */
ef_err ef_release_keygen(const char *priv_path, const char *pub_path, ef_status *st) EF_MUST_CHECK;

/**
 * Signs @p m->rel with the private key @p k; fills @p m->sig.
 * @return EF_OK; EF_ERR_INVALID_ARG (no private key, bad release); EF_ERR_INTERNAL.
 */
ef_err ef_release_sign(ef_manifest *m, const ef_release_key *k, ef_status *st) EF_MUST_CHECK;

/**
 * Checks @p m's signature with the public key @p k.
 * @return EF_OK; EF_ERR_RELEASE_BAD_SIGNATURE; EF_ERR_INVALID_ARG (a release
 *         that has no canonical text).
 */
ef_err ef_release_verify(const ef_manifest *m, const ef_release_key *k, ef_status *st) EF_MUST_CHECK;

/** Standard base64 of a signature (88 characters + NUL). */
void ef_release_sig_to_base64(const uint8_t sig[EF_RELEASE_SIG_LEN], char out[89]);

/** Decodes standard base64 into a signature. @return false unless it is exactly 64 bytes. */
bool ef_release_sig_from_base64(const char *b64, uint8_t sig[EF_RELEASE_SIG_LEN]);

/* ---- what a device trusts ------------------------------------------------ */

#define EF_RELEASE_MAX_KEYS 16 /**< trusted keys, and separately revoked ids */

/** The keys a device trusts and the ids it was told to distrust. */
typedef struct {
  size_t n_keys;
  char ids[EF_RELEASE_MAX_KEYS][EF_RELEASE_KEY_ID_MAX + 1];
  ef_release_key *keys[EF_RELEASE_MAX_KEYS]; /**< owned: ef_keyring_free */
  size_t n_revoked;
  char revoked[EF_RELEASE_MAX_KEYS][EF_RELEASE_KEY_ID_MAX + 1];
} ef_keyring;

/** True when @p id is a valid key id: 1-64 characters of [A-Za-z0-9._:-]. */
bool ef_release_key_id_valid(const char *id);

/**
 * Adds a public key under @p id (takes ownership of @p k, also on error).
 * @return EF_OK; EF_ERR_CONFIG for a bad or duplicate id, a private key
 *         (devices hold public keys only), or a full ring.
 */
ef_err ef_keyring_add(ef_keyring *kr, const char *id, ef_release_key *k, ef_status *st) EF_MUST_CHECK;

/** Adds a revoked id. @return EF_OK; EF_ERR_CONFIG for a bad id or a full list. */
ef_err ef_keyring_revoke(ef_keyring *kr, const char *id, ef_status *st) EF_MUST_CHECK;

/** Frees the keys of @p kr and empties it. */
void ef_keyring_free(ef_keyring *kr);

/**
 * The device's check of a signed release, before anything is downloaded:
 * revoked ids first (a revoked id is refused even when it is also trusted),
 * then unknown ids, then the signature.
 * @return EF_OK; EF_ERR_RELEASE_KEY_REVOKED; EF_ERR_RELEASE_KEY_UNKNOWN;
 *         EF_ERR_RELEASE_BAD_SIGNATURE (also for a release that has no
 *         canonical text).
 */
ef_err ef_keyring_verify(const ef_keyring *kr, const ef_manifest *m, ef_status *st) EF_MUST_CHECK;

/**
 * Writes @p m as a manifest JSON document (docs/schema/manifest.schema.json).
 * @return a malloc'ed string (free()), or NULL when out of memory.
 */
char *ef_manifest_to_json(const ef_manifest *m);

/**
 * Parses a manifest JSON document. Every field is required except
 * hosted_release; unknown keys are refused (a manifest is a signed contract).
 * @return EF_OK; EF_ERR_BAD_JOB with a detail naming the key.
 */
ef_err ef_manifest_parse(const char *json, size_t len, ef_manifest *out, ef_status *st) EF_MUST_CHECK;

#endif
