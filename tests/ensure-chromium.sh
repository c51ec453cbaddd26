#!/usr/bin/env bash
# Install what the browser test of the HTML report needs, when it is missing (Debian/Ubuntu):
#   chromium   Debian's Chromium; tests/test_report.py renders report.html headless with it
# Quiet when it is present; non-interactive; needs root (or sudo) to install.
set -euo pipefail

for name in chromium chromium-browser google-chrome; do
    command -v "$name" >/dev/null 2>&1 && exit 0
done
exec bash "$(dirname "$0")/../.ci/apt-install.sh" browser-deps chromium
