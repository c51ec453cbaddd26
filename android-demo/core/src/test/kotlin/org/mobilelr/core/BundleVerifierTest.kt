package org.mobilelr.core

import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Before
import org.junit.Test
import java.io.File
import java.nio.file.Files
import java.security.MessageDigest

class BundleVerifierTest {
    private lateinit var dir: File

    @Before
    fun setUp() {
        dir = Files.createTempDirectory("bundle").toFile()
        File(dir, "training_model.onnx").writeBytes(onnxDocString(3 * 1024 * 1024 + 17) + ONNX_MODEL)
        File(dir, "checkpoint").writeBytes(checkpoint(3))
        File(dir, "schedule.json").writeText("{\"format\": \"mobile-lr.schedule/1\", \"base_lr\": 0.01, " +
            "\"shape\": {\"type\": \"cosine\"}}")
        writeManifest()
    }

    @After
    fun tearDown() {
        dir.deleteRecursively()
    }

    /** An ORT checkpoint's head (root offset 12, identifier `ODTC`) and [n] bytes [n], [n] + 1, ... */
    private fun checkpoint(n: Int): ByteArray =
        byteArrayOf(12, 0, 0, 0, 'O'.toByte(), 'D'.toByte(), 'T'.toByte(), 'C'.toByte(), 0, 0, 0, 0, 0, 0, 0, 0) +
            ByteArray(n) { (n + it).toByte() }

    /** ir_version 8, one opset import, a graph with a Relu node and an output: what an ONNX model needs. */
    private val ONNX_MODEL = byteArrayOf(0x08, 0x08, 0x42, 0x04, 0x0a, 0x00, 0x10, 0x11,
        0x3a, 0x0d, 0x0a, 0x06, 0x22, 0x04, 'R'.toByte(), 'e'.toByte(), 'l'.toByte(), 'u'.toByte(),
        0x62, 0x03, 0x0a, 0x01, 'y'.toByte())

    /** The manifest as the Python exporter writes it (files first, then the other blocks). */
    private fun writeManifest(format: String = BundleVerifier.FORMAT, edit: (MutableMap<String, Any?>) -> Unit = {}) {
        val files = LinkedHashMap<String, Any?>()
        for (f in dir.listFiles()!!.sortedBy { it.name }) {
            if (f.name == "manifest.json") continue
            val md = MessageDigest.getInstance("SHA-256")
            files[f.name] = linkedMapOf("sha256" to BundleVerifier.hex(md.digest(f.readBytes())), "size" to f.length())
        }
        val manifest = linkedMapOf<String, Any?>(
            "format" to format, "files" to files,
            "versions" to linkedMapOf("onnxruntime-training" to "1.19.2"),
            "model" to linkedMapOf(
                "recipe" to "digits-mlp", "trainable" to listOf("fc1.weight"), "frozen" to listOf<String>(),
                "input" to linkedMapOf("name" to "input", "shape" to listOf(-1L, 64L), "dtype" to "float32"),
                "output" to linkedMapOf("name" to "output", "shape" to listOf(-1L, 10L), "dtype" to "float32"),
                "labels" to linkedMapOf("name" to "labels", "dtype" to "int64", "classes" to 10L)),
            "optimizer" to linkedMapOf("type" to "adamw"),
            "backends" to linkedMapOf("ort" to linkedMapOf("status" to "ok",
                "files" to listOf("training_model.onnx", "checkpoint"))))
        edit(manifest)
        File(dir, "manifest.json").writeText(Json.write(manifest, 2) + "\n")
    }

    private fun refused(expectedFile: String, problemPart: String) {
        try {
            BundleVerifier.verify(dir)
            fail("bundle accepted, expected a refusal naming $expectedFile")
        } catch (e: BundleError) {
            assertEquals(e.message, expectedFile, e.file)
            assertTrue(e.message, e.problem.contains(problemPart))
        }
    }

    @Test
    fun acceptsAnIntactBundleAndReportsItsIdentity() {
        val b = BundleVerifier.verify(dir)
        assertEquals(setOf("training_model.onnx", "checkpoint", "schedule.json"), b.files.keys)
        assertEquals(BundleVerifier.manifestSha256(dir), b.sha256)
        assertEquals(64, b.sha256.length)
        BundleVerifier.verify(dir, String(b.sha256.map { Character.toUpperCase(it) }.toCharArray()))  // hex case does not matter
    }

    @Test
    fun streamingDigestEqualsOneShotDigest() {
        val f = File(dir, "training_model.onnx")
        val oneShot = BundleVerifier.hex(MessageDigest.getInstance("SHA-256").digest(f.readBytes()))
        assertEquals(Pair(oneShot, f.length()), BundleVerifier.fileDigest(f))
        // SHA-256 of "abc" (FIPS 180-2 test vector)
        val abc = File(dir, "abc.bin").apply { writeText("abc") }
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", BundleVerifier.fileDigest(abc).first)
    }

    @Test
    fun refusesAFlippedByte() {
        val f = File(dir, "checkpoint")
        f.writeBytes(checkpoint(3).also { it[it.size - 1] = 9 })
        refused("checkpoint", "SHA-256 does not match")
    }

    @Test
    fun refusesAFlippedByteInALargeFile() {
        val f = File(dir, "training_model.onnx")
        val bytes = f.readBytes()
        bytes[bytes.size - 1] = (bytes[bytes.size - 1] + 1).toByte()
        f.writeBytes(bytes)
        refused("training_model.onnx", "SHA-256 does not match")
    }

    @Test
    fun refusesATruncatedOrLongerFile() {
        File(dir, "checkpoint").writeBytes(checkpoint(2))
        refused("checkpoint", "truncated")
        File(dir, "checkpoint").writeBytes(checkpoint(4))
        refused("checkpoint", "longer than listed")
    }

    @Test
    fun refusesAMissingFile() {
        File(dir, "schedule.json").delete()
        refused("schedule.json", "missing")
    }

    @Test
    fun refusesAnExtraFile() {
        File(dir, "eval_model.onnx").writeText("x")
        refused("eval_model.onnx", "extra file")
        File(dir, "eval_model.onnx").delete()
        File(dir, "sub").mkdir()
        refused("sub", "extra file")
    }

    @Test
    fun refusesASymlinkInPlaceOfAFile() {
        val target = File(dir.parentFile, dir.name + "-outside")
        File(dir, "checkpoint").copyTo(target)
        try {
            File(dir, "checkpoint").delete()
            Files.createSymbolicLink(File(dir, "checkpoint").toPath(), target.toPath())
            refused("checkpoint", "not a regular file")
        } finally {
            target.delete()
        }
    }

    @Test
    fun refusesAnUnknownFormatVersion() {
        writeManifest(format = "mobile-lr.bundle/2")
        refused("manifest.json: format", "unknown format")
    }

    @Test
    fun refusesBrokenManifests() {
        File(dir, "manifest.json").delete()
        refused("manifest.json", "missing")
        File(dir, "manifest.json").writeText("{not json")
        refused("manifest.json", "not valid JSON")
        File(dir, "manifest.json").writeText("[1, 2]")
        refused("manifest.json", "expected a JSON object")
        writeManifest { it.remove("files") }
        refused("manifest.json: files", "missing")
        writeManifest { m ->
            @Suppress("UNCHECKED_CAST")
            (m["files"] as MutableMap<String, Any?>)["checkpoint"] = linkedMapOf("sha256" to "ABC", "size" to 3L)
        }
        refused("manifest.json: files.checkpoint", "bad entry")
        writeManifest { m ->
            @Suppress("UNCHECKED_CAST")
            val files = m["files"] as MutableMap<String, Any?>
            files["../escape.onnx"] = files["checkpoint"]
        }
        refused("../escape.onnx", "not an allowed bundle file name")
        writeManifest { m ->
            @Suppress("UNCHECKED_CAST")
            val files = m["files"] as MutableMap<String, Any?>
            files["weights.pt"] = files["checkpoint"]
        }
        refused("weights.pt", "not an allowed bundle file name")
    }

    @Test
    fun refusesAnotherBundleIdentity() {
        val other = "0".repeat(64)
        try {
            BundleVerifier.verify(dir, other)
            fail("accepted a bundle whose manifest is not the expected one")
        } catch (e: BundleError) {
            assertEquals("manifest.json", e.file)
        }
    }

    @Test
    fun refusesAManifestEditedAfterTheFact() {
        val identity = BundleVerifier.verify(dir).sha256
        File(dir, "checkpoint").writeBytes(checkpoint(3).also { it[it.size - 1] = 9 })
        writeManifest()  // integrity alone passes again: whoever edits files can edit the list
        BundleVerifier.verify(dir)
        try {
            BundleVerifier.verify(dir, identity)
            fail("accepted a re-hashed manifest")
        } catch (e: BundleError) {
            assertEquals("manifest.json", e.file)
        }
    }

    /** A valid ONNX ModelProto holding only a doc string of [n] bytes (field 6): no tensor. */
    private fun onnxDocString(n: Int): ByteArray {
        val out = java.io.ByteArrayOutputStream()
        out.write(0x32)
        var len = n
        while (len >= 0x80) { out.write((len and 0x7f) or 0x80); len = len ushr 7 }
        out.write(len)
        out.write(ByteArray(n) { (it % 251).toByte() })
        return out.toByteArray()
    }

    @Test
    fun refusesANameWithATrailingNewline() {
        File(dir, "checkpoint").renameTo(File(dir, "labels.json\n"))
        writeManifest()
        refused("labels.json\n", "not an allowed bundle file name")
    }

    @Test
    fun refusesAHardLinkToAFileOutside() {
        val outside = File(dir.parentFile, dir.name + "-outside")
        File(dir, "checkpoint").copyTo(outside)
        try {
            File(dir, "checkpoint").delete()
            Files.createLink(File(dir, "checkpoint").toPath(), outside.toPath())
            refused("checkpoint", "hard links")
        } finally {
            outside.delete()
        }
    }

    @Test
    fun refusesDuplicateKeysUnknownBlocksAndModelFieldsOfTheWrongType() {
        val text = File(dir, "manifest.json").readText()
        File(dir, "manifest.json").writeText(text.replaceFirst("{", "{\"files\": {}, "))
        refused("manifest.json", "duplicate key 'files'")
        writeManifest { it["surprise"] = linkedMapOf<String, Any?>() }
        refused("manifest.json: surprise", "unknown field")
        writeManifest { it["model"] = "x" }
        refused("manifest.json: model", "expected an object")
        writeManifest { m -> @Suppress("UNCHECKED_CAST") (m["model"] as MutableMap<String, Any?>).remove("input") }
        refused("manifest.json: model.input", "expected an object")
        writeManifest { it["backends"] = linkedMapOf("ort" to "ok") }
        refused("manifest.json: backends.ort", "expected an object")
        writeManifest { m ->
            @Suppress("UNCHECKED_CAST")
            ((m["model"] as MutableMap<String, Any?>)["labels"] as MutableMap<String, Any?>)["classes"] = "10"
        }
        refused("manifest.json: model.labels.classes", "expected an integer")
        // 2^31 a sample was accepted; eight sizes of 2^31 overflowed the Long product to 0
        for (shape in listOf(listOf(-1L, 1L shl 31), listOf(-1L, 1L shl 12, (1L shl 12) + 1),
                             listOf(-1L) + List(8) { 1L shl 24 })) {
            writeManifest { m ->
                @Suppress("UNCHECKED_CAST")
                ((m["model"] as MutableMap<String, Any?>)["input"] as MutableMap<String, Any?>)["shape"] = shape
            }
            try {
                BundleVerifier.verify(dir)
                fail("shape $shape accepted")
            } catch (e: BundleError) {
                assertTrue(e.message, e.file.startsWith("manifest.json: model.input.shape"))
            }
        }
    }

    @Test
    fun refusesAnOnnxFileWithExternalData() {
        // ModelProto { graph { initializer { name: "w", data_location: EXTERNAL } } }
        val tensor = byteArrayOf(0x42, 1, 'w'.toByte(), 0x70, 1)
        val graph = byteArrayOf(0x2a, tensor.size.toByte()) + tensor
        File(dir, "training_model.onnx").writeBytes(byteArrayOf(0x3a, graph.size.toByte()) + graph)
        writeManifest()
        refused("training_model.onnx", "refer to external data")
        File(dir, "training_model.onnx").writeBytes(byteArrayOf(0x3a, 100, 1, 2))
        writeManifest()
        refused("training_model.onnx", "not a well-formed ONNX protobuf")
    }

    @Test
    fun refusesArtifactsAndJsonThatAreNotWhatTheirNamesClaim() {
        File(dir, "training_model.onnx").writeBytes(onnxDocString(40))  // a well-formed protobuf, no model
        writeManifest()
        refused("training_model.onnx", "no graph")
        File(dir, "training_model.onnx").writeBytes(ONNX_MODEL)
        File(dir, "checkpoint").writeBytes(ByteArray(40))
        writeManifest()
        refused("checkpoint", "not an ONNX Runtime training checkpoint")
        File(dir, "checkpoint").writeBytes(checkpoint(3))
        File(dir, "schedule.json").writeText("{\"format\": \"mobile-lr.schedule/1\"}")
        writeManifest()
        refused("schedule.json", "base_lr")
        File(dir, "schedule.json").delete()
        File(dir, "labels.json").writeText("{\"format\": \"mobile-lr.labels/1\", \"names\": [1]}")
        writeManifest()
        refused("labels.json", "names")
    }

    @Test
    fun modelIoIsTyped() {
        val io = BundleVerifier.verify(dir).io
        assertEquals("input", io.inputName)
        assertEquals(64, io.features)
        assertEquals(10L, io.classes)
        assertEquals("labels", io.labelsName)
        assertEquals("output", io.outputName)
    }
}
