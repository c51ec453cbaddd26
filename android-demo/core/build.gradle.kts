// The platform-free core as a plain Kotlin/JVM library (the app depends on it). On a phone
// org.json comes from the platform, so it is compileOnly here; the JVM tests use the same
// Android implementation (com.vaadin.external.google:android-json is AOSP's org.json packaged
// for the JVM, like Debian's libandroid-json-java used by the project's test command).
// The standard layout (src/main/kotlin, src/test/kotlin, src/test/resources/golden.json) is
// the one scripts/test.sh compiles, so `./gradlew :core:test` runs the same golden tests.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    compileOnly("com.vaadin.external.google:android-json:0.0.20131108.vaadin1")
    testImplementation("com.vaadin.external.google:android-json:0.0.20131108.vaadin1")
    testImplementation("junit:junit:4.13.2")
}
