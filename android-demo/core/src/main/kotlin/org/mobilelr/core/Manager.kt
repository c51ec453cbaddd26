package org.mobilelr.core

/**
 * The schedule manager: the object a training loop talks to (Kotlin twin of
 * `mobile_lr/manager.py`, same decisions, checked on golden traces).
 *
 * ```
 * val d = manager.next()           // Run | Pause | Stop | Rollback
 * if (d is Decision.Run) { loss = trainer.step(batch, d.lr); manager.observe(loss, seconds, joules) }
 * manager.updateDevice(state)      // BatteryManager + PowerManager readings
 * manager.stateDict() / ScheduleManager.fromStateDict(obj)   // plain JSON, exact resume
 * ```
 *
 * Before every step it plans from the device state it was last told with a pessimistic
 * per-step cost and runs the step only if the plan affords at least one, so it never
 * starts a step whose predicted end is below the battery floor or above the allowed
 * thermal status. See the Python module for the full description of the decisions.
 */
sealed class Decision {
    abstract fun toJson(): Map<String, Any?>

    data class Run(val step: Long, val lr: Double, val phase: String = "train") : Decision() {
        override fun toJson(): Map<String, Any?> = linkedMapOf("type" to "run", "step" to step, "lr" to lr, "phase" to phase)
    }

    data class Pause(val reason: String, val resumeHint: Double? = null) : Decision() {
        override fun toJson(): Map<String, Any?> = linkedMapOf("type" to "pause", "reason" to reason, "resume_hint" to resumeHint)
    }

    data class Stop(val reason: String, val detail: String = "") : Decision() {
        override fun toJson(): Map<String, Any?> = linkedMapOf("type" to "stop", "reason" to reason, "detail" to detail)
    }

    data class Rollback(val toStep: Long, val lrScale: Double, val failures: Long, val reason: String) : Decision() {
        override fun toJson(): Map<String, Any?> = linkedMapOf("type" to "rollback", "to_step" to toStep,
            "lr_scale" to lrScale, "failures" to failures, "reason" to reason)
    }
}

/** A peak-LR policy: (planned total at the start, nominal total, params) -> factor on the LRs. */
typealias PeakLrFn = (Long, Long, Map<String, Double>) -> Double

object PeakLrPolicies {
    private val registry = LinkedHashMap<String, PeakLrFn>()

    init {
        registry["none"] = { _, _, _ -> 1.0 }
        registry["budget_power"] = { planned, nominal, params ->
            val ratio = nominal.toDouble() / Py.max(planned, 1L).toDouble()
            Py.min(params["max_factor"] ?: 3.0, Py.max(1.0, Py.pow(ratio, params["power"] ?: 0.5)))
        }
    }

    fun register(name: String, fn: PeakLrFn) {
        registry[name] = fn
    }

    fun get(name: String): PeakLrFn? = registry[name]
    val names: List<String> get() = registry.keys.sorted()
}

/** Smith's LR range test, run once before the schedule starts (see the Python docstring). */
data class RangeTestConfig(
    val fraction: Double = 0.05,
    val minSteps: Long = 10,
    val maxSteps: Long = 100,
    val startFactor: Double = 1e-3,
    val endFactor: Double = 10.0,
    val smoothing: Double = 0.8,
    val divergeFactor: Double = 4.0,
    val skipStart: Double = 0.1
) {
    fun toJson(): Map<String, Any?> = linkedMapOf(
        "fraction" to fraction, "min_steps" to minSteps, "max_steps" to maxSteps, "start_factor" to startFactor,
        "end_factor" to endFactor, "smoothing" to smoothing, "diverge_factor" to divergeFactor,
        "skip_start" to skipStart)

    companion object {
        fun fromJson(value: Any?, path: String): RangeTestConfig {
            val obj = getObject(value, path)
            checkKeys(obj, path, listOf("fraction", "min_steps", "max_steps", "start_factor", "end_factor",
                "smoothing", "diverge_factor", "skip_start"))
            val d = RangeTestConfig()
            val fraction = getNumberOr(obj, "fraction", path, d.fraction, lo = 0.0, hi = 0.5, loOpen = true)!!
            val minSteps = getIntOr(obj, "min_steps", path, d.minSteps, lo = 3)!!
            val maxSteps = getIntOr(obj, "max_steps", path, d.maxSteps, lo = minSteps)!!
            val start = getNumberOr(obj, "start_factor", path, d.startFactor, lo = 0.0, loOpen = true)!!
            val end = getNumberOr(obj, "end_factor", path, d.endFactor, lo = start, loOpen = true)!!
            return RangeTestConfig(fraction, minSteps, maxSteps, start, end,
                getNumberOr(obj, "smoothing", path, d.smoothing, lo = 0.0, hi = 1.0, hiOpen = true)!!,
                getNumberOr(obj, "diverge_factor", path, d.divergeFactor, lo = 1.0, loOpen = true)!!,
                getNumberOr(obj, "skip_start", path, d.skipStart, lo = 0.0, hi = 0.5)!!)
        }
    }
}

/** Stated numbers of the manager (all JSON); see `mobile_lr.manager.ManagerConfig`. */
data class ManagerConfig(
    val nominalSteps: Long? = null,
    val priorFactor: Double = 3.0,
    val margin: Double = 0.1,
    val unobservedPowerFactor: Double = 1.5,
    val estimatorWindow: Long = 15,
    val minObservations: Long = 3,
    val replanTolerance: Long = 20,
    val nanLrFactor: Double = 0.5,
    val maxFailures: Long = 3,
    val resumeGapC: Double = 1.0,
    val rangeTest: RangeTestConfig? = null,
    val peakLr: Map<String, Any?>? = null
) {
    fun toJson(): Map<String, Any?> = linkedMapOf(
        "nominal_steps" to nominalSteps, "prior_factor" to priorFactor, "margin" to margin,
        "unobserved_power_factor" to unobservedPowerFactor, "estimator_window" to estimatorWindow,
        "min_observations" to minObservations, "replan_tolerance" to replanTolerance,
        "nan_lr_factor" to nanLrFactor, "max_failures" to maxFailures, "resume_gap_c" to resumeGapC,
        "range_test" to rangeTest?.toJson(),
        "peak_lr" to (if (peakLr != null) LinkedHashMap(peakLr) else linkedMapOf<String, Any?>("type" to "none")))

    companion object {
        private val FIELDS = listOf("nominal_steps", "prior_factor", "margin", "unobserved_power_factor",
            "estimator_window", "min_observations", "replan_tolerance", "nan_lr_factor", "max_failures",
            "resume_gap_c", "range_test", "peak_lr")

        fun fromJson(value: Any?, path: String = "config"): ManagerConfig {
            val obj = getObject(value, path)
            checkKeys(obj, path, FIELDS)
            val d = ManagerConfig()
            val nominal = if (obj["nominal_steps"] != null) getInt(obj, "nominal_steps", path, lo = 1) else null
            val prior = getNumberOr(obj, "prior_factor", path, d.priorFactor, lo = 1.0)!!
            val unobs = getNumberOr(obj, "unobserved_power_factor", path, d.unobservedPowerFactor, lo = 1.0)!!
            val margin = getNumberOr(obj, "margin", path, d.margin, lo = 0.0)!!
            val gap = getNumberOr(obj, "resume_gap_c", path, d.resumeGapC, lo = 0.0)!!
            val nanF = getNumberOr(obj, "nan_lr_factor", path, d.nanLrFactor, lo = 0.0, hi = 1.0, loOpen = true)!!
            val window = getIntOr(obj, "estimator_window", path, d.estimatorWindow, lo = 1)!!
            val minObs = getIntOr(obj, "min_observations", path, d.minObservations, lo = 1, hi = window)!!
            val tol = getIntOr(obj, "replan_tolerance", path, d.replanTolerance, lo = 1)!!
            val maxF = getIntOr(obj, "max_failures", path, d.maxFailures, lo = 0)!!
            val rt = obj["range_test"]?.let { RangeTestConfig.fromJson(it, join(path, "range_test")) }
            val peak = obj["peak_lr"]?.let { parsePeak(it, join(path, "peak_lr")) }
            return ManagerConfig(nominal, prior, margin, unobs, window, minObs, tol, nanF, maxF, gap, rt, peak)
        }

        private fun parsePeak(value: Any?, path: String): Map<String, Any?> {
            val obj = getObject(value, path)
            val name = if ("type" in obj) obj["type"] else "none"
            if (name !is String || PeakLrPolicies.get(name) == null) {
                throw ValidationError(join(path, "type"), "unknown peak-LR policy ${pyRepr(name)}",
                    PeakLrPolicies.names.joinToString(", "))
            }
            val out = LinkedHashMap<String, Any?>()
            out["type"] = name
            for (key in obj.keys) if (key != "type") out[key] = getNumber(obj, key, path)
            return out
        }
    }
}

/** The Run issued and not yet observed. */
data class Pending(val phase: String, val step: Long, val lr: Double, val status: Int) {
    fun toJson(): Map<String, Any?> = linkedMapOf("phase" to phase, "step" to step, "lr" to lr, "status" to status)
}

/** Schedule + planner + policy, driven one decision at a time. */
class ScheduleManager(
    val schedule: Schedule,
    val profile: DeviceProfile,
    val policy: Policy = Policy(),
    val config: ManagerConfig = ManagerConfig(),
    state: DeviceState? = null
) {
    val nominalSteps: Long = config.nominalSteps ?: schedule.totalSteps
        ?: throw ValidationError("config.nominal_steps", "the run's length is unknown",
            "nominal_steps in the config or total_steps in the schedule")
    val estimator = CostEstimator(StepCost.fromProfile(profile), profile.idlePowerW,
        config.estimatorWindow.toInt(), config.minObservations.toInt(), config.priorFactor, config.margin,
        config.unobservedPowerFactor)
    var device: DeviceState = state ?: DeviceState.initial(profile, 1.0)
        private set
    val ambient = AmbientEstimator(profile)
    private var reported: DeviceState? = null
    private var since = ArrayList<Pair<Double, Double>>()
    var step: Long = 0
        private set
    var planHistory: MutableList<PlanEntry> = ArrayList()
        private set
    var nanScale = 1.0
        private set
    var rangeScale = 1.0
        private set
    var peakFactor: Double? = null
        private set
    var failures: Long = 0
        private set
    var lastGoodStep: Long = 0
        private set
    var windowEndS: Double? = null
        private set
    var pending: Pending? = null
        private set
    private var pendingRollback: Decision.Rollback? = null
    var stopped: Decision.Stop? = null
        private set
    private var lastRunTotal: Long? = null
    var plateauState: PlateauState? = if (schedule.isPlateau) schedule.plateauStart() else null
        private set
    /** The range test's state, the same JSON object as the Python side's. */
    var rangeTest: MutableMap<String, Any?> = linkedMapOf("status" to (if (config.rangeTest == null) "off" else "pending"))
        private set
    val spent: MutableMap<String, Any?> = linkedMapOf("steps" to 0L, "seconds" to 0.0, "energy_j" to 0.0)
    var lastPlan: Plan? = null
        private set
    var predictedEnd: DeviceState? = null
        private set

    // ------------------------------------------------------------------ caller inputs
    /** The device state the caller just read (BatteryManager + PowerManager on a phone). */
    fun updateDevice(state: DeviceState) {
        val rep = reported
        if (state.ambientC == null && rep != null) ambient.observe(rep, state, since)
        reported = state
        since = ArrayList()
        device = state
    }

    private fun view(): DeviceState {
        if (device.ambientC != null) return device
        return DeviceState(device.level, device.charging, device.temperatureC, device.thermalStatus, device.timeS,
            ambient.value)
    }

    /** A new OS window (a Worker started): the session's time budget restarts. */
    fun beginWindow(nowS: Double? = null, lengthS: Double? = null) {
        val now = nowS ?: device.timeS
        val length = lengthS ?: (policy.windowS ?: profile.windowFor(device.charging))
        windowEndS = now + length
    }

    /**
     * The caller saved the model as it is after [step] steps; a rollback returns there.
     * Returns whether the checkpoint was taken as the rollback target (not while a rollback
     * is pending or the range test runs): only then may the caller keep it as such.
     */
    fun markCheckpoint(): Boolean {
        if (pendingRollback == null && rangeTest["status"] != "running") {
            lastGoodStep = step
            return true
        }
        return false
    }

    /** Report the outcome of the Run just issued (null = not measured). */
    fun observe(loss: Double? = null, stepSeconds: Double? = null, energyJ: Double? = null) {
        val run = pending ?: throw IllegalStateException("observe() without a Run to observe")
        pending = null
        val throttle = profile.throughput[run.status]
        if (stepSeconds != null) {
            estimator.observe(stepSeconds, energyJ, throttle)
            deadReckon(stepSeconds, energyJ, throttle)
            spent["seconds"] = (spent["seconds"] as Double) + stepSeconds
        }
        if (energyJ != null && Py.isFinite(energyJ)) spent["energy_j"] = (spent["energy_j"] as Double) + energyJ
        spent["steps"] = (spent["steps"] as Long) + 1
        val finite = loss == null || Py.isFinite(loss)
        if (run.phase == "range-test") {
            rangeObserve(loss ?: Double.NaN)
            return
        }
        if (!finite) {
            failures += 1
            if (failures > config.maxFailures) {
                stopped = Decision.Stop("diverged", "$failures non-finite losses")
                return
            }
            nanScale *= config.nanLrFactor
            pendingRollback = Decision.Rollback(lastGoodStep, nanScale, failures, "non-finite loss")
            return
        }
        step += 1
    }

    /** An evaluation metric for a `plateau` schedule (ignored by other shapes). */
    fun observeEval(metric: Double) {
        val st = plateauState
        if (st != null && Py.isFinite(metric)) plateauState = schedule.plateauObserve(st, metric)
    }

    private fun deadReckon(seconds: Double, energyJ: Double?, throttle: Double) {
        if (!(Py.isFinite(seconds) && seconds > 0.0)) return
        val load = if (energyJ != null && Py.isFinite(energyJ) && energyJ > 0.0) {
            energyJ / seconds
        } else {
            val cost = estimator.estimate()
            profile.idlePowerW + (Py.max(cost.powerW, profile.idlePowerW) - profile.idlePowerW) * throttle
        }
        since.add(Pair(load, seconds))
        val end = Device.advance(profile, view(), load, seconds).first
        device = DeviceState(end.level, end.charging, end.temperatureC, end.thermalStatus, end.timeS, device.ambientC)
    }

    // ------------------------------------------------------------------ decisions
    /** Factor on the schedule's LRs: range test x peak-LR policy x NaN cuts. */
    val lrScale: Double get() = rangeScale * (peakFactor ?: 1.0) * nanScale

    val plannedTotal: Long? get() = if (planHistory.isEmpty()) null else planHistory[planHistory.size - 1].total

    /** The LR the current plan history gives step [t] (no side effects). */
    fun lrAt(t: Long): Double {
        val hist = if (planHistory.isEmpty()) listOf(PlanEntry(0, nominalSteps)) else planHistory
        return schedule.lr(t, hist, plateauState) * lrScale
    }

    fun next(): Decision {
        predictedEnd = null
        stopped?.let { return it }
        if (pendingRollback != null) return applyRollback()
        if (step >= nominalSteps) return stop(Decision.Stop("done"))
        val now = device.timeS
        val deadline = policy.deadlineS
        if (deadline != null && now >= deadline) return stop(Decision.Stop("deadline"))
        if (windowEndS == null) beginWindow()
        val session = plan(nominalSteps - step)
        if (session.steps == 0L && priorBlocks(session)) {
            // manager._prior_blocks: no step is safe under the unmeasured cost and the phone cannot
            // cool further at rest; waiting would stall at zero steps forever.
            val spent = lastRunTotal == null || lastRunTotal == step
            return stop(Decision.Stop(if (spent) "budget" else "budget-cut", "thermal: too hot at rest for an unmeasured step"))
        }
        val budget = runBudget(session)
        if (rangeTest["status"] == "pending" || rangeTest["status"] == "running") {
            val decision = rangeNext(session, budget)
            if (decision != null) return decision
            if (pendingRollback != null) return applyRollback()
        }
        recordTotal(step + Py.min(budget, nominalSteps - step))
        if (session.steps == 0L) return noStep(session, budget)
        if (peakFactor == null) {
            val rule = LinkedHashMap(config.peakLr ?: linkedMapOf<String, Any?>("type" to "none"))
            val fn = PeakLrPolicies.get(rule.remove("type") as String)!!
            val params = LinkedHashMap<String, Double>()
            for ((k, v) in rule) params[k] = (v as Number).toDouble()
            val pt = plannedTotal
            peakFactor = fn(if (pt == null || pt == 0L) 1L else pt, nominalSteps, params)
        }
        val lr = lrAt(step)
        if (!(Py.isFinite(lr) && lr >= 0.0)) return stop(Decision.Stop("diverged", "schedule gave LR ${pyFloat(lr)}"))
        lastRunTotal = plannedTotal
        pending = Pending("train", step, lr, device.thermalStatus)
        return Decision.Run(step, lr)
    }

    private fun runBudget(session: Plan): Long {
        var budget = session.steps + laterSteps(session)
        if (session.steps > 0 && !estimator.warm) {
            val sizing = plan(nominalSteps - step, estimator.estimate())
            budget = Py.max(sizing.steps + laterSteps(sizing), 1L)
        }
        return budget
    }

    private fun priorBlocks(session: Plan): Boolean =
        !estimator.warm && pauseReason(session) == "thermal" && resumeHint("thermal") == null

    private fun plan(maxSteps: Long, cost0: StepCost? = null): Plan {
        val w = windowEndS
        val budget = if (w != null) w - device.timeS else null
        val gate = cost0 == null
        val cost = cost0 ?: estimator.pessimistic()
        val result = Budget.plan(profile, view(), policy, cost, maxSteps, budget)
        if (gate) {
            lastPlan = result
            if (result.steps >= 1) predictedEnd = oneStep(cost)
        }
        return result
    }

    private fun oneStep(cost: StepCost): DeviceState {
        val p = profile
        val m = p.throughput[device.thermalStatus]
        val load = p.idlePowerW + (Py.max(cost.powerW, p.idlePowerW) - p.idlePowerW) * m
        return Device.advance(p, view(), load, cost.seconds / m).first
    }

    private fun floorLong(x: Double): Long = StrictMath.floor(x).toLong()

    /** Steps expected after this session's plan, before the run ends (manager._later_steps):
     *  horizon "deadline": until the deadline, later time counting window / (window + gap);
     *  horizon "session" with a thermal-limited plan: until the window's end (or the deadline)
     *  after the cool-down from the plan's end. Sustained rate, at most the battery spare. */
    private fun laterSteps(session: Plan): Long {
        if (session.limitingFactor == "none") return 0
        val cost = estimator.pessimistic()
        val charging = device.charging || policy.chargingOnly
        val view = view()
        val deadline = policy.deadlineS
        val windowEnd = windowEndS
        var left: Double
        if (policy.horizon == "deadline" && deadline != null) {
            left = deadline - device.timeS - session.seconds
            val window = policy.windowS ?: profile.windowFor(charging)
            left *= window / (window + policy.windowGapS)
        } else if (session.limitingFactor == "thermal" && windowEnd != null) {
            val end = if (deadline != null) Py.min(windowEnd, deadline) else windowEnd
            val hot = DeviceState(session.endLevel, device.charging, session.endTemperatureC,
                session.endStatus, 0.0, view.ambientC)
            val target = policy.thermalLimitC(profile) - config.resumeGapC
            left = end - device.timeS - session.seconds - Device.coolDownSeconds(profile, hot, target)
        } else {
            return 0
        }
        val rate = Budget.sustainedRate(profile, policy, cost, charging, view.ambientC)
        val byTime = floorLong(Py.max(0.0, left) * rate)
        var drain = cost.joules
        if (charging) drain -= profile.chargeEfficiency * profile.chargePowerW * cost.seconds
        if (drain <= 0.0) return byTime
        val floor = Budget.effectiveFloor(profile, policy, charging)
        val spare = (session.endLevel - floor) * profile.batteryJ
        return Py.min(byTime, floorLong(Py.max(0.0, spare) / drain))
    }

    private fun recordTotal(total: Long) {
        if (planHistory.isEmpty()) {
            planHistory.add(PlanEntry(0, total))
            return
        }
        val current = planHistory[planHistory.size - 1].total
        val remaining = Py.max(0L, total - step)
        if (Math.abs(total - current) <= remaining / config.replanTolerance) return
        if (planHistory[planHistory.size - 1].step == step) {
            planHistory[planHistory.size - 1] = PlanEntry(step, total)
        } else {
            planHistory.add(PlanEntry(step, total))
        }
    }

    private fun noStep(session: Plan, budget: Long): Decision {
        val reason = pauseReason(session)
        val lrt = lastRunTotal
        if (budget > 0 || lrt == null) return Decision.Pause(reason, resumeHint(reason))
        if (lrt == step) return stop(Decision.Stop("budget", session.limitingFactor))
        return stop(Decision.Stop("budget-cut", if (session.detail.isNotEmpty()) session.detail else session.limitingFactor))
    }

    private fun resumeHint(reason: String): Double? {
        val st = view()
        val p = profile
        if (reason == "thermal") {
            val target = policy.thermalLimitC(p) - config.resumeGapC
            val hint = Device.coolDownSeconds(p, st, target)
            return if (Py.isFinite(hint)) hint else null
        }
        if (reason == "battery" && st.charging) {
            val rate = (p.chargeEfficiency * p.chargePowerW - p.idlePowerW) / p.batteryJ
            if (rate > 0.0) return Py.max(0.0, (policy.batteryFloor - st.level) / rate)
        }
        return null
    }

    private fun stop(s: Decision.Stop): Decision.Stop {
        stopped = s
        return s
    }

    private fun applyRollback(): Decision.Rollback {
        val rb = pendingRollback!!
        pendingRollback = null
        step = rb.toStep
        val kept = planHistory.filter { it.step <= rb.toStep }
        planHistory = ArrayList(kept)
        if (kept.isEmpty()) lastRunTotal = null
        return rb
    }

    // ------------------------------------------------------------------ LR range test
    @Suppress("UNCHECKED_CAST")
    private fun doubles(key: String): MutableList<Double> = rangeTest[key] as MutableList<Double>

    private fun rangeNext(session: Plan, budget: Long): Decision? {
        val rt = config.rangeTest!!
        if (rangeTest["status"] == "pending") {
            val n = Py.min(rt.maxSteps, floorLong(rt.fraction * Py.min(budget, nominalSteps).toDouble()))
            if (n < rt.minSteps) {
                if (session.steps == 0L) return Decision.Pause(pauseReason(session), resumeHint(pauseReason(session)))
                rangeTest = linkedMapOf("status" to "skipped", "steps" to n)
                return null
            }
            rangeTest = linkedMapOf("status" to "running", "n" to n, "lrs" to ArrayList<Double>(),
                "smooth" to ArrayList<Double>(), "avg" to 0.0, "best" to null)
        }
        val i = doubles("smooth").size
        if (session.steps == 0L) {
            if (i >= rt.minSteps) {
                rangeFinish("budget")
                return null
            }
            return Decision.Pause(pauseReason(session), resumeHint(pauseReason(session)))
        }
        val n = (rangeTest["n"] as Number).toLong()
        val lo = schedule.baseLr * rt.startFactor
        val lr = lo * Py.pow(rt.endFactor / rt.startFactor, i.toDouble() / (n - 1).toDouble())
        pending = Pending("range-test", i.toLong(), lr, device.thermalStatus)
        val lrs = doubles("lrs")
        val kept = ArrayList(lrs.subList(0, Math.min(i, lrs.size)))
        kept.add(lr)
        rangeTest["lrs"] = kept
        return Decision.Run(i.toLong(), lr, "range-test")
    }

    private fun rangeObserve(loss: Double) {
        val rt = config.rangeTest!!
        if (!Py.isFinite(loss)) {
            val lrs = doubles("lrs")
            lrs.removeAt(lrs.size - 1)
            rangeFinish("diverged")
            return
        }
        val beta = rt.smoothing
        val avg = beta * (rangeTest["avg"] as Double) + (1.0 - beta) * loss
        rangeTest["avg"] = avg
        val smoothList = doubles("smooth")
        val smooth = avg / (1.0 - Py.pow(beta, (smoothList.size + 1).toDouble()))
        smoothList.add(smooth)
        var best = rangeTest["best"] as Double?
        if (best == null || smooth < best) {
            best = smooth
            rangeTest["best"] = best
        }
        if (smooth > rt.divergeFactor * best) {
            rangeFinish("diverged")
        } else if (smoothList.size.toLong() >= (rangeTest["n"] as Number).toLong()) {
            rangeFinish("complete")
        }
    }

    private fun rangeFinish(how: String) {
        val rt = config.rangeTest!!
        val smooth = doubles("smooth")
        val lrs = doubles("lrs")
        val chosen = pickSteepest(smooth, rt.skipStart)
        val scale = if (chosen == null) 1.0 else lrs[chosen] / schedule.baseLr
        rangeScale = scale
        rangeTest = linkedMapOf("status" to "done", "how" to how, "points" to smooth.size.toLong(),
            "chosen_index" to chosen?.toLong(), "chosen_lr" to chosen?.let { lrs[it] }, "scale" to scale)
        pendingRollback = Decision.Rollback(0, nanScale, failures, "range-test")
    }

    // ------------------------------------------------------------------ state
    /** Everything needed to resume exactly, as plain JSON (the same keys as the Python side). */
    fun stateDict(): Map<String, Any?> {
        val out = LinkedHashMap<String, Any?>()
        out["format"] = STATE_FORMAT
        out["schedule"] = schedule.toJson()
        out["profile"] = profile.toJson()
        out["policy"] = policy.toJson()
        out["config"] = config.toJson()
        out.putAll(mutableState())
        return Json.copy(out) as Map<String, Any?>
    }

    /** The part of [stateDict] that changes while training (what the golden traces compare). */
    fun mutableState(): Map<String, Any?> = linkedMapOf(
        "step" to step,
        "plan_history" to planHistory.map { it.toJson() },
        "nan_scale" to nanScale,
        "range_scale" to rangeScale,
        "peak_factor" to peakFactor,
        "failures" to failures,
        "last_good_step" to lastGoodStep,
        "window_end_s" to windowEndS,
        "pending" to pending?.toJson(),
        "pending_rollback" to pendingRollback?.let {
            linkedMapOf("to_step" to it.toStep, "lr_scale" to it.lrScale, "failures" to it.failures, "reason" to it.reason)
        },
        "stopped" to stopped?.let { linkedMapOf("reason" to it.reason, "detail" to it.detail) },
        "last_run_total" to lastRunTotal,
        "plateau_state" to plateauState?.toJson(),
        "range_test" to Json.copy(rangeTest),
        "spent" to LinkedHashMap(spent),
        "estimator" to estimator.toJson(),
        "ambient" to ambient.toJson(),
        "reported" to reported?.toJson(),
        "since" to since.map { listOf(it.first, it.second) },
        "device" to device.toJson())

    /** Restore the mutable state saved by [stateDict] (same inputs assumed). */
    fun loadStateDict(value: Any?) {
        val obj = getObject(value, "")
        if (obj["format"] != STATE_FORMAT) {
            throw ValidationError("format", "unknown manager state ${pyRepr(obj["format"])}", STATE_FORMAT)
        }
        step = getInt(obj, "step", "", lo = 0)
        planHistory = ArrayList()
        for (x in (obj["plan_history"] as List<*>? ?: emptyList<Any?>())) {
            val pair = x as List<*>
            planHistory.add(PlanEntry((pair[0] as Number).toLong(), (pair[1] as Number).toLong()))
        }
        nanScale = getNumber(obj, "nan_scale", "", lo = 0.0, loOpen = true)
        rangeScale = getNumber(obj, "range_scale", "", lo = 0.0, loOpen = true)
        peakFactor = if (obj["peak_factor"] == null) null else getNumber(obj, "peak_factor", "", lo = 0.0, loOpen = true)
        failures = getInt(obj, "failures", "", lo = 0)
        lastGoodStep = getInt(obj, "last_good_step", "", lo = 0)
        windowEndS = (obj["window_end_s"] as Number?)?.toDouble()
        pending = (obj["pending"] as Map<*, *>?)?.let {
            Pending(it["phase"] as String, (it["step"] as Number).toLong(), (it["lr"] as Number).toDouble(),
                (it["status"] as Number).toInt())
        }
        pendingRollback = (obj["pending_rollback"] as Map<*, *>?)?.let {
            Decision.Rollback((it["to_step"] as Number).toLong(), (it["lr_scale"] as Number).toDouble(),
                (it["failures"] as Number).toLong(), it["reason"] as String)
        }
        stopped = (obj["stopped"] as Map<*, *>?)?.let { Decision.Stop(it["reason"] as String, it["detail"] as String) }
        lastRunTotal = (obj["last_run_total"] as Number?)?.toLong()
        plateauState = obj["plateau_state"]?.let { PlateauState.fromJson(it) }
        @Suppress("UNCHECKED_CAST")
        rangeTest = Json.copy(getObject(obj["range_test"], "range_test")) as MutableMap<String, Any?>
        for (key in listOf("lrs", "smooth")) {
            val xs = rangeTest[key] as List<*>? ?: continue
            rangeTest[key] = xs.mapTo(ArrayList<Double>()) { (it as Number).toDouble() }
        }
        for (key in listOf("avg", "best", "scale", "chosen_lr")) {
            val x = rangeTest[key]
            if (x is Number) rangeTest[key] = x.toDouble()
        }
        val sp = getObject(obj["spent"], "spent")
        spent["steps"] = (sp["steps"] as Number).toLong()
        spent["seconds"] = (sp["seconds"] as Number).toDouble()
        spent["energy_j"] = (sp["energy_j"] as Number).toDouble()
        estimator.load(obj["estimator"])
        ambient.load(obj["ambient"])
        reported = obj["reported"]?.let { DeviceState.fromJson(it, "reported") }
        since = ArrayList()
        for (x in (obj["since"] as List<*>? ?: emptyList<Any?>())) {
            val pair = x as List<*>
            since.add(Pair((pair[0] as Number).toDouble(), (pair[1] as Number).toDouble()))
        }
        device = DeviceState.fromJson(obj["device"], "device")
    }

    companion object {
        const val STATE_FORMAT = "mobile-lr.manager-state/1"

        /** A manager rebuilt entirely from [stateDict] (schedule, profile, policy and config too). */
        fun fromStateDict(value: Any?): ScheduleManager {
            val obj = getObject(value, "")
            val mgr = ScheduleManager(ScheduleSpec.parse(obj["schedule"]), DeviceProfile.fromJson(obj["profile"], "profile"),
                Policy.fromJson(obj["policy"], "policy"), ManagerConfig.fromJson(obj["config"], "config"))
            mgr.loadStateDict(obj)
            return mgr
        }

        fun pauseReason(session: Plan): String {
            if (session.detail == "not charging") return "not-charging"
            if (session.detail == "battery low") return "battery-low"
            if (session.limitingFactor == "time") return "window"
            if (session.limitingFactor == "none") return "done"
            return session.limitingFactor
        }

        /** Index of the steepest descent of a smoothed loss curve (null if too short); ties to the lowest index. */
        fun pickSteepest(smooth: List<Double>, skipStart: Double): Int? {
            val n = smooth.size
            val skip = Py.max(1L, StrictMath.floor(skipStart * n).toLong()).toInt()
            if (n - skip < 3) return null
            var bestI: Int? = null
            var bestG = Double.POSITIVE_INFINITY
            for (i in skip until n) {
                val g = if (i == n - 1) smooth[i] - smooth[i - 1] else (smooth[i + 1] - smooth[i - 1]) / 2.0
                if (g < bestG) {
                    bestI = i
                    bestG = g
                }
            }
            return if (bestG < 0.0) bestI else null
        }
    }
}
