package org.mobilelr.core

/** The spec's warm-up: linear or cosine from `start_factor`, capped at a fraction of the total. */
class Warmup(val steps: Long, val startFactor: Double = 0.1, val shape: String = "linear", val maxFraction: Double = 0.1) {
    /** Warm-up steps for a planned total: never more than `max_fraction` of it. */
    fun length(total: Long): Long = Py.min(steps, Py.floorLong(maxFraction * total.toDouble()))

    fun factor(t: Double, w: Long): Double {
        var x = t / Py.max(w, 1L).toDouble()
        if (shape == "cosine") x = (1.0 - Py.cos(Py.PI * x)) / 2.0
        return startFactor + (1.0 - startFactor) * x
    }
}

/**
 * A validated schedule (twin of `mobile_lr.schedules.Schedule`): a pure `lr(t, plan)`,
 * built by [ScheduleSpec.parse]. `plan` is the plan history `[(0, T0), (t1, T1), ...]`;
 * omitted, it is `[(0, total_steps)]`.
 */
class Schedule internal constructor(
    private val spec: Map<String, Any?>,
    val shape: Shape,
    val warmup: Warmup?,
    val plateauRule: PlateauRule?,
    private val wsdFraction: Double?
) {
    val baseLr: Double = (spec["base_lr"] as Number).toDouble()
    val totalSteps: Long? = (spec["total_steps"] as Number?)?.let { checkInt(it, "total_steps") }

    @Suppress("UNCHECKED_CAST")
    val budgetMode: String = ((spec["budget"] as Map<String, Any?>?)?.get("mode") as String?) ?: "replan"

    val isPlateau: Boolean get() = plateauRule != null

    /** Whether a budget change moves the LR at all (absolute shapes ignore it). */
    val followsPlan: Boolean get() = budgetMode != "fixed" && (shape.followsPlan || warmup != null)

    /** The spec as plain JSON (a deep copy). */
    @Suppress("UNCHECKED_CAST")
    fun toJson(): Map<String, Any?> = Json.copy(spec) as Map<String, Any?>

    fun planOrDefault(plan: List<PlanEntry>?): List<PlanEntry> {
        if (plan == null) {
            val total = totalSteps ?: throw ValidationError("total_steps", "the planned total is unknown",
                "total_steps in the spec, or a plan [[0, T0], ...]")
            return listOf(PlanEntry(0, total))
        }
        return PlanMap.check(plan)
    }

    /** The LR at step [t]: what PyTorch's `get_last_lr()` gives after `t` steps. */
    fun lr(t: Long, plan: List<PlanEntry>? = null, plateau: PlateauState? = null): Double =
        eval(t.toDouble(), planOrDefault(plan), plateau)

    /** The LR at the end of the current plan (`t` = the last planned total). */
    fun endLr(plan: List<PlanEntry>? = null): Double {
        val p = planOrDefault(plan)
        return lr(p[p.size - 1].total, p)
    }

    fun plateauStart(): PlateauState =
        (plateauRule ?: throw IllegalStateException("this schedule has no plateau shape")).start(baseLr)

    fun plateauObserve(state: PlateauState, metric: Double): PlateauState =
        (plateauRule ?: throw IllegalStateException("this schedule has no plateau shape")).observe(state, metric)

    private fun eval(t: Double, plan0: List<PlanEntry>, plateau: PlateauState?): Double {
        val plan = if (budgetMode == "fixed") plan0.subList(0, 1) else plan0
        val w = warmup?.length(plan[0].total) ?: 0L
        val shapePlan = PlanMap.shift(plan, w)
        val s = Py.opsMax(t - w.toDouble(), 0.0)
        var y: Double
        val start: Double
        if (plateauRule != null) {
            val value = plateau?.lr ?: baseLr
            y = value + 0.0 * t
            start = value
        } else if (budgetMode == "wsd") {
            y = wsdMode(s, shapePlan)
            start = shape.evaluate(0.0, shapePlan)
        } else {
            y = shape.evaluate(s, shapePlan)
            start = if (warmup != null) shape.evaluate(0.0, shapePlan) else 0.0
        }
        if (w > 0) y = if (t < w.toDouble()) start * warmup!!.factor(t, w) else y
        return y
    }

    /** Hold the peak; start the cool-down when the remaining budget reaches the fraction. */
    private fun wsdMode(s: Double, plan: List<PlanEntry>): Double {
        val frac = wsdFraction!!
        var c: Long? = null
        for (k in plan.indices) {
            val tK = plan[k].step
            val nxt = if (k + 1 < plan.size) plan[k + 1].step.toDouble() else Double.POSITIVE_INFINITY
            val totalK = Py.max(plan[k].total, 1L)
            val cand = Py.max(tK, totalK - Shapes.decayStepsOf(frac, totalK.toDouble()).toLong())
            if (cand.toDouble() < nxt) {
                c = cand
                break
            }
        }
        val hold = shape.evaluate(0.0 * s, listOf(PlanEntry(0, Py.max(plan[plan.size - 1].total, 1L))))
        if (c == null) return hold
        val cool = shape.evaluate(Py.opsMax(s - c.toDouble(), 0.0), PlanMap.shift(plan, c))
        return if (s >= c.toDouble()) cool else hold
    }
}

/** The versioned JSON schedule spec (`mobile-lr.schedule/1`): validation and parsing. */
object ScheduleSpec {
    const val FORMAT = "mobile-lr.schedule/1"
    val BUDGET_MODES = listOf("fixed", "replan", "wsd")
    val WARMUP_SHAPES = listOf("linear", "cosine")

    /** Fields of each shape type, in the Python reference's order. */
    val SHAPE_FIELDS: Map<String, List<String>> = linkedMapOf(
        "constant" to listOf("factor", "total_iters"),
        "step" to listOf("step_size", "gamma"),
        "multistep" to listOf("milestones", "gamma"),
        "exponential" to listOf("gamma", "decay_rate", "decay_steps", "staircase"),
        "inverse_time" to listOf("decay_rate", "decay_steps", "staircase"),
        "linear" to listOf("start_factor", "end_factor", "total_iters"),
        "polynomial" to listOf("total_iters", "power", "end_learning_rate", "cycle"),
        "cosine" to listOf("T_max", "eta_min"),
        "cosine_restarts" to listOf("T_0", "T_mult", "eta_min", "m_mul"),
        "onecycle" to listOf("max_lr", "total_steps", "pct_start", "anneal_strategy", "div_factor",
            "final_div_factor", "three_phase"),
        "cyclic" to listOf("base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma"),
        "piecewise_constant" to listOf("boundaries", "values"),
        "rex" to listOf("total_iters", "eta_min"),
        "wsd" to listOf("decay_fraction", "decay_shape", "eta_min", "total_iters"),
        "sequence" to listOf("parts"),
        "plateau" to listOf("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown",
            "min_lr", "eps"))
    val SHAPE_TYPES: List<String> = SHAPE_FIELDS.keys.toList()
    private val REQUIRED_FIELDS: Map<String, List<String>> = mapOf(
        "step" to listOf("step_size"), "multistep" to listOf("milestones"),
        "inverse_time" to listOf("decay_rate", "decay_steps"),
        "cosine_restarts" to listOf("T_0"), "cyclic" to listOf("max_lr"),
        "piecewise_constant" to listOf("boundaries", "values"), "sequence" to listOf("parts"))
    private val BOOL_FIELDS = listOf("staircase", "cycle", "three_phase")

    /** Read and validate a spec from JSON text. */
    fun parse(text: String): Schedule = parse(Json.parse(text))

    /** Validate a spec (a plain JSON tree) and build its [Schedule]. */
    fun parse(obj: Any?): Schedule {
        val root = getObject(obj, "")
        checkKeys(root, "", listOf("format", "base_lr", "total_steps", "warmup", "shape", "budget"),
            listOf("format", "base_lr", "shape"))
        if (root["format"] != FORMAT) {
            throw ValidationError("format", "unknown version ${pyRepr(root["format"])}", FORMAT)
        }
        val baseLr = getNumber(root, "base_lr", "", lo = 0.0, loOpen = true)
        getIntOr(root, "total_steps", "", null, lo = 1)

        var warmup: Warmup? = null
        if ("warmup" in root) {
            val w = getObject(root["warmup"], "warmup")
            checkKeys(w, "warmup", listOf("steps", "start_factor", "shape", "max_fraction"), listOf("steps"))
            warmup = Warmup(
                steps = getInt(w, "steps", "warmup", lo = 0),
                startFactor = getNumberOr(w, "start_factor", "warmup", 0.1, lo = 0.0, hi = 1.0)!!,
                shape = getChoice(w, "shape", "warmup", WARMUP_SHAPES, "linear"),
                maxFraction = getNumberOr(w, "max_fraction", "warmup", 0.1, lo = 0.0, hi = 1.0,
                    loOpen = true, hiOpen = true)!!)
        }

        val budget = getObject(if ("budget" in root) root["budget"] else emptyMap<String, Any?>(), "budget")
        val mode = getChoice(budget, "mode", "budget", BUDGET_MODES, "replan")
        checkKeys(budget, "budget", if (mode == "wsd") listOf("mode", "decay_fraction") else listOf("mode"))
        var wsdFraction: Double? = null
        if (mode == "wsd") {
            wsdFraction = getNumberOr(budget, "decay_fraction", "budget", 0.2, lo = 0.0, hi = 1.0, loOpen = true)
        }

        val shapeObj = getObject(root["shape"], "shape")
        var plateau: PlateauRule? = null
        val shape: Shape
        if (shapeObj["type"] == "plateau") {
            plateau = parsePlateau(shapeObj, baseLr)
            shape = Shapes.constant(baseLr)
        } else {
            shape = parseShape(shapeObj, baseLr, "shape", true)
        }
        if (mode == "wsd" && (plateau != null || !shape.followsPlan || shape.kind == "wsd" || shape.kind == "sequence")) {
            throw ValidationError("budget.mode", "'wsd' cannot drive a ${pyRepr(shapeObj["type"])} shape",
                "fixed or replan for this shape; wsd needs a progress-based shape " +
                    "(length omitted) other than wsd and sequence")
        }
        @Suppress("UNCHECKED_CAST")
        val spec = Json.copy(root) as Map<String, Any?>
        return Schedule(spec, shape, warmup, plateau, wsdFraction)
    }

    private fun parsePlateau(obj: Map<String, Any?>, baseLr: Double): PlateauRule {
        val path = "shape"
        checkKeys(obj, path, listOf("type") + SHAPE_FIELDS.getValue("plateau"))
        val rule = PlateauRule(
            mode = getChoice(obj, "mode", path, listOf("min", "max"), "min"),
            factor = getNumberOr(obj, "factor", path, 0.1, lo = 0.0, hi = 1.0, hiOpen = true)!!,
            patience = getIntOr(obj, "patience", path, 10, lo = 0)!!,
            threshold = getNumberOr(obj, "threshold", path, 1e-4, lo = 0.0)!!,
            thresholdMode = getChoice(obj, "threshold_mode", path, listOf("rel", "abs"), "rel"),
            cooldown = getIntOr(obj, "cooldown", path, 0, lo = 0)!!,
            minLr = getNumberOr(obj, "min_lr", path, 0.0, lo = 0.0)!!,
            eps = getNumberOr(obj, "eps", path, 1e-8, lo = 0.0)!!)
        if (rule.minLr > baseLr) {
            throw ValidationError(join(path, "min_lr"), "${pyFloat(rule.minLr)} is above base_lr ${pyFloat(baseLr)}",
                "a number in [0, base_lr=${pyFloat(baseLr)}]")
        }
        return rule
    }

    private fun parseShape(obj: Map<String, Any?>, baseLr: Double, path: String, allowSequence: Boolean): Shape {
        val kind = obj["type"]
        val allowedTypes = SHAPE_TYPES.filter { allowSequence || (it != "sequence" && it != "plateau") }
        if ("type" !in obj) throw ValidationError(join(path, "type"), "missing required field", allowedTypes.joinToString(", "))
        if (kind !is String || kind !in allowedTypes) {
            throw ValidationError(join(path, "type"), "unknown shape type ${pyRepr(kind)}", allowedTypes.joinToString(", "))
        }
        checkKeys(obj, path, listOf("type") + SHAPE_FIELDS.getValue(kind), REQUIRED_FIELDS[kind] ?: emptyList())
        val kwargs = LinkedHashMap<String, Any?>()
        for ((k, v) in obj) if (k != "type") kwargs[k] = v
        for (name in BOOL_FIELDS) if (name in kwargs) kwargs[name] = getBool(kwargs, name, path)
        if (kind == "sequence") return parseSequence(kwargs["parts"], baseLr, join(path, "parts"))
        return Shapes.build(kind, ShapeArgs(kwargs, baseLr, path))
    }

    private fun parseSequence(parts: Any?, baseLr: Double, path: String): Shape {
        if (parts !is List<*> || parts.isEmpty()) {
            throw ValidationError(path, "expected a non-empty list of parts",
                "[{\"steps\": N, \"shape\": {...}}, ..., {\"shape\": {...}}]")
        }
        val built = ArrayList<Pair<Shape, Long?>>()
        for ((i, p) in parts.withIndex()) {
            val ppath = join(path, i)
            val part = getObject(p, ppath)
            val last = i == parts.size - 1
            checkKeys(part, ppath, listOf("steps", "shape"), if (last) listOf("shape") else listOf("shape", "steps"))
            val steps = getIntOr(part, "steps", ppath, null, lo = 1)
            val shape = parseShape(getObject(part["shape"], join(ppath, "shape")), baseLr, join(ppath, "shape"), false)
            built.add(Pair(shape, steps))
        }
        return SequenceShape(built)
    }
}
