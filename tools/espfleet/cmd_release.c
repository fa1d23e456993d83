/* espfleet keygen | sign | verify: release keys and signed manifests
 * (include/espfleet/release.h, docs/security.md). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cli.h"
#include "espfleet/ctrl.h"
#include "espfleet/image.h"
#include "espfleet/release.h"

const char cli_keygen_usage[] =
    "Usage: espfleet keygen NAME\n"
    "\n"
    "Writes a new Ed25519 release key pair in PEM: NAME.key, the private key\n"
    "(mode 0600; keep it offline), and NAME.pub, the public key that devices\n"
    "list in security.release_keys. Never overwrites a file. Prints the public\n"
    "key's fingerprint (SHA-256 of its raw bytes).\n";

const char cli_sign_usage[] =
    "Usage: espfleet sign IMAGE --key KEY.key --key-id ID [--hosted-release R]\n"
    "                     [--driver-update] [--allow-downgrade] [-o MANIFEST]\n"
    "\n"
    "Validates IMAGE and prints its signed release manifest (JSON): SHA-256,\n"
    "size, version, project, chip and secure_version read from the image\n"
    "itself, the ESP-Hosted release R it carries when given, and whether it may\n"
    "replace a newer version. Devices with release keys install only what such\n"
    "a manifest vouches for (docs/security.md).\n"
    "\n"
    "  --key KEY.key        the private release key (espfleet keygen)\n"
    "  --key-id ID          the key's id, as devices list it (1-64 of [A-Za-z0-9._:-])\n"
    "  --hosted-release R   the ESP-Hosted release the image carries (FG-1.0.3.0.0)\n"
    "  --driver-update      the hosts' ESP-Hosted driver is updated to accept R\n"
    "                       (lifts the driver-compatibility gate; needs R)\n"
    "  --allow-downgrade    allow this image to replace a newer version\n"
    "  -o, --output FILE    write the manifest there instead of stdout\n";

const char cli_verify_usage[] =
    "Usage: espfleet verify MANIFEST --pub KEY.pub [--image IMAGE]\n"
    "\n"
    "Checks MANIFEST's signature with the public key and, with --image, that\n"
    "the image is the one it describes. Exit status 0 when all holds; 1 with\n"
    "the error line (release_bad_signature, hash_mismatch, ...) otherwise.\n";

/* SHA-256 and size of a whole file. */
static ef_err file_sha256(const char *path, char hex[65], uint64_t *size, char *why, size_t n) {
  uint8_t buf[64 * 1024], md[32];
  unsigned mdlen = 0;
  ef_err err = EF_ERR_IO;
  EVP_MD_CTX *sha = EVP_MD_CTX_new();
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  *size = 0;
  if (fd < 0 || !sha || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
    snprintf(why, n, "cannot read %s: %s", path, strerror(errno));
    goto out;
  }
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      snprintf(why, n, "cannot read %s: %s", path, strerror(errno));
      goto out;
    }
    if (r == 0) break;
    EVP_DigestUpdate(sha, buf, (size_t)r);
    *size += (uint64_t)r;
  }
  EVP_DigestFinal_ex(sha, md, &mdlen);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
  err = EF_OK;
out:
  if (fd >= 0) close(fd);
  EVP_MD_CTX_free(sha);
  return err;
}

/* The release an image file is: its hash and size, and the facts of its
 * header and app description as the validator reads them. */
static ef_err release_of_image(const char *path, ef_release *r, char *why, size_t n) {
  ef_image_header hdr;
  ef_app_desc desc;
  ef_status st = EF_STATUS_INIT;
  memset(r, 0, sizeof *r);
  ef_err err = ef_image_check_file(path, &hdr, &desc, NULL, &st);
  if (err != EF_OK) {
    snprintf(why, n, "%s: %s", path, st.detail);
    return err;
  }
  err = file_sha256(path, r->sha256_hex, &r->size, why, n);
  if (err != EF_OK) return err;
  snprintf(r->version, sizeof r->version, "%s", desc.version);
  snprintf(r->project, sizeof r->project, "%s", desc.project_name);
  snprintf(r->chip, sizeof r->chip, "%s", ef_chip_name(hdr.chip_id) ? ef_chip_name(hdr.chip_id) : "");
  r->secure_version = desc.secure_version;
  return EF_OK;
}

int cmd_keygen(int argc, char **argv) {
  char priv[PATH_MAX], pub[PATH_MAX];
  ef_release_key *k = NULL;
  ef_status st = EF_STATUS_INIT;
  char fp[65];
  if (argc != 2 || argv[1][0] == '-') return cli_usage_error("keygen", "expected one NAME");
  if (snprintf(priv, sizeof priv, "%s.key", argv[1]) >= (int)sizeof priv ||
      snprintf(pub, sizeof pub, "%s.pub", argv[1]) >= (int)sizeof pub)
    return cli_usage_error("keygen", "NAME too long");
  if (ef_release_keygen(priv, pub, &st) != EF_OK || ef_release_key_load(pub, &k, &st) != EF_OK)
    return cli_fail(st.code, st.detail);
  ef_release_key_fingerprint(k, fp);
  ef_release_key_free(k);
  printf("wrote %s (private, mode 0600) and %s\nfingerprint %s\n", priv, pub, fp);
  return CLI_OK;
}

int cmd_sign(int argc, char **argv) {
  enum { O_KEY = 256, O_ID, O_REL, O_DOWN, O_DRIVER };
  static const struct option opts[] = {
      {"key", required_argument, NULL, O_KEY},
      {"key-id", required_argument, NULL, O_ID},
      {"hosted-release", required_argument, NULL, O_REL},
      {"allow-downgrade", no_argument, NULL, O_DOWN},
      {"driver-update", no_argument, NULL, O_DRIVER},
      {"output", required_argument, NULL, 'o'},
      {NULL, 0, NULL, 0},
  };
  const char *key_path = NULL, *key_id = NULL, *rel = NULL, *out_path = NULL;
  bool downgrade = false, driver_update = false;
  ef_release_key *k = NULL;
  ef_status st = EF_STATUS_INIT;
  ef_manifest m;
  char why[512] = "";
  char *json = NULL;
  int c, rc = CLI_FAIL;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":o:", opts, NULL)) != -1) {
    switch (c) {
    case O_KEY: key_path = optarg; break;
    case O_ID: key_id = optarg; break;
    case O_REL: rel = optarg; break;
    case O_DOWN: downgrade = true; break;
    case O_DRIVER: driver_update = true; break;
    case 'o': out_path = optarg; break;
    case ':': return cli_usage_error("sign", "option '%s' needs a value", argv[optind - 1]);
    default: return cli_usage_error("sign", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind != argc - 1 || !key_path || !key_id)
    return cli_usage_error("sign", "IMAGE, --key and --key-id are required");
  ef_fw_version fw;
  if (driver_update && !rel) return cli_usage_error("sign", "--driver-update needs --hosted-release");
  if (rel && ef_fw_version_parse(rel, &fw) != EF_OK)
    return cli_usage_error("sign", "bad --hosted-release '%s' (NAME-a.b.c.d.e)", rel);
  memset(&m, 0, sizeof m);
  if (strlen(key_id) > EF_RELEASE_KEY_ID_MAX ||
      strspn(key_id,
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
             "0123456789._:-") != strlen(key_id) ||
      !*key_id)
    return cli_usage_error("sign", "bad --key-id '%s' (1-64 of [A-Za-z0-9._:-])", key_id);
  snprintf(m.key_id, sizeof m.key_id, "%s", key_id);
  ef_err err = release_of_image(argv[optind], &m.rel, why, sizeof why);
  if (err != EF_OK) return cli_fail(err, why);
  if (rel) snprintf(m.rel.hosted_release, sizeof m.rel.hosted_release, "%s", rel);
  m.rel.allow_downgrade = downgrade;
  m.rel.driver_update = driver_update;
  if (ef_release_key_load(key_path, &k, &st) != EF_OK || ef_release_sign(&m, k, &st) != EF_OK) {
    rc = cli_fail(st.code, st.detail);
    goto out;
  }
  json = ef_manifest_to_json(&m);
  if (!json) {
    rc = cli_fail(EF_ERR_NOMEM, NULL);
    goto out;
  }
  if (out_path) {
    FILE *f = fopen(out_path, "w");
    if (!f || fprintf(f, "%s\n", json) < 0 || fclose(f) != 0) {
      snprintf(why, sizeof why, "cannot write %s: %s", out_path, strerror(errno));
      rc = cli_fail(EF_ERR_IO, why);
      goto out;
    }
  } else {
    printf("%s\n", json);
  }
  rc = CLI_OK;
out:
  free(json);
  ef_release_key_free(k);
  return rc;
}

/* Reads a whole small file (a manifest). */
static char *read_small(const char *path, size_t *len) {
  char *buf = NULL;
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  buf = malloc(65536);
  if (buf) {
    *len = fread(buf, 1, 65535, f);
    buf[*len] = '\0';
  }
  fclose(f);
  return buf;
}

int cmd_verify(int argc, char **argv) {
  enum { O_PUB = 256, O_IMAGE };
  static const struct option opts[] = {{"pub", required_argument, NULL, O_PUB},
                                       {"image", required_argument, NULL, O_IMAGE},
                                       {NULL, 0, NULL, 0}};
  const char *pub = NULL, *image = NULL;
  ef_release_key *k = NULL;
  ef_status st = EF_STATUS_INIT;
  ef_manifest m;
  char why[512] = "";
  char *text = NULL;
  size_t len = 0;
  int c, rc = CLI_FAIL;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (c) {
    case O_PUB: pub = optarg; break;
    case O_IMAGE: image = optarg; break;
    case ':': return cli_usage_error("verify", "option '%s' needs a value", argv[optind - 1]);
    default: return cli_usage_error("verify", "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind != argc - 1 || !pub) return cli_usage_error("verify", "MANIFEST and --pub are required");
  text = read_small(argv[optind], &len);
  if (!text) {
    snprintf(why, sizeof why, "cannot read %s: %s", argv[optind], strerror(errno));
    rc = cli_fail(EF_ERR_IO, why);
    goto out;
  }
  if (ef_manifest_parse(text, len, &m, &st) != EF_OK || ef_release_key_load(pub, &k, &st) != EF_OK ||
      ef_release_verify(&m, k, &st) != EF_OK) {
    rc = cli_fail(st.code, st.detail);
    goto out;
  }
  if (image) {
    ef_release r;
    ef_err err = release_of_image(image, &r, why, sizeof why);
    if (err != EF_OK) {
      rc = cli_fail(err, why);
      goto out;
    }
    /* the same checks a device makes, in the same codes */
    if (strcmp(r.sha256_hex, m.rel.sha256_hex) != 0)
      err = EF_ERR_HASH_MISMATCH;
    else if (r.size != m.rel.size)
      err = EF_ERR_SIZE_MISMATCH;
    else if (strcmp(r.chip, m.rel.chip) != 0)
      err = EF_ERR_CHIP_MISMATCH;
    else if (strcmp(r.project, m.rel.project) != 0)
      err = EF_ERR_PROJECT_MISMATCH;
    else if (strcmp(r.version, m.rel.version) != 0 || r.secure_version != m.rel.secure_version)
      err = EF_ERR_VERSION_MISMATCH;
    if (err != EF_OK) {
      snprintf(why, sizeof why, "%s is not the image the manifest describes", image);
      rc = cli_fail(err, why);
      goto out;
    }
  }
  printf("%s: signed by %s, %s %s for %s%s\n", argv[optind], m.key_id, m.rel.project, m.rel.version,
         m.rel.chip, image ? ", image matches" : "");
  rc = CLI_OK;
out:
  free(text);
  ef_release_key_free(k);
  return rc;
}
