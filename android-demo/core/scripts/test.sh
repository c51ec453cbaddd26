#!/usr/bin/env bash
# Compile the pure-Kotlin core and run its JUnit 4 tests on the JVM.
#
#   bash android-demo/core/scripts/test.sh PYTHON
#
# 1. Regenerates the golden vectors with the Python reference (PYTHON -m mobile_lr.cli
#    schedule golden) and fails if they differ from the committed
#    src/test/resources/golden.json: the two implementations cannot drift apart silently.
# 2. Compiles src/main/kotlin into build/core.jar and src/test/kotlin into build/tests.jar
#    (each only when its inputs changed: a hash of the sources, the compiler and classpath).
# 3. Runs org.junit.runner.JUnitCore on every *Test class; the output ends with JUnit's
#    summary and the exit status is non-zero when a test fails.
set -euo pipefail

PYTHON=${1:?usage: test.sh PYTHON}
CORE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO=$(cd "$CORE/../.." && pwd)
BUILD="$CORE/build"
GOLDEN="$CORE/src/test/resources/golden.json"
mkdir -p "$BUILD"

# shellcheck source=lib.sh
source "$CORE/scripts/lib.sh"

# ---------------------------------------------------------------- 1. golden vectors
fresh=$(mktemp "${TMPDIR:-/tmp}/golden.XXXXXX.json")
trap 'rm -f "$fresh"' EXIT
echo "kotlin-test: regenerating the golden vectors with the Python reference" >&2
(cd "$REPO" && "$PYTHON" -m mobile_lr.cli schedule golden --out "$fresh") >/dev/null
if [ ! -f "$GOLDEN" ]; then
    echo "kotlin-test: FAIL: $GOLDEN is missing; create it with:" >&2
    echo "  $PYTHON -m mobile_lr.cli schedule golden --out android-demo/core/src/test/resources/golden.json" >&2
    exit 1
fi
if ! cmp -s "$fresh" "$GOLDEN"; then
    echo "kotlin-test: FAIL: the committed golden vectors differ from what the Python code gives now." >&2
    diff <(head -c 2000000 "$GOLDEN") <(head -c 2000000 "$fresh") | head -n 20 >&2 || true
    echo "If the Python change is intended, regenerate them, make the Kotlin core agree, and commit both:" >&2
    echo "  $PYTHON -m mobile_lr.cli schedule golden --out android-demo/core/src/test/resources/golden.json" >&2
    exit 1
fi

# ---------------------------------------------------------------- 2. compile
cd "$CORE"
build_jar core "$CORE/src/main/kotlin" "$JSON_JAR"
build_jar tests "$CORE/src/test/kotlin" "$BUILD/core.jar:$JSON_JAR:$JUNIT_JAR:$HAMCREST_JAR"

# ---------------------------------------------------------------- 3. run
classes=$(jar tf "$BUILD/tests.jar" | grep -E 'Test\.class$' | grep -v '\$' \
          | sed -e 's/\.class$//' -e 's#/#.#g' | LC_ALL=C sort)
if [ -z "$classes" ]; then
    echo "kotlin-test: FAIL: no test classes found" >&2
    exit 1
fi
cp="$BUILD/tests.jar:$BUILD/core.jar:$CORE/src/test/resources:$JSON_JAR:$JUNIT_JAR:$HAMCREST_JAR:$STDLIB_JAR"
# shellcheck disable=SC2086
exec java -Xss8m -cp "$cp" org.junit.runner.JUnitCore $classes
