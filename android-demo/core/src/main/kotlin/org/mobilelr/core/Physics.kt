package org.mobilelr.core

/**
 * The phone's physics, once (Kotlin twin of `mobile_lr/physics.py` on floats): the battery
 * pieces and the RC advance, the cool-down, and the planner's battery regimes, jump bounds and
 * closed-form jumps. [Device.advance] and [Budget.plan] are their front-ends.
 */
object Physics {
    private fun rc(temp: Double, heatW: Double, dt: Double, ambient: Double, r: Double, tau: Double): Double {
        val steady = ambient + heatW * r
        return steady + (temp - steady) * StrictMath.exp(-dt / tau)
    }

    /** One piece of constant heat: seconds, level at its end, heat W, consumed J, charger J. */
    private class Piece(val dur: Double, val level: Double, val heat: Double, val used: Double, val wall: Double)

    private fun batteryPieces(p: DeviceProfile, level0: Double, charging: Boolean, loadW: Double, dt: Double): List<Piece> {
        val eFull = p.batteryJ
        val pieces = ArrayList<Piece>()
        val eta = p.chargeEfficiency
        val a = if (charging) eta * p.chargePowerW else 0.0
        val lossHeat = if (charging) (1.0 - eta) * p.chargePowerW else 0.0
        var level = level0
        var remaining = dt
        var guard = 0
        while (remaining > 0.0 && guard < 8) {
            guard += 1
            val b = if (level > 0.0 || a > 0.0) loadW else 0.0
            val net = a - b
            if (level <= 0.0 && net <= 0.0) {
                pieces.add(Piece(remaining, 0.0, 0.0, 0.0, 0.0))
                break
            }
            if (!charging || net < 0.0) {
                val tEmpty = if (net < 0.0) level * eFull / -net else Double.POSITIVE_INFINITY
                val dur = Py.min(remaining, tEmpty)
                val new = if (dur == tEmpty) 0.0 else Py.max(0.0, level + net * dur / eFull)
                val charger = if (charging) p.chargePowerW * dur else 0.0
                pieces.add(Piece(dur, new, b + lossHeat, b * dur, charger))
                level = new
                remaining -= dur
                continue
            }
            if (level >= 1.0) {
                val heat = b + (1.0 - eta) / eta * b
                pieces.add(Piece(remaining, 1.0, heat, b * remaining, b / eta * remaining))
                break
            }
            val knee = p.cvKnee
            val k = p.cvTaper
            val lStar = if (net > 0.0) knee + k * StrictMath.log(a / net) else Double.POSITIVE_INFINITY
            if (level < lStar) {
                if (net == 0.0) {
                    pieces.add(Piece(remaining, level, b + lossHeat, b * remaining, p.chargePowerW * remaining))
                    break
                }
                val target = Py.min(lStar, 1.0)
                val tTo = (target - level) * eFull / net
                val dur = Py.min(remaining, tTo)
                val new = if (dur == tTo) target else Py.min(level + net * dur / eFull, target)
                pieces.add(Piece(dur, new, b + lossHeat, b * dur, p.chargePowerW * dur))
                level = new
                remaining -= dur
                if (new >= lStar && new < 1.0) level = Py.max(new, lStar)
                continue
            }
            val v0 = StrictMath.exp((level - knee) / k)
            val lam = a / (k * eFull)
            val v1 = StrictMath.exp((1.0 - knee) / k)
            val tFull = (v1 - v0) / lam
            val dur = Py.min(remaining, tFull)
            val new = if (dur == tFull) 1.0 else Py.min(1.0, knee + k * StrictMath.log(v0 + lam * dur))
            val stored = (new - level) * eFull
            pieces.add(Piece(dur, new, b + lossHeat, b * dur, (b * dur + stored) / eta))
            level = new
            remaining -= dur
        }
        return pieces
    }

    /** The end of [dt] seconds at constant load: level (clipped), temperature, status, J used, J from the charger. */
    class Advanced(val level: Double, val temp: Double, val status: Int, val consumedJ: Double, val chargerJ: Double)

    /** [dt] seconds at constant load [loadW] (plus charger heat), split at the battery events into
     *  pieces of constant heat on each of which the RC closed form and the status rule are exact. */
    fun advance(profile: DeviceProfile, level0: Double, charging: Boolean, temp0: Double, status0: Int, amb: Double,
                loadW: Double, dt: Double): Advanced {
        val r = profile.thermalResistanceKPerW
        val tau = profile.tauS
        var temp = temp0
        var status = status0
        var level = level0
        var consumed = 0.0
        var charger = 0.0
        for (pc in batteryPieces(profile, level, charging, loadW, dt)) {
            temp = rc(temp, pc.heat, pc.dur, amb, r, tau)
            status = profile.statusFor(temp, status)
            consumed += pc.used
            charger += pc.wall
            level = pc.level
        }
        return Advanced(level, temp, status, consumed, charger)
    }

    /** Heat of a resting phone: idle power, plus the charger's loss when plugged in. */
    fun restHeat(profile: DeviceProfile, charging: Boolean): Double {
        var heatW = profile.idlePowerW
        if (charging) heatW += (1.0 - profile.chargeEfficiency) * profile.chargePowerW
        return heatW
    }

    /** Seconds of rest at [heatW] until the temperature falls to [targetC] (+inf if it never does). */
    fun coolDown(profile: DeviceProfile, temp: Double, heatW: Double, amb: Double, targetC: Double): Double {
        val steady = amb + heatW * profile.thermalResistanceKPerW
        if (temp <= targetC) return 0.0
        if (steady >= targetC) return Double.POSITIVE_INFINITY
        return profile.tauS * StrictMath.log((temp - steady) / (targetC - steady))
    }

    /** `math.floor(x)` as a Long, saturating (Python's integers do not overflow). */
    private fun floorSat(x: Double): Long {
        val f = StrictMath.floor(x)
        return when {
            f >= 9.2e18 -> Long.MAX_VALUE / 2
            f <= -9.2e18 -> Long.MIN_VALUE / 2
            else -> f.toLong()
        }
    }

    /** Whole steps certainly inside a bound that is crossed at step [x] (one spare). */
    fun stepsBelow(x: Double): Long {
        if (x.isNaN() || x.isInfinite()) return if (x > 0) Budget.MAX_PLAN_STEPS else 0L
        return Py.max(0L, floorSat(x) - 1)
    }

    private class Regime(val kind: String, val bound: Double)

    private fun regime(profile: DeviceProfile, level: Double, charging: Boolean, load: Double): Regime {
        if (!charging) return Regime("drain", 0.0)
        val a = profile.chargeEfficiency * profile.chargePowerW
        val net = a - load
        if (net < 0.0) return Regime("drain", 0.0)
        if (level >= 1.0) return Regime("full", 1.0)
        if (net == 0.0) return Regime("rise", 1.0)
        val lStar = profile.cvKnee + profile.cvTaper * StrictMath.log(a / net)
        if (level < lStar) return Regime("rise", Py.min(lStar, 1.0))
        return Regime("taper", StrictMath.exp((1.0 - profile.cvKnee) / profile.cvTaper))
    }

    private fun heat(profile: DeviceProfile, regime: String, charging: Boolean, load: Double): Double {
        val eta = profile.chargeEfficiency
        if (!charging) return load
        if (regime == "full") return load + (1.0 - eta) / eta * load
        return load + (1.0 - eta) * profile.chargePowerW
    }

    fun jumpLength(profile: DeviceProfile, st: DeviceState, load: Double, d: Double, theta: Double,
                           amb: Double, floor: Double): Long {
        val status = st.thermalStatus
        if (profile.statusFor(st.temperatureC, status) != status || st.temperatureC >= theta) return 0
        val rg = regime(profile, st.level, st.charging, load)
        val eFull = profile.batteryJ
        var n = Budget.MAX_PLAN_STEPS
        val a = if (st.charging) profile.chargeEfficiency * profile.chargePowerW else 0.0
        when (rg.kind) {
            "drain" -> {
                val perStep = (load - a) * d / eFull
                if (perStep > 0.0) n = Py.min(n, stepsBelow((st.level - floor) / perStep))
            }
            "rise" -> {
                val perStep = (a - load) * d / eFull
                if (perStep > 0.0) n = Py.min(n, stepsBelow((rg.bound - st.level) / perStep))
            }
            "taper" -> {
                val v0 = StrictMath.exp((st.level - profile.cvKnee) / profile.cvTaper)
                val perStep = a / (profile.cvTaper * eFull) * d
                n = Py.min(n, stepsBelow((rg.bound - v0) / perStep))
            }
        }
        val steady = amb + heat(profile, rg.kind, st.charging, load) * profile.thermalResistanceKPerW
        val logQ = -d / profile.tauS
        val t0 = st.temperatureC
        if (steady > t0) {
            val edge = Py.min(theta, profile.threshold(status + 1))
            if (steady > edge) n = Py.min(n, stepsBelow(StrictMath.log((steady - edge) / (steady - t0)) / logQ))
        } else if (steady < t0 && status >= 1) {
            val edge = profile.threshold(status) - profile.hysteresisC
            if (steady < edge) n = Py.min(n, stepsBelow(StrictMath.log((edge - steady) / (t0 - steady)) / logQ))
        }
        return n
    }

    fun jump(profile: DeviceProfile, st: DeviceState, load: Double, d: Double, n: Long, theta: Double,
                     amb: Double, floor: Double): DeviceState? {
        val rg = regime(profile, st.level, st.charging, load)
        val eFull = profile.batteryJ
        val a = if (st.charging) profile.chargeEfficiency * profile.chargePowerW else 0.0
        val nd = n.toDouble()
        val level: Double
        if (rg.kind == "drain" || rg.kind == "rise") {
            level = st.level + nd * (a - load) * d / eFull
            if (rg.kind == "drain" && (level < floor || level <= 0.0)) return null
            if (rg.kind == "rise" && level >= rg.bound) return null
        } else if (rg.kind == "taper") {
            val v0 = StrictMath.exp((st.level - profile.cvKnee) / profile.cvTaper)
            val v = v0 + nd * a / (profile.cvTaper * eFull) * d
            if (v >= rg.bound) return null
            level = profile.cvKnee + profile.cvTaper * StrictMath.log(v)
        } else {
            level = 1.0
        }
        val steady = amb + heat(profile, rg.kind, st.charging, load) * profile.thermalResistanceKPerW
        val temp = steady + (st.temperatureC - steady) * StrictMath.exp(-nd * d / profile.tauS)
        val status = st.thermalStatus
        if (temp >= theta || profile.statusFor(temp, status) != status) return null
        return DeviceState(Py.min(1.0, level), st.charging, temp, st.thermalStatus, 0.0, amb)
    }
}
