/*
 * The facts a job announces about its image, read from the local file in one
 * pass: every byte goes through the image validator (so an image the device
 * would refuse is refused here first) and SHA-256.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "console.h"
#include "espfleet/hex.h"
#include "espfleet/image.h"

ef_err con_image_read(const char *path, con_image *img, char *detail, size_t n) {
  enum { READ_SIZE = 64 * 1024 };
  ef_err err = EF_ERR_NOMEM;
  ef_image_validator *v = NULL;
  ef_status st = EF_STATUS_INIT;
  EVP_MD_CTX *sha = EVP_MD_CTX_new();
  uint8_t *buf = malloc(READ_SIZE);
  int fd = -1;

  memset(img, 0, sizeof *img);
  detail[0] = '\0';
  if (!sha || !buf) goto out;
  if ((err = ef_image_validator_new(&v)) != EF_OK) goto out;
  err = EF_ERR_INTERNAL;
  if (EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) goto out;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = EF_ERR_IO;
    snprintf(detail, n, "cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  for (;;) {
    ssize_t got = read(fd, buf, READ_SIZE);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      err = EF_ERR_IO;
      snprintf(detail, n, "cannot read %s: %s", path, strerror(errno));
      goto out;
    }
    if (got == 0) break;
    if ((err = ef_image_feed(v, buf, (size_t)got, &st)) != EF_OK) {
      snprintf(detail, n, "%s: %s", path, st.detail);
      goto out;
    }
    err = EF_ERR_INTERNAL;
    if (EVP_DigestUpdate(sha, buf, (size_t)got) != 1) goto out;
    img->size += (uint64_t)got;
  }
  if ((err = ef_image_finish(v, NULL, &st)) != EF_OK) {
    snprintf(detail, n, "%s: %s", path, st.detail);
    goto out;
  }
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned md_len = 0;
  err = EF_ERR_INTERNAL;
  if (EVP_DigestFinal_ex(sha, md, &md_len) != 1 || md_len != 32) goto out;
  ef_hex(md, 32, img->sha256_hex);
  const ef_app_desc *d = ef_image_get_app_desc(v);
  const char *chip = ef_chip_name(ef_image_get_header(v)->chip_id);
  snprintf(img->version, sizeof img->version, "%s", d->version);
  img->secure_version = d->secure_version;
  snprintf(img->project, sizeof img->project, "%s", d->project_name);
  snprintf(img->chip, sizeof img->chip, "%s", chip ? chip : "");
  err = EF_OK;
out:
  if (fd >= 0) close(fd);
  free(buf);
  EVP_MD_CTX_free(sha);
  ef_image_validator_free(v);
  return err;
}
