package org.mobilelr.core

/**
 * When the plan in force still holds (twin of `mobile_lr/manager/hold.py`): a closed-form
 * envelope over the steps whose costs stay in the estimator's band proves that the next k steps
 * would each pass the gate, so the manager runs them without a full plan. See the Python module
 * for the bounds; every formula here is the same operations in the same order.
 */
class PlanHold(private val profile: DeviceProfile, private val policy: Policy, private val tolerance: Long) {
    /** Runs allowed without a full plan, and of those what the plan's re-check allows. */
    var left: Long = 0
        private set
    private var stride: Long = 0
    /** The thermal status the envelope keeps (the held steps' throttle). */
    var status: Int = 0
        private set
    private var charging = false
    private var maxSeconds = 0.0
    private var maxPowerW = 0.0
    private var energiesLeft = 0.0
    /** The manager's LR factor at the full plan (fixed until the next one). */
    var scale: Double = 1.0
        private set
    /** The bounds from the anchor state (not saved: the first report after a load re-anchors). */
    var envelope: Envelope? = null
        private set
    private var base: Long = 0
    /** An observation since the anchor widened the estimator's band. */
    private var widened = false

    fun arm(view: DeviceState, band: CostBand?, endS: Double, remaining: Long, scale: Double) {
        stride = Py.max(0L, Math.floorDiv(remaining, 2 * tolerance) - 1)
        this.scale = scale
        anchor(view, band, endS, 1)
    }

    fun reanchor(state: DeviceState, band: CostBand?, endS: Double, pending: Boolean) {
        if (left <= 0) return
        if (state.charging != charging || state.thermalStatus != status) {
            left = 0
            return
        }
        anchor(state, band, endS, if (pending) 1 else 0)
    }

    private fun anchor(view: DeviceState, band: CostBand?, endS: Double, pending: Long) {
        status = view.thermalStatus
        charging = view.charging
        if (band == null) {
            left = 0
            return
        }
        maxSeconds = band.maxSeconds
        maxPowerW = band.maxPowerW
        energiesLeft = band.energiesLeft
        val env = envelope(profile, policy, view, band)
        envelope = env
        left = Py.min(stride, (env?.steps(profile, policy, endS) ?: 0L) - pending)
        base = pending + left
        widened = false
    }

    /**
     * Whether a device report leaves the Runs left as a re-anchor there would (`keeps` in
     * `hold.py`): the stride bounds them, no observation widened the band, and the report is inside
     * the envelope after the steps run since the anchor.
     */
    fun keeps(state: DeviceState, pending: Boolean): Boolean {
        val env = envelope ?: return false
        return !widened && left == stride && state.charging == charging && state.thermalStatus == status &&
            env.contains(base - left - (if (pending) 1L else 0L), state)
    }

    fun take(): Boolean {
        if (left > 0) {
            left -= 1
            stride -= 1
            return true
        }
        return false
    }

    fun observed(recorded: Pair<Double, Double?>?) {
        if (recorded == null || left <= 0) return
        val fullP = recorded.second
        if (recorded.first > maxSeconds) {
            left = 0
            return
        }
        if (recorded.first * BAND_WIDEN > maxSeconds) widened = true
        if (fullP != null) {
            energiesLeft -= 1.0
            if (fullP > maxPowerW || energiesLeft < 0.0) left = 0
            else if (fullP * BAND_WIDEN > maxPowerW && energiesLeft == Double.POSITIVE_INFINITY) widened = true
        }
    }

    fun drop() {
        left = 0
    }

    fun toJson(): Map<String, Any?>? {
        if (left <= 0) return null
        return linkedMapOf("left" to left, "stride" to stride, "status" to status, "charging" to charging,
            "max_seconds" to maxSeconds, "max_power_w" to maxPowerW,
            "energies_left" to (if (energiesLeft.isInfinite()) null else energiesLeft), "scale" to scale)
    }

    fun load(value: Any?) {
        envelope = null
        if (value == null) {
            left = 0
            return
        }
        try {
            val h = value as Map<*, *>
            left = (h["left"] as Number).toLong()
            stride = (h["stride"] as Number).toLong()
            status = (h["status"] as Number).toInt()
            charging = h["charging"] as Boolean
            maxSeconds = (h["max_seconds"] as Number).toDouble()
            maxPowerW = (h["max_power_w"] as Number).toDouble()
            energiesLeft = (h["energies_left"] as Number?)?.toDouble() ?: Double.POSITIVE_INFINITY
            scale = (h["scale"] as Number).toDouble()
        } catch (e: RuntimeException) {
            throw ValidationError("hold", "expected the manager's hold record")
        }
    }

    companion object {
        /** Observations may exceed the window's largest by this factor and stay in the band. */
        const val BAND_WIDEN = 1.25
        private const val REL = 1e-9

        /** The envelope from [view] while the costs stay in [band] (null: no step is allowed). */
        fun envelope(p: DeviceProfile, policy: Policy, view: DeviceState, band: CostBand): Envelope? {
            val s0 = view.thermalStatus
            if (s0 > policy.maxThermal || (!view.charging && (policy.chargingOnly || p.requiresCharging))) return null
            val m = p.throughput[s0]
            val d = band.capSeconds / m * (1.0 + REL)
            val load = p.loadPower(m, Py.max(Py.max(band.capPowerW, band.maxLoadPowerW), p.idlePowerW)) * (1.0 + REL)
            val eta = p.chargeEfficiency
            val lossW = (1.0 - eta) * p.chargePowerW
            val fullHeat = (1.0 - eta) / eta
            val heat = load + (if (view.charging) Py.max(lossW, fullHeat * load) else 0.0)
            val amb = view.ambientC!!
            return Envelope(view.timeS, view.level, view.temperatureC, amb, s0, view.charging, d, load, p.batteryJ,
                amb + heat * p.thermalResistanceKPerW, p.tauS)
        }

        /** Steps from [view] that provably each end inside every limit while the costs stay in [band]. */
        fun certifiedSteps(p: DeviceProfile, policy: Policy, view: DeviceState, band: CostBand, endS: Double): Long =
            envelope(p, policy, view, band)?.steps(p, policy, endS) ?: 0L
    }
}

/** The bounds of `hold.py`'s module doc from one anchor state (its `Envelope`). */
class Envelope(val timeS: Double, val level: Double, val temperatureC: Double, val ambientC: Double, val status: Int,
               val charging: Boolean, val d: Double, val load: Double, val batteryJ: Double, val steady: Double,
               val tau: Double) {
    /** Steps from the anchor that provably each end inside every limit (the certificate). */
    fun steps(p: DeviceProfile, policy: Policy, endS: Double): Long {
        val t0 = temperatureC
        val amb = ambientC
        var n = (endS - timeS) / d
        n = Py.min(n, (level - Budget.effectiveFloor(p, policy, charging) - LEVEL) * batteryJ / (load * d))
        val top = Py.min(policy.thermalLimitC(p), p.threshold(status + 1)) - TEMP
        if (!(t0 < top)) return 0
        if (steady > top) n = Py.min(n, tau * Py.log((steady - t0) / (steady - top)) / d)
        if (status >= 1) {
            val down = p.thresholdsC[status - 1] - p.hysteresisC + TEMP
            if (!(t0 >= down)) return 0
            if (amb < down) n = Py.min(n, tau * Py.log((t0 - amb) / (down - amb)) / d)
        }
        return if (n >= 2.0) Py.min(1e9, n).toLong() - 1 else 0
    }

    /** Whether [state] is no worse in any bound than the envelope after [steps] steps (`contains`). */
    fun contains(steps: Long, state: DeviceState): Boolean {
        val amb = state.ambientC ?: return false
        val kd = steps * d
        if (!(state.timeS <= timeS + kd && amb <= ambientC && (level - state.level) * batteryJ <= steps * load * d)) {
            return false
        }
        val e = Py.exp(-kd / tau)
        if (!(state.temperatureC <= Py.max(temperatureC, steady + (temperatureC - steady) * e))) return false
        return status == 0 || (amb == ambientC && state.temperatureC >= Py.min(temperatureC, amb + (temperatureC - amb) * e))
    }

    private companion object {
        const val LEVEL = 1e-9
        const val TEMP = 1e-7
    }
}
