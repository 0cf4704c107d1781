#!/usr/bin/env bash
# Makes sure Debian's headless-capable Chromium is at /usr/bin/chromium, for
# the browser test (test/browser) and for screenshots. Installs the `chromium`
# package with apt-get when it is missing; never downloads a browser build of
# its own (playwright-core only drives the one installed here).
set -euo pipefail

CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser.sh: $CHROMIUM is missing and there is no apt-get to install it" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "browser.sh: installing chromium needs root (or sudo)" >&2
    exit 1
  fi
fi
# One install at a time: the browser suites start side by side (npm test runs two files
# at once), and a second apt-get would fail on dpkg's lock rather than wait for the first.
exec 9>"${TMPDIR:-/tmp}/chatd-browser-install.lock"
flock 9
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
echo "browser.sh: installing Debian's chromium (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when chromium is not known yet (a fresh machine).
if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  $SUDO apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
fi
$SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends chromium fonts-dejavu-core >&2
if [ ! -x "$CHROMIUM" ]; then
  echo "browser.sh: apt-get finished but $CHROMIUM is still missing" >&2
  exit 1
fi
"$CHROMIUM" --version >&2 || true
