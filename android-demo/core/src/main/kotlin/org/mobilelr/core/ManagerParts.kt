package org.mobilelr.core

/*
 * The parts of the schedule manager, each owning its state (Kotlin twins of the modules of
 * `mobile_lr/manager/`: belief, history, range_test, recovery, peak, planning).
 */

/** What the manager believes about the phone: its state (dead-reckoned between reports), the
 *  ambient, the learnt step cost and the end of the OS window in force. */
class DeviceBelief(val profile: DeviceProfile, config: ManagerConfig, state: DeviceState?) {
    val estimator = CostEstimator(StepCost.fromProfile(profile), profile.idlePowerW,
        config.estimatorWindow.toInt(), config.minObservations.toInt(), config.priorFactor, config.margin,
        config.unobservedPowerFactor)
    // dead reckoning: the last report (or the initial state) advanced by the steps since as one
    // interval at their mean load (one advance however many steps ran without a report)
    private var base: DeviceState = state ?: DeviceState.initial(profile, 1.0)
    private var meanLoad = 0.0
    private var busy = 0.0
    private var folded: DeviceState? = base
    val ambient = AmbientEstimator(profile)
    var reported: DeviceState? = null
    var windowEndS: Double? = null

    /** The steps since the last report as (mean load W, seconds): one interval, or none. */
    val since: List<Pair<Double, Double>> get() = if (busy > 0.0) listOf(Pair(meanLoad, busy)) else emptyList()

    /** The believed state, folded when asked for. */
    val device: DeviceState
        get() {
            folded?.let { return it }
            val b = base
            val end = Device.advance(profile, viewOf(b), meanLoad, busy).first
            val d = DeviceState(end.level, end.charging, end.temperatureC, end.thermalStatus, end.timeS, b.ambientC)
            folded = d
            return d
        }

    /** The start of the dead reckoning when it is not the last report (state JSON "base"). */
    val baseJson: Map<String, Any?>? get() = if (base === reported) null else base.toJson()

    fun update(state: DeviceState) {
        val rep = reported
        if (state.ambientC == null && rep != null) ambient.observe(rep, state, since)
        reported = state
        base = state
        folded = state
        meanLoad = 0.0
        busy = 0.0
    }

    /** The state the planner uses: the ambient, when unknown, is the estimated one. */
    fun view(): DeviceState = viewOf(device)

    private fun viewOf(d: DeviceState): DeviceState {
        if (d.ambientC != null) return d
        return DeviceState(d.level, d.charging, d.temperatureC, d.thermalStatus, d.timeS, ambient.value)
    }

    fun beginWindow(policy: Policy, nowS: Double?, lengthS: Double?) {
        val now = nowS ?: device.timeS
        windowEndS = now + (lengthS ?: (policy.windowS ?: profile.windowFor(device.charging)))
    }

    /** The predicted end of the next step at [cost], throttled by the status now. */
    fun stepEnd(cost: StepCost, view: DeviceState = view()): DeviceState {
        val p = profile
        val m = p.throughput[device.thermalStatus]
        return Device.advance(p, view, p.loadPower(m, Py.max(cost.powerW, p.idlePowerW)), cost.seconds / m).first
    }

    /** A step ran: learn its cost, and advance the believed state by it until the next report.
     *  Returns what the estimator recorded (null: nothing, and the believed state does not move). */
    fun stepped(seconds: Double, energyJ: Double?, throttle: Double): Pair<Double, Double?>? {
        val observed = estimator.observe(seconds, energyJ, throttle) ?: return null
        val l = if (observed.second != null) {
            energyJ!! / seconds
        } else {
            profile.loadPower(throttle, Py.max(estimator.estimate().powerW, profile.idlePowerW))
        }
        merge(l, seconds)
        return observed
    }

    private fun merge(l: Double, seconds: Double) {
        val total = busy + seconds
        meanLoad = if (busy == 0.0) l else (meanLoad * busy + l * seconds) / total
        busy = total
        folded = null
    }

    fun load(obj: Map<String, Any?>) {
        windowEndS = (obj["window_end_s"] as Number?)?.toDouble()
        estimator.load(obj["estimator"])
        ambient.load(obj["ambient"])
        reported = obj["reported"]?.let { DeviceState.fromJson(it, "reported") }
        meanLoad = 0.0
        busy = 0.0
        for (x in (obj["since"] as List<*>? ?: emptyList<Any?>())) {
            val pair = x as List<*>
            merge((pair[0] as Number).toDouble(), (pair[1] as Number).toDouble())
        }
        val d = DeviceState.fromJson(obj["device"], "device")
        folded = d
        val b = obj["base"]
        val rep = reported
        if (b != null) {
            base = DeviceState.fromJson(b, "base")
        } else if (rep != null) {
            base = rep
        } else {  // a state written before "base": the folded state is the start
            base = d
            meanLoad = 0.0
            busy = 0.0
        }
    }
}

/** The plan history: which total the schedule plans for, from which step on (re-planned when it
 *  moves beyond `remaining / tolerance`), and the total in force at the last Run. */
class PlanHistory(private val tolerance: Long) {
    var entries: MutableList<PlanEntry> = ArrayList()
        private set
    var lastRunTotal: Long? = null

    val total: Long? get() = if (entries.isEmpty()) null else entries[entries.size - 1].total

    fun record(step: Long, total: Long) {
        if (entries.isEmpty()) {
            entries.add(PlanEntry(0, total))
            return
        }
        val current = entries[entries.size - 1].total
        val remaining = Py.max(0L, total - step)
        if (Math.abs(total - current) <= remaining / tolerance) return
        if (entries[entries.size - 1].step == step) {
            entries[entries.size - 1] = PlanEntry(step, total)
        } else {
            entries.add(PlanEntry(step, total))
        }
    }

    fun rolledBack(toStep: Long) {
        entries = ArrayList(entries.filter { it.step <= toStep })
        if (entries.isEmpty()) lastRunTotal = null
    }

    fun load(obj: Map<String, Any?>, key: String = "plan_history") {
        entries = ArrayList()
        for (x in (obj[key] as List<*>? ?: emptyList<Any?>())) {
            val pair = x as List<*>
            entries.add(PlanEntry((pair[0] as Number).toLong(), (pair[1] as Number).toLong()))
        }
        lastRunTotal = (obj["last_run_total"] as Number?)?.toLong()
    }
}

/** Smith's LR range test with a typed state (the JSON object of the Python side). */
class RangeTest(val config: RangeTestConfig?) {
    var status: String = if (config == null) "off" else "pending"
        private set
    private var n: Long = 0
    private var lrs = ArrayList<Double>()
    private var smooth = ArrayList<Double>()
    private var avg = 0.0
    private var best: Double? = null
    var how: String = ""
        private set
    private var points: Long = 0
    var chosenIndex: Int? = null
        private set
    var chosenLr: Double? = null
        private set
    var scale = 1.0
        private set

    val active: Boolean get() = status == "pending" || status == "running"

    /** The next point (index, lr) to run; [WAIT] when nothing is affordable yet; [OVER] when
     *  the test is over (skipped, or ended by the budget). */
    fun next(affordable: Long, budget: Long, nominal: Long, baseLr: Double): Any {
        val rt = config!!
        if (status == "pending") {
            val size = Py.min(rt.maxSteps, StrictMath.floor(rt.fraction * Py.min(budget, nominal).toDouble()).toLong())
            if (size < rt.minSteps) {
                if (affordable == 0L) return WAIT
                status = "skipped"
                n = size
                return OVER
            }
            status = "running"
            n = size
        }
        val i = smooth.size
        if (affordable == 0L) {
            if (i >= rt.minSteps) {
                finish("budget", baseLr)
                return OVER
            }
            return WAIT
        }
        val lr = baseLr * rt.startFactor * Py.pow(rt.endFactor / rt.startFactor, i.toDouble() / (n - 1).toDouble())
        val kept = ArrayList(lrs.subList(0, Math.min(i, lrs.size)))
        kept.add(lr)
        lrs = kept
        return Pair(i.toLong(), lr)
    }

    /** The loss at the point just run; true when that ended the test. */
    fun observe(loss: Double, baseLr: Double): Boolean {
        val rt = config!!
        if (!Py.isFinite(loss)) {
            lrs.removeAt(lrs.size - 1)
            finish("diverged", baseLr)
            return true
        }
        val beta = rt.smoothing
        avg = beta * avg + (1.0 - beta) * loss
        val s = avg / (1.0 - Py.pow(beta, (smooth.size + 1).toDouble()))
        smooth.add(s)
        val b = best
        val newBest = if (b == null || s < b) s else b
        best = newBest
        if (s > rt.divergeFactor * newBest) {
            finish("diverged", baseLr)
        } else if (smooth.size.toLong() >= n) {
            finish("complete", baseLr)
        }
        return status == "done"
    }

    private fun finish(how: String, baseLr: Double) {
        val chosen = ScheduleManager.pickSteepest(smooth, config!!.skipStart)
        chosenIndex = chosen
        chosenLr = chosen?.let { lrs[it] }
        scale = if (chosen == null) 1.0 else lrs[chosen] / baseLr
        status = "done"
        this.how = how
        points = smooth.size.toLong()
    }

    fun toJson(): Map<String, Any?> = when (status) {
        "skipped" -> linkedMapOf("status" to status, "steps" to n)
        "running" -> linkedMapOf("status" to status, "n" to n, "lrs" to ArrayList(lrs),
            "smooth" to ArrayList(smooth), "avg" to avg, "best" to best)
        "done" -> linkedMapOf("status" to status, "how" to how, "points" to points,
            "chosen_index" to chosenIndex?.toLong(), "chosen_lr" to chosenLr, "scale" to scale)
        else -> linkedMapOf("status" to status)
    }

    fun load(obj: Map<String, Any?>) {
        val state = getObject(obj["range_test"], "range_test")
        status = state["status"] as String
        scale = getNumber(obj, "range_scale", "", lo = 0.0, loOpen = true)
        n = ((state["n"] ?: state["steps"] ?: 0L) as Number).toLong()
        lrs = (state["lrs"] as List<*>? ?: emptyList<Any?>()).mapTo(ArrayList()) { (it as Number).toDouble() }
        smooth = (state["smooth"] as List<*>? ?: emptyList<Any?>()).mapTo(ArrayList()) { (it as Number).toDouble() }
        avg = (state["avg"] as Number? ?: 0.0).toDouble()
        best = (state["best"] as Number?)?.toDouble()
        how = state["how"] as String? ?: ""
        points = (state["points"] as Number? ?: 0L).toLong()
        chosenIndex = (state["chosen_index"] as Number?)?.toInt()
        chosenLr = (state["chosen_lr"] as Number?)?.toDouble()
    }

    companion object {
        val WAIT = Any()
        val OVER = Any()
    }
}

/** Recovery from non-finite losses: the checkpoint to return to, the LR cut, the rollback owed. */
class Recovery(private val lrFactor: Double, private val maxFailures: Long) {
    var nanScale = 1.0
        private set
    var failures: Long = 0
        private set
    var lastGoodStep: Long = 0
    var pending: Decision.Rollback? = null
        private set

    /** A non-finite loss: owe a rollback at a lower LR, or stop (too many failures). A diverging
     *  loss ([reason], its own [factor]) the same, but its last failure still owes the rollback. */
    fun failed(reason: String = NON_FINITE, factor: Double? = null): Decision.Stop? {
        failures += 1
        if (failures > maxFailures) {
            if (reason == NON_FINITE) return Decision.Stop(Reason.DIVERGED, "$failures non-finite losses")
            pending = Decision.Rollback(lastGoodStep, nanScale, failures, reason)
            return Decision.Stop(Reason.DIVERGED, "$failures failures ($reason)")
        }
        nanScale *= factor ?: lrFactor
        pending = Decision.Rollback(lastGoodStep, nanScale, failures, reason)
        return null
    }

    companion object {
        const val NON_FINITE = "non-finite loss"
    }

    /** Owe a rollback to the initial weights (the LR range test is over). */
    fun restart() {
        pending = Decision.Rollback(0, nanScale, failures, "range-test")
    }

    fun take(): Decision.Rollback {
        val rb = pending!!
        pending = null
        return rb
    }

    fun load(obj: Map<String, Any?>) {
        nanScale = getNumber(obj, "nan_scale", "", lo = 0.0, loOpen = true)
        failures = getInt(obj, "failures", "", lo = 0)
        lastGoodStep = getInt(obj, "last_good_step", "", lo = 0)
        pending = (obj["pending_rollback"] as Map<*, *>?)?.let {
            Decision.Rollback((it["to_step"] as Number).toLong(), (it["lr_scale"] as Number).toDouble(),
                (it["failures"] as Number).toLong(), it["reason"] as String)
        }
    }
}

/** Divergence without a NaN ([DivergenceConfig]): the debiased EMA of the training losses, its
 *  first value and running minimum, and the diverging steps in a row. */
class LossWatch(val config: DivergenceConfig) {
    private var avg = 0.0
    private var n: Long = 0
    private var start = Py.INF
    private var best = Py.INF
    private var streak: Long = 0

    /** No step is diverging now (a checkpoint taken now is one to return to). */
    val healthy: Boolean get() = streak == 0L

    /** One finite training loss; true when it completes `patience` diverging steps. */
    fun observe(loss: Double): Boolean {
        val beta = config.smoothing
        n += 1
        avg = beta * avg + (1.0 - beta) * loss
        val smooth = avg / (1.0 - Py.pow(beta, n.toDouble()))
        if (n == 1L) start = smooth
        best = Py.min(best, smooth)
        val diverging = smooth > config.factor * best && smooth > start
        streak = if (diverging) streak + 1 else 0
        return streak >= config.patience
    }

    /** The weights went back to a checkpoint: restart the average (minimum and start stand). */
    fun rolledBack() {
        avg = 0.0
        n = 0
        streak = 0
    }

    fun toJson(): Map<String, Any?> = linkedMapOf("avg" to avg, "n" to n,
        "start" to (if (start.isInfinite()) null else start), "best" to (if (best.isInfinite()) null else best),
        "streak" to streak)

    fun load(obj: Map<String, Any?>) {
        val w = obj["loss_watch"] ?: throw ValidationError("loss_watch", "missing: the config has divergence detection")
        val m = getObject(w, "loss_watch")
        avg = getNumber(m, "avg", "loss_watch")
        n = getInt(m, "n", "loss_watch", lo = 0)
        start = (m["start"] as Number?)?.toDouble() ?: Py.INF
        best = (m["best"] as Number?)?.toDouble() ?: Py.INF
        streak = getInt(m, "streak", "loss_watch", lo = 0)
    }

    companion object {
        const val REASON = "loss diverged"
    }
}

/** The peak-LR factor of one run, fixed by its rule at the first training step. */
class PeakLr(rule: Map<String, Any?>?) {
    private val rule: Map<String, Any?> = LinkedHashMap(rule ?: linkedMapOf<String, Any?>("type" to "none"))
    var factor: Double? = null

    fun settle(planned: Long, nominal: Long) {
        if (factor != null) return
        val fn = PeakLrPolicies.get(rule["type"] as String)!!
        val params = LinkedHashMap<String, Double>()
        for ((k, v) in rule) if (k != "type") params[k] = (v as Number).toDouble()
        factor = fn(planned, nominal, params)
    }

    fun load(obj: Map<String, Any?>) {
        factor = if (obj["peak_factor"] == null) null else getNumber(obj, "peak_factor", "", lo = 0.0, loOpen = true)
    }
}

/** The manager's forecasts of a session from the believed state: the gate forecast before every
 *  step, the steps the run can still expect, and the pause when none is affordable. */
class SessionForecasts(private val profile: DeviceProfile, private val policy: Policy,
                       private val config: ManagerConfig, private val belief: DeviceBelief) {
    var last: Forecast? = null
        private set
    var predictedEnd: DeviceState? = null

    fun gate(maxSteps: Long): Forecast {
        val cost = belief.estimator.pessimistic()
        val view = belief.view()
        val result = forecast(maxSteps, cost, view)
        last = result
        predictedEnd = if (result.steps >= 1) belief.stepEnd(cost, view) else null
        return result
    }

    /** Steps the run can still expect, sized on the estimated cost: the gate lets a step run only
     *  if it fits at the pessimistic cost, so the session lasts while, after the steps at the
     *  estimate, one more at the pessimistic cost still fits (counted exactly near the end). */
    fun expected(session: Forecast, maxSteps: Long): Long {
        if (session.steps == 0L) return session.steps + laterSteps(session)
        val view = belief.view()
        val sizing = forecast(maxSteps, belief.estimator.estimate(), view)
        var steps = Py.max(sizing.steps, session.steps)
        if (steps > session.steps && sizing.limitingFactor != "none") {
            val near = steps <= config.replanTolerance
            steps -= if (!near) 1L else if (lastFits(steps, view)) 0L else 1L
        }
        return Py.max(steps + laterSteps(sizing), 1L)
    }

    /** Steps the battery alone affords from the believed state (at most [maxSteps]), at the
     *  estimated cost and in an unplugged OS window: what a charging run is sure of, since the
     *  charger can go at any step (config `schedule_horizon` "battery"). */
    fun sure(maxSteps: Long): Long {
        val v = belief.view()
        val unplugged = DeviceState(v.level, false, v.temperatureC, v.thermalStatus, v.timeS, v.ambientC)
        return Budget.plan(profile, unplugged, policy, belief.estimator.estimate(), maxSteps).steps
    }

    /** After `steps - 1` steps at the estimated cost, does one at the gate's cost fit? */
    private fun lastFits(steps: Long, view: DeviceState): Boolean {
        val est = forecast(steps - 1, belief.estimator.estimate(), view)
        val then = DeviceState(est.endLevel, view.charging, est.endTemperatureC, est.endStatus,
            view.timeS + est.seconds, view.ambientC)
        val w = belief.windowEndS
        val last = Budget.plan(profile, then, policy, belief.estimator.pessimistic(), 1L,
            if (w != null) w - then.timeS else null)
        return last.steps >= 1
    }

    fun pause(session: Forecast): Decision.Pause {
        val reason = Rules.limitReason(session.limitingFactor, session.detail)
        return Decision.Pause(reason, Rules.resumeHint(profile, policy, config.resumeGapC, reason, belief.view()))
    }

    /** The stop when no step is safe under the unmeasured cost and the phone cannot cool any
     *  further at rest: waiting would stall at zero steps forever. */
    fun stalled(session: Forecast, spent: Boolean): Decision.Stop? {
        if (session.steps != 0L || belief.estimator.warm || pause(session) != Decision.Pause(Reason.THERMAL, null)) {
            return null
        }
        return Decision.Stop(if (spent) Reason.BUDGET else Reason.BUDGET_CUT, TOO_HOT)
    }

    private fun forecast(maxSteps: Long, cost: StepCost, view: DeviceState): Forecast {
        val w = belief.windowEndS
        return Budget.plan(profile, view, policy, cost, maxSteps, if (w != null) w - belief.device.timeS else null)
    }

    private fun laterSteps(session: Forecast): Long {
        val view = belief.view()
        val end = DeviceState(session.endLevel, belief.device.charging, session.endTemperatureC,
            session.endStatus, 0.0, view.ambientC)
        return Rules.laterSteps(profile, policy, belief.estimator.pessimistic(), config.resumeGapC,
            session.limitingFactor, end, belief.device.timeS, session.seconds, belief.windowEndS)
    }

    companion object {
        const val TOO_HOT = "thermal: too hot at rest for an unmeasured step"
    }
}

/** The stop when the run's budget is spent ([Rules.STOP_BUDGET]) or vanished within a step. */
fun budgetStop(move: Int, session: Forecast): Decision.Stop =
    if (move == Rules.STOP_BUDGET) Decision.Stop(Reason.BUDGET, session.limitingFactor)
    else Decision.Stop(Reason.BUDGET_CUT, if (session.detail.isNotEmpty()) session.detail else session.limitingFactor)
