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
    /** The model's tensors as the app feeds them (validated by [BundleVerifier.verify]). */
    val io: ModelIo = ModelIo.from(manifest)

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
 * The manifest's `model` block as the app uses it: input name and per-sample shape, label
 * name, dtype and classes, output name. A field of the wrong type or missing is a
 * [ValidationError] naming it (the Python `Manifest` refuses the same), never a cast failure.
 */
class ModelIo(val inputName: String, val inputShape: List<Long>, val labelsName: String,
              val labelsDtype: String, val classes: Long?, val outputName: String) {
    /** Values per sample (the product of the input shape without the batch axis). */
    val features: Int get() = inputShape.fold(1L) { a, b -> a * b }.toInt()

    companion object {
        fun from(manifest: Map<String, Any?>): ModelIo {
            val model = getObject(manifest["model"], "model")
            val input = tensor(model, "input")
            val output = tensor(model, "output")
            val labels = getObject(model["labels"], "model.labels")
            val dtype = string(labels, "dtype", "model.labels")
            if (dtype != "int64" && dtype != "float32") {
                throw ValidationError("model.labels.dtype", "unknown value ${pyRepr(dtype)}", "int64, float32")
            }
            val classes = if (dtype == "int64") {
                val c = labels["classes"]
                if (c !is Long || c < 1 || c > (1L shl 31)) throw ValidationError("model.labels.classes", "expected an integer >= 1")
                c
            } else null
            return ModelIo(string(input.first, "name", "model.input"), input.second,
                string(labels, "name", "model.labels"), dtype, classes, string(output.first, "name", "model.output"))
        }

        private fun string(obj: Map<String, Any?>, key: String, path: String): String =
            obj[key] as? String ?: throw ValidationError(join(path, key), "missing or not a string", "a string")

        private fun tensor(model: Map<String, Any?>, key: String): Pair<Map<String, Any?>, List<Long>> {
            val path = "model.$key"
            val obj = getObject(model[key], path)
            val shape = obj["shape"] as? List<*>
            // the Python manifest reader's MAX_SAMPLE_ELEMENTS: a runtime allocates from these shapes
            val allowed = "[-1, d1, d2, ...] with 1..8 sizes d >= 1 and at most 2**24 elements per sample"
            if (shape == null || shape.size !in 1..9 || shape[0] != -1L) {
                throw ValidationError("$path.shape", "expected a batch shape, got ${pyRepr(obj["shape"])}".take(200), allowed)
            }
            val dims = ArrayList<Long>()
            var per = 1L   // checked after every size: 8 sizes of 2^31 overflowed the Long product
            for ((i, d) in shape.drop(1).withIndex()) {
                if (d !is Long || d < 1 || d > (1L shl 24)) throw ValidationError(join("$path.shape", i + 1), "not a size >= 1", allowed)
                dims.add(d)
                per *= d
                if (per > (1L shl 24)) throw ValidationError("$path.shape", "too many elements per sample", allowed)
            }
            if (obj["dtype"] != "float32") throw ValidationError("$path.dtype", "unknown value ${pyRepr(obj["dtype"])}", "float32")
            return Pair(obj, dims)
        }
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
 * The checks and their order follow the Python reference, so both refuse the same file: names are
 * matched whole (`labels.json\n` is refused), a file must have one link (a hard link to a file
 * outside the bundle is refused), the manifest is at most [MAX_MANIFEST_BYTES] and strict JSON
 * ([Json]: duplicate keys refused), its top level has only the known blocks, and each file is
 * what its name claims ([checkContent]: no `.onnx` file refers to external data, which ORT would
 * open outside the verified bundle; `schedule.json` and `labels.json` are of their kind).
 */
object BundleVerifier {
    const val FORMAT = "mobile-lr.bundle/1"
    const val MANIFEST = "manifest.json"
    private val ALLOWED_NAME = Regex("^(?!\\.)[A-Za-z0-9_.-]{1,128}\\.(onnx|pte|ptd|json)$|^checkpoint$")
    private val HEX64 = Regex("^[0-9a-f]{64}$")
    private const val CHUNK = 1 shl 20
    const val MAX_MANIFEST_BYTES = 1L shl 20
    const val MAX_FILE_BYTES = 2L shl 30
    private val TOP_LEVEL = listOf("format", "files", "versions", "model", "optimizer", "backends", "lr_dropout")
    private val REQUIRED = listOf("files", "model", "optimizer", "backends")

    /** SHA-256 (lowercase hex) and size of a file, streamed. */
    fun fileDigest(file: File): Pair<String, Long> {
        val (digest, _, size) = streamDigest(file, 0)
        return Pair(digest, size)
    }

    /** SHA-256 (lowercase hex), the first [head] bytes and the size of a file, streamed. */
    private fun streamDigest(file: File, head: Int): Triple<String, ByteArray, Long> {
        val md = MessageDigest.getInstance("SHA-256")
        val buf = ByteArray(CHUNK)
        val first = java.io.ByteArrayOutputStream()
        var size = 0L
        FileInputStream(file).use { input ->
            while (true) {
                val n = input.read(buf)
                if (n < 0) break
                if (size < head) first.write(buf, 0, minOf(n.toLong(), head - size).toInt())
                md.update(buf, 0, n)
                size += n
            }
        }
        return Triple(hex(md.digest()), first.toByteArray(), size)
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

    /** Hard links to the file, where the platform tells (`unix:nlink`); null where it does not. */
    private fun links(file: File): Int? = try {
        (Files.getAttribute(file.toPath(), "unix:nlink", LinkOption.NOFOLLOW_LINKS) as Number).toInt()
    } catch (e: UnsupportedOperationException) {
        null
    } catch (e: IllegalArgumentException) {
        null
    }

    private fun checkLinks(file: File, name: String) {
        val n = links(file)
        if (n != null && n != 1) throw BundleError(name, "has $n hard links (it may be a file outside the bundle)", "a file of the bundle alone")
    }

    private fun readManifestBytes(dir: File): ByteArray {
        if (!dir.isDirectory) throw BundleError(dir.name, "not a bundle directory")
        val path = File(dir, MANIFEST)
        if (!isRegular(path)) throw BundleError(MANIFEST, "missing (or not a regular file)")
        checkLinks(path, MANIFEST)
        if (path.length() > MAX_MANIFEST_BYTES) {
            throw BundleError(MANIFEST, "${path.length()} bytes, over the bound of 1 MiB", "at most 1 MiB")
        }
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
        try {
            checkKeys(manifest, "", TOP_LEVEL, REQUIRED)
        } catch (e: ValidationError) {
            throw BundleError("$MANIFEST: ${e.field}", e.problem, e.allowed)
        }
        val files = manifest["files"] as? Map<*, *>
            ?: throw BundleError("$MANIFEST: files", "missing or not an object")
        for ((key, entry) in files) {
            val name = key.toString()
            checkName(name)
            if (name == MANIFEST) throw BundleError(name, "the manifest cannot list itself")
            val ok = entry is Map<*, *> && entry.keys == setOf("sha256", "size") && entry["sha256"] is String &&
                HEX64.matches(entry["sha256"] as String) && entry["size"] is Long && (entry["size"] as Long) >= 0
            if (!ok) {
                throw BundleError("$MANIFEST: files.$name", "bad entry",
                    "{\"sha256\": \"<64 lowercase hex digits>\", \"size\": <bytes >= 0>}")
            }
            val size = (entry as Map<*, *>)["size"] as Long
            if (size > MAX_FILE_BYTES) {
                throw BundleError("$MANIFEST: files.$name", "size $size is over the bound of $MAX_FILE_BYTES bytes")
            }
        }
        try {
            ModelIo.from(manifest)
            checkBackends(manifest, files.keys.map { it.toString() }.toSet())
        } catch (e: BundleError) {
            throw e
        } catch (e: ValidationError) {
            throw BundleError("$MANIFEST: ${e.field}", e.problem, e.allowed)
        }
        return manifest
    }

    private fun checkBackends(manifest: Map<String, Any?>, listed: Set<String>) {
        for ((name, block) in getObject(manifest["backends"], "backends")) {
            val path = "backends.$name"
            val b = getObject(block, path)
            val status = b["status"]
            if (status != "ok" && status != "unsupported") {
                throw ValidationError("$path.status", "unknown value ${pyRepr(status)}", "ok, unsupported")
            }
            val files = b["files"]
            if (status == "ok" && (files !is List<*> || files.any { it !is String })) {
                throw ValidationError("$path.files", "expected a list of strings", "a list of strings")
            }
            if (status == "ok") for (f in files as List<*>) {
                if (f !in listed) throw ValidationError("$path.files", "${pyRepr(f)} is not listed in the manifest")
            }
        }
    }

    /** A bundle's JSON file is bounded like every JSON file read (Python's `MAX_JSON_BYTES`). */
    const val MAX_JSON_BYTES = 16L shl 20
    const val LABELS_FORMAT = "mobile-lr.labels/1"

    private fun checkJsonSize(name: String, size: Long) {
        if (size > MAX_JSON_BYTES) throw BundleError(name, "$size bytes, over the JSON bound of 16 MiB", "at most 16 MiB")
    }

    /**
     * A bundle's JSON file is data of its kind (Python's `_check_json`): strict JSON within the
     * bounds of every JSON file read, `schedule.json` a valid spec ([ScheduleSpec]), `labels.json`
     * a list of names. A re-hashed garbage `schedule.json` verified and failed only when used.
     */
    private fun checkJson(name: String, data: ByteArray) {
        checkJsonSize(name, data.size.toLong())
        try {
            val text = try {
                java.nio.charset.StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(data)).toString()
            } catch (e: java.nio.charset.CharacterCodingException) {
                throw ValidationError(name, "not UTF-8 text", "UTF-8 JSON")
            }
            val tree = Json.parse(text)
            if (name == "schedule.json") {
                ScheduleSpec.parse(tree)
            } else if (name == "labels.json") {
                val obj = getObject(tree, "")
                checkKeys(obj, "", listOf("format", "names"), listOf("format", "names"))
                if (obj["format"] != LABELS_FORMAT) {
                    throw ValidationError("format", "unknown value ${pyRepr(obj["format"])}".take(200), LABELS_FORMAT)
                }
                val names = obj["names"]
                if (names !is List<*> || names.any { it !is String }) {
                    throw ValidationError("names", "expected a list of strings", "class names")
                }
            }
        } catch (e: BundleError) {
            throw e
        } catch (e: ValidationError) {
            throw BundleError(name, e.message ?: e.problem)
        }
    }

    /**
     * That a verified file is what its name claims, without running any engine (Python's
     * `check_content`): an ONNX model ([OnnxWire.modelProblem]) referring to no data outside
     * itself (ORT would open that file, outside the verified bundle), a JSON file of its kind,
     * a flatbuffer of its kind for the checkpoint and the ExecuTorch files ([ArtifactHeads]).
     * [data] is the whole file, or for those flatbuffers at least its first
     * [ArtifactHeads.HEAD_BYTES] of [size] bytes. The golden vectors' `bundle_contents` hold
     * Python's verdicts.
     */
    fun checkContent(name: String, data: ByteArray, size: Long = data.size.toLong()) {
        if (name.endsWith(".json")) return checkJson(name, data)
        if (!name.endsWith(".onnx")) {
            val problem = ArtifactHeads.problem(name, data, size)
            if (problem != null) throw BundleError(name, problem, "the file the exporter wrote")
            return
        }
        val refs = try {
            OnnxWire.externalDataRefs(data)
        } catch (e: WireError) {
            throw BundleError(name, "not a well-formed ONNX protobuf (${e.message})")
        }
        if (refs.isNotEmpty()) {
            throw BundleError(name, "tensor(s) ${refs.take(5).joinToString(", ")} refer to external data (a file outside " +
                "the verified bundle)", "ONNX models with every tensor stored inside")
        }
        val problem = OnnxWire.modelProblem(data)
        if (problem != null) throw BundleError(name, problem, "the ONNX model the exporter wrote")
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
            checkLinks(file, name)
            val expectedSize = entry["size"] as Long
            val size = file.length()
            if (size != expectedSize) {
                val problem = if (size < expectedSize) "truncated" else "longer than listed"
                throw BundleError(name, "$problem: $size bytes, the manifest says $expectedSize")
            }
            if (name.endsWith(".json")) checkJsonSize(name, expectedSize)
            val whole = name.endsWith(".onnx") || name.endsWith(".json")  // hashed and checked as one read
            val data: ByteArray
            val digest: String
            if (whole) {
                data = file.readBytes()
                digest = hex(MessageDigest.getInstance("SHA-256").digest(data))
            } else {  // streamed: a model may be large; its head is what the content check reads
                val streamed = streamDigest(file, ArtifactHeads.HEAD_BYTES)
                digest = streamed.first
                data = streamed.second
            }
            val expected = entry["sha256"] as String
            if (digest != expected) {
                throw BundleError(name, "SHA-256 does not match the manifest (file ${digest.substring(0, 16)}..., " +
                    "manifest ${expected.substring(0, 16)}...)")
            }
            checkContent(name, data, expectedSize)
        }
        return VerifiedBundle(dir, manifest, identity)
    }
}
