# Shared by test.sh and bench.sh (sourced, with CORE and BUILD set): the jars the JVM needs and
# a cached kotlinc build of a source tree.

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

