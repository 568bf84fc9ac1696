#!/usr/bin/env bash
# Makes sure Debian's Chromium and its WebDriver are installed (the console's
# browser suite drives them): /usr/bin/chromium and /usr/bin/chromedriver.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  /usr/bin/chromium --version 2>/dev/null
  exit 0
fi
echo "installing chromium and chromium-driver" >&2
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
/usr/bin/chromium --version 2>/dev/null
