package org.mobilelr.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** The core's JSON reader and ONNX walk give the Python reference's verdict on shared vectors. */
class JsonWireGoldenTest {
    /** The tree with non-finite numbers as the strings the Python side writes (json_safe). */
    private fun safe(value: Any?): Any? = when (value) {
        is Double -> when {
            value.isNaN() -> "NaN"
            value == Double.POSITIVE_INFINITY -> "Infinity"
            value == Double.NEGATIVE_INFINITY -> "-Infinity"
            else -> value
        }
        is Map<*, *> -> value.entries.associate { it.key to safe(it.value) }
        is List<*> -> value.map { safe(it) }
        else -> value
    }

    private fun depth(value: Any?): Int = when (value) {
        is Map<*, *> -> 1 + (value.values.map { depth(it) }.max() ?: 0)
        is List<*> -> 1 + (value.map { depth(it) }.max() ?: 0)
        else -> 0
    }

    @Test
    fun jsonTextsAreAcceptedAndRefusedAsInPython() {
        val cases = Golden.section("json_texts")
        assertTrue(cases.size >= 50)
        val bad = Mismatches("JSON texts")
        for (c in cases) {
            val text = c["text"] as String
            try {
                val got = safe(Json.parse(text))
                if (c["ok"] != true) bad.add("accepted ${pyRepr(text)}; Python: ${c["message"]}")
                else if ("depth" in c) { if (depth(got).toLong() != c["depth"]) bad.add("${pyRepr(text).take(40)}: depth") }
                else if (got != c["value"]) bad.add("${pyRepr(text)} read as $got, Python ${c["value"]}")
            } catch (e: ValidationError) {
                if (c["ok"] == true) bad.add("refused ${pyRepr(text)} (${e.message}); Python accepts it")
                else if (e.field != "<file>") bad.add("${pyRepr(text)}: field ${e.field}")
            }
        }
        bad.check()
    }

    @Test
    fun onnxWireCasesFindTheSameExternalTensors() {
        val cases = Golden.section("onnx_wire")
        val bad = Mismatches("ONNX wire cases")
        for (c in cases) {
            val hex = c["hex"] as String
            val bytes = hexBytes(hex)
            try {
                val refs = OnnxWire.externalDataRefs(bytes)
                if (c["error"] == true) bad.add("${c["name"]}: accepted, Python refuses it")
                else if (refs != c["refs"]) bad.add("${c["name"]}: $refs, Python ${c["refs"]}")
            } catch (e: WireError) {
                if (c["error"] != true) bad.add("${c["name"]}: refused (${e.message}), Python finds ${c["refs"]}")
            }
        }
        bad.check()
        assertEquals(17, cases.size)
    }

    @Test
    fun bundleContentsGetPythonsVerdict() {
        val cases = Golden.section("bundle_contents")
        val bad = Mismatches("bundle contents")
        for (c in cases) {
            val name = c["name"] as String
            val hex = c["hex"] as String
            val bytes = hexBytes(hex)
            val label = "$name ${hex.take(40)}"
            try {
                BundleVerifier.checkContent(name, bytes)
                if (c["ok"] != true) bad.add("$label: accepted; Python: ${c["message"]}")
            } catch (e: BundleError) {
                if (c["ok"] == true) bad.add("$label: refused (${e.message}); Python accepts it")
                else if (e.file != c["field"]) bad.add("$label: field ${e.file}, Python ${c["field"]}")
            }
        }
        bad.check()
        assertTrue(cases.size >= 50)
    }

    @Test
    fun recordBoundsAreThoseOfPython() {
        val cases = Golden.section("record_bounds")
        val bad = Mismatches("record bounds")
        for (c in cases) {
            val doc = Golden.unsafe(c["doc"])
            val label = "${c["kind"]} ${Json.write(doc).take(80)}"
            try {
                when (c["kind"]) {
                    "policy" -> Policy.fromJson(doc)
                    "config" -> ManagerConfig.fromJson(doc)
                    else -> DeviceProfile.fromJson(doc)
                }
                if (c["field"] != null) bad.add("$label: accepted; Python refuses ${c["field"]}")
            } catch (e: ValidationError) {
                if (e.field != c["field"]) bad.add("$label: field ${e.field}, Python ${c["field"]}")
            }
        }
        bad.check()
        assertTrue(cases.size >= 30)
    }
}

/** The bytes a golden case writes as lowercase hex (Python's `bytes.hex()`). */
private fun hexBytes(hex: String): ByteArray =
    ByteArray(hex.length / 2) { hex.substring(2 * it, 2 * it + 2).toInt(16).toByte() }
