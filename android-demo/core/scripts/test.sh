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

# kotlinc 1.3.31 runs on Java 17; its launcher's default heap (256 MB) is tight for the
# test sources, and it passes -noverify, which Java 13+ only warns about (filtered below).
export JAVA_OPTS="${KOTLINC_JAVA_OPTS:--Xmx1024m -Xms64m -Xss8m}"

jar_of() {  # jar_of PACKAGE FILE-NAME: the jar a Debian package installed (env override first)
    local path
    path=$(dpkg -L "$1" 2>/dev/null | grep -E "/$2\$" | head -n 1 || true)
    if [ -z "$path" ] || [ ! -f "$path" ]; then
        echo "kotlin-test: $2 of package $1 not found; run: make kotlin-deps" >&2
        exit 1
    fi
    echo "$path"
}
JSON_JAR=${ANDROID_JSON_JAR:-$(jar_of libandroid-json-java com.android.json.jar)}
JUNIT_JAR=${JUNIT_JAR:-$(jar_of junit4 junit4.jar)}
HAMCREST_JAR=${HAMCREST_JAR:-$(jar_of libhamcrest-java hamcrest.jar)}
STDLIB_JAR=${KOTLIN_STDLIB_JAR:-$(jar_of kotlin kotlin-stdlib.jar)}

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
kotlinc_quiet() {  # kotlinc without the JVM's "-noverify is deprecated" warning
    local status=0
    kotlinc "$@" 2> >(grep -v -E 'Options -Xverify:none and -noverify were deprecated' >&2) \
        || status=$?
    wait
    return $status
}

inputs_hash() {  # hash of a source tree + compiler + classpath: rebuild exactly when it changes
    local dir=$1; shift
    {
        kotlinc -version 2>&1 | grep -o 'kotlinc-jvm [^ ]*' || true
        printf '%s\n' "$@"
        (cd "$dir" && find . -type f -name '*.kt' | LC_ALL=C sort | xargs -r sha256sum)
    } | sha256sum | cut -d' ' -f1
}

build_jar() {  # build_jar NAME SRC-DIR CLASSPATH
    local name=$1 src=$2 cp=$3
    local out="$BUILD/$name.jar" stamp="$BUILD/$name.stamp" hash
    hash=$(inputs_hash "$src" "$cp" "$(stat -c %Y "${cp%%:*}" 2>/dev/null || true)")
    if [ -f "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
        echo "kotlin-test: build/$name.jar is up to date" >&2
        return 0
    fi
    echo "kotlin-test: compiling $name ($(find "$src" -name '*.kt' | wc -l) files)" >&2
    rm -f "$out" "$stamp"
    kotlinc_quiet -jvm-target 1.8 -no-reflect -nowarn -cp "$cp" -d "$BUILD/$name.partial.jar" "$src"
    mv "$BUILD/$name.partial.jar" "$out"
    echo "$hash" >"$stamp"
}

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
