#!/usr/bin/env bash
# Run a command with newman (Postman's command-line runner) installed, for tests/test_postman.py.
#
#   scripts/with-newman.sh make test
#   scripts/with-postgres.sh scripts/with-chromium.sh scripts/with-newman.sh make test   # what CI runs
#
# Installs the newman pinned in tests/postman/package-lock.json into tests/postman/node_modules
# with `npm ci` (again whenever the lock file changes), installing Debian's nodejs and npm first
# when npm is missing (needs root or sudo). Then runs the command with STOREMON_NEWMAN naming the
# binary and STOREMON_REQUIRE_NEWMAN=1 exported: the collection test then fails, instead of
# skipping, when newman cannot run.
set -euo pipefail

DIR="$(cd "$(dirname "$0")/.." && pwd)/tests/postman"

if ! command -v npm >/dev/null 2>&1; then
  echo "with-newman: installing nodejs and npm from Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 nodejs npm >/dev/null
fi
if [ ! -x "$DIR/node_modules/.bin/newman" ] || ! cmp -s "$DIR/package-lock.json" "$DIR/node_modules/.storemon-lock.json"; then
  echo "with-newman: npm ci in tests/postman" >&2
  (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$DIR/package-lock.json" "$DIR/node_modules/.storemon-lock.json"
fi
echo "with-newman: newman $("$DIR/node_modules/.bin/newman" --version), node $(node --version)" >&2

export STOREMON_REQUIRE_NEWMAN=1 STOREMON_NEWMAN="$DIR/node_modules/.bin/newman"
"$@"
