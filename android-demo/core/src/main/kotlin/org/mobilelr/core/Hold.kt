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
        left = Py.min(stride, certifiedSteps(profile, policy, view, band, endS) - pending)
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
        } else if (fullP != null) {
            energiesLeft -= 1.0
            if (fullP > maxPowerW || energiesLeft < 0.0) left = 0
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
        private const val LEVEL = 1e-9
        private const val TEMP = 1e-7

        /** Steps from [view] that provably each end inside every limit while the costs stay in [band]. */
        fun certifiedSteps(p: DeviceProfile, policy: Policy, view: DeviceState, band: CostBand, endS: Double): Long {
            val s0 = view.thermalStatus
            if (s0 > policy.maxThermal || (!view.charging && (policy.chargingOnly || p.requiresCharging))) return 0
            val m = p.throughput[s0]
            val d = band.capSeconds / m * (1.0 + REL)
            val load = p.loadPower(m, Py.max(Py.max(band.capPowerW, band.maxLoadPowerW), p.idlePowerW)) * (1.0 + REL)
            var n = (endS - view.timeS) / d
            n = Py.min(n, (view.level - Budget.effectiveFloor(p, policy, view.charging) - LEVEL) * p.batteryJ / (load * d))
            val eta = p.chargeEfficiency
            val lossW = (1.0 - eta) * p.chargePowerW
            val fullHeat = (1.0 - eta) / eta
            val heat = load + (if (view.charging) Py.max(lossW, fullHeat * load) else 0.0)
            val amb = view.ambientC!!
            val t0 = view.temperatureC
            val tau = p.tauS
            val top = Py.min(policy.thermalLimitC(p), p.threshold(s0 + 1)) - TEMP
            if (!(t0 < top)) return 0
            val steady = amb + heat * p.thermalResistanceKPerW
            if (steady > top) n = Py.min(n, tau * Py.log((steady - t0) / (steady - top)) / d)
            if (s0 >= 1) {
                val down = p.thresholdsC[s0 - 1] - p.hysteresisC + TEMP
                if (!(t0 >= down)) return 0
                if (amb < down) n = Py.min(n, tau * Py.log((t0 - amb) / (down - amb)) / d)
            }
            return if (n >= 2.0) Py.min(1e9, n).toLong() - 1 else 0
        }
    }
}
