/* Text for logs and terminals: URLs without secrets, escaped control characters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "espfleet/text.h"

static void redacts(const char *url, ef_url_keep keep, const char *want) {
  char out[256];
  ef_url_redact(url, keep, out, sizeof out);
  if (strcmp(out, want) != 0) fail_msg("'%s' -> '%s', want '%s'", url, out, want);
}

static void test_url_secrets(void **state) {
  (void)state;
  redacts("https://user:s3cret@fw.example.com/esp/a.bin?token=abc&x=1", EF_URL_PATH,
          "https://\xE2\x80\xA6@fw.example.com/esp/a.bin?\xE2\x80\xA6");
  redacts("https://user:s3cret@fw.example.com:8443/esp/a.bin?token=abc", EF_URL_ORIGIN,
          "https://fw.example.com:8443");
  redacts("https://fw.example.com/a.bin", EF_URL_PATH, "https://fw.example.com/a.bin");
  redacts("https://fw.example.com/a.bin", EF_URL_ORIGIN, "https://fw.example.com");
  redacts("https://fw.example.com", EF_URL_PATH, "https://fw.example.com");
  redacts("https://tok@fw.example.com", EF_URL_PATH, "https://\xE2\x80\xA6@fw.example.com");
  /* the last '@' of the authority ends the user information */
  redacts("https://a@b:p@ss@host/x", EF_URL_PATH, "https://\xE2\x80\xA6@host/x");
  /* an '@' in the path or query is not user information */
  redacts("https://host/a@b.bin?sig=1@2", EF_URL_PATH, "https://host/a@b.bin?\xE2\x80\xA6");
  redacts("https://host#frag", EF_URL_PATH, "https://host#\xE2\x80\xA6");
  redacts("http://[::1]:8080/p?q", EF_URL_ORIGIN, "http://[::1]:8080");
  /* not a URL: still no user information or query */
  redacts("user:pw@host/path?q=1", EF_URL_PATH, "\xE2\x80\xA6@host/path?\xE2\x80\xA6");
  redacts("", EF_URL_PATH, "");
  /* control characters never reach a log line */
  redacts("https://host/a\x1b[2J.bin", EF_URL_PATH, "https://host/a\\x1b[2J.bin");
}

static void test_url_cut(void **state) {
  (void)state;
  char out[16];
  ef_url_redact("https://user:pw@host.example.com/a.bin?t=1", EF_URL_PATH, out, sizeof out);
  /* cut whole: "https://…@host." is 16 bytes with the terminator */
  assert_true(strlen(out) < sizeof out);
  assert_null(strstr(out, "pw"));
  assert_int_equal(strncmp(out, "https://\xE2\x80\xA6@", 12), 0);
  ef_url_redact("https://x", EF_URL_PATH, out, 0); /* nothing written, no crash */
  ef_url_redact(NULL, EF_URL_PATH, out, sizeof out);
  assert_string_equal(out, "");
}

static void escapes(const char *in, const char *want) {
  char out[256];
  ef_text_escape(in, out, sizeof out);
  if (strcmp(out, want) != 0) fail_msg("'%s' -> '%s', want '%s'", in, out, want);
}

static void test_escape(void **state) {
  (void)state;
  escapes("gw-0042 FG-1.0.4.0.0", "gw-0042 FG-1.0.4.0.0");
  escapes("\x1b]0;pwned\x07\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J");
  escapes("line\nnext\r\tx\x7f", "line\\x0anext\\x0d\\x09x\\x7f");
  escapes("a\\x1b", "a\\\\x1b"); /* a literal backslash cannot pose as an escape */
  escapes("caf\xC3\xA9 \xE2\x80\xA6 \xF0\x9F\x98\x80", "caf\xC3\xA9 \xE2\x80\xA6 \xF0\x9F\x98\x80");
  escapes(
      "\xC2\x9B"
      "31m",
      "\\u009b31m"); /* C1 CSI */
  escapes(
      "abc\xE2\x80\xAE"
      "fdp.exe",
      "abc\\u202efdp.exe");                              /* right-to-left override */
  escapes("\xff\xC3(\xC0\xAF", "\\xff\\xc3(\\xc0\\xaf"); /* not UTF-8, overlong '/' */
  escapes("\xED\xA0\x80", "\\xed\\xa0\\x80");            /* a surrogate */
  escapes("cut \xE2\x82", "cut \\xe2\\x82");
  escapes(NULL, "");
}

static void test_escape_cut(void **state) {
  (void)state;
  char out[8];
  ef_text_escape("abcd\x1b", out, sizeof out);
  assert_string_equal(out, "abcd"); /* "\x1b" does not fit whole */
  ef_text_escape("ab\xE2\x80\xA6\xE2\x80\xA6", out, sizeof out);
  assert_string_equal(out, "ab\xE2\x80\xA6"); /* never half a character */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url_secrets),
      cmocka_unit_test(test_url_cut),
      cmocka_unit_test(test_escape),
      cmocka_unit_test(test_escape_cut),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
