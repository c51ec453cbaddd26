package org.mobilelr.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/** Every golden schedule case: the Kotlin LRs equal the Python ones (1e-12 relative). */
class ScheduleGoldenTest {
    private val cases = Golden.section("schedules")

    @Test
    fun goldenFileFormat() {
        assertEquals("mobile-lr.golden/1", Golden.data["format"])
    }

    @Test
    fun coversEveryShapeAndEnoughRandomSpecs() {
        val kinds = HashSet<String>()
        for (c in cases) {
            @Suppress("UNCHECKED_CAST")
            val shape = (c["spec"] as Map<String, Any?>)["shape"] as Map<String, Any?>
            kinds.add(shape["type"] as String)
        }
        assertEquals(ScheduleSpec.SHAPE_TYPES.toSet(), kinds)
        val random = cases.count { (it["name"] as String).startsWith("random ") }
        assertTrue("only $random random specs", random >= 200)
        val warmups = cases.count { @Suppress("UNCHECKED_CAST") ((it["spec"] as Map<String, Any?>).containsKey("warmup")) }
        assertTrue("only $warmups specs with a warm-up", warmups >= 20)
        val replans = cases.count { (it["plan"] as List<*>).size > 1 }
        assertTrue("only $replans cases with re-plans", replans >= 100)
        for (mode in ScheduleSpec.BUDGET_MODES) {
            assertTrue("no case with budget mode $mode", cases.any {
                @Suppress("UNCHECKED_CAST")
                val budget = (it["spec"] as Map<String, Any?>)["budget"] as Map<String, Any?>?
                (budget?.get("mode") ?: "replan") == mode
            })
        }
    }

    @Test
    fun everyLearningRateMatchesPython() {
        val bad = Mismatches("learning rates")
        var checked = 0
        for (c in cases) {
            val name = c["name"] as String
            val sched = try {
                ScheduleSpec.parse(c["spec"])
            } catch (e: ValidationError) {
                bad.add("$name: refused a spec Python accepts: ${e.message}")
                continue
            }
            val plan = Golden.plan(c["plan"])
            val steps = Golden.longs(c["steps"])
            val expected = Golden.doubles(c["lr"])
            var states: List<PlateauState>? = null
            if ("metrics" in c) {
                val list = ArrayList<PlateauState>()
                list.add(sched.plateauStart())
                for (m in Golden.doubles(c["metrics"])) list.add(sched.plateauObserve(list[list.size - 1], m))
                states = list
            }
            for (i in steps.indices) {
                val t = steps[i]
                val lr = sched.lr(t, plan, states?.get(t.toInt()))
                checked++
                if (!Golden.close(expected[i], lr)) {
                    bad.add("$name: step $t plan ${c["plan"]}: python ${expected[i]} kotlin $lr " +
                        "(rel ${Math.abs(lr - expected[i]) / Math.abs(expected[i])})")
                }
            }
        }
        bad.check()
        assertTrue("checked only $checked learning rates", checked > 10000)
    }

    @Test
    fun everyRefusedSpecNamesTheSameField() {
        val invalid = Golden.section("invalid_specs")
        assertTrue(invalid.size >= 40)
        val bad = Mismatches("refused specs")
        for (c in invalid) {
            val spec = Golden.unsafe(c["spec"])
            try {
                ScheduleSpec.parse(spec)
                bad.add("accepted ${c["spec"]} (python: ${c["message"]})")
            } catch (e: ValidationError) {
                if (e.field != c["field"]) bad.add("${c["spec"]}: kotlin field ${e.field} (${e.message}), python ${c["message"]}")
            }
        }
        bad.check()
    }
}
