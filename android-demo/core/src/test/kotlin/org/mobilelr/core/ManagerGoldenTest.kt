package org.mobilelr.core

import org.junit.Assert.assertTrue
import org.junit.Test

/**
 * Every golden manager trace (written by `mobile_lr/testing/golden_cases.py`): the Kotlin manager is
 * given the same calls with the same inputs (device readings, observed losses, step times and
 * energies, OS windows, checkpoints, eval metrics, a JSON state round trip) and must answer
 * every `next()` with the same decision (floats to 1e-12 relative, everything else exactly)
 * and end in the same state as the Python manager.
 */
class ManagerGoldenTest {
    private val traces = Golden.section("manager")

    private fun num(x: Any?): Double? = when (val v = Golden.unsafe(x)) {
        null -> null
        else -> (v as Number).toDouble()
    }

    @Test
    fun coversTheDecisions() {
        assertTrue("only ${traces.size} traces", traces.size >= 50)
        val seen = HashSet<String>()
        for (t in traces) for (e in t["events"] as List<*>) {
            val ev = e as Map<*, *>
            if (ev["do"] == "next") {
                val d = ev["expect"] as Map<*, *>
                seen.add("${d["type"]}:${d["reason"] ?: d["phase"]}")
            }
        }
        for (need in listOf("run:train", "run:range-test", "pause:thermal", "pause:battery", "stop:done",
                "stop:budget", "stop:diverged", "rollback:non-finite loss", "rollback:range-test")) {
            assertTrue("no $need decision in the traces (seen: $seen)", need in seen)
        }
    }

    /** Compare two JSON trees: numbers to 1e-12 relative, the rest exactly. */
    private fun same(a: Any?, b: Any?): Boolean = when {
        a is Number && b is Number -> {
            val x = a.toDouble()
            val y = b.toDouble()
            if ((a is Long) != (b is Long) && x != Math.floor(x)) false else Golden.close(x, y)
        }
        a is Map<*, *> && b is Map<*, *> -> a.keys == b.keys && a.keys.all { same(a[it], b[it]) }
        a is List<*> && b is List<*> -> a.size == b.size && a.indices.all { same(a[it], b[it]) }
        else -> a == b
    }

    @Test
    fun everyDecisionMatchesPython() {
        val bad = Mismatches("manager decisions")
        var decisions = 0
        for (t in traces) {
            val name = t["name"] as String
            var mgr = ScheduleManager(ScheduleSpec.parse(t["spec"]), DeviceProfile.fromJson(t["profile"], "profile"),
                Policy.fromJson(t["policy"], "policy"), ManagerConfig.fromJson(t["config"]),
                DeviceState.fromJson(t["state"]))
            var failedHere = false
            for ((i, e) in (t["events"] as List<*>).withIndex()) {
                @Suppress("UNCHECKED_CAST")
                val ev = e as Map<String, Any?>
                when (ev["do"]) {
                    "next" -> {
                        val got = mgr.next().toJson()
                        decisions++
                        val want = ev["expect"]
                        if (!same(want, got) || mgr.plannedTotal != (ev["planned_total"] as Number?)?.toLong() ||
                            mgr.lastPlan?.steps != (ev["plan_steps"] as Number?)?.toLong()) {
                            bad.add("$name event $i: python $want (planned ${ev["planned_total"]}, plan " +
                                "${ev["plan_steps"]}) kotlin $got (planned ${mgr.plannedTotal}, plan ${mgr.lastPlan?.steps})")
                            failedHere = true
                        }
                    }
                    "observe" -> mgr.observe(num(ev["loss"]), num(ev["seconds"]), num(ev["energy_j"]))
                    "update" -> mgr.updateDevice(DeviceState.fromJson(ev["state"]))
                    "window" -> mgr.beginWindow(num(ev["now_s"]), num(ev["length_s"]))
                    "checkpoint" -> mgr.markCheckpoint()
                    "eval" -> mgr.observeEval(num(ev["metric"])!!)
                    "resume" -> mgr = ScheduleManager.fromStateDict(Json.parse(Json.write(mgr.stateDict())))
                    else -> throw AssertionError("unknown event ${ev["do"]}")
                }
                if (failedHere) break  // later events of a diverged trace say nothing new
            }
            if (!failedHere) {
                val want = Golden.unsafe(t["final_state"])
                val got = Json.parse(Json.write(mgr.mutableState()))
                if (!same(want, got)) bad.add("$name: final state python $want\n kotlin $got")
            }
        }
        bad.check()
        assertTrue("checked only $decisions decisions", decisions > 3000)
    }
}
