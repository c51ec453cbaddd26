package org.mobilelr.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test

/**
 * Every golden planner case (written by `mobile_lr/testing/golden_cases.py` from `mobile_lr.budget.plan`
 * and `CostEstimator`): the same step count, limiting factor, detail and end status exactly,
 * the same energy, duration and end state to 1e-12 relative.
 */
class PlannerGoldenTest {
    private val cases = Golden.section("planner")

    private fun num(x: Any?): Double? = (x as Number?)?.toDouble()

    @Test
    fun coversEveryLimitingFactor() {
        assertTrue("only ${cases.size} planner cases", cases.size >= 200)
        val factors = cases.map { (it["plan"] as Map<*, *>)["limiting_factor"] }.toSet()
        assertEquals(Budget.LIMITING_FACTORS.toSet(), factors)
    }

    @Test
    fun everyPlanMatchesPython() {
        val bad = Mismatches("plans")
        for (c in cases) {
            val name = c["name"] as String
            val profile = DeviceProfile.fromJson(c["profile"], "profile")
            val state = DeviceState.fromJson(c["state"])
            val policy = Policy.fromJson(c["policy"], "policy")
            val cost = Golden.doubles(c["cost"])
            val p = Budget.plan(profile, state, policy, StepCost(cost[0], cost[1]),
                (c["max_steps"] as Number?)?.toLong(), num(c["time_budget_s"]))
            @Suppress("UNCHECKED_CAST")
            val want = c["plan"] as Map<String, Any?>
            val got = p.toJson()
            for (key in listOf("steps", "limiting_factor", "detail", "end_status")) {
                if (want[key] != got[key]) bad.add("$name: $key python ${want[key]} kotlin ${got[key]}")
            }
            for (key in listOf("energy_j", "seconds", "end_level", "end_temperature_c")) {
                if (!Golden.close(num(want[key])!!, num(got[key])!!)) {
                    bad.add("$name: $key python ${want[key]} kotlin ${got[key]}")
                }
            }
        }
        bad.check()
    }

    @Test
    fun costEstimatorMatchesPython() {
        val bad = Mismatches("cost estimates")
        for (c in cases) {
            val profile = DeviceProfile.fromJson(c["profile"], "profile")
            @Suppress("UNCHECKED_CAST")
            val e = c["estimator"] as Map<String, Any?>
            val est = CostEstimator(StepCost.fromProfile(profile), profile.idlePowerW,
                window = (e["window"] as Number).toInt(), minObservations = 3)
            for (o in e["observations"] as List<*>) {
                val obs = o as List<*>
                est.observe(num(obs[0])!!, num(obs[1]), num(obs[2])!!)
            }
            for ((key, got) in listOf("estimate" to est.estimate(), "pessimistic" to est.pessimistic())) {
                val want = Golden.doubles(e[key])
                if (!Golden.close(want[0], got.seconds) || !Golden.close(want[1], got.joules)) {
                    bad.add("${c["name"]}: $key python $want kotlin [${got.seconds}, ${got.joules}]")
                }
            }
        }
        bad.check()
    }
}
