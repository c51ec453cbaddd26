package org.mobilelr.core

import java.io.File
import java.io.FileInputStream
import java.nio.file.Files
import java.nio.file.LinkOption
import java.security.MessageDigest

/** A bundle file does not match its manifest; [file] names it (the manifest itself included). */
class BundleError(val file: String, problem: String, allowed: String? = null) :
    ValidationError(file, problem, allowed)

/**
 * A verified bundle: its directory, the manifest (plain JSON tree) and its identity,
 * the SHA-256 of the manifest's bytes (a checkpoint records it, so a checkpoint of
 * another bundle is refused).
 */
class VerifiedBundle(val dir: File, val manifest: Map<String, Any?>, val sha256: String) {
    @Suppress("UNCHECKED_CAST")
    val files: Map<String, Map<String, Any?>>
        get() = manifest["files"] as Map<String, Map<String, Any?>>

    /** A file of the bundle (listed in the manifest, so verified). */
    fun file(name: String): File {
        if (name !in files) throw BundleError(name, "not listed in the manifest")
        return File(dir, name)
    }
}

/**
 * Bundle manifest verification, the Kotlin twin of `mobile_lr/bundle.py`.
 *
 * A bundle is a flat directory (training artifacts, schedule, policy, labels) with
 * `manifest.json`:
 * ```
 * {"format": "mobile-lr.bundle/1",
 *  "files": {"training_model.onnx": {"sha256": "<hex>", "size": 1234}, ...}, ...}
 * ```
 * It is checked like any download before any of its files reaches a native parser
 * (ORT's protobuf and flatbuffer readers): unknown format, a listed file missing, of
 * another size or SHA-256, a file that is not a regular file, or any file the manifest
 * does not list, are refused with a [BundleError] naming the file. Files are hashed in
 * 1 MiB chunks with [MessageDigest] (a model may be large; no whole-file byte arrays).
 * The checks and their order follow the Python reference, so both refuse the same file.
 */
object BundleVerifier {
    const val FORMAT = "mobile-lr.bundle/1"
    const val MANIFEST = "manifest.json"
    private val ALLOWED_NAME = Regex("^(?!\\.)[A-Za-z0-9_.-]{1,128}\\.(onnx|pte|ptd|json)$|^checkpoint$")
    private val HEX64 = Regex("^[0-9a-f]{64}$")
    private const val CHUNK = 1 shl 20

    /** SHA-256 (lowercase hex) and size of a file, streamed. */
    fun fileDigest(file: File): Pair<String, Long> {
        val md = MessageDigest.getInstance("SHA-256")
        val buf = ByteArray(CHUNK)
        var size = 0L
        FileInputStream(file).use { input ->
            while (true) {
                val n = input.read(buf)
                if (n < 0) break
                md.update(buf, 0, n)
                size += n
            }
        }
        return Pair(hex(md.digest()), size)
    }

    fun hex(bytes: ByteArray): String {
        val digits = "0123456789abcdef"
        val sb = StringBuilder(bytes.size * 2)
        for (b in bytes) {
            val v = b.toInt() and 0xff
            sb.append(digits[v ushr 4]).append(digits[v and 0x0f])
        }
        return sb.toString()
    }

    private fun checkName(name: String) {
        if (!ALLOWED_NAME.matches(name)) {
            throw BundleError(name, "not an allowed bundle file name",
                "plain names ending in .onnx, .pte, .ptd, .json, or 'checkpoint'")
        }
    }

    private fun isRegular(file: File): Boolean =
        Files.isRegularFile(file.toPath(), LinkOption.NOFOLLOW_LINKS)

    private fun readManifestBytes(dir: File): ByteArray {
        if (!dir.isDirectory) throw BundleError(dir.name, "not a bundle directory")
        val path = File(dir, MANIFEST)
        if (!isRegular(path)) throw BundleError(MANIFEST, "missing (or not a regular file)")
        return path.readBytes()  // the manifest is small; the model files are streamed
    }

    /** Parse and check the manifest's own structure. */
    fun parseManifest(data: ByteArray): Map<String, Any?> {
        val text = try {
            java.nio.charset.StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(data)).toString()
        } catch (e: java.nio.charset.CharacterCodingException) {
            throw BundleError(MANIFEST, "not valid JSON (not UTF-8)")
        }
        val tree = try {
            Json.parse(text)
        } catch (e: ValidationError) {
            throw BundleError(MANIFEST, "not valid JSON (${e.problem})")
        }
        if (tree !is Map<*, *>) throw BundleError(MANIFEST, "expected a JSON object")
        @Suppress("UNCHECKED_CAST")
        val manifest = tree as Map<String, Any?>
        val format = manifest["format"]
        if (format != FORMAT) throw BundleError("$MANIFEST: format", "unknown format ${pyRepr(format)}", FORMAT)
        val files = manifest["files"] as? Map<*, *>
            ?: throw BundleError("$MANIFEST: files", "missing or not an object")
        for ((key, entry) in files) {
            val name = key.toString()
            checkName(name)
            if (name == MANIFEST) throw BundleError(name, "the manifest cannot list itself")
            val ok = entry is Map<*, *> && entry["sha256"] is String && HEX64.matches(entry["sha256"] as String) &&
                entry["size"] is Long && (entry["size"] as Long) >= 0
            if (!ok) {
                throw BundleError("$MANIFEST: files.$name", "bad entry",
                    "{\"sha256\": \"<64 lowercase hex digits>\", \"size\": <bytes >= 0>}")
            }
        }
        return manifest
    }

    /** SHA-256 of `manifest.json`'s bytes: the bundle's identity. */
    fun manifestSha256(dir: File): String =
        hex(MessageDigest.getInstance("SHA-256").digest(readManifestBytes(dir)))

    /**
     * Verify every file of the bundle in [dir] against its manifest; return the verified
     * bundle. [expectedSha256], when given (from a trusted channel), must be the
     * manifest's own SHA-256. Throws [BundleError] naming the first offending file.
     */
    fun verify(dir: File, expectedSha256: String? = null): VerifiedBundle {
        val data = readManifestBytes(dir)
        val identity = hex(MessageDigest.getInstance("SHA-256").digest(data))
        if (expectedSha256 != null && !identity.equals(expectedSha256, ignoreCase = true)) {
            throw BundleError(MANIFEST, "SHA-256 $identity is not the expected bundle identity $expectedSha256")
        }
        val manifest = parseManifest(data)
        @Suppress("UNCHECKED_CAST")
        val listed = manifest["files"] as Map<String, Map<String, Any?>>
        val present = (dir.list() ?: throw BundleError(dir.name, "cannot list the bundle directory"))
            .filter { it != MANIFEST }.toSortedSet()
        for (name in present) {
            if (name !in listed) {
                throw BundleError(name, "extra file not listed in the manifest", "only the files the manifest lists")
            }
        }
        for (name in listed.keys.toSortedSet()) {
            val entry = listed.getValue(name)
            if (name !in present) throw BundleError(name, "missing from the bundle")
            val file = File(dir, name)
            if (!isRegular(file)) throw BundleError(name, "not a regular file (symlink or directory)")
            val expectedSize = entry["size"] as Long
            val size = file.length()
            if (size != expectedSize) {
                val problem = if (size < expectedSize) "truncated" else "longer than listed"
                throw BundleError(name, "$problem: $size bytes, the manifest says $expectedSize")
            }
            val (digest, _) = fileDigest(file)
            val expected = entry["sha256"] as String
            if (digest != expected) {
                throw BundleError(name, "SHA-256 does not match the manifest (file ${digest.substring(0, 16)}..., " +
                    "manifest ${expected.substring(0, 16)}...)")
            }
        }
        return VerifiedBundle(dir, manifest, identity)
    }
}
