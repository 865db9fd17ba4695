#!/usr/bin/env bash
# Starts the services the tests talk to, when nothing answers on their loopback port yet:
# PostgreSQL on 5432 (database `test`, user postgres, trusted from 127.0.0.1) and Mosquitto on
# 1883. Installs them with apt-get when they are missing. WEIR_TEST_POSTGRES / WEIR_TEST_MQTT
# naming external servers skip them. Needs root or sudo to install and start; says what it
# does on stderr.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "weir: please install $* (the tests need it)" >&2
    exit 1
  fi
  echo "weir: installing $* (apt-get)" >&2
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wait_port() {
  for _ in $(seq 1 100); do
    if listening "$1"; then return 0; fi
    sleep 0.2
  done
  echo "weir: $2 did not start on 127.0.0.1:$1" >&2
  exit 1
}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

start_postgres() {
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then apt_install postgresql; fi
  local version hba
  version=$(ls /etc/postgresql | sort -V | tail -1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! "${sudo[@]}" grep -q 'weir-test' "$hba"; then
    "${sudo[@]}" sed -i '1i host all all 127.0.0.1/32 trust # weir-test' "$hba"
  fi
  echo "weir: starting PostgreSQL $version" >&2
  "${sudo[@]}" pg_ctlcluster "$version" main start 2>/dev/null || "${sudo[@]}" service postgresql start
  wait_port 5432 PostgreSQL
  if ! as_postgres psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
    as_postgres createdb test
  fi
}

start_mosquitto() {
  if ! command -v mosquitto >/dev/null 2>&1; then apt_install mosquitto; fi
  echo "weir: starting Mosquitto" >&2
  # Without a configuration file Mosquitto 2 listens on loopback and allows anonymous clients.
  "${sudo[@]}" mosquitto -d -p 1883
  wait_port 1883 Mosquitto
}

if [ -z "${WEIR_TEST_POSTGRES:-}" ] && ! listening 5432; then start_postgres; fi
if [ -z "${WEIR_TEST_MQTT:-}" ] && ! listening 1883; then start_mosquitto; fi
