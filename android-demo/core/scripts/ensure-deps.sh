#!/usr/bin/env bash
# Install what the Kotlin core's JVM tests need, when it is missing (Debian/Ubuntu):
#   kotlin               the compiler (Debian ships 1.3.31; the core is written for 1.3 and later)
#   junit4               JUnit 4 (pulls hamcrest)
#   libandroid-json-java Android's own org.json for the JVM (jar com.android.json.jar), so the
#                        core reads JSON with exactly the classes it gets on a phone
# Quiet when everything is present; non-interactive; needs root (or sudo) to install.
set -euo pipefail

missing=()
command -v kotlinc >/dev/null 2>&1 || missing+=(kotlin)
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
for pkg in junit4 libandroid-json-java; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
exec bash "$(dirname "$0")/../../../.ci/apt-install.sh" kotlin-deps "${missing[@]}"
