package org.mobilelr.core

/**
 * Budget planner, cost and ambient estimators (Kotlin twin of `mobile_lr/budget.py`).
 *
 * [Budget.plan] integrates the device model one training step at a time and stops at
 * the first step whose end would be below the battery floor, above the allowed thermal
 * status, past the time budget or past `maxSteps`; runs of identical steps are jumped
 * over in closed form. The step counts and limiting factors are matched exactly and
 * the energies and durations to 1e-12 against the Python reference (golden planner cases).
 */
data class Policy(
    val batteryFloor: Double = 0.2,
    val maxThermal: Int = ThermalStatus.MODERATE,
    val windowS: Double? = null,
    val deadlineS: Double? = null,
    val chargingOnly: Boolean = false,
    val thermalMarginC: Double = 1.0,
    val horizon: String = "session",
    val windowGapS: Double = 0.0
) {
    /** Temperature a step's end must stay below: next status's threshold minus the margin. */
    fun thermalLimitC(profile: DeviceProfile): Double = profile.threshold(maxThermal + 1) - thermalMarginC

    fun toJson(): Map<String, Any?> = linkedMapOf(
        "format" to FORMAT, "battery_floor" to batteryFloor, "max_thermal" to ThermalStatus.name(maxThermal),
        "window_s" to windowS, "deadline_s" to deadlineS, "charging_only" to chargingOnly,
        "thermal_margin_c" to thermalMarginC, "horizon" to horizon, "window_gap_s" to windowGapS)

    companion object {
        const val FORMAT = "mobile-lr.policy/1"
        val HORIZONS = listOf("session", "deadline")
        /** The longest span of device time a policy may name, a year (Python's `MAX_SPAN_S`). */
        const val MAX_SPAN_S = 366 * 86400.0
        /** The largest thermal margin, in K (Python's `MAX_MARGIN_C`). */
        const val MAX_MARGIN_C = 100.0

        fun fromJson(value: Any?, path: String = ""): Policy {
            val obj = getObject(value, path)
            checkKeys(obj, path, listOf("format", "battery_floor", "max_thermal", "window_s", "deadline_s",
                "charging_only", "thermal_margin_c", "horizon", "window_gap_s"))
            val fmt = if ("format" in obj) obj["format"] else FORMAT
            if (fmt != FORMAT) throw ValidationError(join(path, "format"), "unknown format ${pyRepr(fmt)}", FORMAT)
            val horizon = getChoice(obj, "horizon", path, HORIZONS, "session")
            if (horizon == "deadline" && obj["deadline_s"] == null) {
                throw ValidationError(join(path, "deadline_s"), "missing: horizon 'deadline' needs a deadline",
                    "a device time in seconds")
            }
            return Policy(
                batteryFloor = getNumberOr(obj, "battery_floor", path, 0.2, lo = 0.0, hi = 1.0, hiOpen = true)!!,
                maxThermal = ThermalStatus.parse(if ("max_thermal" in obj) obj["max_thermal"] else "MODERATE",
                    join(path, "max_thermal")),
                windowS = if (obj["window_s"] == null) null
                    else getNumber(obj, "window_s", path, lo = 0.0, hi = MAX_SPAN_S, loOpen = true),
                deadlineS = if (obj["deadline_s"] == null) null
                    else getNumber(obj, "deadline_s", path, lo = -MAX_SPAN_S, hi = MAX_SPAN_S),
                chargingOnly = getBoolOr(obj, "charging_only", path, false),
                thermalMarginC = getNumberOr(obj, "thermal_margin_c", path, 1.0, lo = 0.0, hi = MAX_MARGIN_C)!!,
                horizon = horizon,
                windowGapS = getNumberOr(obj, "window_gap_s", path, 0.0, lo = 0.0, hi = MAX_SPAN_S)!!)
        }
    }
}

/** Cost of one training step at full speed: wall seconds and whole-device joules. */
data class StepCost(val seconds: Double, val joules: Double) {
    init {
        checkNumber(seconds, "step_seconds", lo = 0.0, loOpen = true)
        checkNumber(joules, "step_joules", lo = 0.0, loOpen = true)
    }

    val powerW: Double get() = joules / seconds

    companion object {
        fun fromProfile(profile: DeviceProfile) = StepCost(profile.stepSeconds, profile.stepJoules)
    }
}

/** The planner's forecast: steps affordable now, what stops them (battery, thermal, time, none),
 *  and the predicted cost and end ("plan" names the schedule's plan history only). */
data class Forecast(
    val steps: Long,
    val limitingFactor: String,
    val energyJ: Double,
    val seconds: Double,
    val endLevel: Double,
    val endTemperatureC: Double,
    val endStatus: Int,
    val detail: String = ""
) {
    fun toJson(): Map<String, Any?> = linkedMapOf(
        "steps" to steps, "limiting_factor" to limitingFactor, "energy_j" to energyJ, "seconds" to seconds,
        "end_level" to endLevel, "end_temperature_c" to endTemperatureC,
        "end_status" to ThermalStatus.name(endStatus), "detail" to detail)
}

object Budget {
    const val MAX_PLAN_STEPS = 1_000_000_000L
    val LIMITING_FACTORS = listOf("battery", "thermal", "time", "none")

    /** The limit the end of a step breaks, in the order battery, thermal, time (null: none). */
    fun brokenLimit(policy: Policy, new: DeviceState, elapsed: Double, timeBudget: Double,
                    theta: Double, floor: Double): String? {
        if (new.level < floor || new.level <= 0.0) return "battery"
        if (new.temperatureC >= theta || new.thermalStatus > policy.maxThermal) return "thermal"
        if (elapsed > timeBudget) return "time"
        return null
    }

    /**
     * Steps affordable from [state0] under [policy] at per-step full-speed [cost].
     * [timeBudgetS] is the time left in the session (default: the policy's window, else the
     * profile's OS window); it is cut at the policy's deadline; [maxSteps] caps the count.
     */
    fun plan(profile: DeviceProfile, state0: DeviceState, policy: Policy, cost: StepCost,
             maxSteps: Long? = null, timeBudgetS: Double? = null): Forecast {
        val cap = if (maxSteps == null) MAX_PLAN_STEPS else Py.max(0L, maxSteps)
        var timeBudget = timeBudgetS ?: (policy.windowS ?: profile.windowFor(state0.charging))
        if (policy.deadlineS != null) timeBudget = Py.min(timeBudget, policy.deadlineS - state0.timeS)
        val theta = policy.thermalLimitC(profile)
        val floor = effectiveFloor(profile, policy, state0.charging)

        fun result(steps: Long, factor: String, energy: Double, seconds: Double, st: DeviceState, detail: String = "") =
            Forecast(steps, factor, energy, seconds, st.level, st.temperatureC, st.thermalStatus, detail)

        if (!state0.charging && (policy.chargingOnly || profile.requiresCharging)) {
            return result(0, "battery", 0.0, 0.0, state0, "not charging")
        }
        if (!state0.charging && profile.batteryNotLow && state0.level <= profile.lowBatteryLevel) {
            return result(0, "battery", 0.0, 0.0, state0, "battery low")
        }
        if (state0.level < policy.batteryFloor) return result(0, "battery", 0.0, 0.0, state0, "below the floor")
        if (state0.thermalStatus > policy.maxThermal) {
            return result(0, "thermal", 0.0, 0.0, state0, "thermal status above the policy")
        }
        if (timeBudget <= 0.0) return result(0, "time", 0.0, 0.0, state0, "no time left")

        val amb = state0.ambientC ?: profile.ambientC
        var state = DeviceState(state0.level, state0.charging, state0.temperatureC, state0.thermalStatus, 0.0, amb)
        val pIdle = profile.idlePowerW
        val pFull = Py.max(cost.powerW, pIdle)
        var steps = 0L
        var elapsed = 0.0
        var energy = 0.0
        while (steps < cap) {
            val m = profile.throughput[state.thermalStatus]
            val d = cost.seconds / m
            val load = profile.loadPower(m, pFull)
            val jump = Py.min(Py.min(Physics.jumpLength(profile, state, load, d, theta, amb, floor),
                Physics.stepsBelow((timeBudget - elapsed) / d)), cap - steps)
            if (jump >= 2) {
                val jumped = Physics.jump(profile, state, load, d, jump, theta, amb, floor)
                if (jumped != null) {
                    state = jumped
                    steps += jump
                    elapsed += jump.toDouble() * d
                    energy += jump.toDouble() * load * d
                    continue
                }
            }
            val (new, ledger) = Device.advance(profile, state, load, d)
            val factor = brokenLimit(policy, new, elapsed + d, timeBudget, theta, floor)
            if (factor != null) return result(steps, factor, energy, elapsed, state)
            state = new
            steps += 1
            elapsed += d
            energy += ledger.consumedJ
        }
        return result(steps, "none", energy, elapsed, state)
    }

    /** The policy's floor, raised above the OS low-battery level for an unplugged "battery not low" job. */
    fun effectiveFloor(profile: DeviceProfile, policy: Policy, charging: Boolean): Double {
        if (profile.batteryNotLow && !charging) {
            return Py.max(policy.batteryFloor, Math.nextUp(profile.lowBatteryLevel))
        }
        return policy.batteryFloor
    }

    /** Steps per second a phone can keep up for hours under the thermal limit. */
    fun sustainedRate(profile: DeviceProfile, policy: Policy, cost: StepCost, charging: Boolean,
                      ambientC: Double? = null): Double {
        val amb = ambientC ?: profile.ambientC
        val theta = policy.thermalLimitC(profile)
        val pIdle = profile.idlePowerW
        val pFull = Py.max(cost.powerW, pIdle)
        if (theta.isNaN() || theta.isInfinite()) return 1.0 / cost.seconds
        var allowed = (theta - amb) / profile.thermalResistanceKPerW
        if (charging) allowed -= (1.0 - profile.chargeEfficiency) * profile.chargePowerW
        if (allowed >= pFull) return 1.0 / cost.seconds
        if (allowed <= pIdle) return 0.0
        return (allowed - pIdle) / (pFull - pIdle) / cost.seconds
    }
}

/** What [CostEstimator.band] guarantees (twin of `mobile_lr.budget.CostBand`). */
data class CostBand(val capSeconds: Double, val capPowerW: Double, val maxSeconds: Double, val maxPowerW: Double,
                    val maxLoadPowerW: Double, val energiesLeft: Double)

/**
 * Robust running estimate of the full-speed step time and power (twin of
 * `mobile_lr.budget.CostEstimator`): median of the last [window] observations once there
 * are [minObservations], the profile's prior before; pessimistic factors shrink from
 * [priorFactor] to the observed spread.
 */
class CostEstimator(
    val prior: StepCost,
    val idlePowerW: Double,
    val window: Int = 15,
    val minObservations: Int = 3,
    val priorFactor: Double = 3.0,
    val margin: Double = 0.1,
    val unobservedPowerFactor: Double = 1.5
) {
    // the last [window] observations, kept in place (no copy per step)
    private val secondsBuf = ArrayList<Double>()
    private val powersBuf = ArrayList<Double>()
    val seconds: List<Double> get() = secondsBuf
    val powers: List<Double> get() = powersBuf
    var count: Long = 0
        private set

    init {
        if (window < 1 || minObservations < 1 || minObservations > window) {
            throw ValidationError("estimator.window", "need 1 <= min_observations <= window")
        }
        checkNumber(priorFactor, "estimator.prior_factor", lo = 1.0)
        checkNumber(margin, "estimator.margin", lo = 0.0)
        checkNumber(unobservedPowerFactor, "estimator.unobserved_power_factor", lo = 1.0)
    }

    private fun push(xs: ArrayList<Double>, x: Double) {
        xs.add(x)
        if (xs.size > window) xs.removeAt(0)
    }

    /** Record one step; non-finite or non-positive values are ignored. Returns what was recorded:
     *  (full-speed seconds, full-speed power or null), null if nothing. */
    fun observe(stepSeconds: Double, energyJ: Double? = null, throttle: Double = 1.0): Pair<Double, Double?>? {
        if (!(Py.isFinite(stepSeconds) && stepSeconds > 0.0 && throttle > 0.0 && throttle <= 1.0)) return null
        count += 1
        val fullS = stepSeconds * throttle
        push(secondsBuf, fullS)
        if (energyJ != null && Py.isFinite(energyJ) && energyJ > 0.0) {
            val power = energyJ / stepSeconds
            val full = Py.max(idlePowerW + (power - idlePowerW) / throttle, 1e-9)
            push(powersBuf, full)
            return Pair(fullS, full)
        }
        return Pair(fullS, null)
    }

    val warm: Boolean get() = seconds.size >= minObservations

    private fun median(xs: List<Double>): Double {
        val s = xs.sorted()
        val n = s.size
        return if (n % 2 == 1) s[n / 2] else (s[n / 2 - 1] + s[n / 2]) / 2.0
    }

    private fun factor(xs: List<Double>, med: Double): Double {
        val lo = 1.0 + margin
        var mx = xs[0]
        for (x in xs) mx = Py.max(mx, x)
        return Py.min(priorFactor, Py.max(lo, lo * mx / med))
    }

    private fun secondsEst(): Pair<Double, Double> {
        if (seconds.size < minObservations) return Pair(prior.seconds, priorFactor)
        val med = median(seconds)
        return Pair(med, factor(seconds, med))
    }

    private fun powerEst(): Pair<Double, Double> {
        if (powers.size < minObservations) {
            val f = if (seconds.size < minObservations) priorFactor else unobservedPowerFactor
            return Pair(prior.powerW, f)
        }
        val med = median(powers)
        return Pair(med, factor(powers, med))
    }

    fun estimate(): StepCost {
        val s = secondsEst().first
        val p = powerEst().first
        return StepCost(s, s * p)
    }

    fun pessimistic(): StepCost {
        val (s, ks) = secondsEst()
        val (p, kp) = powerEst()
        return StepCost(s * ks, s * ks * p * kp)
    }

    private fun largest(xs: List<Double>): Double {
        var mx = xs[0]
        for (x in xs) mx = Py.max(mx, x)
        return mx
    }

    /** How far observations may go before [pessimistic] can exceed a cap (null while the step time
     *  is still the prior's); see `CostEstimator.band` in Python. */
    fun band(widen: Double): CostBand? {
        if (!warm) return null
        val lo = (1.0 + margin) * (1.0 + 1e-12)
        val maxS = largest(seconds) * widen
        val maxP: Double
        val capP: Double
        val left: Double
        if (powers.size >= minObservations) {
            maxP = largest(powers) * widen
            left = Double.POSITIVE_INFINITY
            capP = lo * maxP
        } else {
            maxP = prior.powerW * unobservedPowerFactor * (1.0 + 1e-12)
            capP = maxP
            left = (minObservations - powers.size - 1).toDouble()
        }
        return CostBand(lo * maxS, capP, maxS, maxP, Py.max(maxP, prior.powerW), left)
    }

    fun toJson(): Map<String, Any?> = linkedMapOf("seconds" to ArrayList(seconds), "powers" to ArrayList(powers),
        "count" to count)

    fun load(value: Any?, path: String = "estimator") {
        val obj = getObject(value, path)
        checkKeys(obj, path, listOf("seconds", "powers", "count"), listOf("seconds", "powers"))
        val lists = HashMap<String, List<Double>>()
        for (key in listOf("seconds", "powers")) {
            val vals = obj[key] as? List<*> ?: throw ValidationError(join(path, key), "expected a list of numbers")
            lists[key] = vals.mapIndexed { i, v -> checkNumber(v, join(join(path, key), i), lo = 0.0, loOpen = true) }
        }
        val s = lists.getValue("seconds")
        val p = lists.getValue("powers")
        secondsBuf.clear()
        secondsBuf.addAll(s.subList(Py.max(0L, (s.size - window).toLong()).toInt(), s.size))
        powersBuf.clear()
        powersBuf.addAll(p.subList(Py.max(0L, (p.size - window).toLong()).toInt(), p.size))
        count = getIntOr(obj, "count", path, seconds.size.toLong(), lo = 0)!!
    }
}

/**
 * Least-squares estimate of the ambient temperature a phone cannot measure (twin of
 * `mobile_lr.budget.AmbientEstimator`): every reported interval is one observation
 * `y = amb * x` of the RC model, weighed with a forgetting factor.
 */
class AmbientEstimator(val profile: DeviceProfile, val forgetS: Double = 1800.0, priorWeight: Double = 0.01) {
    var sxx: Double = priorWeight
        private set
    var sxy: Double = priorWeight * profile.ambientC
        private set

    val value: Double get() = Py.min(80.0, Py.max(-50.0, sxy / sxx))

    /** One reported interval; [steps] are (load W, seconds) of the steps run in it. */
    fun observe(start: DeviceState, end: DeviceState, steps: List<Pair<Double, Double>>) {
        val dt = end.timeS - start.timeS
        if (!(dt > 0.0)) return
        var sim = start.copy(ambientC = 0.0, timeS = 0.0)
        var busy = 0.0
        for ((load, secs) in steps) {
            sim = Device.advance(profile, sim, load, secs).first
            busy += secs
        }
        if (dt > busy) sim = Device.advance(profile, sim, profile.idlePowerW, dt - busy).first
        val x = 1.0 - StrictMath.exp(-dt / profile.tauS)
        val y = end.temperatureC - sim.temperatureC
        val lam = StrictMath.exp(-dt / forgetS)
        sxx = lam * sxx + x * x
        sxy = lam * sxy + x * y
    }

    fun toJson(): Map<String, Any?> = linkedMapOf("sxx" to sxx, "sxy" to sxy)

    fun load(value: Any?, path: String = "ambient") {
        val obj = getObject(value, path)
        checkKeys(obj, path, listOf("sxx", "sxy"), listOf("sxx", "sxy"))
        sxx = getNumber(obj, "sxx", path, lo = 0.0, loOpen = true)
        sxy = getNumber(obj, "sxy", path)
    }
}
