#!/usr/bin/env bash
# Run a command with headless Chromium and its WebDriver available, for the browser tests.
#
#   scripts/with-chromium.sh make test
#   scripts/with-postgres.sh scripts/with-chromium.sh make test     # what CI runs
#
# Installs Debian's `chromium` and `chromium-driver` packages when /usr/bin/chromium or
# /usr/bin/chromedriver is missing (needs root or sudo), then runs the command with
# STOREMON_REQUIRE_BROWSER=1 exported: the browser tests then fail, instead of skipping, if the
# browser cannot be started. STOREMON_CHROMIUM / STOREMON_CHROMEDRIVER name the binaries.
set -euo pipefail

CHROMIUM=${STOREMON_CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${STOREMON_CHROMEDRIVER:-/usr/bin/chromedriver}

if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
  echo "with-chromium: installing chromium and chromium-driver from Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # Wait for another apt/dpkg run (a colleague's install) instead of failing on its lock.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
    --no-install-recommends chromium chromium-driver >/dev/null
fi
echo "with-chromium: $("$CHROMIUM" --version 2>/dev/null | head -1)" >&2

export STOREMON_REQUIRE_BROWSER=1
export STOREMON_CHROMIUM="$CHROMIUM" STOREMON_CHROMEDRIVER="$CHROMEDRIVER"
"$@"
