// The Android demo: `:app` (the phone app) and `:core` (pure Kotlin, no Android imports;
// the same sources the project's test command compiles with kotlinc and tests on the JVM).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "mobile-lr-demo"
include(":core", ":app")
