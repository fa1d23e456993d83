#!/usr/bin/env bash
# Installs the Debian packages espfleet needs to build, test and run its demo.
# Sourced by tools/test.sh, tools/quickstart.sh and tools/bench.sh; installs
# only what is missing, with sudo when not root.
espfleet_packages=(
  cmake make gcc pkg-config
  libprotobuf-c-dev protobuf-c-compiler libssl-dev libcmocka-dev
  libpaho-mqtt-dev libcjson-dev libcurl4-openssl-dev
  mosquitto mosquitto-clients nginx-light openssl jq curl valgrind
  libsqlite3-dev sqlite3 python3-jsonschema python3-yaml libmicrohttpd-dev
  chromium
  rabbitmq-server
)

espfleet_install_deps() {
  local missing=() p
  for p in "${espfleet_packages[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # python3 (misbehaving test servers, the benchmark's helper) from any source
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  # node and npm for the dashboard's browser test (tests/browser), from any
  # source: a NodeSource nodejs brings its own npm, which Debian's npm
  # package conflicts with
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "espfleet: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >&2 || return 1
  # Debian starts mosquitto, nginx and rabbitmq-server on install where it
  # can; the tests start their own on loopback. A policy-rc.d that refuses
  # every start (as container images ship) keeps them down during the
  # install, ours only when the machine has none; any service that came up
  # anyway is stopped below.
  local policy=/usr/sbin/policy-rc.d ours=0 rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# espfleet deps.sh: no service starts while packages install\nexit 101\n' |
      "${sudo[@]}" tee "$policy" >/dev/null && "${sudo[@]}" chmod 755 "$policy" && ours=1
  fi
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || rc=1
  [ "$ours" -eq 0 ] || "${sudo[@]}" rm -f "$policy"
  [ "$rc" -eq 0 ] || return 1
  "${sudo[@]}" service mosquitto stop >/dev/null 2>&1 || true
  "${sudo[@]}" service nginx stop >/dev/null 2>&1 || true
  # The tests run RabbitMQ nodes of their own (tests/integration/lib_rabbitmq.sh):
  # a system node that this install brought must neither run nor start at boot.
  case " ${missing[*]} " in
  *" rabbitmq-server "*)
    # (Its init script's stop runs rabbitmqctl, which leaves an epmd behind:
    # only when a node runs.)
    if pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1; then
      "${sudo[@]}" service rabbitmq-server stop >/dev/null 2>&1 || true
    fi
    if [ -d /run/systemd/system ]; then
      "${sudo[@]}" systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true
    else
      "${sudo[@]}" update-rc.d rabbitmq-server disable >/dev/null 2>&1 || true
    fi
    ;;
  esac
}
