package org.mobilelr.core

/**
 * Why training pauses or ends: the JSON words of `Pause.reason`, `Stop.reason` (Kotlin twin of
 * `mobile_lr.rules.Reason`).
 */
object Reason {
    const val DONE = "done"
    const val WINDOW = "window"
    const val BATTERY = "battery"
    const val THERMAL = "thermal"
    const val NOT_CHARGING = "not-charging"
    const val BATTERY_LOW = "battery-low"
    const val BUDGET = "budget"
    const val BUDGET_CUT = "budget-cut"
    const val DEADLINE = "deadline"
    const val DIVERGED = "diverged"
}

/**
 * The manager's rules after a forecast, as pure functions (Kotlin twin of `mobile_lr/rules.py`):
 * the pause a forecast's limit gives, how long to rest, how many steps the run can still
 * expect, and whether to run, pause or stop.
 */
object Rules {
    const val RUN = 0
    const val PAUSE = 1
    const val STOP_BUDGET = 2
    const val STOP_CUT = 3

    /** The reason a forecast's limit gives a pause. */
    fun limitReason(factor: String, detail: String): String = when {
        detail == "not charging" -> Reason.NOT_CHARGING
        detail == "battery low" -> Reason.BATTERY_LOW
        factor == "time" -> Reason.WINDOW
        factor == "none" -> Reason.DONE
        factor == "thermal" -> Reason.THERMAL
        else -> Reason.BATTERY
    }

    /** After a thermal pause, resume once the temperature is this low. */
    fun resumeTargetC(profile: DeviceProfile, policy: Policy, resumeGapC: Double): Double =
        policy.thermalLimitC(profile) - resumeGapC

    /**
     * Seconds of rest after which [reason] may have cleared for a phone in [state] (null when it
     * depends on the user): cool down to [resumeGapC] below the thermal limit; on the charger,
     * charge back up to the floor.
     */
    fun resumeHint(profile: DeviceProfile, policy: Policy, resumeGapC: Double, reason: String,
                   state: DeviceState): Double? {
        val p = profile
        if (reason == Reason.THERMAL) {
            val hint = Device.coolDownSeconds(p, state, resumeTargetC(p, policy, resumeGapC))
            return if (Py.isFinite(hint)) hint else null
        }
        if (reason == Reason.BATTERY && state.charging) {
            val rate = (p.chargeEfficiency * p.chargePowerW - p.idlePowerW) / p.batteryJ
            if (rate > 0.0) return Py.max(0.0, (policy.batteryFloor - state.level) / rate)
        }
        return null
    }

    /**
     * Steps expected after a session's forecast (which ends after [seconds] in state [end],
     * because of [factor]) before the run ends: horizon "deadline": until the deadline, later
     * time counting window / (window + gap); horizon "session" with a thermal-limited forecast:
     * until the window's end (or the deadline) after the cool-down from the forecast's end.
     * Sustained rate, at most the battery spare.
     */
    fun laterSteps(profile: DeviceProfile, policy: Policy, cost: StepCost, resumeGapC: Double,
                   factor: String, end: DeviceState, nowS: Double, seconds: Double, windowEndS: Double?): Long {
        if (factor == "none") return 0
        val charging = end.charging || policy.chargingOnly
        val deadline = policy.deadlineS
        var left: Double
        if (policy.horizon == "deadline" && deadline != null) {
            left = deadline - nowS - seconds
            val window = policy.windowS ?: profile.windowFor(charging)
            left *= window / (window + policy.windowGapS)
        } else if (factor == "thermal" && windowEndS != null) {
            val until = if (deadline != null) Py.min(windowEndS, deadline) else windowEndS
            left = until - nowS - seconds -
                Device.coolDownSeconds(profile, end, resumeTargetC(profile, policy, resumeGapC))
        } else {
            return 0
        }
        val rate = Budget.sustainedRate(profile, policy, cost, charging, end.ambientC)
        val byTime = floorLong(Py.max(0.0, left) * rate)
        var drain = cost.joules
        if (charging) drain -= profile.chargeEfficiency * profile.chargePowerW * cost.seconds
        if (drain <= 0.0) return byTime
        val floor = Budget.effectiveFloor(profile, policy, charging)
        val spare = (end.level - floor) * profile.batteryJ
        return Py.min(byTime, floorLong(Py.max(0.0, spare) / drain))
    }

    /**
     * What a run does after a forecast of [stepsNow] steps: [RUN] while a step is affordable;
     * else [PAUSE] if more steps are expected later (or nothing ran yet); else the budget is
     * spent: [STOP_BUDGET] when the last Run was the last step of its plan, [STOP_CUT] otherwise.
     */
    fun nextMove(stepsNow: Long, expectedLater: Long, ranBefore: Boolean, lastRunWasFinal: Boolean): Int = when {
        stepsNow > 0 -> RUN
        expectedLater > 0 || !ranBefore -> PAUSE
        lastRunWasFinal -> STOP_BUDGET
        else -> STOP_CUT
    }

    private fun floorLong(x: Double): Long = StrictMath.floor(x).toLong()
}
