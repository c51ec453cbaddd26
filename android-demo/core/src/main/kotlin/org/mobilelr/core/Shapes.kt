package org.mobilelr.core

/**
 * Schedule shapes, the Kotlin twin of `mobile_lr/schedules/shapes.py`.
 *
 * A shape maps a (virtual) step `u` and a length `n` to an absolute learning rate.
 * With its length omitted it is progress-based (its length is the planned total and
 * re-planning stretches it); with an explicit length, or defined by absolute step
 * counts, it ignores budget changes. "The LR at step t" is what PyTorch's
 * `get_last_lr()` gives after `t` calls of `scheduler.step()`. Every formula keeps
 * the Python reference's operations and their order, so both sides agree to rounding.
 */
open class Shape internal constructor(
    val kind: String,
    val progressBased: Boolean,
    val length: Long?,
    private val formula: (Double, Double) -> Double
) {
    /** LR at local step [s] given the plan history in local time. */
    open fun evaluate(s: Double, localPlan: List<PlanEntry>): Double {
        if (progressBased) {
            val (u, total) = PlanMap.warp(s, PlanMap.segments(localPlan))
            return formula(u, total)
        }
        return formula(s, length?.toDouble() ?: Double.NaN)
    }

    /** Whether budget changes (re-plans) move this shape. */
    open val followsPlan: Boolean
        get() = progressBased

    /** LR at one step under a single fixed plan of [total] steps. */
    fun at(step: Double, total: Long): Double = evaluate(step, listOf(PlanEntry(0, total)))
}

/** Shapes joined end to end; each part restarts at its own step 0 (SequentialLR). */
class SequenceShape internal constructor(val parts: List<Pair<Shape, Long?>>) :
    Shape("sequence", false, null, { _, _ -> Double.NaN }) {

    override val followsPlan: Boolean
        get() {
            val last = parts[parts.size - 1]
            return last.second == null && last.first.followsPlan
        }

    override fun evaluate(s: Double, localPlan: List<PlanEntry>): Double {
        var out: Double? = null
        var boundary = 0L
        for ((shape, steps) in parts) {
            val subPlan = if (steps != null) listOf(PlanEntry(0, steps)) else PlanMap.shift(localPlan, boundary)
            val v = shape.evaluate(Py.opsMax(s - boundary.toDouble(), 0.0), subPlan)
            out = if (out == null) v else (if (s >= boundary.toDouble()) v else out)
            boundary += steps ?: 0L
        }
        return out!!
    }
}

/**
 * The shape factories with their argument validation, in the order the Python
 * factories validate (so the first error names the same field). [args] are the
 * shape's JSON fields without `type`; a field present with `null` is passed as
 * Python's `None`, an absent one takes the Python default.
 */
internal class ShapeArgs(private val args: Map<String, Any?>, val baseLr: Double, val path: String) {
    fun has(name: String) = name in args
    fun raw(name: String, default: Any?): Any? = if (name in args) args[name] else default
    fun num(name: String, default: Any?, lo: Double? = null, hi: Double? = null,
            loOpen: Boolean = false, hiOpen: Boolean = false): Double =
        checkNumber(raw(name, default), join(path, name), lo, hi, loOpen, hiOpen)

    fun length(name: String): Long? {
        val v = raw(name, null) ?: return null
        return checkInt(v, join(path, name), lo = 1)
    }

    fun lrBound(value: Double, name: String): Double {
        if (value > baseLr) {
            throw ValidationError(join(path, name), "${pyFloat(value)} is above base_lr ${pyFloat(baseLr)}",
                "a number in [0, base_lr=${pyFloat(baseLr)}]")
        }
        return value
    }

    fun bool(name: String): Boolean = (raw(name, false) as? Boolean) ?: false
}

internal object Shapes {
    private fun make(kind: String, length: Long?, f: (Double, Double) -> Double) =
        Shape(kind, length == null, length, f)

    fun build(kind: String, a: ShapeArgs): Shape = when (kind) {
        "constant" -> constant(a)
        "step" -> step(a)
        "multistep" -> multistep(a)
        "exponential" -> exponential(a)
        "inverse_time" -> inverseTime(a)
        "linear" -> linear(a)
        "polynomial" -> polynomial(a)
        "cosine" -> cosine(a)
        "cosine_restarts" -> cosineRestarts(a)
        "onecycle" -> onecycle(a)
        "cyclic" -> cyclic(a)
        "piecewise_constant" -> piecewiseConstant(a)
        "rex" -> rex(a)
        "wsd" -> wsd(a)
        else -> throw IllegalArgumentException("no factory for $kind")
    }

    /** ConstantLR: `base_lr * factor` while `t < total_iters`, then `base_lr`. */
    fun constant(a: ShapeArgs): Shape = constant(a.baseLr, a.num("factor", 1.0, lo = 0.0, hi = 1.0), a.length("total_iters"))

    fun constant(baseLr: Double, factor: Double = 1.0, length: Long? = null): Shape =
        make("constant", length) { u, n -> if (u < n) baseLr * factor else baseLr * (factor + (1.0 - factor)) }

    /** StepLR: `base_lr * gamma ** floor(t / step_size)`. Absolute. */
    fun step(a: ShapeArgs): Shape {
        val size = checkInt(a.raw("step_size", null), join(a.path, "step_size"), lo = 1)
        val gamma = a.num("gamma", 0.1, lo = 0.0)
        val base = a.baseLr
        return Shape("step", false, null) { u, _ -> base * Py.pow(gamma, Py.floor(u / size.toDouble())) }
    }

    /** MultiStepLR with integer milestones (absolute) or fractions of the total (progress-based). */
    fun multistep(a: ShapeArgs): Shape {
        val mpath = join(a.path, "milestones")
        val milestones = a.raw("milestones", null)
        if (milestones !is List<*> || milestones.isEmpty()) {
            throw ValidationError(mpath, "expected a non-empty list",
                "increasing integer steps >= 1, or increasing fractions in (0, 1)")
        }
        val fractions = milestones.all { it is Double && !(Py.isFinite(it) && it == Math.floor(it)) }
        val values = ArrayList<Double>()
        for ((i, m) in milestones.withIndex()) {
            if (fractions) {
                values.add(checkNumber(m, join(mpath, i), lo = 0.0, hi = 1.0, loOpen = true, hiOpen = true))
            } else {
                values.add(checkInt(m, join(mpath, i), lo = 1).toDouble())
            }
            if (i > 0 && values[i] <= values[i - 1]) {
                throw ValidationError(join(mpath, i), "${pyRepr(m)} is not above the previous milestone",
                    "strictly increasing milestones")
            }
        }
        val gamma = a.num("gamma", 0.1, lo = 0.0)
        val base = a.baseLr
        val f = { u: Double, n: Double ->
            var count = 0.0
            for (m in values) count += if (u >= (if (fractions) m * n else m)) 1.0 else 0.0
            base * Py.pow(gamma, count)
        }
        return Shape("multistep", fractions, null, f)
    }

    /** ExponentialLR (`gamma`) or Keras ExponentialDecay (`decay_rate`, `decay_steps`, `staircase`). */
    fun exponential(a: ShapeArgs): Shape {
        val base = a.baseLr
        val gammaRaw = a.raw("gamma", null)
        val rateRaw = a.raw("decay_rate", null)
        val stepsRaw = a.raw("decay_steps", null)
        val staircase = a.bool("staircase")
        if (gammaRaw != null) {
            if (rateRaw != null || stepsRaw != null || staircase) {
                throw ValidationError(join(a.path, "gamma"), "give either gamma or decay_rate/decay_steps",
                    "gamma (PyTorch) or decay_rate + decay_steps [+ staircase] (Keras)")
            }
            val g = checkNumber(gammaRaw, join(a.path, "gamma"), lo = 0.0)
            return Shape("exponential", false, null) { u, _ -> base * Py.pow(g, u) }
        }
        if (rateRaw == null || stepsRaw == null) {
            throw ValidationError(join(a.path, "gamma"), "missing required field",
                "gamma (PyTorch) or decay_rate + decay_steps [+ staircase] (Keras)")
        }
        val rate = checkNumber(rateRaw, join(a.path, "decay_rate"), lo = 0.0)
        val dsteps = checkInt(stepsRaw, join(a.path, "decay_steps"), lo = 1).toDouble()
        return Shape("exponential", false, null) { u, _ ->
            val p = u / dsteps
            base * Py.pow(rate, if (staircase) Py.floor(p) else p)
        }
    }

    /** Keras InverseTimeDecay: `base_lr / (1 + decay_rate * t / decay_steps)`. Absolute. */
    fun inverseTime(a: ShapeArgs): Shape {
        val rate = a.num("decay_rate", null, lo = 0.0)
        val dsteps = checkInt(a.raw("decay_steps", null), join(a.path, "decay_steps"), lo = 1).toDouble()
        val stair = a.bool("staircase")
        val base = a.baseLr
        return Shape("inverse_time", false, null) { u, _ ->
            val p = u / dsteps
            base / (1.0 + rate * (if (stair) Py.floor(p) else p))
        }
    }

    /** LinearLR: `base_lr * (s + (e - s) * min(t, L) / L)`. */
    fun linear(a: ShapeArgs): Shape {
        val s0 = a.num("start_factor", 1.0 / 3, lo = 0.0, hi = 1.0, loOpen = true)
        val e0 = a.num("end_factor", 1.0, lo = 0.0, hi = 1.0)
        val length = a.length("total_iters")
        val base = a.baseLr
        return make("linear", length) { u, n -> base * (s0 + (e0 - s0) * Py.opsMin(u, n) / n) }
    }

    /** PolynomialLR / Keras PolynomialDecay (with Keras's `cycle`). */
    fun polynomial(a: ShapeArgs): Shape {
        val length = a.length("total_iters")
        val pw = a.num("power", 1.0, lo = 0.0)
        val end = a.lrBound(a.num("end_learning_rate", 0.0, lo = 0.0), "end_learning_rate")
        val cyc = a.bool("cycle")
        val base = a.baseLr
        return make("polynomial", length) { u, n0 ->
            var n = n0
            val frac: Double
            if (cyc) {
                n = n * Py.opsMax(Py.ceil(u / n), 1.0)
                frac = u / n
            } else {
                frac = Py.opsMin(u, n) / n
            }
            (base - end) * Py.pow(1.0 - frac, pw) + end
        }
    }

    /** CosineAnnealingLR (closed form); periodic past an explicit `T_max`, as PyTorch. */
    fun cosine(a: ShapeArgs): Shape {
        val length = a.length("T_max")
        val lo = a.lrBound(a.num("eta_min", 0.0, lo = 0.0), "eta_min")
        val base = a.baseLr
        return make("cosine", length) { u, n -> lo + (base - lo) * (1.0 + Py.cos(Py.PI * u / n)) / 2.0 }
    }

    /** CosineAnnealingWarmRestarts (SGDR) with Keras's `m_mul`. Absolute. */
    fun cosineRestarts(a: ShapeArgs): Shape {
        val t0 = checkInt(a.raw("T_0", null), join(a.path, "T_0"), lo = 1).toDouble()
        val multL = checkInt(a.raw("T_mult", 1L), join(a.path, "T_mult"), lo = 1)
        val mult = multL.toDouble()
        val lo = a.lrBound(a.num("eta_min", 0.0, lo = 0.0), "eta_min")
        val mm = a.num("m_mul", 1.0, lo = 0.0, hi = 1.0)
        val logMult = if (multL > 1) Py.log(mult) else 1.0
        val base = a.baseLr
        fun startOf(i: Double): Double =
            if (multL == 1L) t0 * i else t0 * (Py.pow(mult, i) - 1.0) / (mult - 1.0)
        return Shape("cosine_restarts", false, null) { u, _ ->
            var i: Double
            if (multL == 1L) {
                i = Py.floor(u / t0)
            } else {
                i = Py.floor(Py.log(u / t0 * (mult - 1.0) + 1.0) / logMult)
                i = if (u < startOf(i)) i - 1.0 else i
                i = if (u >= startOf(i + 1.0)) i + 1.0 else i
            }
            val tCur = u - startOf(i)
            val tI = t0 * Py.pow(mult, i)
            lo + (base - lo) * Py.pow(mm, i) * (1.0 + Py.cos(Py.PI * tCur / tI)) / 2.0
        }
    }

    /** OneCycleLR (PyTorch's phases, cos or linear; every phase clamped at its end). */
    fun onecycle(a: ShapeArgs): Shape {
        val peak = checkNumber(a.raw("max_lr", null) ?: a.baseLr, join(a.path, "max_lr"), lo = 0.0, loOpen = true)
        val length = a.length("total_steps")
        val pct = a.num("pct_start", 0.3, lo = 0.0, hi = 1.0)
        val anneal = a.raw("anneal_strategy", "cos")
        if (anneal != "cos" && anneal != "linear") {
            throw ValidationError(join(a.path, "anneal_strategy"), "unknown value ${pyRepr(anneal)}", "cos, linear")
        }
        val div = a.num("div_factor", 25.0, lo = 0.0, loOpen = true)
        val finalDiv = a.num("final_div_factor", 1e4, lo = 0.0, loOpen = true)
        val initial = peak / div
        val floorLr = initial / finalDiv
        val three = a.bool("three_phase")
        val cosAnneal = anneal == "cos"
        fun annealF(start: Double, end: Double, p: Double): Double =
            if (cosAnneal) end + (start - end) / 2.0 * (Py.cos(Py.PI * p) + 1.0) else (end - start) * p + start
        return make("onecycle", length) { u, n ->
            val ends: DoubleArray
            val from: DoubleArray
            val to: DoubleArray
            if (three) {
                ends = doubleArrayOf(pct * n - 1.0, 2.0 * pct * n - 2.0, n - 1.0)
                from = doubleArrayOf(initial, peak, initial)
                to = doubleArrayOf(peak, initial, floorLr)
            } else {
                ends = doubleArrayOf(pct * n - 1.0, n - 1.0)
                from = doubleArrayOf(initial, peak)
                to = doubleArrayOf(peak, floorLr)
            }
            var out = 0.0
            var taken = false
            var startStep = 0.0
            for (i in ends.indices) {
                val endStep = ends[i]
                val span = endStep - startStep
                var p = if (span > 0) (u - startStep) / (if (span > 0) span else 1.0) else 1.0
                p = Py.opsMin(Py.opsMax(p, 0.0), 1.0)
                val v = annealF(from[i], to[i], p)
                val here = if (i < ends.size - 1) u <= endStep else u == u
                if (i == 0) {
                    out = v
                    taken = here
                } else {
                    out = if (taken) out else v
                    taken = if (taken) taken else here
                }
                startStep = endStep
            }
            out
        }
    }

    /** CyclicLR (triangular, triangular2, exp_range). Absolute. */
    fun cyclic(a: ShapeArgs): Shape {
        val lo = checkNumber(a.raw("base_lr", null) ?: a.baseLr, join(a.path, "base_lr"), lo = 0.0, loOpen = true)
        val hi = a.num("max_lr", null, lo = 0.0, loOpen = true)
        val up = checkInt(a.raw("step_size_up", 2000L), join(a.path, "step_size_up"), lo = 1).toDouble()
        val downRaw = a.raw("step_size_down", null)
        val down = if (downRaw == null) up else checkInt(downRaw, join(a.path, "step_size_down"), lo = 1).toDouble()
        val mode = a.raw("mode", "triangular")
        if (mode != "triangular" && mode != "triangular2" && mode != "exp_range") {
            throw ValidationError(join(a.path, "mode"), "unknown value ${pyRepr(mode)}", "triangular, triangular2, exp_range")
        }
        val g = a.num("gamma", 1.0, lo = 0.0, hi = 1.0, loOpen = true)
        val total = up + down
        val ratio = up / total
        return Shape("cyclic", false, null) { u, _ ->
            val cycle = Py.floor(1.0 + u / total)
            val x = 1.0 + u / total - cycle
            val scale = if (x <= ratio) x / ratio else (x - 1.0) / (ratio - 1.0)
            val height = (hi - lo) * scale
            when (mode) {
                "triangular" -> lo + height * 1.0
                "triangular2" -> lo + height * (1 / Py.pow(2.0, cycle - 1.0))
                else -> lo + height * Py.pow(g, u)
            }
        }
    }

    /** Keras PiecewiseConstantDecay: the switch happens at `t = boundary + 1`. Absolute. */
    fun piecewiseConstant(a: ShapeArgs): Shape {
        val bpath = join(a.path, "boundaries")
        val vpath = join(a.path, "values")
        val boundaries = a.raw("boundaries", null)
        if (boundaries !is List<*>) throw ValidationError(bpath, "expected a list", "increasing integer steps >= 0")
        val bounds = ArrayList<Double>()
        for ((i, b) in boundaries.withIndex()) bounds.add(checkInt(b, join(bpath, i), lo = 0).toDouble())
        for (i in 1 until bounds.size) {
            if (bounds[i] <= bounds[i - 1]) {
                throw ValidationError(join(bpath, i), "${pyRepr(boundaries[i])} is not above the previous one",
                    "strictly increasing boundaries")
            }
        }
        val values = a.raw("values", null)
        if (values !is List<*> || values.size != bounds.size + 1) {
            throw ValidationError(vpath, "expected ${bounds.size + 1} values (one more than boundaries)",
                "a list of learning rates >= 0")
        }
        val vals = ArrayList<Double>()
        for ((i, v) in values.withIndex()) vals.add(checkNumber(v, join(vpath, i), lo = 0.0))
        return Shape("piecewise_constant", false, null) { u, _ ->
            var out = vals[0] + 0.0 * u
            for (k in bounds.indices) out = if (u > bounds[k]) vals[k + 1] else out
            out
        }
    }

    /** REX (Chen et al., MLSys 2022). */
    fun rex(a: ShapeArgs): Shape {
        val length = a.length("total_iters")
        val lo = a.lrBound(a.num("eta_min", 0.0, lo = 0.0), "eta_min")
        val base = a.baseLr
        return make("rex", length) { u, n ->
            val z = Py.opsMin(u, n) / n
            lo + (base - lo) * (1.0 - z) / (1.0 - z / 2.0)
        }
    }

    /** Length of a cool-down that is [fraction] of [total] (at least one step). */
    fun decayStepsOf(fraction: Double, total: Double): Double =
        Py.opsMin(total, Py.opsMax(1.0, Py.floor(fraction * total)))

    /** Decay factor g(q) from 1 at q = 0 to 0 at q = 1. */
    fun cooldown(kind: String, q: Double): Double = when (kind) {
        "linear" -> 1.0 - q
        "cosine" -> (1.0 + Py.cos(Py.PI * q)) / 2.0
        else -> 1.0 - Py.sqrt(q)
    }

    val WSD_DECAYS = listOf("linear", "cosine", "1-sqrt")

    /** Warmup-stable-decay: hold, then cool down over the last `decay_fraction` of the run. */
    fun wsd(a: ShapeArgs): Shape {
        val frac = a.num("decay_fraction", 0.2, lo = 0.0, hi = 1.0, loOpen = true)
        val decayShape = a.raw("decay_shape", "1-sqrt")
        if (decayShape !is String || decayShape !in WSD_DECAYS) {
            throw ValidationError(join(a.path, "decay_shape"), "unknown value ${pyRepr(decayShape)}", WSD_DECAYS.joinToString(", "))
        }
        val lo = a.lrBound(a.num("eta_min", 0.0, lo = 0.0), "eta_min")
        val length = a.length("total_iters")
        val base = a.baseLr
        return make("wsd", length) { u, n ->
            val d = decayStepsOf(frac, n)
            val q = Py.opsMin(Py.opsMax((u - (n - d)) / d, 0.0), 1.0)
            lo + (base - lo) * cooldown(decayShape, q)
        }
    }
}
