#!/usr/bin/env bash
# Install what the browser test of the HTML report needs, when it is missing (Debian/Ubuntu):
#   chromium   Debian's Chromium; tests/test_report.py renders report.html headless with it
# Quiet when it is present; non-interactive; needs root (or sudo) to install.
set -euo pipefail

for name in chromium chromium-browser google-chrome; do
    command -v "$name" >/dev/null 2>&1 && exit 0
done
if ! command -v apt-get >/dev/null 2>&1; then
    echo "browser-deps: chromium is missing and there is no apt-get here; install it by hand" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
        echo "browser-deps: chromium is missing; run as root: apt-get install chromium" >&2
        exit 1
    fi
fi
echo "browser-deps: installing chromium (apt-get)" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${sudo[@]}" apt-get update -qq \
       && "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "browser-deps: apt-get failed" >&2
    exit 1
fi
