#!/usr/bin/env bash
# The Kotlin manager's cost per step on the JVM: builds the core (as test.sh does) and
# src/bench/kotlin, then runs org.mobilelr.core.ManagerBenchKt on a profile; prints one JSON
# object (nanoseconds per step; see ManagerBench.kt). Used by `python -m bench.speed`.
#
#   bash android-demo/core/scripts/bench.sh PROFILE.json
set -euo pipefail

PROFILE=${1:?usage: bench.sh PROFILE.json}
CORE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$CORE/build"
mkdir -p "$BUILD"

# shellcheck source=lib.sh
source "$CORE/scripts/lib.sh"

cd "$CORE"
build_jar core "$CORE/src/main/kotlin" "$JSON_JAR"
build_jar bench "$CORE/src/bench/kotlin" "$BUILD/core.jar:$JSON_JAR"
exec java -Xss8m -cp "$BUILD/bench.jar:$BUILD/core.jar:$JSON_JAR:$STDLIB_JAR" \
    org.mobilelr.core.ManagerBenchKt "$PROFILE"
