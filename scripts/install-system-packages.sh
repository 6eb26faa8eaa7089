#!/usr/bin/env bash
# Install the Debian packages the test services need: nginx (object host), PostgreSQL 15 + PostGIS (pgstac).
# Runs apt only when something is missing and we are root; otherwise says what to install. The fixtures name the
# missing package again when they cannot start.
set -euo pipefail
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
[ -f /usr/share/postgresql/15/extension/postgis.control ] || missing+=(postgresql-15-postgis-3)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "stackcube tests need the Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# the Debian package starts a cluster on port 5432; the tests run their own in a temporary directory
if command -v pg_ctlcluster >/dev/null 2>&1; then pg_ctlcluster 15 main stop >/dev/null 2>&1 || true; fi
echo "installed: ${missing[*]}"
