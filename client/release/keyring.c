/* The keys a device trusts (security.release_keys) and the ids it was told
 * to distrust (security.revoked_keys); the check of a signed job. */
#include <string.h>

#include "espfleet/release.h"

bool ef_release_key_id_valid(const char *id) {
  size_t n = id ? strlen(id) : 0;
  if (n == 0 || n > EF_RELEASE_KEY_ID_MAX) return false;
  return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n;
}

static bool listed(const char (*ids)[EF_RELEASE_KEY_ID_MAX + 1], size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(ids[i], id) == 0) return true;
  return false;
}

ef_err ef_keyring_add(ef_keyring *kr, const char *id, ef_release_key *k, ef_status *st) {
  ef_err err = EF_ERR_CONFIG;
  if (!ef_release_key_id_valid(id)) {
    ef_status_fail(st, err, "key id must be 1-64 characters of [A-Za-z0-9._:-]");
  } else if (listed(kr->ids, kr->n_keys, id)) {
    ef_status_fail(st, err, "key id %s is listed twice", id);
  } else if (ef_release_key_is_private(k)) {
    ef_status_fail(st, err, "key %s is a private key: devices hold the public key only", id);
  } else if (kr->n_keys >= EF_RELEASE_MAX_KEYS) {
    ef_status_fail(st, err, "at most %d release keys", EF_RELEASE_MAX_KEYS);
  } else {
    memcpy(kr->ids[kr->n_keys], id, strlen(id) + 1);
    kr->keys[kr->n_keys++] = k;
    return EF_OK;
  }
  ef_release_key_free(k);
  return err;
}

ef_err ef_keyring_revoke(ef_keyring *kr, const char *id, ef_status *st) {
  if (!ef_release_key_id_valid(id))
    return ef_status_fail(st, EF_ERR_CONFIG, "revoked key id must be 1-64 characters of [A-Za-z0-9._:-]");
  if (listed(kr->revoked, kr->n_revoked, id)) return EF_OK;
  if (kr->n_revoked >= EF_RELEASE_MAX_KEYS)
    return ef_status_fail(st, EF_ERR_CONFIG, "at most %d revoked key ids", EF_RELEASE_MAX_KEYS);
  memcpy(kr->revoked[kr->n_revoked++], id, strlen(id) + 1);
  return EF_OK;
}

void ef_keyring_free(ef_keyring *kr) {
  for (size_t i = 0; i < kr->n_keys; i++) ef_release_key_free(kr->keys[i]);
  memset(kr, 0, sizeof *kr);
}

ef_err ef_keyring_verify(const ef_keyring *kr, const ef_manifest *m, ef_status *st) {
  if (listed(kr->revoked, kr->n_revoked, m->key_id))
    return ef_status_fail(st, EF_ERR_RELEASE_KEY_REVOKED, "key %s is revoked on this device", m->key_id);
  for (size_t i = 0; i < kr->n_keys; i++) {
    if (strcmp(kr->ids[i], m->key_id) != 0) continue;
    ef_err err = ef_release_verify(m, kr->keys[i], st);
    /* a release without canonical text cannot have a valid signature */
    if (err == EF_ERR_INVALID_ARG) {
      if (st) st->code = EF_ERR_RELEASE_BAD_SIGNATURE;
      err = EF_ERR_RELEASE_BAD_SIGNATURE;
    }
    return err;
  }
  return ef_status_fail(st, EF_ERR_RELEASE_KEY_UNKNOWN, "key %s is not among this device's release keys",
                        m->key_id);
}
