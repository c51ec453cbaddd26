package org.mobilelr.core

/**
 * The knobs of the recommended set-up (see `mobile_lr.manager.SetupOptions`); the defaults are
 * the measured set-up.
 */
data class SetupOptions(
    val averaging: String? = null,
    val ema: Double = 0.9,
    val warmupSteps: Long = 2,
    val warmupStartFactor: Double = 0.3,
    val warmupMaxFraction: Double = 0.05,
    val cooldownFraction: Double = 0.2,
    val sfCooldownFraction: Double = 0.0,
    val sfLrFactor: Double = 2.5,
    val peakPower: Double = 0.3,
    val sfR: Double = 1.0,
    val sfWarmupFraction: Double = 0.1,
    val sfWarmupStartFactor: Double = 0.6,
    val sfWarmupHorizon: String = "battery",
    val sfPeakPower: Double = 0.0,
    val peakMaxFactor: Double = 2.5,
    val divergence: DivergenceConfig? = null
) {
    companion object {
        private val FIELDS = listOf("averaging", "ema", "warmup_steps", "warmup_start_factor", "warmup_max_fraction",
            "cooldown_fraction", "sf_cooldown_fraction", "sf_lr_factor", "peak_power", "sf_r", "sf_warmup_fraction",
            "sf_warmup_start_factor", "sf_warmup_horizon", "sf_peak_power", "peak_max_factor", "divergence")

        fun fromJson(value: Any?, path: String = "options"): SetupOptions {
            val obj = getObject(value, path)
            checkKeys(obj, path, FIELDS)
            val d = SetupOptions()
            val averaging = obj["averaging"]
            if (averaging != null && averaging !in RecommendedSetup.AVERAGINGS) {
                throw ValidationError(join(path, "averaging"), "unknown value ${pyRepr(averaging)}",
                    RecommendedSetup.AVERAGINGS.joinToString(", "))
            }
            val horizon = obj["sf_warmup_horizon"] ?: d.sfWarmupHorizon
            if (horizon !is String || horizon !in ManagerConfig.HORIZONS) {
                throw ValidationError(join(path, "sf_warmup_horizon"), "unknown value ${pyRepr(horizon)}",
                    ManagerConfig.HORIZONS.joinToString(", "))
            }
            return SetupOptions(
                averaging as String?,
                getNumberOr(obj, "ema", path, d.ema, lo = 0.0, hi = 1.0, loOpen = true, hiOpen = true)!!,
                getIntOr(obj, "warmup_steps", path, d.warmupSteps, lo = 0)!!,
                getNumberOr(obj, "warmup_start_factor", path, d.warmupStartFactor, lo = 0.0, hi = 1.0, loOpen = true)!!,
                getNumberOr(obj, "warmup_max_fraction", path, d.warmupMaxFraction, lo = 0.0, hi = 1.0, loOpen = true)!!,
                getNumberOr(obj, "cooldown_fraction", path, d.cooldownFraction, lo = 0.0, hi = 1.0, loOpen = true)!!,
                getNumberOr(obj, "sf_cooldown_fraction", path, d.sfCooldownFraction, lo = 0.0, hi = 1.0)!!,
                getNumberOr(obj, "sf_lr_factor", path, d.sfLrFactor, lo = 0.0, loOpen = true)!!,
                getNumberOr(obj, "peak_power", path, d.peakPower, lo = 0.0)!!,
                getNumberOr(obj, "sf_r", path, d.sfR, lo = 0.0)!!,
                getNumberOr(obj, "sf_warmup_fraction", path, d.sfWarmupFraction, lo = 0.0, hi = 1.0)!!,
                getNumberOr(obj, "sf_warmup_start_factor", path, d.sfWarmupStartFactor, lo = 0.0, hi = 1.0, loOpen = true)!!,
                horizon,
                getNumberOr(obj, "sf_peak_power", path, d.sfPeakPower, lo = 0.0)!!,
                getNumberOr(obj, "peak_max_factor", path, d.peakMaxFactor, lo = 1.0)!!,
                obj["divergence"]?.let { DivergenceConfig.fromJson(it, join(path, "divergence")) })
        }
    }
}

/**
 * A set-up for one run (see `mobile_lr.manager.RecommendedSetup`): [schedule] (a schedule spec),
 * [config] (the manager config, `nominal_steps` set) and [runtimeOptions] (what the runtime
 * opens with: `ema` or `optimizer`), with the [averaging] flavour they share. The constructor
 * refuses halves that do not go together, naming both, in the Python wording.
 *
 * On Android the ORT Java API has no parameter buffer calls (1.19.x), so the app can run
 * neither the EMA nor schedule-free AdamW: it takes the schedule and the config of the
 * `ema` flavour and trains the raw weights (see the app's TrainingWorker).
 */
class RecommendedSetup(
    val runtime: String,
    val averaging: String,
    schedule: Map<String, Any?>,
    val config: ManagerConfig,
    runtimeOptions: Map<String, Any?>
) {
    @Suppress("UNCHECKED_CAST")
    val schedule: Map<String, Any?> = Json.copy(schedule) as Map<String, Any?>
    @Suppress("UNCHECKED_CAST")
    val runtimeOptions: Map<String, Any?> = Json.copy(runtimeOptions) as Map<String, Any?>

    init {
        if (runtime !in RUNTIMES) throw ValidationError("setup.runtime", "unknown value ${pyRepr(runtime)}", RUNTIMES.joinToString(", "))
        if (averaging !in AVERAGINGS) throw ValidationError("setup.averaging", "unknown value ${pyRepr(averaging)}", AVERAGINGS.joinToString(", "))
        val mode = ScheduleSpec.parse(this.schedule).budgetMode
        checkOptions(this.runtimeOptions)
        check(mode)
    }

    /** The schedule half, parsed. */
    fun parsedSchedule(): Schedule = ScheduleSpec.parse(schedule)

    fun toJson(): Map<String, Any?> = linkedMapOf("runtime" to runtime, "averaging" to averaging,
        "schedule" to Json.copy(schedule), "config" to config.toJson(), "runtime_options" to Json.copy(runtimeOptions))

    private fun checkOptions(opts: Map<String, Any?>) {
        for (key in opts.keys) {
            if (key !in OPTION_KEYS) throw ValidationError("setup.runtime_options.$key", "unknown option", OPTION_KEYS.joinToString(", "))
        }
        val optimizer = opts["optimizer"] ?: "recipe"
        if (optimizer != "recipe" && optimizer != "schedulefree") {
            throw ValidationError("setup.runtime_options.optimizer", "unknown value ${pyRepr(optimizer)}", "recipe, schedulefree")
        }
        if (opts["ema"] != null) checkNumber(opts["ema"], "setup.runtime_options.ema", 0.0, 1.0, true, true)
        if ("sf_r" in opts) checkNumber(opts["sf_r"], "setup.runtime_options.sf_r", lo = 0.0)
    }

    private fun check(mode: String) {
        if (config.nominalSteps == null) {
            throw ValidationError("setup.config.nominal_steps", "missing: a set-up plans for the run's nominal length", "an integer >= 1")
        }
        if (config.scheduleHorizon == "battery" && !holdsAfterWarmup(schedule["shape"] as Map<*, *>?)) {
            throw ValidationError("setup.config.schedule_horizon", "'battery' does not go with a schedule shape that decays " +
                "(it would cool down for the steps the battery alone affords while the charger carries the run)",
                "plan, or a shape that holds its peak")
        }
        val optimizer = runtimeOptions["optimizer"] ?: "recipe"
        if (averaging == "ema") {
            if (optimizer == "schedulefree") throw ValidationError("setup.runtime_options.optimizer",
                "'schedulefree' does not go with averaging 'ema' (the schedule cools down for weights evaluated at their EMA)",
                "'recipe' with runtime_options.ema, or averaging 'schedulefree'")
            if (runtimeOptions["ema"] == null) throw ValidationError("setup.runtime_options.ema",
                "missing: averaging 'ema' evaluates at an EMA of the weights", "a decay in (0, 1)")
            if (((runtimeOptions["sf_r"] as? Number)?.toDouble() ?: 0.0) != 0.0) throw ValidationError("setup.runtime_options.sf_r",
                "does not go with averaging 'ema' (it weighs schedule-free AdamW's average)", "no sf_r, or averaging 'schedulefree'")
            if (mode != "wsd" && mode != "replan") throw ValidationError("setup.schedule.budget.mode",
                "${pyRepr(mode)} does not go with averaging 'ema' (its schedule must cool down as the budget in force ends)",
                "wsd, replan")
            if (mode == "replan" && holdsAfterWarmup(schedule["shape"] as Map<*, *>?)) throw ValidationError("setup.schedule.shape",
                "a shape that holds its peak does not go with averaging 'ema' in budget mode 'replan' (its schedule must cool down as the budget in force ends)",
                "a decaying shape, or budget mode wsd")
        } else {
            if (optimizer != "schedulefree") throw ValidationError("setup.runtime_options.optimizer",
                "${pyRepr(optimizer)} does not go with averaging 'schedulefree' (the schedule holds the peak for an averaging optimizer)",
                "'schedulefree', or averaging 'ema'")
            if (runtimeOptions["ema"] != null) throw ValidationError("setup.runtime_options.ema",
                "does not go with averaging 'schedulefree' (it averages its iterates already)", "no ema, or averaging 'ema'")
            if (mode == "replan" && !holdsAfterWarmup(schedule["shape"] as Map<*, *>?)) throw ValidationError("setup.schedule.budget.mode",
                "'replan' does not go with averaging 'schedulefree' (a re-planned curve decays from step 0; schedule-free's average does that)",
                "fixed, wsd")
        }
    }

    companion object {
        val RUNTIMES = listOf("torch", "ort", "executorch")
        val AVERAGINGS = listOf("ema", "schedulefree")
        /** The measured default flavour per runtime kind (`RECOMMENDED_AVERAGING`). */
        val AVERAGING: Map<String, String> = mapOf("torch" to "schedulefree", "ort" to "schedulefree",
            "executorch" to "schedulefree")
        private val OPTION_KEYS = listOf("optimizer", "ema", "threads", "sf_r")

        /**
         * A warm-up over [fraction] of the plan in force from [startFactor] x the peak, then the
         * peak held (see `mobile_lr.manager.recommended.plan_warmup`): OneCycleLR's linear first
         * phase whose final LR is the peak, re-timed by re-plans in budget mode `replan`.
         */
        fun planWarmup(fraction: Double, startFactor: Double): Map<String, Any?> = linkedMapOf(
            "type" to "onecycle", "anneal_strategy" to "linear", "pct_start" to fraction,
            "div_factor" to 1.0 / startFactor, "final_div_factor" to startFactor)

        /** A shape that never decays below its peak: constant, or [planWarmup]'s ramp. */
        private fun holdsAfterWarmup(shape: Map<*, *>?): Boolean {
            val type = shape?.get("type")
            if (type == "constant") return true
            if (type != "onecycle" || shape["three_phase"] == true) return false
            val div = (shape["div_factor"] as Number?)?.toDouble() ?: 25.0
            val fin = (shape["final_div_factor"] as Number?)?.toDouble() ?: 1e4
            return Math.abs(div * fin - 1.0) <= 1e-9
        }

        /**
         * The recommended set-up for [runtime] training a bundle whose manifest is [manifest] (its
         * JSON; null: any bundle) for [nominalSteps] steps from the bundle's [baseLr] (the LR of
         * the manifest's optimizer); see `mobile_lr.manager.recommended_setup`.
         */
        fun recommended(runtime: String, manifest: Map<String, Any?>?, baseLr: Double, nominalSteps: Long,
                        options: SetupOptions = SetupOptions()): RecommendedSetup {
            if (runtime !in RUNTIMES) throw ValidationError("runtime", "unknown value ${pyRepr(runtime)}", RUNTIMES.joinToString(", "))
            checkNumber(baseLr, "base_lr", lo = 0.0, loOpen = true)
            val averaging = averagingFor(runtime, manifest, options.averaging)
            val spec = linkedMapOf<String, Any?>("format" to "mobile-lr.schedule/1", "base_lr" to baseLr)
            val ramp = averaging == "schedulefree" && options.sfWarmupFraction > 0.0
            if (ramp && options.sfCooldownFraction > 0.0) throw ValidationError("options.sf_warmup_fraction",
                "does not go with sf_cooldown_fraction (the warm-up follows the plan by re-planning, the cool-down by the budget mode wsd)",
                "one of them 0")
            if (options.warmupSteps > 0 && !ramp) {
                spec["warmup"] = linkedMapOf<String, Any?>("steps" to options.warmupSteps, "start_factor" to options.warmupStartFactor,
                    "max_fraction" to options.warmupMaxFraction)
            }
            val decay = if (averaging == "ema") options.cooldownFraction else options.sfCooldownFraction
            if (averaging == "schedulefree") spec["base_lr"] = baseLr * options.sfLrFactor
            if (ramp) {
                spec["shape"] = planWarmup(options.sfWarmupFraction, options.sfWarmupStartFactor)
                spec["budget"] = linkedMapOf<String, Any?>("mode" to "replan")
            } else if (decay > 0.0) {
                spec["shape"] = linkedMapOf<String, Any?>("type" to "linear", "start_factor" to 1.0, "end_factor" to 0.0)
                spec["budget"] = linkedMapOf<String, Any?>("mode" to "wsd", "decay_fraction" to decay)
            } else {
                spec["shape"] = linkedMapOf<String, Any?>("type" to "constant", "factor" to 1.0)
                spec["budget"] = linkedMapOf<String, Any?>("mode" to "fixed")
            }
            val power = if (averaging == "ema") options.peakPower else options.sfPeakPower
            val peak: Map<String, Any?> = if (power > 0.0) {
                linkedMapOf("type" to "budget_power", "power" to power, "max_factor" to options.peakMaxFactor)
            } else linkedMapOf("type" to "none")
            val config = ManagerConfig(nominalSteps = nominalSteps, peakLr = peak, divergence = options.divergence,
                scheduleHorizon = if (ramp && options.sfWarmupHorizon == "battery") "battery" else null)
            val opts: MutableMap<String, Any?> = if (averaging == "schedulefree") linkedMapOf("optimizer" to "schedulefree")
                else linkedMapOf("ema" to options.ema)
            if (averaging == "schedulefree" && options.sfR > 0.0) opts["sf_r"] = options.sfR
            return RecommendedSetup(runtime, averaging, spec, config, opts)
        }

        private fun averagingFor(runtime: String, manifest: Map<String, Any?>?, wanted: String?): String {
            val averaging = wanted ?: AVERAGING.getValue(runtime)
            if (averaging != "schedulefree" || manifest == null) return averaging
            val optimizer = (manifest["optimizer"] as Map<*, *>?)?.get("type")
            val lrDropout = manifest["lr_dropout"] != null
            val adamw = if (runtime == "ort") optimizer == "adamw" && !lrDropout else optimizer == "adamw"
            if (adamw || runtime == "torch") return averaging
            if (wanted != null) {
                throw ValidationError("options.averaging", "'schedulefree' needs an AdamW bundle on $runtime, not " +
                    pyRepr(optimizer) + (if (lrDropout) " with LR dropout" else ""),
                    "ema, or a bundle exported with the adamw optimizer")
            }
            return "ema"
        }

        /** A set-up read from its JSON (`RecommendedSetup.to_dict()` on the Python side). */
        fun fromJson(value: Any?, path: String = "setup"): RecommendedSetup {
            val obj = getObject(value, path)
            checkKeys(obj, path, listOf("runtime", "averaging", "schedule", "config", "runtime_options"),
                required = listOf("runtime", "averaging", "schedule", "config", "runtime_options"))
            @Suppress("UNCHECKED_CAST")
            return RecommendedSetup(obj["runtime"] as? String ?: "", obj["averaging"] as? String ?: "",
                getObject(obj["schedule"], join(path, "schedule")),
                ManagerConfig.fromJson(obj["config"], join(path, "config")),
                getObject(obj["runtime_options"], join(path, "runtime_options")))
        }
    }
}
