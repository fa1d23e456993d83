/*
 * The page's files (tools/espfleet-controller/web/), embedded in the
 * program at build time by embed.cmake, which writes assets.c: the
 * controller serves its page without reading files at run time, so what it
 * serves is exactly what was built and reviewed, and nothing is fetched from
 * elsewhere.
 */
#ifndef ESPFLEET_API_ASSETS_H
#define ESPFLEET_API_ASSETS_H

#include <stddef.h>

typedef struct {
  const char *path; /* "/app.js" */
  const char *type; /* its Content-Type */
  const char *etag; /* "\"<sha256 of the content, 16 hex digits>\"" */
  const unsigned char *data;
  size_t len;
} api_asset;

extern const api_asset api_assets[];
extern const size_t api_n_assets;

#endif
