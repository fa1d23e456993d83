#!/usr/bin/env bash
# Installs the Debian packages espfleet needs to build, test and run its demo.
# Sourced by tools/test.sh, tools/quickstart.sh and tools/bench.sh; installs
# only what is missing, with sudo when not root.
espfleet_packages=(
  cmake make gcc pkg-config
  libprotobuf-c-dev protobuf-c-compiler libssl-dev libcmocka-dev
  libpaho-mqtt-dev libcjson-dev libcurl4-openssl-dev
  mosquitto mosquitto-clients nginx-light openssl jq curl valgrind
  libsqlite3-dev sqlite3 python3-jsonschema
)

espfleet_install_deps() {
  local missing=() p
  for p in "${espfleet_packages[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # python3 (misbehaving test servers, the benchmark's helper) from any source
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "espfleet: installing ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >&2 || return 1
  # Debian starts mosquitto and nginx on install where it can; the tests
  # start their own on loopback, so stop any service that came up.
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 || return 1
  "${sudo[@]}" service mosquitto stop >/dev/null 2>&1 || true
  "${sudo[@]}" service nginx stop >/dev/null 2>&1 || true
}
