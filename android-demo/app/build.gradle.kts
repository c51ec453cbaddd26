plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.mobilelr.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "org.mobilelr.demo"
        // 26: java.nio.file.Path, which OrtTrainingSession.saveCheckpoint and
        // exportModelForInference take, exists from API 26 on.
        minSdk = 26
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    kotlinOptions {
        jvmTarget = "17"
    }

    // The ORT artifacts are stored uncompressed so they can be copied out quickly.
    androidResources {
        noCompress += listOf("onnx", "ort")
    }
}

dependencies {
    implementation(project(":core"))
    // The exporter pins onnxruntime-training 1.19.2 (the last release of the training packages);
    // the AAR also contains the inference API (OrtSession), so onnxruntime-android is NOT added.
    implementation("com.microsoft.onnxruntime:onnxruntime-training-android:1.19.2")
    implementation("androidx.work:work-runtime-ktx:2.9.1")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.core:core-ktx:1.13.1")
    androidTestImplementation("androidx.test.ext:junit:1.2.1")
    androidTestImplementation("androidx.test:runner:1.6.2")
}
