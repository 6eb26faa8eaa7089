#!/usr/bin/env bash
# Install what the test services need: the Debian packages nginx (object host) and PostgreSQL 15 + PostGIS
# (pgstac), and the npm package azurite (Azure Blob emulator, locked in scripts/azurite/) into .azurite/. Runs apt
# only when something is missing and we are root; otherwise says what to install. The fixtures name the missing
# package again when they cannot start.
set -euo pipefail
locked=$(sed -n 's/.*"azurite": "\([^"]*\)".*/\1/p' scripts/azurite/package.json)
azurite_runs() { [ "$(.azurite/node_modules/.bin/azurite-blob --version 2>/dev/null)" = "$locked" ]; }
if ! azurite_runs; then
  if command -v npm >/dev/null 2>&1; then
    rm -rf .azurite  # whatever is there does not run, or is not the locked version
    mkdir -p .azurite
    cp scripts/azurite/package.json scripts/azurite/package-lock.json .azurite/  # the locked version
    (cd .azurite && npm ci --no-audit --no-fund --silent >/dev/null 2>&1) || true
    if azurite_runs; then
      echo "installed: azurite (npm, .azurite/)"
    else
      echo "azurite could not be installed with npm into .azurite/ (the Azure tests will say so)" >&2
    fi
  else
    echo "stackcube tests need Node's npm to install azurite (the Azure Blob emulator)" >&2
  fi
fi
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
