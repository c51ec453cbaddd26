package org.mobilelr.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** The core's recommended set-up is the Python reference's, and refuses the same mismatches. */
class RecommendedSetupGoldenTest {
    @Suppress("UNCHECKED_CAST")
    private val cases = Golden.data["setups"] as Map<String, List<Map<String, Any?>>>

    @Test
    fun setUpsAreThePythonOnes() {
        val made = cases.getValue("made")
        assertTrue(made.size >= 8)
        val bad = Mismatches("set-ups")
        for (c in made) {
            @Suppress("UNCHECKED_CAST")
            val manifest = c["manifest"] as Map<String, Any?>?
            val label = "${c["runtime"]} ${c["options"]}"
            try {
                val got = RecommendedSetup.recommended(c["runtime"] as String, manifest, (c["base_lr"] as Number).toDouble(),
                    (c["nominal_steps"] as Number).toLong(), SetupOptions.fromJson(c["options"]))
                val json = Json.parse(Json.write(got.toJson()))
                if ("expect" !in c) bad.add("$label: made, Python refused: ${(c["error"] as Map<*, *>)["message"]}")
                else if (json != c["expect"]) bad.add("$label: $json\n  Python ${c["expect"]}")
                else if (RecommendedSetup.fromJson(json).toJson().let { Json.parse(Json.write(it)) } != json) {
                    bad.add("$label: does not read back")
                }
            } catch (e: ValidationError) {
                val err = c["error"] as Map<*, *>?
                if (err == null) bad.add("$label: refused (${e.message}), Python made it")
                else if (e.message != err["message"]) bad.add("$label: '${e.message}', Python '${err["message"]}'")
            }
        }
        bad.check()
    }

    @Test
    fun mismatchedHalvesAreRefusedNamingBoth() {
        val refused = cases.getValue("refused")
        assertTrue(refused.size >= 8)
        val bad = Mismatches("refusals")
        for (c in refused) {
            try {
                RecommendedSetup.fromJson(c["setup"])
                bad.add("accepted: ${c["message"]}")
            } catch (e: ValidationError) {
                if (e.field != c["field"] || e.message != c["message"]) bad.add("'${e.message}', Python '${c["message"]}'")
            }
        }
        bad.check()
        assertEquals(0, bad.count)
    }
}
