plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.edgeq.sample"
    compileSdk = 35
    defaultConfig {
        applicationId = "dev.edgeq.sample"
        minSdk = 26
        targetSdk = 35
        ndk { abiFilters += listOf("arm64-v8a") }
    }
    // Android 15+ devices may use 16 KB pages: keep native libraries uncompressed and aligned.
    packaging { jniLibs { useLegacyPackaging = false } }
}

dependencies {
    // Match the versions edgeq exported with (edgeq.json -> dependencies).
    implementation("com.microsoft.onnxruntime:onnxruntime-android:1.31.1")
    implementation("org.pytorch:executorch-android:1.5.1")
}
