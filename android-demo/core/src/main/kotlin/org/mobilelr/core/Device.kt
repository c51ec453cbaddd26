package org.mobilelr.core

/** A profile's largest battery, Wh (mobile_lr.device.MAX_BATTERY_WH): the physics divides by it. */
const val MAX_BATTERY_WH = 1000.0

/**
 * Phone model: battery, power, RC thermal model, Android thermal status, OS window
 * (Kotlin twin of `mobile_lr/device.py`; the simulator and the fleet are not ported,
 * a phone measures instead of simulating).
 *
 * [Device.advance] moves a state forward over an interval of constant load exactly:
 * CC-CV charging in closed form and the first-order RC solution
 * `T(t) = T_amb + P R (1 - e^{-t/tau}) + (T0 - T_amb) e^{-t/tau}` on every piece of
 * constant heat. The manager uses it to dead-reckon between device readings and the
 * planner to predict; every expression keeps the Python operation order, so both
 * sides agree to rounding (checked by the golden planner and manager cases).
 */
object ThermalStatus {
    const val NONE = 0
    const val LIGHT = 1
    const val MODERATE = 2
    const val SEVERE = 3
    const val CRITICAL = 4
    const val EMERGENCY = 5
    const val SHUTDOWN = 6
    val NAMES = listOf("NONE", "LIGHT", "MODERATE", "SEVERE", "CRITICAL", "EMERGENCY", "SHUTDOWN")

    fun name(status: Int): String = NAMES[status]

    /** A status from its name (case-insensitive) or its AOSP integer (`PowerManager.THERMAL_STATUS_*`). */
    fun parse(value: Any?, field: String = "thermal_status"): Int {
        if (value is String) {
            val i = NAMES.indexOfFirst { it.equals(value, ignoreCase = true) }
            if (i >= 0) return i
        }
        if ((value is Long || value is Int) && (value as Number).toLong() in 0L..6L) return value.toInt()
        throw ValidationError(field, "unknown thermal status ${pyRepr(value)}", NAMES.joinToString(", ") + " or 0..6")
    }
}

/** The numbers of one phone class (powers in W, energies in J, times in s). */
data class DeviceProfile(
    val name: String,
    val batteryWh: Double,
    val idlePowerW: Double,
    val trainPowerW: Double,
    val chargePowerW: Double,
    val chargeEfficiency: Double,
    val cvKnee: Double,
    val cvTaper: Double,
    val thermalResistanceKPerW: Double,
    val heatCapacityJPerK: Double,
    val ambientC: Double,
    val thresholdsC: List<Double>,
    val hysteresisC: Double,
    val throughput: List<Double>,
    val stepSeconds: Double,
    val windowS: Double,
    val windowChargingS: Double,
    val requiresCharging: Boolean = false,
    val batteryNotLow: Boolean = true,
    val deviceIdle: Boolean = false,
    val lowBatteryLevel: Double = 0.15,
    val stateOfHealth: Double = 1.0,
    val description: String = "",
    val sources: Map<String, String> = emptyMap()
) {
    val batteryJ: Double get() = batteryWh * stateOfHealth * 3600.0
    val tauS: Double get() = thermalResistanceKPerW * heatCapacityJPerK
    val stepJoules: Double get() = trainPowerW * stepSeconds

    /** Temperature at which [status] begins; -inf for NONE, +inf beyond SHUTDOWN. */
    fun threshold(status: Int): Double {
        if (status <= 0) return Double.NEGATIVE_INFINITY
        if (status > 6) return Double.POSITIVE_INFINITY
        return thresholdsC[status - 1]
    }

    fun windowFor(charging: Boolean): Double = if (charging) windowChargingS else windowS

    /** Status after reaching [temperatureC] from [previous], with the AOSP hysteresis. */
    fun statusFor(temperatureC: Double, previous: Int = 0): Int {
        for (k in 6 downTo 1) {
            val edge = thresholdsC[k - 1] - (if (k <= previous) hysteresisC else 0.0)
            if (temperatureC >= edge) return k
        }
        return 0
    }

    /** Whole-device power while training at throughput [throttle], at full speed [fullW]. */
    fun loadPower(throttle: Double, fullW: Double = trainPowerW): Double = idlePowerW + (fullW - idlePowerW) * throttle

    fun toJson(): Map<String, Any?> = linkedMapOf(
        "format" to FORMAT, "name" to name, "description" to description,
        "battery" to linkedMapOf("capacity_wh" to batteryWh, "state_of_health" to stateOfHealth),
        "power" to linkedMapOf("idle_w" to idlePowerW, "train_w" to trainPowerW),
        "charging" to linkedMapOf("power_w" to chargePowerW, "efficiency" to chargeEfficiency,
            "cv_knee" to cvKnee, "cv_taper" to cvTaper),
        "thermal" to linkedMapOf(
            "resistance_k_per_w" to thermalResistanceKPerW, "capacity_j_per_k" to heatCapacityJPerK,
            "ambient_c" to ambientC, "hysteresis_c" to hysteresisC,
            "thresholds_c" to LinkedHashMap<String, Any?>().apply {
                for (i in 1..6) put(ThermalStatus.NAMES[i], thresholdsC[i - 1])
            },
            "throughput" to LinkedHashMap<String, Any?>().apply {
                for (i in 0..6) put(ThermalStatus.NAMES[i], throughput[i])
            }),
        "compute" to linkedMapOf("step_seconds" to stepSeconds),
        "os" to linkedMapOf("window_s" to windowS, "window_charging_s" to windowChargingS,
            "requires_charging" to requiresCharging, "battery_not_low" to batteryNotLow,
            "device_idle" to deviceIdle, "low_battery_level" to lowBatteryLevel),
        "sources" to LinkedHashMap<String, Any?>(sources))

    companion object {
        const val FORMAT = "mobile-lr.device/1"
        private val DEFAULT_THRESHOLDS = listOf(39.0, 43.0, 45.0, 47.0, 52.0, 55.0)
        private val DEFAULT_THROUGHPUT = listOf(1.0, 0.9, 0.75, 0.55, 0.35, 0.35, 0.35)

        /** Parse and validate a profile (`mobile-lr.device/1`), naming the bad field as Python does. */
        private val NAME = Regex("(?!.*\\.\\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

        fun fromJson(value: Any?, path: String = ""): DeviceProfile {
            val obj = getObject(value, path)
            checkKeys(obj, path, listOf("format", "name", "description", "battery", "power", "charging",
                "thermal", "compute", "os", "sources"),
                listOf("name", "battery", "power", "charging", "thermal", "compute"))
            val fmt = if ("format" in obj) obj["format"] else FORMAT
            if (fmt != FORMAT) throw ValidationError(join(path, "format"), "unknown format ${pyRepr(fmt)}", FORMAT)
            val name = obj["name"]
            if (name !is String || name.isEmpty()) {
                throw ValidationError(join(path, "name"), "expected a non-empty string, got ${pyRepr(name)}".take(200))
            }
            if (!NAME.matches(name)) {  // a path component of run directories (Python's NAME_PATTERN)
                throw ValidationError(join(path, "name"), "${pyRepr(name.take(60))} is not a plain name",
                    "1-64 letters, digits, '_', '-', '.', starting with a letter or digit, no '..'")
            }
            val description = if ("description" in obj) obj["description"] else ""
            if (description !is String) throw ValidationError(join(path, "description"), "expected a string")

            var p = join(path, "battery")
            val bat = getObject(obj["battery"], p)
            checkKeys(bat, p, listOf("capacity_wh", "capacity_mah", "nominal_voltage", "state_of_health"))
            val batteryWh: Double
            if ("capacity_wh" in bat) {
                if ("capacity_mah" in bat || "nominal_voltage" in bat) {
                    throw ValidationError(join(p, "capacity_wh"), "give either capacity_wh or capacity_mah + nominal_voltage")
                }
                batteryWh = getNumber(bat, "capacity_wh", p, lo = 0.0, hi = MAX_BATTERY_WH, loOpen = true)
            } else if ("capacity_mah" in bat) {
                val mah = getNumber(bat, "capacity_mah", p, lo = 0.0, loOpen = true)
                val volts = getNumber(bat, "nominal_voltage", p, lo = 0.0, loOpen = true)
                batteryWh = checkNumber(mah * volts / 1000.0, join(p, "capacity_wh"), lo = 0.0,
                    hi = MAX_BATTERY_WH, loOpen = true)
            } else {
                throw ValidationError(join(p, "capacity_wh"), "missing battery capacity",
                    "capacity_wh, or capacity_mah with nominal_voltage")
            }
            val soh = getNumberOr(bat, "state_of_health", p, 1.0, lo = 0.0, hi = 1.0, loOpen = true)!!

            p = join(path, "power")
            val pw = getObject(obj["power"], p)
            checkKeys(pw, p, listOf("idle_w", "train_w"), listOf("idle_w", "train_w"))
            val idle = getNumber(pw, "idle_w", p, lo = 0.0)
            val train = getNumber(pw, "train_w", p, lo = 0.0, loOpen = true)
            if (train < idle) {
                throw ValidationError(join(p, "train_w"), "${pyFloat(train)} is below idle_w ${pyFloat(idle)}",
                    "a training power >= the idle power")
            }

            p = join(path, "charging")
            val ch = getObject(obj["charging"], p)
            checkKeys(ch, p, listOf("power_w", "efficiency", "cv_knee", "cv_taper"), listOf("power_w"))
            val chargeW = getNumber(ch, "power_w", p, lo = 0.0)
            val eff = getNumberOr(ch, "efficiency", p, 0.88, lo = 0.0, hi = 1.0, loOpen = true)!!
            val knee = getNumberOr(ch, "cv_knee", p, 0.8, lo = 0.0, hi = 1.0)!!
            val taper = getNumberOr(ch, "cv_taper", p, 0.07, lo = 0.001, hi = 1.0)!!

            p = join(path, "thermal")
            val th = getObject(obj["thermal"], p)
            checkKeys(th, p, listOf("resistance_k_per_w", "capacity_j_per_k", "ambient_c", "thresholds_c",
                "hysteresis_c", "throughput"), listOf("resistance_k_per_w", "capacity_j_per_k", "ambient_c"))
            val r = getNumber(th, "resistance_k_per_w", p, lo = 0.0, hi = 1000.0, loOpen = true)
            val c = getNumber(th, "capacity_j_per_k", p, lo = 0.0, hi = 1e6, loOpen = true)
            val amb = getNumber(th, "ambient_c", p, lo = -50.0, hi = 80.0)
            val hyst = getNumberOr(th, "hysteresis_c", p, 1.9, lo = 0.0)!!
            val thPath = join(p, "thresholds_c")
            val thresholds = if ("thresholds_c" in th) {
                statusTable(th["thresholds_c"], thPath, ThermalStatus.NAMES.subList(1, 7), null, null, false)
            } else DEFAULT_THRESHOLDS
            for (k in 1 until thresholds.size) {
                if (thresholds[k] <= thresholds[k - 1]) {
                    throw ValidationError(join(thPath, ThermalStatus.NAMES[k + 1]),
                        "thresholds must increase from LIGHT to SHUTDOWN", "a temperature above ${pyFloat(thresholds[k - 1])}")
                }
            }
            val tpPath = join(p, "throughput")
            val throughput = if ("throughput" in th) {
                statusTable(th["throughput"], tpPath, ThermalStatus.NAMES, 0.0, 1.0, true)
            } else DEFAULT_THROUGHPUT
            for (k in 1 until throughput.size) {
                if (throughput[k] > throughput[k - 1]) {
                    throw ValidationError(join(tpPath, ThermalStatus.NAMES[k]),
                        "throughput must not rise with the thermal status", "a factor in (0, ${pyFloat(throughput[k - 1])}]")
                }
            }

            p = join(path, "compute")
            val cp = getObject(obj["compute"], p)
            checkKeys(cp, p, listOf("step_seconds"), listOf("step_seconds"))
            val stepS = getNumber(cp, "step_seconds", p, lo = 1e-6, hi = 86400.0)

            p = join(path, "os")
            val osd = getObject(if ("os" in obj) obj["os"] else emptyMap<String, Any?>(), p)
            checkKeys(osd, p, listOf("window_s", "window_charging_s", "requires_charging", "battery_not_low",
                "device_idle", "low_battery_level"))
            val window = getNumberOr(osd, "window_s", p, 600.0, lo = 0.0, loOpen = true)!!
            val windowCh = getNumberOr(osd, "window_charging_s", p, 1800.0, lo = 0.0, loOpen = true)!!
            val low = getNumberOr(osd, "low_battery_level", p, 0.15, lo = 0.0, hi = 1.0, hiOpen = true)!!

            val sp = join(path, "sources")
            val sources = getObject(if ("sources" in obj) obj["sources"] else emptyMap<String, Any?>(), sp)
            val src = LinkedHashMap<String, String>()
            for ((k, v) in sources) {
                if (v !is String) throw ValidationError(join(sp, k), "expected a citation string")
                src[k] = v
            }
            return DeviceProfile(
                name = name, description = description, batteryWh = batteryWh, stateOfHealth = soh,
                idlePowerW = idle, trainPowerW = train, chargePowerW = chargeW, chargeEfficiency = eff,
                cvKnee = knee, cvTaper = taper, thermalResistanceKPerW = r, heatCapacityJPerK = c,
                ambientC = amb, thresholdsC = thresholds, hysteresisC = hyst, throughput = throughput,
                stepSeconds = stepS, windowS = window, windowChargingS = windowCh,
                requiresCharging = getBoolOr(osd, "requires_charging", p, false),
                batteryNotLow = getBoolOr(osd, "battery_not_low", p, true),
                deviceIdle = getBoolOr(osd, "device_idle", p, false),
                lowBatteryLevel = low, sources = src)
        }

        /** An object keyed by status name, or a list in status order. */
        private fun statusTable(value: Any?, path: String, names: List<String>, lo: Double?, hi: Double?,
                                loOpen: Boolean): List<Double> {
            if (value is List<*>) {
                if (value.size != names.size) {
                    throw ValidationError(path, "expected ${names.size} values, got ${value.size}", names.joinToString(", "))
                }
                return value.mapIndexed { i, v -> checkNumber(v, join(path, i), lo, hi, loOpen) }
            }
            val obj = getObject(value, path)
            checkKeys(obj, path, names, names)
            return names.map { getNumber(obj, it, path, lo, hi, loOpen) }
        }
    }
}

/**
 * What a training loop reads on the phone. [ambientC] is null when unknown (a phone has
 * no ambient sensor): the models then use the profile's (or the estimated) ambient.
 */
data class DeviceState(
    val level: Double,
    val charging: Boolean,
    val temperatureC: Double,
    val thermalStatus: Int,
    val timeS: Double = 0.0,
    val ambientC: Double? = null
) {
    fun toJson(): Map<String, Any?> = linkedMapOf(
        "level" to level, "charging" to charging, "temperature_c" to temperatureC,
        "thermal_status" to ThermalStatus.name(thermalStatus), "time_s" to timeS, "ambient_c" to ambientC)

    /** The same checks as the Python dataclass's `__post_init__`. */
    fun validated(): DeviceState {
        checkNumber(level, "level", lo = 0.0, hi = 1.0)
        checkNumber(temperatureC, "temperature_c", lo = -100.0, hi = 500.0)
        checkNumber(timeS, "time_s")
        if (thermalStatus !in 0..6) ThermalStatus.parse(thermalStatus.toLong())
        if (ambientC != null) checkNumber(ambientC, "ambient_c", lo = -50.0, hi = 80.0)
        return this
    }

    companion object {
        /** A state whose status follows from the temperature (default: the ambient). */
        fun initial(profile: DeviceProfile, level: Double, charging: Boolean = false, temperatureC: Double? = null,
                    timeS: Double = 0.0, ambientC: Double? = null): DeviceState {
            val temp = temperatureC ?: (ambientC ?: profile.ambientC)
            return DeviceState(level, charging, temp, profile.statusFor(temp), timeS, ambientC).validated()
        }

        fun fromJson(value: Any?, path: String = "state"): DeviceState {
            val obj = getObject(value, path)
            checkKeys(obj, path, listOf("level", "charging", "temperature_c", "thermal_status", "time_s", "ambient_c"),
                listOf("level", "charging", "temperature_c", "thermal_status"))
            val amb = obj["ambient_c"]
            return DeviceState(
                level = getNumber(obj, "level", path, lo = 0.0, hi = 1.0),
                charging = getBool(obj, "charging", path),
                temperatureC = getNumber(obj, "temperature_c", path, lo = -100.0, hi = 500.0),
                thermalStatus = ThermalStatus.parse(obj["thermal_status"], join(path, "thermal_status")),
                timeS = getNumberOr(obj, "time_s", path, 0.0)!!,
                ambientC = if (amb == null) null else getNumber(obj, "ambient_c", path, lo = -50.0, hi = 80.0))
        }
    }
}

/** Energy flows over an interval, in J. */
data class Ledger(val consumedJ: Double = 0.0, val chargerInJ: Double = 0.0, val batteryJ: Double = 0.0)

object Device {
    /** Skin temperature from `PowerManager.getThermalHeadroom` (1.0 at SEVERE, 0.0 at SEVERE - 15 K). */
    fun temperatureFromHeadroom(profile: DeviceProfile, headroom: Double): Double {
        val severe = profile.threshold(ThermalStatus.SEVERE)
        return severe - 15.0 + 15.0 * headroom
    }

    /** State after [dt] seconds at constant load [loadW] (plus charger heat), exactly, and its ledger
     *  ([Physics.advance] on a [DeviceState]). */
    fun advance(profile: DeviceProfile, state: DeviceState, loadW: Double, dt: Double,
                ambientC: Double? = null): Pair<DeviceState, Ledger> {
        if (dt < 0.0 || dt.isNaN() || dt.isInfinite()) throw ValidationError("dt", "${pyFloat(dt)} is not a finite duration >= 0")
        if (dt == 0.0) return Pair(state, Ledger())
        val amb = ambientC ?: (state.ambientC ?: profile.ambientC)
        val r = Physics.advance(profile, state.level, state.charging, state.temperatureC, state.thermalStatus, amb,
            loadW, dt)
        val newState = DeviceState(Py.min(1.0, Py.max(0.0, r.level)), state.charging, r.temp, r.status,
            state.timeS + dt, state.ambientC)
        return Pair(newState, Ledger(r.consumedJ, r.chargerJ, (r.level - state.level) * profile.batteryJ))
    }

    /** Seconds of rest until the temperature falls to [targetC] (+inf if it never does). */
    fun coolDownSeconds(profile: DeviceProfile, state: DeviceState, targetC: Double, heatW0: Double? = null): Double =
        Physics.coolDown(profile, state.temperatureC, heatW0 ?: Physics.restHeat(profile, state.charging),
            state.ambientC ?: profile.ambientC, targetC)
}
