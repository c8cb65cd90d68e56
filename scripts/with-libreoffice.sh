#!/usr/bin/env bash
# Run a command with LibreOffice Calc available (headless), for the test that opens a report's
# workbook in a real spreadsheet program and saves it back as CSV.
#
#   scripts/with-libreoffice.sh make test
#
# Installs Debian's `libreoffice-calc-nogui` when `soffice` is missing (needs root or sudo), then
# runs the command with STOREMON_REQUIRE_LIBREOFFICE=1 exported: that test then fails, instead of
# skipping, if LibreOffice cannot convert. STOREMON_SOFFICE names the binary.
set -euo pipefail

SOFFICE=${STOREMON_SOFFICE:-$(command -v soffice || echo /usr/bin/soffice)}

if [ ! -x "$SOFFICE" ]; then
  echo "with-libreoffice: installing libreoffice-calc-nogui from Debian's packages" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # Wait for another apt/dpkg run (a colleague's install) instead of failing on its lock.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
    --no-install-recommends libreoffice-calc-nogui >/dev/null
  SOFFICE=/usr/bin/soffice
fi
echo "with-libreoffice: $("$SOFFICE" --version 2>/dev/null | head -1)" >&2

export STOREMON_REQUIRE_LIBREOFFICE=1 STOREMON_SOFFICE="$SOFFICE"
"$@"
