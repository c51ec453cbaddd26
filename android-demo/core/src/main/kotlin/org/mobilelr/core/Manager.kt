package org.mobilelr.core

/**
 * The schedule manager: the object a training loop talks to (Kotlin twin of
 * `mobile_lr/manager/`, same decisions, checked on golden traces).
 *
 * ```
 * val d = manager.next()           // Run | Pause | Stop | Rollback
 * if (d is Decision.Run) { loss = trainer.step(batch, d.lr); manager.observe(loss, seconds, joules) }
 * manager.updateDevice(state)      // BatteryManager + PowerManager readings
 * manager.stateDict() / ScheduleManager.fromStateDict(obj)   // plain JSON, exact resume
 * ```
 *
 * Before every step it forecasts from the device state it was last told with a pessimistic
 * per-step cost and runs the step only if the forecast affords at least one, so it never
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
            // the sweep spans at most 1e-12..1e6 x base LR (Python's RangeTestConfig)
            val start = getNumberOr(obj, "start_factor", path, d.startFactor, lo = 1e-12, hi = 1e6, hiOpen = true)!!
            val end = getNumberOr(obj, "end_factor", path, d.endFactor, lo = start, hi = 1e6, loOpen = true)!!
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
    val peakLr: Map<String, Any?>? = null,
    val divergence: DivergenceConfig? = null,
    /** The totals the schedule follows: null or "plan", the plan history; "battery", them capped
     *  while charging at what the battery alone affords (see the Python ManagerConfig). */
    val scheduleHorizon: String? = null
) {
    fun toJson(): Map<String, Any?> {
        val out = linkedMapOf<String, Any?>(
            "nominal_steps" to nominalSteps, "prior_factor" to priorFactor, "margin" to margin,
            "unobserved_power_factor" to unobservedPowerFactor, "estimator_window" to estimatorWindow,
            "min_observations" to minObservations, "replan_tolerance" to replanTolerance,
            "nan_lr_factor" to nanLrFactor, "max_failures" to maxFailures, "resume_gap_c" to resumeGapC,
            "range_test" to rangeTest?.toJson())
        if (divergence != null) out["divergence"] = divergence.toJson()  // absent when off
        out["peak_lr"] = if (peakLr != null) LinkedHashMap(peakLr) else linkedMapOf<String, Any?>("type" to "none")
        if (scheduleHorizon != null) out["schedule_horizon"] = scheduleHorizon  // absent: the plan's
        return out
    }

    companion object {
        private val FIELDS = listOf("nominal_steps", "prior_factor", "margin", "unobserved_power_factor",
            "estimator_window", "min_observations", "replan_tolerance", "nan_lr_factor", "max_failures",
            "resume_gap_c", "range_test", "divergence", "peak_lr", "schedule_horizon")
        /** What `schedule_horizon` may say. */
        val HORIZONS = listOf("plan", "battery")

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
            val div = if ("divergence" in obj) DivergenceConfig.fromJson(obj["divergence"], join(path, "divergence")) else null
            val horizon = obj["schedule_horizon"]
            if (horizon != null && (horizon !is String || horizon !in HORIZONS)) {
                throw ValidationError(join(path, "schedule_horizon"), "unknown value ${pyRepr(horizon)}",
                    HORIZONS.joinToString(", "))
            }
            return ManagerConfig(nominal, prior, margin, unobs, window, minObs, tol, nanF, maxF, gap, rt, peak, div,
                horizon as String?)
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

/** Divergence without a NaN (see `mobile_lr.manager.DivergenceConfig`): the smoothed loss above
 *  [factor] x its running minimum and above its first value for [patience] steps in a row. */
data class DivergenceConfig(
    val factor: Double = 2.0,
    val patience: Long = 5,
    val smoothing: Double = 0.8,
    val lrFactor: Double = 0.5
) {
    fun toJson(): Map<String, Any?> = linkedMapOf(
        "factor" to factor, "patience" to patience, "smoothing" to smoothing, "lr_factor" to lrFactor)

    companion object {
        fun fromJson(value: Any?, path: String = "divergence"): DivergenceConfig {
            val obj = getObject(value, path)
            checkKeys(obj, path, listOf("factor", "patience", "smoothing", "lr_factor"))
            val d = DivergenceConfig()
            val factor = getNumberOr(obj, "factor", path, d.factor, lo = 1.0, loOpen = true)!!
            val patience = getIntOr(obj, "patience", path, d.patience, lo = 1)!!
            val smoothing = getNumberOr(obj, "smoothing", path, d.smoothing, lo = 0.0, hi = 1.0, hiOpen = true)!!
            val lrFactor = getNumberOr(obj, "lr_factor", path, d.lrFactor, lo = 0.0, hi = 1.0, loOpen = true)!!
            return DivergenceConfig(factor, patience, smoothing, lrFactor)
        }
    }
}

/** The Run issued and not yet observed. */
data class Pending(val phase: String, val step: Long, val lr: Double, val status: Int) {
    fun toJson(): Map<String, Any?> = linkedMapOf("phase" to phase, "step" to step, "lr" to lr, "status" to status)
}

/**
 * Schedule + planner + policy, driven one decision at a time: a small state machine over parts
 * that own their state ([DeviceBelief], [SessionForecasts], [PlanHistory], [RangeTest],
 * [Recovery], [PeakLr]); the rules after a forecast are [Rules].
 */
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
    val belief = DeviceBelief(profile, config, state)
    val history = PlanHistory(config.replanTolerance)
    /** The totals the schedule follows: [history], or (schedule_horizon "battery") its own
     *  history of the planned totals capped by what the battery alone affords. */
    val followed = if (config.scheduleHorizon == "battery") PlanHistory(config.replanTolerance) else history
    val rangeTest = RangeTest(config.rangeTest)
    val recovery = Recovery(config.nanLrFactor, config.maxFailures)
    val lossWatch: LossWatch? = config.divergence?.let { LossWatch(it) }
    val peak = PeakLr(config.peakLr)
    val forecasts = SessionForecasts(profile, policy, config, belief)
    val hold = PlanHold(profile, policy, config.replanTolerance)
    private var fast = false   // the last Run skipped the full plan (the plan in force held)
    var step: Long = 0
        private set
    var pending: Pending? = null
        private set
    var stopped: Decision.Stop? = null
        private set
    var plateauState: PlateauState? = if (schedule.isPlateau) schedule.plateauStart() else null
        private set
    val spent: MutableMap<String, Any?> = linkedMapOf("steps" to 0L, "seconds" to 0.0, "energy_j" to 0.0)

    // what callers read of the parts
    val estimator: CostEstimator get() = belief.estimator
    val device: DeviceState get() = belief.device
    val windowEndS: Double? get() = belief.windowEndS
    val planHistory: List<PlanEntry> get() = history.entries
    val plannedTotal: Long? get() = history.total
    val peakFactor: Double? get() = peak.factor
    val lastForecast: Forecast? get() = forecasts.last
    val lastPlan: Forecast? get() = forecasts.last
    /** The predicted end (at the pessimistic cost) of the step the last decision ran: the gate's, or
     *  on a held step the same prediction made when asked (ask before [observe]). */
    val predictedEnd: DeviceState?
        get() = if (fast && pending != null) belief.stepEnd(belief.estimator.pessimistic()) else forecasts.predictedEnd

    // ------------------------------------------------------------------ caller inputs
    /** The device state the caller just read (BatteryManager + PowerManager on a phone). */
    fun updateDevice(state: DeviceState) {
        belief.update(state)
        if (hold.left > 0) {
            val view = belief.view()
            // inside the envelope a re-anchor would leave the hold as it is (Hold.kt, keeps)
            if (!hold.keeps(view, pending != null)) hold.reanchor(view, belief.estimator.band(PlanHold.BAND_WIDEN), endS(), pending != null)
        }
    }

    /** A new OS window (a Worker started): the session's time budget restarts. */
    fun beginWindow(nowS: Double? = null, lengthS: Double? = null) {
        belief.beginWindow(policy, nowS, lengthS)
        hold.drop()
    }

    /**
     * The caller saved the model as it is after [step] steps; a rollback returns there.
     * Returns whether the checkpoint was taken as the rollback target (not while a rollback
     * is pending or the range test runs): only then may the caller keep it as such.
     */
    fun markCheckpoint(): Boolean {
        if (recovery.pending == null && rangeTest.status != "running" && (lossWatch?.healthy ?: true)) {
            recovery.lastGoodStep = step
            return true
        }
        return false
    }

    /** Report the outcome of the Run just issued (null = not measured). */
    fun observe(loss: Double? = null, stepSeconds: Double? = null, energyJ: Double? = null) {
        val run = pending ?: throw IllegalStateException("observe() without a Run to observe")
        pending = null
        if (stepSeconds != null) {
            hold.observed(belief.stepped(stepSeconds, energyJ, profile.throughput[run.status]))
            spent["seconds"] = (spent["seconds"] as Double) + stepSeconds
        }
        if (energyJ != null && Py.isFinite(energyJ)) spent["energy_j"] = (spent["energy_j"] as Double) + energyJ
        spent["steps"] = (spent["steps"] as Long) + 1
        if (run.phase == "range-test") {
            if (rangeTest.observe(loss ?: Double.NaN, schedule.baseLr)) recovery.restart()
        } else if (loss == null || Py.isFinite(loss)) {
            step += 1
            val watch = lossWatch
            if (watch != null && loss != null && watch.observe(loss)) {
                stopped = recovery.failed(LossWatch.REASON, watch.config.lrFactor)
            }
        } else {
            hold.drop()
            stopped = recovery.failed()
        }
    }

    /** An evaluation metric for a `plateau` schedule (ignored by other shapes). */
    fun observeEval(metric: Double) {
        val st = plateauState
        if (st != null && Py.isFinite(metric)) plateauState = schedule.plateauObserve(st, metric)
    }

    // ------------------------------------------------------------------ decisions
    /** Factor on the schedule's LRs: range test x peak-LR policy x NaN cuts. */
    val lrScale: Double get() = rangeTest.scale * (peak.factor ?: 1.0) * recovery.nanScale

    /** The LR the current plan history gives step [t] (no side effects). */
    fun lrAt(t: Long): Double {
        val hist = if (followed.entries.isEmpty()) listOf(PlanEntry(0, nominalSteps)) else followed.entries
        return schedule.lr(t, hist, plateauState) * lrScale
    }

    fun next(): Decision {
        forecasts.predictedEnd = null
        fast = false
        if (recovery.pending != null) return rollBack()  // before a stop: a diverged run ends restored
        stopped?.let { return it }
        if (step >= nominalSteps) return stop(Decision.Stop(Reason.DONE))
        if (hold.take()) {  // the plan in force holds (Hold.kt): no full plan
            fast = true
            val lr = schedule.lr(step, followed.entries, plateauState) * hold.scale
            pending = Pending("train", step, lr, hold.status)
            return Decision.Run(step, lr)
        }
        val deadline = policy.deadlineS
        if (deadline != null && belief.device.timeS >= deadline) return stop(Decision.Stop(Reason.DEADLINE))
        if (belief.windowEndS == null) beginWindow()
        val session = forecasts.gate(nominalSteps - step)
        val lastRun = history.lastRunTotal
        forecasts.stalled(session, lastRun == null || lastRun == step)?.let { return stop(it) }
        val budget = forecasts.expected(session, nominalSteps - step)
        if (rangeTest.active) {
            val decision = rangeNext(session, budget)
            if (decision != null) return decision
        }
        val planned = step + Py.min(budget, nominalSteps - step)
        history.record(step, planned)
        if (followed !== history) followed.record(step, sureTotal(planned))
        val move = Rules.nextMove(session.steps, budget, history.lastRunTotal != null, history.lastRunTotal == step)
        if (move == Rules.PAUSE) return forecasts.pause(session)
        if (move != Rules.RUN) return stop(budgetStop(move, session))
        val pt = history.total
        peak.settle(if (pt == null || pt == 0L) 1L else pt, nominalSteps)
        val lr = lrAt(step)
        if (!(Py.isFinite(lr) && lr >= 0.0)) return stop(Decision.Stop(Reason.DIVERGED, "schedule gave LR ${pyFloat(lr)}"))
        history.lastRunTotal = history.total
        val view = belief.view()
        pending = Pending("train", step, lr, view.thermalStatus)
        hold.arm(view, belief.estimator.band(PlanHold.BAND_WIDEN), endS(), history.total!! - step, lrScale)
        return Decision.Run(step, lr)
    }

    /** [planned] capped, while the phone charges, at the step after those its battery alone
     *  affords (at least one: the step about to run). */
    private fun sureTotal(planned: Long): Long {
        if (planned <= step || !belief.view().charging) return planned
        return step + Py.max(1L, forecasts.sure(planned - step))
    }

    /** The end of the time budget: the OS window's, cut at the deadline. */
    private fun endS(): Double {
        val end = belief.windowEndS ?: Double.POSITIVE_INFINITY
        val deadline = policy.deadlineS
        return if (deadline == null) end else Py.min(end, deadline)
    }

    private fun stop(s: Decision.Stop): Decision.Stop {
        stopped = s
        return s
    }

    private fun rollBack(): Decision.Rollback {
        val rb = recovery.take()
        hold.drop()
        step = rb.toStep
        lossWatch?.rolledBack()
        history.rolledBack(rb.toStep)
        followed.rolledBack(rb.toStep)
        return rb
    }

    private fun rangeNext(session: Forecast, budget: Long): Decision? {
        val move = rangeTest.next(session.steps, budget, nominalSteps, schedule.baseLr)
        if (move === RangeTest.WAIT) return forecasts.pause(session)
        if (move === RangeTest.OVER) {
            if (rangeTest.status != "done") return null        // skipped: too short a budget
            recovery.restart()                                  // ended by the budget
            return rollBack()
        }
        val point = move as Pair<*, *>
        val i = point.first as Long
        val lr = point.second as Double
        pending = Pending("range-test", i, lr, belief.device.thermalStatus)
        return Decision.Run(i, lr, "range-test")
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

    /** The part of [stateDict] that changes while training (what the golden traces compare),
     *  merged from the parts' state. */
    fun mutableState(): Map<String, Any?> {
        val out = ownState()
        lossWatch?.let { out["loss_watch"] = it.toJson() }
        if (followed !== history) out["followed_plan"] = followed.entries.map { it.toJson() }
        return out
    }

    private fun ownState(): LinkedHashMap<String, Any?> = linkedMapOf(
        "step" to step,
        "plan_history" to history.entries.map { it.toJson() },
        "nan_scale" to recovery.nanScale,
        "range_scale" to rangeTest.scale,
        "peak_factor" to peak.factor,
        "failures" to recovery.failures,
        "last_good_step" to recovery.lastGoodStep,
        "window_end_s" to belief.windowEndS,
        "pending" to pending?.toJson(),
        "pending_rollback" to recovery.pending?.let {
            linkedMapOf("to_step" to it.toStep, "lr_scale" to it.lrScale, "failures" to it.failures, "reason" to it.reason)
        },
        "stopped" to stopped?.let { linkedMapOf("reason" to it.reason, "detail" to it.detail) },
        "last_run_total" to history.lastRunTotal,
        "plateau_state" to plateauState?.toJson(),
        "range_test" to rangeTest.toJson(),
        "spent" to LinkedHashMap(spent),
        "estimator" to belief.estimator.toJson(),
        "ambient" to belief.ambient.toJson(),
        "reported" to belief.reported?.toJson(),
        "since" to belief.since.map { listOf(it.first, it.second) },
        "device" to belief.device.toJson(),
        "base" to belief.baseJson,
        "hold" to hold.toJson())

    /** Restore the mutable state saved by [stateDict] (same inputs assumed). */
    fun loadStateDict(value: Any?) {
        val obj = getObject(value, "")
        if (obj["format"] != STATE_FORMAT) {
            throw ValidationError("format", "unknown manager state ${pyRepr(obj["format"])}", STATE_FORMAT)
        }
        step = getInt(obj, "step", "", lo = 0)
        pending = (obj["pending"] as Map<*, *>?)?.let {
            Pending(it["phase"] as String, (it["step"] as Number).toLong(), (it["lr"] as Number).toDouble(),
                (it["status"] as Number).toInt())
        }
        stopped = (obj["stopped"] as Map<*, *>?)?.let { Decision.Stop(it["reason"] as String, it["detail"] as String) }
        plateauState = obj["plateau_state"]?.let { PlateauState.fromJson(it) }
        val sp = getObject(obj["spent"], "spent")
        spent["steps"] = (sp["steps"] as Number).toLong()
        spent["seconds"] = (sp["seconds"] as Number).toDouble()
        spent["energy_j"] = (sp["energy_j"] as Number).toDouble()
        history.load(obj)
        if (followed !== history) {
            if ("followed_plan" !in obj) {
                throw ValidationError("followed_plan", "missing: the config's schedule_horizon is 'battery'",
                    "the capped plan history")
            }
            followed.load(obj, "followed_plan")
        }
        recovery.load(obj)
        rangeTest.load(obj)
        peak.load(obj)
        belief.load(obj)
        lossWatch?.load(obj)
        hold.load(obj["hold"])
        fast = false
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
