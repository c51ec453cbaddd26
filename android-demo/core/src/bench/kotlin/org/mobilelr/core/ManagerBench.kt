package org.mobilelr.core

import java.io.File

/**
 * The Kotlin manager's cost per step on the JVM (run by `scripts/bench.sh`, read by
 * `python -m bench.speed`): the same set-up as the Python bench (a profile, a cosine schedule,
 * a window of 1e9 s, 1e8 nominal steps, a phone at 90 %), three loops, each the best of
 * [BLOCKS] blocks of [STEPS] steps after a warm-up:
 *
 * - `held`: next() + observe() with the profile's own step cost (the plan in force holds);
 * - `planned`: the same with the hold dropped after every step (a full plan before each one);
 * - `reported`: updateDevice() + next() + observe() with the phone's state advanced by each
 *   step outside the timed calls (what an app does when it reads the battery every step).
 *
 * Prints one JSON object: nanoseconds per step of each loop.
 */
const val STEPS = 20000
const val BLOCKS = 7

private fun manager(profile: DeviceProfile): ScheduleManager {
    val spec = Json.parse("""{"format": "mobile-lr.schedule/1", "base_lr": 0.05, "shape": {"type": "cosine"}}""")
    return ScheduleManager(ScheduleSpec.parse(spec), profile, Policy(windowS = 1e9),
        ManagerConfig(nominalSteps = 100000000L), DeviceState.initial(profile, 0.9))
}

private fun best(blocks: Int, block: () -> Long): Double {
    var out = Double.POSITIVE_INFINITY
    for (i in 0 until blocks) out = Math.min(out, block().toDouble() / STEPS)
    return out
}

fun main(args: Array<String>) {
    val profile = DeviceProfile.fromJson(Json.parse(File(args[0]).readText()), "profile")
    val s = profile.stepSeconds
    val j = profile.stepJoules
    val held = manager(profile)
    val planned = manager(profile)
    val reported = manager(profile)
    var phone = DeviceState.initial(profile, 0.9)
    var sink = 0.0
    val timed = HashMap<String, Double>()
    for (round in 0..1) {  // round 0 warms the JIT up
        val blocks = if (round == 0) 2 else BLOCKS
        timed["held"] = best(blocks) {
            val t0 = System.nanoTime()
            for (i in 0 until STEPS) {
                val d = held.next()
                if (d is Decision.Run) sink += d.lr
                held.observe(1.0, s, j)
            }
            System.nanoTime() - t0
        }
        timed["planned"] = best(blocks) {
            val t0 = System.nanoTime()
            for (i in 0 until STEPS) {
                val d = planned.next()
                if (d is Decision.Run) sink += d.lr
                planned.observe(1.0, s, j)
                planned.hold.drop()
            }
            System.nanoTime() - t0
        }
        timed["reported"] = best(blocks) {
            var spent = 0L
            for (i in 0 until STEPS) {
                phone = Device.advance(profile, phone, profile.trainPowerW, s).first
                val t0 = System.nanoTime()
                reported.updateDevice(phone)
                val d = reported.next()
                if (d is Decision.Run) sink += d.lr
                reported.observe(1.0, s, j)
                spent += System.nanoTime() - t0
            }
            spent
        }
    }
    println("{\"held_ns\": ${timed["held"]}, \"planned_ns\": ${timed["planned"]}, " +
        "\"reported_ns\": ${timed["reported"]}, \"steps\": $STEPS, \"blocks\": $BLOCKS, \"sink\": ${sink > 0}}")
}
