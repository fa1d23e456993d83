/*
 * The tokens file (api.h): who may log in to the HTTP API, as SHA-256
 * digests of bearer tokens, so that a copy of the file (a backup, a
 * configuration repository) gives nobody a login.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "espfleet/api.h"
#include "espfleet/hex.h"

/* A longer line is not one we wrote: refuse it rather than read it in parts. */
#define LINE_MAX_LEN 512

const char *ef_api_role_name(ef_api_role r) { return r == EF_API_OPERATOR ? "operator" : "viewer"; }

static bool name_valid(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > EF_API_NAME_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '@' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

/* Lower case only: the digest is compared as bytes, but one spelling per
 * token keeps duplicates visible to anyone reading the file. */
static bool digest_valid(const char *s) {
  if (strlen(s) != 64) return false;
  for (size_t i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

typedef struct {
  ef_api_problem_cb cb;
  void *arg;
  ef_status *st;
  unsigned count;
} problems;

static void problem(problems *p, unsigned line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(problems *p, unsigned line, const char *fmt, ...) {
  char text[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (p->cb) p->cb(p->arg, line, text);
  (void)ef_status_fail(p->st, EF_ERR_CONFIG, "line %u: %s", line, text);
  p->count++;
}

/* Checks one line's words and appends its login; false only when out of memory. */
static bool parse_line(char *line, unsigned num, ef_api_token **list, size_t *n, size_t *cap, problems *p) {
  char *hash = strchr(line, '#');
  if (hash) *hash = '\0';
  char *words[4] = {NULL, NULL, NULL, NULL};
  size_t k = 0;
  for (char *save = NULL, *w = strtok_r(line, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save))
    if (k < 4) words[k++] = w;
  if (k == 0) return true;
  if (k != 3) {
    problem(p, num, "%s", "expected ROLE NAME SHA256HEX");
    return true;
  }
  ef_api_token t;
  memset(&t, 0, sizeof t);
  if (strcmp(words[0], "viewer") == 0) {
    t.role = EF_API_VIEWER;
  } else if (strcmp(words[0], "operator") == 0) {
    t.role = EF_API_OPERATOR;
  } else {
    problem(p, num, "role \"%.40s\": must be viewer or operator", words[0]);
    return true;
  }
  if (!name_valid(words[1])) {
    problem(p, num, "name \"%.40s\": must be 1-64 characters of [A-Za-z0-9._@:-]", words[1]);
    return true;
  }
  if (!digest_valid(words[2]) || ef_hex_to_sha256(words[2], t.digest) != EF_OK) {
    problem(p, num, "%s", "SHA256HEX: must be 64 lower-case hex digits (printf %s TOKEN | sha256sum)");
    return true;
  }
  snprintf(t.name, sizeof t.name, "%s", words[1]);
  for (size_t i = 0; i < *n; i++) {
    if (strcmp((*list)[i].name, t.name) == 0) {
      problem(p, num, "name \"%s\": appears twice (names tell logins apart in logs)", t.name);
      return true;
    }
    if (memcmp((*list)[i].digest, t.digest, sizeof t.digest) == 0) {
      problem(p, num, "%s", "SHA256HEX: the same token as another line (its role would be a guess)");
      return true;
    }
  }
  if (*n == *cap) {
    size_t grown_cap = *cap ? *cap * 2 : 8;
    ef_api_token *grown = realloc(*list, grown_cap * sizeof *grown);
    if (!grown) return false;
    *list = grown;
    *cap = grown_cap;
  }
  (*list)[(*n)++] = t;
  return true;
}

ef_err ef_api_tokens_load(const char *path, ef_api_token **tokens, size_t *n, ef_api_problem_cb cb, void *arg,
                          ef_status *st) {
  ef_err err = EF_OK;
  ef_api_token *list = NULL;
  size_t count = 0, cap = 0;
  char line[LINE_MAX_LEN + 2];
  unsigned num = 0;
  problems p = {cb, arg, st, 0};
  FILE *f = fopen(path, "r");
  if (tokens) *tokens = NULL;
  if (n) *n = 0;
  if (!f) {
    err = ef_status_fail(st, EF_ERR_IO, "%s: %s", path, strerror(errno));
    goto out;
  }
  while (fgets(line, sizeof line, f)) {
    num++;
    size_t len = strlen(line);
    if (len == sizeof line - 1 && line[len - 1] != '\n') {
      problem(&p, num, "%s", "longer than 512 characters");
      int c;
      while ((c = fgetc(f)) != EOF && c != '\n') {
      }
      continue;
    }
    if (!parse_line(line, num, &list, &count, &cap, &p)) {
      err = ef_status_fail(st, EF_ERR_NOMEM, "out of memory");
      goto out;
    }
  }
  if (ferror(f)) {
    err = ef_status_fail(st, EF_ERR_IO, "%s: read error", path);
    goto out;
  }
  if (p.count) {
    err = EF_ERR_CONFIG;
    goto out;
  }
  if (count == 0) {
    /* An empty file would lock everyone out, which nobody means. */
    if (cb) cb(arg, 0, "no login: add a line ROLE NAME SHA256HEX");
    err = ef_status_fail(st, EF_ERR_CONFIG, "%s: no login: add a line ROLE NAME SHA256HEX", path);
    goto out;
  }
  if (tokens) {
    *tokens = list;
    list = NULL;
  }
  if (n) *n = count;
out:
  if (f) fclose(f);
  free(list);
  return err;
}

const ef_api_token *ef_api_tokens_find(const ef_api_token *tokens, size_t n, const char *token) {
  uint8_t digest[32];
  const ef_api_token *found = NULL;
  if (!token || !token[0]) return NULL;
  SHA256((const unsigned char *)token, strlen(token), digest);
  /* no early exit: every entry costs the same whether it matches or not */
  for (size_t i = 0; i < n; i++)
    if (CRYPTO_memcmp(tokens[i].digest, digest, sizeof digest) == 0) found = &tokens[i];
  return found;
}
