# shellcheck shell=bash
# Throwaway HTTPS server for tests, the quickstart and the benchmark:
# a private CA and server certificate made with the openssl CLI, and nginx
# running as the current user on free loopback ports, with every file it
# touches (config, logs, temp folders, pid) inside a folder of the caller's.
#
# Source it:   . "$ESPFLEET_SOURCE_DIR/tests/integration/lib_nginx.sh"
# Typical use:
#   nginx_make_certs "$tmp/pki"
#   nginx_start --dir "$tmp/nginx" --root "$tmp/www" --certs "$tmp/pki" [--rate 409600] [--http]
#   curl --cacert "$tmp/pki/ca.pem" "https://127.0.0.1:$NGINX_PORT/file"
#   nginx_stop
# One nginx per shell at a time (the NGINX_* variables describe it). Call
# nginx_start in the shell itself, not in $(...): nginx_stop waits for it.

. "$(dirname "${BASH_SOURCE[0]}")/lib_net.sh"

# nginx_make_certs DIR [NAME]: creates in DIR a throwaway certificate
# authority (ca.pem, ca.key) and a server certificate signed by it
# (server.pem, server.key) valid for IP 127.0.0.1 and DNS localhost, for 30
# days. NAME (default "espfleet test") goes into the subject names, so two
# CAs made by two calls are distinct. EC P-256 keys: quick to make, quick TLS.
# Does not depend on the system's openssl.cnf.
nginx_make_certs() {
  local dir=$1 name=${2:-espfleet test}
  mkdir -p "$dir" || return 1
  cat >"$dir/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  (
    set -e
    cd "$dir"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -config openssl.cnf -new -x509 -key ca.key -days 30 \
      -subj "/CN=$name CA" -extensions ca_ext -out ca.pem 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out server.key 2>/dev/null
    openssl req -config openssl.cnf -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile openssl.cnf -extensions server_ext -out server.pem 2>/dev/null
    rm -f server.csr ca.srl
    chmod 600 ca.key server.key
  ) || { echo "nginx_make_certs: openssl failed in $dir" >&2; return 1; }
}

# nginx_make_server_cert PKI NAME SAN: one more server certificate from
# PKI's CA (made by nginx_make_certs), PKI/NAME.pem and PKI/NAME.key, valid
# for SAN (openssl's subjectAltName syntax, e.g. "DNS:fw.example.com"):
# nginx_start --cert NAME serves it, e.g. a certificate for another host.
nginx_make_server_cert() {
  local dir=$1 name=$2 san=$3
  (
    set -e
    cd "$dir"
    sed "s/^subjectAltName = .*/subjectAltName = $san/" openssl.cnf >"$name.cnf"
    openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
    openssl req -config "$name.cnf" -new -key "$name.key" -subj "/CN=${san#*:}" -out "$name.csr" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile "$name.cnf" -extensions server_ext -out "$name.pem" 2>/dev/null
    rm -f "$name.csr" "$name.cnf" ca.srl
    chmod 600 "$name.key"
  ) || { echo "nginx_make_server_cert: openssl failed in $dir" >&2; return 1; }
}

# nginx_start --dir DIR --root WWW --certs PKI [--rate BYTES_PER_S] [--http]
#             [--server-conf TEXT] [--cert NAME]
# Starts nginx in the background serving folder WWW over HTTPS on a free
# loopback port, with the certificate from nginx_make_certs PKI (or PKI/NAME.pem
# from nginx_make_server_cert with --cert NAME). DIR (created)
# receives nginx.conf, error.log, access.log and temp folders.
#   --rate N         limit each response to N bytes/s (nginx limit_rate)
#   --http           also serve WWW over plain HTTP on another free port
#   --server-conf T  extra directives put into each server block
#                    (e.g. 'location = /old { return 302 /new; }')
# Sets NGINX_PORT (https), NGINX_HTTP_PORT (or empty), NGINX_PID, NGINX_DIR.
# Returns 1 (printing the error log) when nginx does not come up in 5 s.
nginx_start() {
  local dir="" root="" certs="" rate="" http=0 extra="" _
  NGINX_CERT=server
  while (($#)); do
    case "$1" in
      --dir) dir=$2; shift 2 ;;
      --root) root=$2; shift 2 ;;
      --certs) certs=$2; shift 2 ;;
      --rate) rate=$2; shift 2 ;;
      --http) http=1; shift ;;
      --server-conf) extra=$2; shift 2 ;;
      --cert) NGINX_CERT=$2; shift 2 ;;
      *) echo "nginx_start: unknown argument $1" >&2; return 2 ;;
    esac
  done
  if [ -z "$dir" ] || [ -z "$root" ] || [ -z "$certs" ]; then
    echo "nginx_start: --dir, --root and --certs are required" >&2
    return 2
  fi
  command -v nginx >/dev/null || { echo "nginx_start: nginx is not installed" >&2; return 1; }
  dir=$(mkdir -p "$dir" && cd "$dir" && pwd) || return 1
  root=$(cd "$root" && pwd) || return 1
  certs=$(cd "$certs" && pwd) || return 1
  NGINX_DIR=$dir # for callers: where the logs are
  export NGINX_DIR

  # A port found free may be taken before nginx binds it: try a few times.
  for _ in 1 2 3; do
    NGINX_PORT=$(free_port)
    NGINX_HTTP_PORT=""
    if [ "$http" = 1 ]; then
      NGINX_HTTP_PORT=$(free_port)
    fi
    _nginx_write_conf "$dir" "$root" "$certs" "$rate" "$extra" || return 1
    : >"$dir/error.log"
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >>"$dir/stderr.log" 2>&1 &
    NGINX_PID=$!
    if _nginx_wait_ready; then
      return 0
    fi
    nginx_stop
    if ! grep -q "Address already in use" "$dir/error.log" "$dir/stderr.log" 2>/dev/null; then
      break
    fi
  done
  echo "nginx_start: nginx did not start; its log:" >&2
  cat "$dir/error.log" "$dir/stderr.log" >&2 2>/dev/null
  return 1
}

# nginx_restart: starts nginx again with the configuration (and port) of the
# last nginx_start, e.g. after nginx_stop to simulate a web server outage.
nginx_restart() {
  [ -n "${NGINX_DIR:-}" ] || { echo "nginx_restart: no earlier nginx_start" >&2; return 1; }
  nginx_stop
  nginx -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/error.log" >>"$NGINX_DIR/stderr.log" 2>&1 &
  NGINX_PID=$!
  _nginx_wait_ready
}

# _nginx_alive PID: true while PID runs (an exited child stays a zombie
# until waited for, and kill -0 still succeeds on a zombie).
_nginx_alive() {
  local state
  state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# _nginx_wait_ready: true once NGINX_PID is alive and both ports accept.
_nginx_wait_ready() {
  local deadline=$((SECONDS + 5))
  while ((SECONDS < deadline)); do
    _nginx_alive "$NGINX_PID" || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_PORT") 2>/dev/null &&
      { [ -z "$NGINX_HTTP_PORT" ] || (exec 3<>"/dev/tcp/127.0.0.1/$NGINX_HTTP_PORT") 2>/dev/null; }; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

# _nginx_write_conf DIR ROOT CERTS RATE EXTRA: writes DIR/nginx.conf for the
# ports in NGINX_PORT / NGINX_HTTP_PORT.
_nginx_write_conf() {
  local dir=$1 root=$2 certs=$3 rate=$4 extra=$5 user_line="" temp_paths="" m common
  # nginx only switches user when run as root; naming root keeps it able to
  # read the caller's private temp folders.
  if [ "$(id -u)" = 0 ]; then
    user_line="user root;"
  fi
  mkdir -p "$dir/tmp" || return 1
  # nginx creates every temp folder its modules know at start-up, by default
  # under /var/lib/nginx: point those of the modules built in here.
  temp_paths="client_body_temp_path $dir/tmp/body;"
  for m in proxy fastcgi uwsgi scgi; do
    if ! nginx -V 2>&1 | grep -q -- "--without-http_${m}_module"; then
      temp_paths="$temp_paths ${m}_temp_path $dir/tmp/$m;"
    fi
  done
  common="root $root; location / { } $extra"
  if [ -n "$rate" ]; then
    common="limit_rate $rate; $common"
  fi
  {
    echo "$user_line"
    # One process in the foreground of its background job: the pid we hold
    # is the server, and killing it leaves nothing behind.
    echo "daemon off;"
    echo "master_process off;"
    echo "pid $dir/nginx.pid;"
    echo "error_log $dir/error.log warn;"
    echo "events { worker_connections 256; }"
    echo "http {"
    echo "  access_log $dir/access.log;"
    echo "  $temp_paths"
    echo "  default_type application/octet-stream;"
    echo "  sendfile on;"
    echo "  tcp_nopush on;"
    echo "  keepalive_timeout 5s;"
    echo "  server {"
    echo "    listen 127.0.0.1:$NGINX_PORT ssl;"
    echo "    server_name localhost;"
    echo "    ssl_certificate $certs/${NGINX_CERT:-server}.pem;"
    echo "    ssl_certificate_key $certs/${NGINX_CERT:-server}.key;"
    echo "    ssl_protocols TLSv1.2 TLSv1.3;"
    echo "    $common"
    echo "  }"
    if [ -n "$NGINX_HTTP_PORT" ]; then
      echo "  server {"
      echo "    listen 127.0.0.1:$NGINX_HTTP_PORT;"
      echo "    server_name localhost;"
      echo "    $common"
      echo "  }"
    fi
    echo "}"
  } >"$dir/nginx.conf"
}

# nginx_stop: stops the nginx started by nginx_start (TERM, then KILL after
# 5 s) and waits for it. Safe to call twice or when none is running.
nginx_stop() {
  local pid=${NGINX_PID:-} deadline
  [ -n "$pid" ] || return 0
  NGINX_PID=""
  kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  deadline=$((SECONDS + 5))
  while _nginx_alive "$pid" && ((SECONDS < deadline)); do
    sleep 0.05
  done
  # nginx may be gone already: neither of these may end a `set -e` caller
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 0
}
