package org.mobilelr.demo

import android.content.Context
import org.mobilelr.core.BundleError
import org.mobilelr.core.BundleVerifier
import org.mobilelr.core.DeviceProfile
import org.mobilelr.core.Json
import org.mobilelr.core.Policy
import org.mobilelr.core.Schedule
import org.mobilelr.core.ScheduleSpec
import org.mobilelr.core.VerifiedBundle
import java.io.File
import java.io.IOException

/**
 * The exported bundle, copied out of the APK's assets and verified before use.
 *
 * ONNX Runtime opens artifacts by file path only, so (as in the official ORT Personalize
 * sample's FileUtil) the assets are copied to app storage first. Unlike the sample, nothing
 * is handed to ORT before [BundleVerifier.verify] has checked every file's SHA-256 and size
 * against `manifest.json`: a truncated or tampered asset is refused with the file's name.
 * The copy goes to a staging directory that replaces the installed one only when complete,
 * and the installed bundle is verified again every time it is opened.
 */
class BundleStore(private val context: Context) {
    private val root = File(context.filesDir, "bundle")

    /** The verified bundle (installed from the assets on first use or after an app update). */
    fun open(): VerifiedBundle = synchronized(LOCK) {  // the worker and the screen may both open it
        val assetsManifest = readAsset("$ASSET_DIR/${BundleVerifier.MANIFEST}")
        val installed = File(root, BundleVerifier.MANIFEST)
        if (!installed.isFile || !installed.readBytes().contentEquals(assetsManifest)) install()
        try {
            BundleVerifier.verify(root)
        } catch (e: BundleError) {
            // The installed copy went bad under an unchanged manifest (a corrupted file): install
            // the APK's copy again instead of refusing forever. A bad APK copy is refused by install().
            install()
            BundleVerifier.verify(root)
        }
    }

    private fun install() {
        val staging = File(context.filesDir, "bundle.staging")
        staging.deleteRecursively()
        if (!staging.mkdirs()) throw IOException("cannot create ${staging.path}")
        val names = context.assets.list(ASSET_DIR) ?: emptyArray()
        if (names.isEmpty()) {
            throw IOException("no bundle in the APK assets: run android-demo/scripts/copy_bundle.sh and rebuild")
        }
        for (name in names) {
            context.assets.open("$ASSET_DIR/$name").use { input ->
                File(staging, name).outputStream().use { input.copyTo(it) }
            }
        }
        BundleVerifier.verify(staging)  // refuse before replacing what works
        val old = File(context.filesDir, "bundle.old")
        old.deleteRecursively()
        if (root.exists() && !root.renameTo(old)) throw IOException("cannot move the old bundle away")
        if (!staging.renameTo(root)) throw IOException("cannot install the bundle")
        old.deleteRecursively()
    }

    private fun readAsset(path: String): ByteArray = context.assets.open(path).use { it.readBytes() }

    /** The schedule spec exported with the model. */
    fun schedule(bundle: VerifiedBundle): Schedule = ScheduleSpec.parse(bundle.file("schedule.json").readText())

    /** Class names, in the model's output order. */
    fun labels(bundle: VerifiedBundle): List<String> {
        val obj = Json.parseObject(bundle.file("labels.json").readText())
        return (obj["names"] as List<*>).map { it.toString() }
    }

    /** The device profile shipped in the assets (the mid-range phone unless configured). */
    fun profile(name: String = DEFAULT_PROFILE): DeviceProfile =
        DeviceProfile.fromJson(Json.parse(String(readAsset("profiles/$name.json"), Charsets.UTF_8)), "profile")

    /** The training policy from the assets, or the defaults (floor 20 %, up to MODERATE). */
    fun policy(): Policy = try {
        Policy.fromJson(Json.parse(String(readAsset("policy.json"), Charsets.UTF_8)), "policy")
    } catch (e: IOException) {
        Policy()
    }

    companion object {
        private val LOCK = Any()
        const val ASSET_DIR = "bundle"
        const val DEFAULT_PROFILE = "mid-range"
    }
}
