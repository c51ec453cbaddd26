package org.mobilelr.core

/**
 * What the app reads from the phone, turned into what the manager needs, without Android types
 * (so the JVM tests cover it): charging from the battery broadcast, one temperature source at a
 * time from a rate-limited `PowerManager.getThermalHeadroom`, and the seconds a step really costs.
 */
object BatterySignals {
    // android.os.BatteryManager.BATTERY_STATUS_* (EXTRA_STATUS)
    const val STATUS_CHARGING = 2
    const val STATUS_DISCHARGING = 3
    const val STATUS_NOT_CHARGING = 4
    const val STATUS_FULL = 5

    /**
     * Power flows into the phone: a charger is plugged in (`EXTRA_PLUGGED` != 0) *and* the battery
     * reports CHARGING or FULL (full and plugged: the phone runs from the charger). Plugged alone is
     * not charging: a weak USB port, or adaptive/limited charging holding at 80 %, reports plugged
     * with NOT_CHARGING or DISCHARGING while the battery drains.
     */
    fun charging(status: Int, plugged: Int): Boolean =
        plugged != 0 && (status == STATUS_CHARGING || status == STATUS_FULL)
}

/**
 * The skin-temperature estimate from one source, asked at the rate the platform allows.
 *
 * `getThermalHeadroom` returns NaN when it is called more often than about once a second (and
 * when unsupported); the worker reads the device every few 10-ms steps and the screen every two
 * seconds. So the headroom is asked at most once per [minIntervalS] (process-wide: one instance
 * per process), a NaN or non-finite answer keeps the last good value, and the source only falls
 * back to the battery sensor after no good headroom for [staleS] seconds: the manager never sees
 * the temperature jump between two sensors from one reading to the next.
 */
class TemperatureSource(private val profile: DeviceProfile, val minIntervalS: Double = 1.0,
                        val staleS: Double = 30.0) {
    private var askedS = Double.NEGATIVE_INFINITY
    private var goodS = Double.NEGATIVE_INFINITY
    private var headroom: Double? = null

    /** How many times the platform was asked (for the tests and the screen). */
    var asked = 0
        private set

    /** `(temperature in °C, source name, headroom used or null)` at time [nowS]. */
    @Synchronized
    fun read(nowS: Double, askHeadroom: (() -> Double)?, batteryTempC: Double?): Triple<Double, String, Double?> {
        if (askHeadroom != null && nowS - askedS >= minIntervalS) {
            askedS = nowS
            asked++
            val h = askHeadroom()
            if (!h.isNaN() && !h.isInfinite() && h >= 0.0) {
                headroom = h
                goodS = nowS
            }
        }
        val h = headroom
        if (h != null && nowS - goodS <= staleS) {
            return Triple(Device.temperatureFromHeadroom(profile, h), "thermal headroom", h)
        }
        if (batteryTempC != null && !batteryTempC.isNaN() && !batteryTempC.isInfinite()) {
            return Triple(batteryTempC, "battery temperature", null)
        }
        return Triple(profile.ambientC, "profile ambient", null)
    }
}

/**
 * The seconds a training step costs the phone: the step itself plus the bookkeeping I/O done for
 * it (status, history, checkpoints, exports), which the battery and the window pay for too. The
 * I/O measured since the last step is added to the next observed step.
 */
class StepMeter(private val nanoClock: () -> Long) {
    private var ioNanos = 0L

    /** Run [block] (I/O), counting its time towards the next step. */
    fun <T> io(block: () -> T): T {
        val t0 = nanoClock()
        try {
            return block()
        } finally {
            ioNanos += nanoClock() - t0
        }
    }

    /** Seconds to observe for a step that trained for [trainNanos]: with the I/O since the last one. */
    fun stepSeconds(trainNanos: Long): Double {
        val s = (trainNanos + ioNanos) / 1e9
        ioNanos = 0L
        return s
    }
}
