#!/usr/bin/env bash
# Debian packages the tests need and pip cannot provide: the PostgreSQL server binaries
# (devstack runs a real cluster), Redis (the Celery broker of `devstack up --executor celery`),
# headless Chromium with its WebDriver (the trigger form test), and OSMesa, the software OpenGL
# that MuJoCo envs render episode videos with when there is no display (MUJOCO_GL=osmesa,
# which rl_core.evaluation.video chooses when MUJOCO_GL is unset). Idempotent and quick when everything
# is present: `apt-get update` runs only when something is missing.
# Needs root to install (CI and the dev machines run as root); reads no stdin; prints one line
# per package installed.
set -euo pipefail

# devstack looks for pg_ctl on PATH, then in Debian's /usr/lib/postgresql/<major>/bin.
has_postgres_server() {
  local dir
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    return 0
  fi
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ] && return 0
  done
  return 1
}

# PyOpenGL finds OSMesa by its soname, in Debian's multiarch library folder.
has_osmesa() {
  local lib
  for lib in /usr/lib/*/libOSMesa.so.* /usr/lib/libOSMesa.so.*; do
    [ -e "$lib" ] && return 0
  done
  return 1
}

missing=()
has_postgres_server || missing+=(postgresql)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
has_osmesa || missing+=(libosmesa6)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing ${missing[*]}; run this script as root to install them" >&2
  exit 1
fi

log=$(mktemp)
own_policy=""
cleanup() {
  rm -f "$log" ${own_policy:+"$own_policy"}
}
trap cleanup EXIT

# Debian's postgresql package would start its default cluster on port 5432, redis-server its
# default instance on 6379; devstack runs its own. Unless the machine already has a policy-rc.d,
# one forbids starting services while we install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  own_policy=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' >"$own_policy"
  chmod +x "$own_policy"
fi

# apt's chatter (debconf notices included) is shown only when a step fails.
quietly() {
  if ! DEBIAN_FRONTEND=noninteractive "$@" </dev/null >"$log" 2>&1; then
    cat "$log" >&2
    echo "system-deps: failed: $*" >&2
    exit 1
  fi
}

quietly apt-get update
for package in "${missing[@]}"; do
  quietly apt-get install -y --no-install-recommends "$package"
  echo "system-deps: installed $package"
done
