#!/usr/bin/env bash
# Install Debian packages a test set-up needs: apt-install.sh LABEL PACKAGE...
# Non-interactive, quiet unless it fails; needs root (or passwordless sudo). The callers
# (android-demo/core/scripts/ensure-deps.sh, tests/ensure-chromium.sh) decide what is missing.
set -euo pipefail

label=$1
shift
[ $# -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$label: missing $*; no apt-get here, install them by hand" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else
        echo "$label: missing $*; run as root: apt-get install $*" >&2
        exit 1
    fi
fi
echo "$label: installing $* (apt-get)" >&2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${sudo[@]}" apt-get update -qq \
       && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "$label: apt-get failed" >&2
    exit 1
fi
