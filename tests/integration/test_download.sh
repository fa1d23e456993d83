#!/usr/bin/env bash
# The download channel against real servers on loopback: nginx over HTTPS
# (and plain HTTP) with a throwaway CA, plus a small python3 server for the
# misbehaviours nginx will not produce (stalls, short bodies, chunked bodies,
# redirects to other schemes, Range ignored). Drives bin/fetch, which prints
# one line: "ok <bytes> <sha256>" or "error <code> <detail>", the latter
# ending in " [retryable]" when the download module says the failure may pass
# (5xx, network, stalls: yes; 4xx, TLS set-up, refused redirects: no).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=${ESPFLEET_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
bin=${ESPFLEET_BIN_DIR:-$src/build/bin}
# shellcheck source=lib_nginx.sh
. "$src/tests/integration/lib_nginx.sh"

for tool in nginx openssl python3 sha256sum timeout; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
[ -x "$bin/fetch" ] || { echo "FAIL: $bin/fetch not built"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espfleet-download.XXXXXX")
py_pid=""
cleanup() {
  nginx_stop
  if [ -n "$py_pid" ]; then
    kill "$py_pid" 2>/dev/null
    wait "$py_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failures=0
pass() { echo "PASS: $1"; }
fail() {
  echo "FAIL: $1"
  failures=$((failures + 1))
}

# expect NAME REGEX [MAX_SECONDS] -- FETCH_ARGS...: runs fetch (bounded by a
# timeout) and checks its line against REGEX, its exit status against the
# line's first word, and optionally how long it took.
expect() {
  local name=$1 regex=$2 max_s="" out status start took
  shift 2
  if [ "$1" != "--" ]; then
    max_s=$1
    shift
  fi
  shift
  start=$SECONDS
  out=$(timeout 60 "$bin/fetch" "$@" 2>"$tmp/fetch.err")
  status=$?
  took=$((SECONDS - start))
  if ! [[ $out =~ $regex ]]; then
    fail "$name: got '$out' (exit $status), want /$regex/"
    sed 's/^/  stderr: /' "$tmp/fetch.err"
  elif [[ $out == ok\ * && $status != 0 ]] || [[ $out == error\ * && $status != 1 ]]; then
    fail "$name: '$out' with exit status $status"
  elif [ -n "$max_s" ] && ((took > max_s)); then
    fail "$name: took ${took}s, more than ${max_s}s"
  else
    pass "$name ($out)"
  fi
}

# ---- servers ----
mkdir -p "$tmp/www"
head -c $((3 * 1024 * 1024 + 12345)) /dev/urandom >"$tmp/www/image.bin"
size=$(stat -c %s "$tmp/www/image.bin")
sum=$(sha256sum "$tmp/www/image.bin" | cut -d' ' -f1)
: >"$tmp/www/empty.bin"

# Misbehaving plain-HTTP server; prints its port on its first line.
cat >"$tmp/bad_server.py" <<'EOF'
import http.server, socketserver, sys, time

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def head(self, code, length=None, extra=()):
        self.send_response(code)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()

    def do_GET(self):
        if self.path == "/stall":  # some bytes, then silence
            self.head(200, 1000000)
            self.wfile.write(b"x" * 100)
            self.wfile.flush()
            time.sleep(60)
        elif self.path == "/silent":  # headers, then silence
            self.head(200, 1000000)
            self.wfile.flush()
            time.sleep(60)
        elif self.path == "/short":  # announces more than it sends
            self.head(200, 100000)
            self.wfile.write(b"y" * 5000)
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/chunked":  # no Content-Length: size known only at the end
            self.head(200, None, [("Transfer-Encoding", "chunked")])
            for _ in range(3):
                self.wfile.write(b"%x\r\n%s\r\n" % (100000, b"z" * 100000))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/error500":  # error status, empty body
            self.head(500, 0)
        elif self.path == "/to-ftp":
            self.head(302, 0, [("Location", "ftp://127.0.0.1/image.bin")])
        else:
            self.head(404, 0)

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

srv = Server(("127.0.0.1", 0), Handler)
print(srv.server_address[1], flush=True)
srv.serve_forever()
EOF
python3 "$tmp/bad_server.py" >"$tmp/bad_server.port" 2>"$tmp/bad_server.err" &
py_pid=$!
for _ in $(seq 100); do
  [ -s "$tmp/bad_server.port" ] && break
  sleep 0.05
done
bad_port=$(head -n1 "$tmp/bad_server.port")
[ -n "$bad_port" ] || { echo "FAIL: python test server did not start"; cat "$tmp/bad_server.err"; exit 1; }
bad="http://127.0.0.1:$bad_port"

nginx_make_certs "$tmp/pki" "espfleet test" || exit 1
nginx_make_certs "$tmp/other-pki" "unrelated" || exit 1
# /to-http: an https URL that redirects to plain http (a downgrade).
nginx_start --dir "$tmp/nginx" --root "$tmp/www" --certs "$tmp/pki" --http \
  --server-conf "location = /moved { return 302 /image.bin; }
                 location = /to-http { return 302 http://127.0.0.1:$bad_port/chunked; }" || exit 1
https="https://127.0.0.1:$NGINX_PORT"
ca=(--ca "$tmp/pki/ca.pem")
closed_port=$(free_port)

# ---- happy paths ----
expect "https download matches sha256sum" "^ok $size $sum\$" -- "$https/image.bin" "${ca[@]}"
expect "https via the name localhost" "^ok $size $sum\$" -- "https://localhost:$NGINX_PORT/image.bin" "${ca[@]}"
expect "tiny pipe keeps the bytes in order" "^ok $size $sum\$" -- "$https/image.bin" "${ca[@]}" --pipe-size 1000
expect "redirect is followed" "^ok $size $sum\$" -- "$https/moved" "${ca[@]}"
expect "max-bytes equal to the size is fine" "^ok $size $sum\$" -- "$https/image.bin" "${ca[@]}" --max-bytes "$size"
expect "empty file" "^ok 0 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\$" -- \
  "$https/empty.bin" "${ca[@]}"
expect "plain http allowed with --allow-http" "^ok $size $sum\$" -- \
  "http://127.0.0.1:$NGINX_HTTP_PORT/image.bin" --allow-http
expect "chunked body" "^ok 300000 " -- "$bad/chunked" --allow-http
tail_sum=$(tail -c +1001 "$tmp/www/image.bin" | sha256sum | cut -d' ' -f1)
expect "resume at an offset (HTTP Range)" "^ok $((size - 1000)) $tail_sum\$" -- "$https/image.bin" "${ca[@]}" --offset 1000

# ---- refusals and failures ----
expect "404" "^error download_failed HTTP 404 from https://127.0.0.1:$NGINX_PORT\$" -- "$https/missing.bin" "${ca[@]}"
expect "500 with an empty body" "^error download_failed HTTP 500 .*\[retryable\]\$" -- "$bad/error500" --allow-http
expect "closed port" "^error download_failed .*(onnect|refused).*\[retryable\]\$" 10 -- \
  "https://127.0.0.1:$closed_port/image.bin" "${ca[@]}"
expect "unknown CA" "^error download_failed TLS: .*certificate.*[^]]\$" -- "$https/image.bin" --ca "$tmp/other-pki/ca.pem"
expect "Range ignored by the server" \
  "^error download_no_range server does not serve byte ranges \(.*from $bad\) \[retryable\]\$" -- \
  "$bad/chunked" --allow-http --offset 1000
expect "plain http refused by default" "^error download_failed plain http is not allowed\$" -- \
  "http://127.0.0.1:$NGINX_HTTP_PORT/image.bin"
expect "https to http redirect refused" "^error download_failed redirect refused: .*http.*[^]]\$" -- "$https/to-http" "${ca[@]}"
expect "redirect to ftp refused" "^error download_failed redirect refused: .*ftp.*[^]]\$" -- "$bad/to-ftp" --allow-http
expect "ftp URL refused" "^error download_failed URL scheme 'ftp' is not supported" -- "ftp://127.0.0.1/x"
expect "not a URL" "^error download_failed not a valid URL" -- "no scheme here"
expect "more than max-bytes (Content-Length)" "^error size_mismatch server sent more than 1000000 bytes" -- \
  "$https/image.bin" "${ca[@]}" --max-bytes 1000000
expect "more than max-bytes (chunked)" "^error size_mismatch server sent more than 250000 bytes\$" -- \
  "$bad/chunked" --allow-http --max-bytes 250000
expect "body shorter than Content-Length" "^error download_failed .*(transfer closed|Partial|remaining).*\[retryable\]\$" -- \
  "$bad/short" --allow-http
expect "stall after some bytes" "^error download_failed stalled: no data for 1 s .*\[retryable\]\$" 20 -- \
  "$bad/stall" --allow-http --stall 1
expect "stall before the first byte" "^error download_failed stalled: no data for 1 s .*after 0 bytes" 20 -- "$bad/silent" --allow-http --stall 1
expect "reader abort stops the download" "^error canceled " 10 -- "$https/image.bin" "${ca[@]}" --abort-after 100000 \
  --pipe-size 4096

# The detail must not leak secrets from the URL (credentials, query tokens).
out=$(timeout 30 "$bin/fetch" "https://user:s3cret@127.0.0.1:$NGINX_PORT/missing.bin?token=t0ken" "${ca[@]}" 2>&1)
if [[ $out == *s3cret* || $out == *t0ken* ]]; then
  fail "URL secrets leaked: $out"
else
  pass "URL secrets kept out of the detail ($out)"
fi

# A server whose certificate (from the trusted CA) is for another host:
# refused as a TLS failure, and not worth another try (finding 8).
nginx_stop
nginx_make_server_cert "$tmp/pki" wrong-name "DNS:fw.example.com" || exit 1
nginx_start --dir "$tmp/nginx-wrong" --root "$tmp/www" --certs "$tmp/pki" --cert wrong-name || exit 1
expect "certificate for another host name" \
  "^error download_failed TLS: .*(subject name|host ?name|does not match).*127\.0\.0\.1.*[^]]\$" -- \
  "https://127.0.0.1:$NGINX_PORT/image.bin" "${ca[@]}"
expect "certificate for another host name (localhost)" "^error download_failed TLS: .*localhost.*[^]]\$" -- \
  "https://localhost:$NGINX_PORT/image.bin" "${ca[@]}"

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all download checks passed"
